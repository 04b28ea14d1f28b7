"""LoS/NLoS answers for the operator and the RAN: from a channel estimate (the ONNX ResNet) or from a UE
position (the twin's geometry).

Why two sources: a base station that reports its uplink channel estimate gets the learned classifier's
probability (multipath makes LoS a property of the channel, not only of the floor plan); a caller that
only knows where a UE is gets the twin's geometric answer: is the straight segment from the gNB to the UE
free of obstacles? That is the label the classifier was trained on (a ray-traced path with no
interaction), so the two agree where the twin is right.

The model file is ``<models_dir>/los.onnx`` (exported by ``bench/los.py`` / :mod:`models.los.train`);
it is loaded on first use and reloaded when the file changes, so installing a new model needs no
restart. The gNB position comes from the model's metadata (the twin dataset it was trained on) unless
the request gives one; with no model installed, a position is still answered from the geometry (the
gNB then defaults to the middle of the hall's ceiling).
"""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from central.twin.site import Site

MODEL_FILE = "los.onnx"
DEFAULT_GNB_BELOW_CEILING_M = 0.2  # no model, no gNB given: the middle of the ceiling, this far below it


class LosUnavailable(RuntimeError):
    """No usable LoS model is installed (503)."""


class LosInputError(ValueError):
    """The request cannot be answered as given (422), with the reason."""


@dataclass
class LosAnswer:
    los_probability: float
    los: bool
    source: str  # "model" | "geometry"
    blocked_by: str | None = None  # geometry: the first obstacle on the gNB–UE segment
    model: str | None = None  # model file and its training provenance summary

    def to_dict(self) -> dict:
        return {"los_probability": self.los_probability, "los": self.los, "source": self.source,
                "blocked_by": self.blocked_by, "model": self.model}  # fmt: skip


def segment_hits_box(p0: np.ndarray, p1: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> bool:
    """Does the segment p0 → p1 (m) pass through the open box (lo, hi)? Slab method; touching a face
    or an edge does not count (a ray grazing a box is not blocked in geometrical optics)."""
    d = p1 - p0
    t0, t1 = 0.0, 1.0
    for k in range(3):
        if abs(d[k]) < 1e-12:
            if not lo[k] < p0[k] < hi[k]:
                return False
            continue
        a, b = (lo[k] - p0[k]) / d[k], (hi[k] - p0[k]) / d[k]
        t0, t1 = max(t0, min(a, b)), min(t1, max(a, b))
        if t0 >= t1:
            return False
    return True


class LosService:
    def __init__(self, site: Site, models_dir: Path):
        self.site = site
        self.path = Path(models_dir) / MODEL_FILE
        self._model = None
        self._mtime: float | None = None
        self._lock = threading.Lock()

    def model(self):
        """The ONNX model, (re)loaded when the file appeared or changed."""
        from models.los.onnx_model import LosModelError, LosOnnxModel

        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            raise LosUnavailable(f"no LoS model installed: export one to {self.path} (python bench/los.py)") from None
        with self._lock:
            if self._model is None or mtime != self._mtime:
                try:
                    self._model = LosOnnxModel(self.path)
                except LosModelError as e:
                    raise LosUnavailable(str(e)) from None
                self._mtime = mtime
            return self._model

    def gnb_position(self, given) -> np.ndarray:
        """The given gNB, else the installed model's (the twin dataset it was trained on), else, with
        no usable model, the middle of the hall's ceiling (0.2 m below it): the geometric answer
        needs no model."""
        if given is not None:
            return np.asarray(given, dtype=float)
        try:
            meta = self.model().meta
        except LosUnavailable:
            x, y, z = self.site.hall_size_m
            return np.array([x / 2.0, y / 2.0, z - DEFAULT_GNB_BELOW_CEILING_M])
        try:
            return np.asarray(meta["gnb_position_m"], dtype=float)
        except KeyError:
            raise LosInputError("give gnb_position_m: the installed model does not record its gNB") from None

    def from_position(self, ue_m, gnb_m=None) -> LosAnswer:
        ue = np.asarray(ue_m, dtype=float)
        gnb = self.gnb_position(gnb_m)
        size = np.asarray(self.site.hall_size_m)
        for name, p in (("position_m", ue), ("gnb_position_m", gnb)):
            if not (np.all(p > 0) and np.all(p < size)):
                raise LosInputError(f"{name} {p.tolist()} is not inside the hall {size.tolist()}")
            inside = self.site.obstacle_at(tuple(p))
            if inside is not None:
                raise LosInputError(f"{name} {p.tolist()} is inside obstacle {inside.name!r}")
        for box in self.site.obstacles:
            if segment_hits_box(gnb, ue, np.asarray(box.min_m), np.asarray(box.max_m)):
                return LosAnswer(0.0, False, "geometry", blocked_by=box.name)
        return LosAnswer(1.0, True, "geometry")

    def from_channel(self, shape, data_b64: str) -> LosAnswer:
        """``data_b64``: the estimate as little-endian complex64 (antennas × subcarriers, row-major)."""
        from models.los.onnx_model import LosModelError

        model = self.model()
        try:
            raw = base64.b64decode(data_b64, validate=True)
        except ValueError:
            raise LosInputError("channel.data_b64 is not valid base64") from None
        n = int(np.prod(shape))
        if len(raw) != 8 * n:
            raise LosInputError(f"channel.data_b64 holds {len(raw)} bytes, shape {list(shape)} of complex64 "
                                f"needs {8 * n}")  # fmt: skip
        h = np.frombuffer(raw, dtype="<c8").reshape(shape)
        try:
            p = float(model.predict_channel(h)[0])
        except LosModelError as e:
            raise LosInputError(str(e)) from None
        return LosAnswer(p, p >= 0.5, "model", model=model.path.name)
