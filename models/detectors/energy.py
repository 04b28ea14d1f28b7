"""The paper's energy detector (ED): the mean residual.

Score = mean over SUs of Δ (dB). The paper sorts Δ in descending order first; the mean does not
depend on the order, so ED is simply the mean. Threshold: the 95th percentile of the training
snapshots' means (``target_far = 0.05``), as in the paper.

Missing SUs (NaN) are left out of the mean: ED scores any snapshot with at least one residual. The
mean over fewer SUs varies more than the mean over all of them, so with SUs missing the effective
false-alarm rate is higher than ``target_far``; the live engine requires a minimum number of SUs.
"""

from __future__ import annotations

import numpy as np

from models.detectors.base import ResidualDetector, register


def nan_row_mean(x: np.ndarray) -> np.ndarray:
    """Mean of each row over its non-NaN entries; NaN for an all-NaN row (no warning)."""
    ok = ~np.isnan(x)
    n = ok.sum(axis=1)
    s = np.where(ok, x, 0.0).sum(axis=1)
    out = np.full(x.shape[0], np.nan)
    np.divide(s, n, out=out, where=n > 0)
    return out


@register
class EnergyDetector(ResidualDetector):
    kind = "ed"
    handles_missing = True

    def _fit(self, x, pred):
        self._train = nan_row_mean(x)

    def _score(self, x, pred):
        return nan_row_mean(x)

    def _training_scores(self):
        return self._train  # ED has no fitted parameters: in-sample scores are held-out-like

    def _arrays(self):
        return {"train_scores": self._train}

    def _restore(self, arrays):
        self._train = arrays["train_scores"]
