"""Local outlier factor (LOF) for novelty detection, in numpy/scipy (no scikit-learn at runtime).

Same semantics as ``sklearn.neighbors.LocalOutlierFactor(n_neighbors=100, novelty=True)`` with the
default Euclidean metric (a test checks agreement when scikit-learn is importable):

- k = min(n_neighbors, N − 1). For each training point, its k nearest *other* training points.
- k-distance(o): distance from o to its k-th neighbour.
  reach-dist_k(p, o) = max(d(p, o), k-distance(o)).
- lrd(p) = 1 / (mean over p's k neighbours o of reach-dist_k(p, o) + 1e-10).
- A new point q takes its k nearest training points (an exact duplicate counts as a neighbour at 0)
  and LOF(q) = mean_o lrd(o) / lrd(q). sklearn's ``score_samples`` is −LOF; our score is +LOF
  (higher = more anomalous). sklearn's default decision (contamination="auto") is LOF > 1.5.

Training scores for the threshold are the leave-one-out LOFs of the training points (each point's
neighbours exclude itself: sklearn's ``-negative_outlier_factor_``), which behave like held-out
scores; scoring a training point through :meth:`score` would count the point as its own neighbour.

LOF needs complete vectors: a row with a NaN scores NaN, and training rows with a NaN are dropped
(counted in ``fit_info["n_incomplete_dropped"]``). Neighbour search: ``scipy.spatial.cKDTree``
(exact; ~35 µs for one 12-D query with k = 100 over 4000 points).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from models.detectors.base import DetectorError, ResidualDetector, register

_EPS = 1e-10  # as sklearn


class LocalOutlierFactor:
    """The bare algorithm on complete vectors."""

    def __init__(self, n_neighbors: int = 100):
        if n_neighbors < 1:
            raise ValueError("n_neighbors must be >= 1")
        self.n_neighbors = int(n_neighbors)

    def fit(self, x: np.ndarray) -> LocalOutlierFactor:
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 2 or np.isnan(x).any():
            raise ValueError("LOF needs at least 2 complete training vectors")
        self.x_ = x
        self.k_ = min(self.n_neighbors, x.shape[0] - 1)
        self._tree = cKDTree(x)
        d, idx = self._tree.query(x, k=self.k_ + 1, workers=-1)
        d, idx = d.reshape(len(x), -1), idx.reshape(len(x), -1)
        # Drop each point itself; where duplicates hide it beyond k+1, drop the first column (as sklearn).
        not_self = idx != np.arange(len(x))[:, None]
        keep_all = not_self.all(axis=1)
        not_self[keep_all, 0] = False
        d = d[not_self].reshape(len(x), self.k_)
        idx = idx[not_self].reshape(len(x), self.k_)
        self.k_distance_ = d[:, -1].copy()
        self.lrd_ = self._lrd(d, idx)
        self.train_lof_ = (self.lrd_[idx].mean(axis=1) / self.lrd_)
        return self

    def _lrd(self, d: np.ndarray, idx: np.ndarray) -> np.ndarray:
        reach = np.maximum(d, self.k_distance_[idx])
        return 1.0 / (reach.mean(axis=1) + _EPS)

    def score(self, y: np.ndarray) -> np.ndarray:
        """LOF of each row of y (B, d) w.r.t. the training set (higher = more anomalous)."""
        y = np.asarray(y, dtype=np.float64)
        d, idx = self._tree.query(y, k=self.k_, workers=1 if len(y) < 64 else -1)
        d, idx = d.reshape(len(y), self.k_), idx.reshape(len(y), self.k_)
        return self.lrd_[idx].mean(axis=1) / self._lrd(d, idx)

    @classmethod
    def restore(cls, n_neighbors: int, x, k_distance, lrd, train_lof) -> LocalOutlierFactor:
        self = cls(n_neighbors)
        self.x_ = np.ascontiguousarray(x, dtype=np.float64)
        self.k_ = min(self.n_neighbors, self.x_.shape[0] - 1)
        self._tree = cKDTree(self.x_)
        self.k_distance_, self.lrd_, self.train_lof_ = k_distance, lrd, train_lof
        return self


@register
class LofDetector(ResidualDetector):
    """The paper's LOF detector (n_neighbors = 100, novelty). Needs every SU: NaN rows score NaN."""

    kind = "lof"
    handles_missing = False

    def __init__(self, n_neighbors: int = 100, target_far: float = 0.05, name: str | None = None):
        super().__init__(target_far=target_far, name=name)
        self.n_neighbors = int(n_neighbors)
        self._lof: LocalOutlierFactor | None = None

    def _fit(self, x, pred):
        complete = ~np.isnan(x).any(axis=1)
        self.fit_info["n_incomplete_dropped"] = int((~complete).sum())
        if complete.sum() < 2:
            raise DetectorError(f"{self.name}: need at least 2 complete normal snapshots, got {int(complete.sum())}")
        self._lof = LocalOutlierFactor(self.n_neighbors).fit(x[complete])
        self._train_scores = np.full(x.shape[0], np.nan)
        self._train_scores[complete] = self._lof.train_lof_

    def _score(self, x, pred):
        out = np.full(x.shape[0], np.nan)
        complete = ~np.isnan(x).any(axis=1)
        if complete.any():
            out[complete] = self._lof.score(x[complete])
        return out

    def _training_scores(self):
        return self._train_scores

    def _params(self):
        return {"n_neighbors": self.n_neighbors}

    def _arrays(self):
        lof = self._lof
        return {"train_x": lof.x_, "k_distance": lof.k_distance_, "lrd": lof.lrd_, "train_lof": lof.train_lof_,
                "train_scores": self._train_scores}  # fmt: skip

    def _restore(self, arrays):
        self._lof = LocalOutlierFactor.restore(self.n_neighbors, arrays["train_x"], arrays["k_distance"],
                                               arrays["lrd"], arrays["train_lof"])  # fmt: skip
        self._train_scores = arrays["train_scores"]
