"""A surrogate on disk: ``model.onnx``, ``plane.npz`` and ``manifest.json`` in one directory.

The manifest says what the model is and what it was built from, so that the central unit can refuse a
model that belongs to another site: the site's content hash (``central.twin.Site.content_hash``: the
geometry and materials the ray tracer saw), the Sionna RT version and the twin's gain-map key (the
traced data), the training size, the held-out accuracy and when it was built. ``plane.npz`` holds the
TX plane (:class:`PlaneSpec`). The manifest is written last: a directory without one is not a model.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from models.surrogate.plane import PlaneSpec

MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
PLANE_FILE = "plane.npz"
BUNDLE_FORMAT = 1
KINDS = ("rf", "mlp")

__all__ = ["BUNDLE_FORMAT", "KINDS", "MANIFEST_FILE", "MODEL_FILE", "SurrogateError", "SurrogateManifest",
           "check_site", "find_bundle", "read_manifest", "read_plane", "write_bundle"]  # fmt: skip


class SurrogateError(ValueError):
    """A surrogate directory that cannot be used: missing, malformed, or built for another site."""


@dataclass(frozen=True)
class SurrogateManifest:
    kind: str  # "rf" | "mlp"
    site_name: str
    site_hash: str  # Site.content_hash() of the site the training data was traced for
    sionna_version: str
    twin_key: str  # the gain-map cache key the samples were taken from
    su_ids: list[str]
    su_positions_m: list[list[float]]  # (n_su, 3)
    noise_floor_dbm: float
    n_train: int  # ray-traced positions used for training
    n_holdout: int  # held-out positions
    split: str  # "random" | "blocks" (models.surrogate.data)
    holdout_fraction: float
    seed: int
    holdout_rmse_db: float  # vs ray tracing, pairs with reference ≥ −150 dB (models.surrogate.metrics)
    holdout_median_abs_db: float
    holdout_p95_abs_db: float
    onnx_max_abs_diff_db: float  # onnxruntime vs the training framework on the held-out set
    target_floor_db: float
    train_s: float
    created: str  # UTC, ISO 8601
    params: dict = field(default_factory=dict)  # model hyper-parameters
    model_file: str = MODEL_FILE
    format: int = BUNDLE_FORMAT

    @property
    def num_su(self) -> int:
        return len(self.su_ids)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_dict(cls, d: dict, where: str = "manifest") -> SurrogateManifest:
        if not isinstance(d, dict):
            raise SurrogateError(f"{where}: not a JSON object")
        if d.get("format") != BUNDLE_FORMAT:
            raise SurrogateError(f"{where}: surrogate format {d.get('format')!r}, this code reads {BUNDLE_FORMAT}")
        names = {f.name for f in fields(cls)}
        missing = sorted(n for n in names - set(d) if n not in ("params", "model_file", "format"))
        if missing:
            raise SurrogateError(f"{where}: missing {', '.join(missing)}")
        m = cls(**{k: v for k, v in d.items() if k in names})
        if m.kind not in KINDS:
            raise SurrogateError(f"{where}: unknown kind {m.kind!r} (one of {', '.join(KINDS)})")
        if np.shape(m.su_positions_m) != (len(m.su_ids), 3):
            raise SurrogateError(f"{where}: su_positions_m must be ({len(m.su_ids)}, 3)")
        return m


def write_bundle(directory: str | Path, manifest: SurrogateManifest, onnx_bytes: bytes, plane: PlaneSpec) -> Path:
    """Write the model, the plane and (last, atomically) the manifest into ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / MANIFEST_FILE).unlink(missing_ok=True)  # a half-rewritten directory is "not a model"
    _atomic_write(d / manifest.model_file, onnx_bytes)
    tmp = d / f".{PLANE_FILE}.tmp{os.getpid()}.npz"
    np.savez_compressed(tmp, valid=plane.valid, cell_size_m=plane.cell_size_m, height_m=plane.height_m,
                        hall_xy_m=np.asarray(plane.hall_xy_m))  # fmt: skip
    os.replace(tmp, d / PLANE_FILE)
    _atomic_write(d / MANIFEST_FILE, manifest.to_json().encode())
    return d


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read_manifest(directory: str | Path) -> SurrogateManifest:
    """The manifest of a surrogate directory; :class:`SurrogateError` saying what is wrong otherwise."""
    d = Path(directory)
    if not d.is_dir():
        raise SurrogateError(f"{d}: no such surrogate directory")
    p = d / MANIFEST_FILE
    if not p.is_file():
        raise SurrogateError(f"{d}: not a surrogate (no {MANIFEST_FILE}; train one with `rftwin-surrogate train`)")
    try:
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SurrogateError(f"{p}: unreadable ({type(e).__name__}: {e})") from None
    try:
        m = SurrogateManifest.from_dict(data, str(p))
    except TypeError as e:
        raise SurrogateError(f"{p}: {e}") from None
    if not (d / m.model_file).is_file():
        raise SurrogateError(f"{d}: the manifest names {m.model_file}, which is missing")
    return m


def read_plane(directory: str | Path) -> PlaneSpec:
    p = Path(directory) / PLANE_FILE
    try:
        with np.load(p, allow_pickle=False) as z:
            return PlaneSpec(float(z["cell_size_m"]), float(z["height_m"]), tuple(z["hall_xy_m"]), z["valid"])
    except (OSError, KeyError, ValueError) as e:
        raise SurrogateError(f"{p}: unreadable plane ({type(e).__name__}: {e})") from None


def check_site(manifest: SurrogateManifest, site_hash: str, where: str = "surrogate") -> None:
    """Refuse a surrogate traced for another site (geometry or materials differ: its gains are not this site's)."""
    if manifest.site_hash != site_hash:
        raise SurrogateError(
            f"{where}: built for site {manifest.site_name!r} with content hash {manifest.site_hash}, but this "
            f"site's hash is {site_hash}: the geometry or materials differ; retrain it "
            f"(rftwin-surrogate train --site ... --out ...)"
        )


def find_bundle(root: str | Path, site_hash: str, kind: str) -> Path | None:
    """The surrogate directory for this site and kind: ``root`` itself or one of its subdirectories."""
    root = Path(root)
    if not root.is_dir():
        return None
    for d in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        try:
            m = read_manifest(d)
        except SurrogateError:
            continue
        if m.site_hash == site_hash and m.kind == kind:
            return d
    return None
