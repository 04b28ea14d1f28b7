"""Maximum-residual detector: the largest residual over the available SUs.

A jammer raises the power at the SUs near it far more than at the others, so the mean (ED) dilutes it
over 12 SUs while the maximum keeps it. With ``standardise=True`` (default) each SU's residual is first
centred and scaled by its normal median / MAD (learned in :meth:`fit`), so an SU whose twin prediction is
just noisier does not dominate; ``standardise=False`` gives the raw max(Δ).

Missing SUs (NaN) are skipped; an all-NaN row scores NaN. The max over fewer SUs is stochastically
smaller, so with SUs missing the false-alarm rate is at most ``target_far`` (conservative).
"""

from __future__ import annotations

import numpy as np

from models.detectors.base import ResidualDetector, register
from models.detectors.robust import RobustCleaningMixin


def nan_row_max(x: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(x)
    out = np.where(ok, x, -np.inf).max(axis=1)
    out[~ok.any(axis=1)] = np.nan
    return out


@register
class MaxResidualDetector(RobustCleaningMixin, ResidualDetector):
    kind = "maxres"
    handles_missing = True

    def __init__(self, standardise: bool = True, target_far: float = 0.05, name: str | None = None):
        super().__init__(target_far=target_far, name=name)
        self.standardise = bool(standardise)
        self.center_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    def _fit(self, x, pred):
        n = x.shape[1]
        if self.standardise:
            with np.errstate(all="ignore"):
                c = np.nanmedian(x, axis=0)
                s = 1.4826 * np.nanmedian(np.abs(x - c), axis=0)
            c = np.where(np.isfinite(c), c, 0.0)
            s = np.where(np.isfinite(s) & (s > 0), s, 1.0)
        else:
            c, s = np.zeros(n), np.ones(n)
        self.center_, self.scale_ = c, s
        self._train = self._score(x, pred)

    def _score(self, x, pred):
        return nan_row_max((x - self.center_) / self.scale_)

    def _training_scores(self):
        return self._train

    def _params(self):
        return {"standardise": self.standardise}

    def _arrays(self):
        return {"center": self.center_, "scale": self.scale_, "train_scores": self._train}

    def _restore(self, arrays):
        self.center_, self.scale_, self._train = arrays["center"], arrays["scale"], arrays["train_scores"]
