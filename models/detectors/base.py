"""The one interface every residual-snapshot anomaly detector shares.

A *residual snapshot* is the vector Δ (dB) of measured − predicted power at the n_su sensing units.
Detectors learn what Δ looks like in normal operation (no jammer) and score new snapshots:

- ``fit(residuals_db)`` on normal snapshots (N, n_su). NaN marks an SU whose residual is unknown
  (stale or saturated); each detector says what it does with such rows (:attr:`handles_missing`).
- ``score(residuals_db)`` → (B,) float, *higher = more anomalous*; NaN where the detector cannot
  score a row (e.g. LOF with a missing SU). The caller decides what to do then (the live engine falls
  back to a detector that handles missing SUs and says so).
- ``threshold``: a snapshot is anomalous when ``score > threshold``. :meth:`fit` sets it at the
  (1 − target_far) quantile of the training scores (each detector defines training scores that
  behave like held-out scores, e.g. leave-one-out for LOF) or of held-out normal scores when given.
- ``save(path)`` / :func:`load_detector`: ``<stem>.npz`` (arrays, no pickle) + ``<stem>.json``
  (kind, parameters, threshold, SU order, provenance, checksum of the npz).

Optional inputs that later detectors need (issue 5's GLRT works in the linear power domain and needs
the twin's prediction, not only Δ) travel as keyword ``predicted_dbm`` (B, n_su); ED and LOF ignore it.

Robust training hook: ``fit(..., contamination=c)`` self-trims: fit, drop the top fraction c of the
training scores, refit once. Deliberately simple; issue 5 elaborates (and can override :meth:`_clean`).

Nothing here imports ``node``, ``central`` or ``calibration``; runtime needs numpy and scipy
(Φ⁻¹ for :func:`normal_quantile`, LOF's neighbours).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import statistics
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy.special import ndtri

FORMAT_VERSION = 1
# Per-SU limit quantile: an SU is "affected" when its residual exceeds this quantile of its normal residuals.
SU_LIMIT_QUANTILE = 0.99

_REGISTRY: dict[str, type[ResidualDetector]] = {}
# Other names accepted by make_detector (config files may spell the paper's detectors out).
ALIASES = {"energy": "ed", "energy_detector": "ed", "local_outlier_factor": "lof"}


class DetectorError(ValueError):
    """Wrong input shape, an unfitted detector, or a model file that does not match."""


def register(cls: type[ResidualDetector]) -> type[ResidualDetector]:
    """Class decorator: make a detector loadable by its ``kind`` and constructible by :func:`make_detector`."""
    if cls.kind in _REGISTRY and _REGISTRY[cls.kind] is not cls:
        raise ValueError(f"detector kind {cls.kind!r} registered twice")
    _REGISTRY[cls.kind] = cls
    return cls


def detector_kinds() -> list[str]:
    return sorted(_REGISTRY)


def constructor_params(kind: str) -> dict[str, bool]:
    """A kind's constructor parameters (besides target_far and name), each mapped to whether it is
    required (has no default): a caller that holds the twin fills e.g. ``cell_positions_m`` / ``gain_lin``
    for the point-source detectors."""
    try:
        cls = _REGISTRY[ALIASES.get(kind, kind)]
    except KeyError:
        raise DetectorError(f"unknown detector kind {kind!r}; known: {detector_kinds()}") from None
    return {p.name: p.default is inspect.Parameter.empty for p in inspect.signature(cls.__init__).parameters.values()
            if p.name not in ("self", "target_far", "name") and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}  # fmt: skip


def make_detector(kind: str, **params: Any) -> ResidualDetector:
    """A fresh, unfitted detector of a registered kind (``"ed"``, ``"lof"``, …; see :data:`ALIASES`)."""
    try:
        cls = _REGISTRY[ALIASES.get(kind, kind)]
    except KeyError:
        raise DetectorError(f"unknown detector kind {kind!r}; known: {detector_kinds()}") from None
    return cls(**params)


def as_matrix(x, n_su: int | None = None, what: str = "residuals_db") -> np.ndarray:
    """(n_su,) or (B, n_su) → float64 (B, n_su); ±inf refused (NaN is "missing")."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise DetectorError(f"{what} must be (n_su,) or (B, n_su), got shape {a.shape}")
    if n_su is not None and a.shape[1] != n_su:
        raise DetectorError(f"{what} has {a.shape[1]} SUs, the detector was fitted on {n_su}")
    if np.isinf(a).any():
        raise DetectorError(f"{what} contains ±inf (use NaN for a missing SU)")
    return a


# Below this many expected exceedances the empirical quantile is not an estimate of the tail (below).
MIN_TAIL_EXCEEDANCES = 10
TAIL_FRACTION = 0.2  # the upper fraction of the scores the tail model is fitted to


def quantile_threshold(normal_scores, target_far: float) -> float:
    """Threshold with a fraction ``target_far`` of normal scores above it (the (1−far) quantile).

    With N scores the empirical quantile is only an estimate while ``far·N`` is well above one: when
    an operator learns 0.1 % from 70 snapshots it is little more than the largest of them, and new
    normal snapshots exceed it about 1/(N+1) of the time (1.4 %), whatever was asked. So below
    :data:`MIN_TAIL_EXCEEDANCES` expected exceedances the tail is extrapolated instead (peaks over a
    threshold with an exponential excess): u = the (1 − 0.2) quantile, β = the mean excess of the scores
    above u, threshold = u + β·ln(0.2 / far). An exponential tail is heavier than a Gaussian one, so for
    Gaussian-like scores this errs on the side of fewer false alarms. With enough scores (far·N ≥ 10,
    e.g. the paper's 5 % from thousands) it is the plain empirical quantile."""
    s = np.asarray(normal_scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        raise DetectorError("no finite normal scores to set a threshold from")
    if not 0.0 < target_far < 1.0:
        raise DetectorError(f"target_far must be in (0, 1), got {target_far}")
    if target_far * s.size >= MIN_TAIL_EXCEEDANCES or target_far >= TAIL_FRACTION:
        return float(np.quantile(s, 1.0 - target_far))
    u = float(np.quantile(s, 1.0 - TAIL_FRACTION))
    excess = s[s > u] - u
    if excess.size == 0:  # (nearly) constant scores: nothing to extrapolate from
        return float(s.max())
    return u + float(excess.mean()) * math.log(TAIL_FRACTION / target_far)


_Z_CLIP = 1e-6  # quantiles are kept inside (1e-6, 1 − 1e-6) before Φ⁻¹


def normal_quantile(scores, reference: np.ndarray) -> np.ndarray:
    """z = Φ⁻¹ of each score's rank among the sorted finite ``reference`` scores, continued linearly
    above the reference maximum (slope 1/std, so a stronger anomaly always scores higher); NaN stays NaN.

    Why: it puts any detector's score on one scale, z ~ N(0, 1) under normal operation, which is what
    fusing two detectors (``fusion``) and integrating scores over time (the live engine's CUSUM) need."""
    return NormalScale.of(reference)(scores)


@dataclass(frozen=True)
class NormalScale:
    """:func:`normal_quantile` against one reference, with what it needs of the reference computed once
    (its spread, its top rank's z): a detector that scores one snapshot at a time calls it per snapshot."""

    reference: np.ndarray  # sorted finite normal scores
    std: float
    top_z: float

    @classmethod
    def of(cls, reference: np.ndarray) -> NormalScale:
        ref = np.asarray(reference, dtype=np.float64)
        return cls(ref, float(np.std(ref)) or 1.0, float(ndtri((ref.size + 0.5) / (ref.size + 1.0))))

    def __call__(self, scores) -> np.ndarray:
        ref = self.reference
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim == 0:  # one score (a live snapshot): plain floats, a third of the array path's time
            return np.float64(self._one(float(s)))
        u = (np.searchsorted(ref, s, side="right") + 0.5) / (ref.size + 1.0)
        z = ndtri(np.clip(u, _Z_CLIP, 1.0 - _Z_CLIP))
        z = np.where(s > ref[-1], self.top_z + (s - ref[-1]) / self.std, z)
        return np.where(np.isnan(s), np.nan, z)

    def _one(self, s: float) -> float:
        ref = self.reference
        if math.isnan(s):
            return math.nan
        if s > ref[-1]:
            return self.top_z + (s - float(ref[-1])) / self.std
        u = (int(np.searchsorted(ref, s, side="right")) + 0.5) / (ref.size + 1.0)
        return _STANDARD_NORMAL.inv_cdf(min(max(u, _Z_CLIP), 1.0 - _Z_CLIP))


_STANDARD_NORMAL = statistics.NormalDist()


class ResidualDetector(ABC):
    """Base class. Subclasses set :attr:`kind`, implement ``_fit``, ``_score``, ``_training_scores``,
    and the persistence pair ``_params`` / ``_arrays`` / ``_restore``."""

    kind: ClassVar[str] = ""
    handles_missing: ClassVar[bool] = False  # scores rows with NaN (missing SUs) itself

    def __init__(self, target_far: float = 0.05, name: str | None = None):
        if not 0.0 < target_far < 1.0:
            raise DetectorError(f"target_far must be in (0, 1), got {target_far}")
        self.target_far = float(target_far)
        self.name = name or self.kind
        self.threshold: float | None = None
        self.n_su: int | None = None
        self.su_ids: list[str] | None = None
        self.su_limit_db: np.ndarray | None = None  # (n_su,) per-SU normal limit, for "affected SUs"
        self.n_train = 0
        self.provenance: dict = {}
        self.fit_info: dict = {}
        self._z_scale: NormalScale | None = None  # the sorted training scores, for normal_scores

    # ------------------------------------------------------------------ the interface

    @property
    def fitted(self) -> bool:
        return self.n_su is not None

    def fit(
        self,
        residuals_db,
        *,
        predicted_dbm=None,
        su_ids: list[str] | None = None,
        holdout_db=None,
        holdout_predicted_dbm=None,
        contamination: float = 0.0,
        provenance: dict | None = None,
    ) -> ResidualDetector:
        """Learn normal statistics from normal snapshots (N, n_su) and set :attr:`threshold`.

        ``holdout_db``: held-out normal snapshots; when given the threshold comes from their scores
        instead of the training scores (``holdout_predicted_dbm``: their predictions, for detectors
        that need them). ``contamination``: fraction of the training set assumed to be
        anomalous and trimmed away (see :meth:`_clean`). ``su_ids``: the SU order of the columns, kept
        with the model so a mismatched deployment is refused. ``provenance``: free-form JSON-able dict
        (twin cache key, site, campaign, code version, …) saved with the model.
        """
        x = as_matrix(residuals_db)
        n_given = x.shape[0]
        if su_ids is not None and len(su_ids) != x.shape[1]:
            raise DetectorError(f"{len(su_ids)} su_ids for {x.shape[1]} columns")
        if not 0.0 <= contamination < 0.5:
            raise DetectorError(f"contamination must be in [0, 0.5), got {contamination}")
        pred = None if predicted_dbm is None else as_matrix(predicted_dbm, x.shape[1], "predicted_dbm")
        if pred is not None and pred.shape[0] != n_given:
            raise DetectorError(f"predicted_dbm has {pred.shape[0]} rows, residuals_db {n_given}")
        some = ~np.isnan(x).all(axis=1)  # a snapshot without any residual carries nothing
        x = x[some]
        pred = None if pred is None else pred[some]
        self.fit_info = {"n_given": n_given, "n_all_missing": n_given - x.shape[0]}
        x, pred = self._clean(x, pred, contamination)
        self._check_enough(x)
        self.n_su = x.shape[1]
        self.su_ids = list(su_ids) if su_ids is not None else None
        self._fit(x, pred)
        self.n_train = int(x.shape[0])
        with np.errstate(all="ignore"):
            lim = np.nanquantile(x, SU_LIMIT_QUANTILE, axis=0) if x.size else np.full(self.n_su, np.nan)
        self.su_limit_db = np.asarray(lim, dtype=np.float64)
        if holdout_db is not None:
            scores = self.score(holdout_db, predicted_dbm=holdout_predicted_dbm)
            self.fit_info["threshold_from"] = "holdout"
        else:
            scores = self._training_scores()
            self.fit_info["threshold_from"] = "training"
        self.threshold = quantile_threshold(scores, self.target_far)
        self._z_scale = None
        self.provenance = dict(provenance or {})
        self.fit_info["fitted_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return self

    def score(self, residuals_db, *, predicted_dbm=None) -> np.ndarray:
        """Anomaly score per snapshot (B,), higher = more anomalous; NaN where it cannot score."""
        self._require_fitted()
        x = as_matrix(residuals_db, self.n_su)
        pred = None if predicted_dbm is None else as_matrix(predicted_dbm, self.n_su, "predicted_dbm")
        return self._score(x, pred)

    def decide(self, residuals_db, *, predicted_dbm=None) -> np.ndarray:
        """Anomalous (B,) bool: score > threshold (False where the score is NaN)."""
        if self.threshold is None:
            raise DetectorError(f"{self.name}: no threshold set")
        s = self.score(residuals_db, predicted_dbm=predicted_dbm)
        return np.nan_to_num(s, nan=-np.inf) > self.threshold

    def set_threshold(self, normal_scores=None, target_far: float | None = None) -> float:
        """Re-derive the threshold for another false-alarm rate, from given normal scores or the
        training scores."""
        self._require_fitted()
        if target_far is not None:
            self.target_far = float(target_far)
        scores = self._training_scores() if normal_scores is None else normal_scores
        self.threshold = quantile_threshold(scores, self.target_far)
        return self.threshold

    def training_scores(self) -> np.ndarray:
        """Scores of the training snapshots, computed so they behave like held-out normal scores."""
        self._require_fitted()
        return self._training_scores()

    def normal_scores(self, scores) -> np.ndarray:
        """Scores as z ~ N(0, 1) under normal operation (:func:`normal_quantile` against the training
        scores): a scale shared by every detector."""
        self._require_fitted()
        if self._z_scale is None:  # sorted once per fit or load
            train = self._training_scores()
            ref = np.sort(train[np.isfinite(train)])
            if ref.size == 0:
                raise DetectorError(f"{self.name}: no finite training scores to scale by")
            self._z_scale = NormalScale.of(ref)
        return self._z_scale(scores)

    # ------------------------------------------------------------------ persistence

    def metadata(self) -> dict:
        return {
            "format": FORMAT_VERSION,
            "kind": self.kind,
            "name": self.name,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "params": self._params(),
            "threshold": self.threshold,
            "target_far": self.target_far,
            "n_su": self.n_su,
            "su_ids": self.su_ids,
            "n_train": self.n_train,
            "fit_info": self.fit_info,
            "provenance": self.provenance,
            "numpy_version": np.__version__,
        }

    def save(self, path: str | Path) -> Path:
        """Write ``<stem>.npz`` then ``<stem>.json`` (atomically each); returns the JSON path."""
        self._require_fitted()
        npz, meta_path = model_paths(path)
        npz.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"su_limit_db": self.su_limit_db, **self._arrays()}
        tmp = npz.with_name(npz.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, npz)
        meta = self.metadata()
        meta["arrays_file"] = npz.name
        meta["arrays_sha256"] = _sha256(npz)
        meta["saved_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        tmp = meta_path.with_name(meta_path.name + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True, default=_json_default) + "\n")
        os.replace(tmp, meta_path)
        return meta_path

    @classmethod
    def load(cls, path: str | Path) -> ResidualDetector:
        det = load_detector(path)
        if cls is not ResidualDetector and not isinstance(det, cls):
            raise DetectorError(f"{path}: holds a {det.kind!r} detector, not {cls.kind!r}")
        return det

    # ------------------------------------------------------------------ for subclasses

    def _clean(self, x: np.ndarray, pred: np.ndarray | None, contamination: float):
        """Outlier cleaning before the final fit. Default: self-trimming (fit, drop the top
        ``contamination`` fraction of training scores, refit by the caller). No-op when 0."""
        if contamination <= 0.0:
            self.fit_info["cleaning"] = None
            return x, pred
        self._check_enough(x)
        self.n_su = x.shape[1]
        self._fit(x, pred)
        s = self._training_scores()
        cut = np.quantile(s[np.isfinite(s)], 1.0 - contamination)
        keep = ~(s > cut)  # NaN scores (unscorable rows) are kept
        self.fit_info["cleaning"] = {"method": "self-trim", "contamination": contamination,
                                     "dropped": int((~keep).sum())}  # fmt: skip
        return x[keep], (None if pred is None else pred[keep])

    def _check_enough(self, x: np.ndarray) -> None:
        if x.shape[0] < 2:
            raise DetectorError(f"{self.name}: need at least 2 normal snapshots, got {x.shape[0]}")

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise DetectorError(f"{self.name}: not fitted")

    @abstractmethod
    def _fit(self, x: np.ndarray, pred: np.ndarray | None) -> None: ...

    @abstractmethod
    def _score(self, x: np.ndarray, pred: np.ndarray | None) -> np.ndarray: ...

    @abstractmethod
    def _training_scores(self) -> np.ndarray: ...

    def _params(self) -> dict:
        """Constructor parameters (besides target_far and name), JSON-able."""
        return {}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        pass


def model_paths(path: str | Path) -> tuple[Path, Path]:
    """(npz, json) for a model path given as ``x``, ``x.npz`` or ``x.json``."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".npz", ".json") else p
    return stem.with_name(stem.name + ".npz"), stem.with_name(stem.name + ".json")


def read_metadata(path: str | Path) -> dict:
    """The JSON metadata of a saved detector, without loading its arrays."""
    return json.loads(model_paths(path)[1].read_text())


def load_detector(path: str | Path) -> ResidualDetector:
    """Load any registered detector saved with :meth:`ResidualDetector.save`; checks the checksum."""
    npz, meta_path = model_paths(path)
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise DetectorError(f"{meta_path}: model format {meta.get('format')!r}, this code reads {FORMAT_VERSION}")
    kind = meta.get("kind")
    if kind not in _REGISTRY:
        raise DetectorError(f"{meta_path}: unknown detector kind {kind!r}; known: {detector_kinds()}")
    if _sha256(npz) != meta.get("arrays_sha256"):
        raise DetectorError(f"{npz}: checksum does not match {meta_path.name} (partial write or tampering)")
    det = _REGISTRY[kind](target_far=meta["target_far"], name=meta["name"], **meta.get("params", {}))
    with np.load(npz, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    det.n_su = int(meta["n_su"])
    det.su_ids = meta.get("su_ids")
    det.threshold = None if meta.get("threshold") is None else float(meta["threshold"])
    det.n_train = int(meta.get("n_train", 0))
    det.provenance = meta.get("provenance", {})
    det.fit_info = meta.get("fit_info", {})
    det.su_limit_db = arrays.pop("su_limit_db")
    det._restore(arrays)
    return det


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")
