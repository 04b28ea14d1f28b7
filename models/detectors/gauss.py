"""Gaussian (Mahalanobis / Hotelling) detector: how far Δ lies from the normal residual distribution.

Fit: mean μ and Ledoit–Wolf-shrunk covariance Σ of the normal residual snapshots (complete rows).
Score: d² = (Δ − μ)ᵀ Σ⁻¹ (Δ − μ) over the observed SUs (marginal sub-covariance when SUs are missing),
turned into −log P(χ²_k > d²) with k the number of observed SUs, so that scores with different missing
patterns share one threshold. (With all SUs present the score is a monotone function of d².)

Robust training: ``fit(..., contamination=c)`` runs the MCD-like cleaning of
:mod:`models.detectors.robust` first.
"""

from __future__ import annotations

import numpy as np

from models.detectors.base import DetectorError, ResidualDetector, register
from models.detectors.robust import (
    RobustCleaningMixin,
    chi2_neglogp,
    ledoit_wolf,
    marginal_mahalanobis,
    pattern_groups,
)


@register
class GaussDetector(RobustCleaningMixin, ResidualDetector):
    kind = "gauss"
    handles_missing = True

    def __init__(self, target_far: float = 0.05, name: str | None = None):
        super().__init__(target_far=target_far, name=name)
        self.mean_: np.ndarray | None = None
        self.cov_: np.ndarray | None = None

    def _fit(self, x, pred):
        comp = x[~np.isnan(x).any(axis=1)]
        if comp.shape[0] < 2:
            raise DetectorError(f"{self.name}: need at least 2 complete normal snapshots")
        self.mean_, self.cov_, shrink = ledoit_wolf(comp)
        self.fit_info["shrinkage"] = shrink
        self.fit_info["n_complete"] = int(comp.shape[0])
        self._train = self._score(x, pred)

    def mahalanobis2(self, residuals_db) -> np.ndarray:
        """Plain d² over the observed SUs (B,)."""
        self._require_fitted()
        return marginal_mahalanobis(np.atleast_2d(np.asarray(residuals_db, float)), self.mean_, self.cov_)[0]

    def _score(self, x, pred):
        d2, k = marginal_mahalanobis(x, self.mean_, self.cov_)
        return chi2_neglogp(d2, k)

    def _training_scores(self):
        return self._train

    def _arrays(self):
        return {"mean": self.mean_, "cov": self.cov_, "train_scores": self._train}

    def _restore(self, arrays):
        self.mean_, self.cov_, self._train = arrays["mean"], arrays["cov"], arrays["train_scores"]


@register
class GlsDetector(GaussDetector):
    """One-sided variant: the generalised-least-squares estimate of a common power excess,
    z = 1ᵀΣ⁻¹(Δ − μ) / √(1ᵀΣ⁻¹1) over the observed SUs (N(0, 1) under H0 for any missing pattern).

    A jammer only *adds* power; at large model error the two-sided Mahalanobis distance can even
    shrink when a jammer fills in a negative residual, while this ED-like statistic (ED with the
    learned covariance as weights) cannot."""

    kind = "gls"

    def _score(self, x, pred):
        ok = ~np.isnan(x)
        out = np.full(x.shape[0], np.nan)
        for rows, idx, w in pattern_groups(ok, self.cov_):
            wone = w @ np.ones(idx.size)
            z = (x[np.ix_(rows, idx)] - self.mean_[idx]) @ w.T
            out[rows] = z @ wone / np.sqrt(wone @ wone)
        return out
