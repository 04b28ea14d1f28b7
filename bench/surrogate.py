"""Surrogate benchmark (issue 7): accuracy and latency of the path-loss surrogates vs the reciprocity maps.

Usage: python bench/surrogate.py [--models out/surrogate] [--positions 100] [--reference-samples 100000]

Models: ``rftwin-surrogate train --site S --kind K --out MODELS/K-S`` for S in factory-hall-a, -b and K in
rf, mlp (directories found by their manifests). Per site (tag a, b):

- ``{kind}_holdout_{rmse,median_abs,p95_abs}_db_{tag}``: the surrogate (onnxruntime) at its held-out cell centres vs the
  ray-traced value there (pairs with gain ≥ −150 dB, :mod:`models.surrogate.metrics`);
  ``mlp_torch_holdout_…``: the same through PyTorch, and ``{kind}_onnx_vs_{framework}_max_abs_db_{tag}``
  (onnxruntime vs PyTorch here; vs scikit-learn as measured at training, from the manifest).
- ``{kind}_direct_{rmse,median_abs,p95_abs}_db_{tag}`` for kind in maps, rf, mlp: at random off-grid positions vs a
  direct TX → SU PathSolver trace (:mod:`central.twin.verify`, as bench/twin.py): the maps' own
  interpolation error and the surrogates' error on the same reference.
- ``{kind}_us_per_snapshot_{single,batch}_{tag}``: median µs per snapshot (12 SUs, 3 TXs): one
  ``predict`` call per snapshot, and per snapshot in a batch of 10 000 (bench/twin.py's timing).
Last line: one JSON object. Anchor (paper): random forest 20 ms per snapshot of 12 SUs.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "bench"))  # after the repo: bench/central.py must not shadow central/

from central.twin import SolverSettings, Twin, resolve_site  # noqa: E402
from central.twin.surrogate import load_surrogate, surrogate_data  # noqa: E402
from central.twin.verify import direct_gain_db, sample_tx_positions  # noqa: E402
from models.surrogate import SurrogatePredictor, find_bundle, gain_error, holdout_mask  # noqa: E402
from twin import time_predict  # noqa: E402  (bench/twin.py: the same timing for every predictor)

SITES = (("a", "factory-hall-a"), ("b", "factory-hall-b"))
KINDS = ("rf", "mlp")


def mlp_torch_check(directory: Path, predictor: SurrogatePredictor, x: np.ndarray) -> np.ndarray | None:
    """PyTorch's predictions of the saved MLP (None without the reference weights)."""
    from models.surrogate.mlp import MlpParams, load_mlp_torch, predict_mlp
    from models.surrogate.train import TORCH_REFERENCE_FILE

    ref = directory / TORCH_REFERENCE_FILE
    if not ref.is_file():
        return None
    return predict_mlp(load_mlp_torch(ref, MlpParams(**predictor.manifest.params)), x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=str(ROOT / "out" / "surrogate"), help="directory holding the model dirs")
    ap.add_argument("--positions", type=int, default=100, help="random TX positions for the direct-trace check")
    ap.add_argument("--reference-samples", type=int, default=100_000, help="PathSolver rays per TX for the reference")
    args = ap.parse_args()
    rng = np.random.default_rng(2026)
    out: dict = {"positions": args.positions}
    for tag, name in SITES:
        site = resolve_site(name)
        twin = Twin.load(site)
        data = surrogate_data(twin)
        models = {}
        for kind in KINDS:
            d = find_bundle(args.models, site.content_hash(), kind)
            if d is None:
                out.setdefault("skipped", []).append(f"{kind}-{name}: no model under {args.models}")
                continue
            models[kind] = (d, load_surrogate(site, d))
        pos = sample_tx_positions(site, args.positions, rng)
        ref = direct_gain_db(site, pos, replace(SolverSettings(), path_samples_per_src=args.reference_samples))
        predictors = {"maps": twin.predictor, **{k: p for k, (_, p) in models.items()}}
        for kind, pred in predictors.items():
            e = gain_error(pred.lookup(pos).gain_db, ref)
            out[f"{kind}_direct_rmse_db_{tag}"] = round(e.rmse_db, 3)
            out[f"{kind}_direct_median_abs_db_{tag}"] = round(e.median_abs_db, 3)
            out[f"{kind}_direct_p95_abs_db_{tag}"] = round(e.p95_abs_db, 3)
        for kind, (d, pred) in models.items():
            m = pred.manifest
            hold = holdout_mask(data, m.holdout_fraction, m.split, m.seed)
            x = data.features()[hold]
            ort_db = pred.gains_for_features(x).astype(np.float64)
            e = gain_error(ort_db, data.gain_db[hold])
            out[f"{kind}_holdout_rmse_db_{tag}"] = round(e.rmse_db, 3)
            out[f"{kind}_holdout_median_abs_db_{tag}"] = round(e.median_abs_db, 3)
            out[f"{kind}_holdout_p95_abs_db_{tag}"] = round(e.p95_abs_db, 3)
            out[f"{kind}_n_train_{tag}"] = m.n_train
            if kind == "mlp":
                torch_db = mlp_torch_check(d, pred, x)
                if torch_db is not None:
                    et = gain_error(torch_db, data.gain_db[hold])
                    out[f"mlp_torch_holdout_rmse_db_{tag}"] = round(et.rmse_db, 3)
                    out[f"mlp_torch_holdout_median_abs_db_{tag}"] = round(et.median_abs_db, 3)
                    out[f"mlp_onnx_vs_torch_max_abs_db_{tag}"] = float(np.max(np.abs(torch_db - ort_db)))
            else:
                out[f"rf_onnx_vs_sklearn_max_abs_db_{tag}"] = m.onnx_max_abs_diff_db  # measured at training
                out[f"rf_trees_{tag}"] = m.params.get("n_trees")
        for kind, pred in predictors.items():
            single, batch = time_predict(replace(twin, predictor=pred), rng)
            out[f"{kind}_us_per_snapshot_single_{tag}"] = round(single, 2)
            out[f"{kind}_us_per_snapshot_batch_{tag}"] = round(batch, 3)
        print(f"{name}: " + ", ".join(f"{k}={v}" for k, v in out.items() if k.endswith(f"_{tag}")), file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
