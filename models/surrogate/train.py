"""Train a surrogate on ray-traced samples, export it, check the export, write the model directory.

One function per job: :func:`train_surrogate` (split → fit → ONNX → onnxruntime must agree with the
training framework → held-out accuracy → :func:`models.surrogate.bundle.write_bundle`) and
:func:`evaluate_surrogate` (a saved directory re-scored on the same held-out positions). The caller
supplies the samples (:class:`SurrogateData`, from the twin's gain maps) and the site's provenance
(:class:`SiteInfo`): ``models`` does not import the twin.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from models.surrogate.bundle import KINDS, SurrogateError, SurrogateManifest, write_bundle
from models.surrogate.data import TARGET_FLOOR_DB, SurrogateData, holdout_mask
from models.surrogate.metrics import GainError, gain_error
from models.surrogate.mlp import MlpParams
from models.surrogate.predictor import SurrogatePredictor
from models.surrogate.rf import DEFAULT_TREES

# onnxruntime must reproduce the training framework to this (dB): both run float32, so only summation
# order differs (the forests' thresholds are made float32-exact, see models.surrogate.rf).
ONNX_TOLERANCE_DB = 1e-3
TORCH_REFERENCE_FILE = "reference.pt"  # mlp: the PyTorch weights, for benchmarks (not read at inference)

__all__ = ["EvaluationReport", "ONNX_TOLERANCE_DB", "SiteInfo", "TrainConfig", "evaluate_surrogate",
           "train_surrogate"]  # fmt: skip


@dataclass(frozen=True)
class SiteInfo:
    """Where the samples come from (written to the manifest; the site hash gates loading)."""

    site_name: str
    site_hash: str  # central.twin.Site.content_hash()
    sionna_version: str
    twin_key: str  # the gain maps' cache key
    noise_floor_dbm: float


@dataclass(frozen=True)
class TrainConfig:
    kind: str  # "rf" | "mlp"
    split: str = "random"  # held-out positions: "random" cells or "blocks" (models.surrogate.data)
    holdout_fraction: float = 0.2
    seed: int = 0
    n_trees: int = DEFAULT_TREES  # rf
    min_samples_leaf: int = 1  # rf
    n_jobs: int = -1  # rf: cores used for fitting
    mlp: MlpParams = field(default_factory=MlpParams)

    def params(self) -> dict:
        if self.kind == "rf":
            return {"n_trees": self.n_trees, "min_samples_leaf": self.min_samples_leaf}
        return self.mlp.to_dict()


def train_surrogate(data: SurrogateData, site: SiteInfo, out_dir: str | Path, config: TrainConfig,
                    progress: Callable[[str], None] | None = None) -> SurrogateManifest:  # fmt: skip
    """Fit, export, verify and save; returns the manifest written to ``out_dir``."""
    if config.kind not in KINDS:
        raise ValueError(f"unknown surrogate kind {config.kind!r}: one of {', '.join(KINDS)}")
    say = progress or (lambda msg: None)
    hold = holdout_mask(data, config.holdout_fraction, config.split, config.seed)
    x, y = data.features(), data.targets()
    say(f"{config.kind}: {int((~hold).sum())} training and {int(hold.sum())} held-out positions "
        f"({config.split} split), {data.num_su} SUs")  # fmt: skip
    t0 = time.perf_counter()
    if config.kind == "rf":
        from models.surrogate.rf import export_rf_onnx, predict_rf, train_rf

        model = train_rf(x[~hold], y[~hold], config.n_trees, config.min_samples_leaf, config.seed, config.n_jobs,
                         progress=lambda j, n: say(f"  forest {j}/{n} ({time.perf_counter() - t0:.0f} s)"))  # fmt: skip
        train_s = time.perf_counter() - t0
        reference = predict_rf(model, x[hold])
        onnx_bytes = export_rf_onnx(model, x.shape[1])
    else:
        from models.surrogate.mlp import export_mlp_onnx, predict_mlp, train_mlp

        params = MlpParams(**{**config.mlp.to_dict(), "seed": config.seed})
        model = train_mlp(x[~hold], y[~hold], params, progress=lambda e, n, r: say(
            f"  epoch {e}/{n}: train RMSE {r:.2f} dB ({time.perf_counter() - t0:.0f} s)"))  # fmt: skip
        train_s = time.perf_counter() - t0
        reference = predict_mlp(model, x[hold])
        onnx_bytes = export_mlp_onnx(model, x.shape[1])
    say(f"trained in {train_s:.1f} s; ONNX {len(onnx_bytes) / 1e6:.1f} MB")
    manifest = SurrogateManifest(
        kind=config.kind, site_name=site.site_name, site_hash=site.site_hash, sionna_version=site.sionna_version,
        twin_key=site.twin_key, su_ids=list(data.su_ids), su_positions_m=data.su_positions_m.tolist(),
        noise_floor_dbm=float(site.noise_floor_dbm), n_train=int((~hold).sum()), n_holdout=int(hold.sum()),
        split=config.split, holdout_fraction=float(config.holdout_fraction), seed=int(config.seed),
        holdout_rmse_db=float("nan"), holdout_median_abs_db=float("nan"), holdout_p95_abs_db=float("nan"),
        onnx_max_abs_diff_db=float("nan"), target_floor_db=TARGET_FLOOR_DB, train_s=round(train_s, 2),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), params=config.params(),
    )  # fmt: skip
    runtime = SurrogatePredictor(manifest, data.plane, onnx_bytes)
    ort_pred = runtime.gains_for_features(x[hold]).astype(np.float64)
    diff = float(np.max(np.abs(ort_pred - reference))) if len(reference) else 0.0
    if not diff <= ONNX_TOLERANCE_DB:
        raise SurrogateError(f"onnxruntime disagrees with the trained model by {diff:.3g} dB (> {ONNX_TOLERANCE_DB})")
    err = gain_error(ort_pred, data.gain_db[hold])
    say(f"held-out vs ray tracing: RMSE {err.rmse_db:.2f} dB, median |error| {err.median_abs_db:.3f} dB, "
        f"p95 {err.p95_abs_db:.2f} dB over {err.n} pairs; onnxruntime vs training framework {diff:.2g} dB")  # fmt: skip
    manifest = replace(manifest, holdout_rmse_db=round(err.rmse_db, 4), holdout_median_abs_db=round(err.median_abs_db, 4),
                       holdout_p95_abs_db=round(err.p95_abs_db, 4), onnx_max_abs_diff_db=diff)  # fmt: skip
    write_bundle(out_dir, manifest, onnx_bytes, data.plane)
    if config.kind == "mlp":
        from models.surrogate.mlp import save_mlp_torch

        save_mlp_torch(model, Path(out_dir) / TORCH_REFERENCE_FILE)
    return manifest


@dataclass(frozen=True)
class EvaluationReport:
    kind: str
    holdout: GainError  # the manifest's held-out positions, vs ray tracing
    train: GainError  # the training positions (in-sample fit)
    ms_per_position: float  # onnxruntime, batched over the held-out set

    def to_dict(self) -> dict:
        return {"kind": self.kind, "holdout": self.holdout.to_dict(), "train": self.train.to_dict(),
                "ms_per_position": self.ms_per_position}  # fmt: skip


def evaluate_surrogate(predictor: SurrogatePredictor, data: SurrogateData) -> EvaluationReport:
    """Re-score a loaded surrogate on the held-out positions its manifest describes (same split)."""
    m = predictor.manifest
    if data.n != m.n_train + m.n_holdout or tuple(data.su_ids) != tuple(m.su_ids):
        raise SurrogateError(f"the samples ({data.n} positions, SUs {list(data.su_ids)}) are not the ones the "
                             f"surrogate was trained on ({m.n_train + m.n_holdout}, {m.su_ids})")  # fmt: skip
    hold = holdout_mask(data, m.holdout_fraction, m.split, m.seed)
    x = data.features()
    t0 = time.perf_counter()
    pred_hold = predictor.gains_for_features(x[hold])
    ms = 1e3 * (time.perf_counter() - t0) / max(1, int(hold.sum()))
    pred_train = predictor.gains_for_features(x[~hold])
    return EvaluationReport(m.kind, gain_error(pred_hold, data.gain_db[hold]),
                            gain_error(pred_train, data.gain_db[~hold]), ms)  # fmt: skip
