"""ED and the Bayes point-source detector, fused: the sum of their scores' normal quantiles.

Why two: on a hall the twin does not model (clutter, deeper multipath), each fails where the other
holds. The energy detector (the mean residual) assumes nothing about where a jammer is, so a jammer
whose true path gains differ from the twin's costs it nothing; but at large model error it cannot
tell a jammer's spatial pattern from noise. The Bayes detector uses the twin's gains to look for that
pattern, and loses to ED where the twin's gains are wrong. On the validation worlds (bench/realism.py
``--select``) neither alone is at least as good as ED everywhere; their sum is.

Each component's score s is mapped to z = Φ⁻¹(F(s)), F the empirical distribution of that
component's scores on the training snapshots (so z ~ N(0, 1) under H0 whatever the component's
scale), continued linearly beyond the largest training score (slope 1 / the training scores' standard
deviation, so a stronger jammer always scores higher); the fused score is (z_ed + z_bayes) / √2.
The threshold comes from the fused training scores, like any detector's.
"""

from __future__ import annotations

import numpy as np
from models.detectors.base import ResidualDetector, normal_quantile, register
from models.detectors.bayes import BayesDetector
from models.detectors.energy import EnergyDetector


@register
class FusionDetector(ResidualDetector):
    kind = "fusion"
    handles_missing = True

    def __init__(self, cell_positions_m=None, gain_lin=None, tails: str = "gauss", target_far: float = 0.05,
                 name: str | None = None):  # fmt: skip
        super().__init__(target_far=target_far, name=name)
        self.tails = tails
        self.ed = EnergyDetector()
        self.bayes = BayesDetector(cell_positions_m, gain_lin, tails=tails)
        self._refs: list[np.ndarray] = []

    @property
    def parts(self) -> tuple[ResidualDetector, ResidualDetector]:
        return self.ed, self.bayes

    def _fit(self, x, pred):
        for d in self.parts:
            d.fit(x, predicted_dbm=pred)
        self._refs = [np.sort(s[np.isfinite(s)]) for s in (d.training_scores() for d in self.parts)]
        self._train = self._fuse([d.training_scores() for d in self.parts])

    def _score(self, x, pred):
        return self._fuse([d.score(x, predicted_dbm=pred) for d in self.parts])

    def _fuse(self, scores: list[np.ndarray]) -> np.ndarray:
        return sum(normal_quantile(s, ref) for s, ref in zip(scores, self._refs)) / np.sqrt(len(scores))

    def locate(self, residuals_db, predicted_dbm, top: int = 16):
        """The Bayes component's position estimate (ED has none)."""
        return self.bayes.locate(residuals_db, predicted_dbm, top)

    def _training_scores(self):
        return self._train

    def _params(self):
        return {"tails": self.tails}

    def _arrays(self):
        parts = {
            f"{p}_{k}": v for p, d in (("ed", self.ed), ("bayes", self.bayes)) for k, v in d._arrays().items()
        }
        return {**parts, "ref_ed": self._refs[0], "ref_bayes": self._refs[1], "train_scores": self._train}

    def _restore(self, arrays):
        for prefix, d in (("ed", self.ed), ("bayes", self.bayes)):
            d._restore(
                {k.removeprefix(prefix + "_"): v for k, v in arrays.items() if k.startswith(prefix + "_")}
            )
            d.n_su = self.n_su
        self._refs = [arrays["ref_ed"], arrays["ref_bayes"]]
        self._train = arrays["train_scores"]
