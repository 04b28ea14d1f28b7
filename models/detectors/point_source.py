"""What the point-source detectors (``glrt``, ``bayes``) share: the twin's candidate cells with their
linear path gains to every SU, the Gaussian model error learned from normal residuals, and their
persistence. Each subclass adds only its statistic."""

from __future__ import annotations

import numpy as np

from models.detectors.base import DetectorError
from models.detectors.robust import ledoit_wolf


class PointSourceCells:
    """Mixin for a :class:`ResidualDetector`: ``cell_positions_m`` (C, 2|3), ``gain_lin`` (C, n_su),
    ``mean_`` / ``cov_`` of the model error (dB), training scores in ``_train``."""

    cell_positions_m: np.ndarray | None = None
    gain_lin: np.ndarray | None = None
    mean_: np.ndarray | None = None
    cov_: np.ndarray | None = None

    def set_cells(self, cell_positions_m, gain_lin) -> None:
        pos = np.asarray(cell_positions_m, dtype=np.float64)
        g = np.asarray(gain_lin, dtype=np.float64)
        if g.ndim != 2 or pos.ndim != 2 or pos.shape[0] != g.shape[0] or pos.shape[1] not in (2, 3):
            raise DetectorError(
                f"cells: positions {pos.shape} and gains {g.shape} do not match (C, 2|3), (C, n_su)"
            )
        if not np.isfinite(g).all() or (g < 0).any():
            raise DetectorError("gain_lin must be finite and ≥ 0 (linear path gain)")
        self.cell_positions_m = np.ascontiguousarray(pos)
        self.gain_lin = np.ascontiguousarray(g)
        self._cells_changed()

    def _cells_changed(self) -> None:
        """Hook: derived cell data (e.g. a thinned lattice) after :meth:`set_cells`."""

    @property
    def num_cells(self) -> int:
        return 0 if self.gain_lin is None else self.gain_lin.shape[0]

    def _need(self, pred):
        if self.gain_lin is None:
            raise DetectorError(f"{self.name}: no gain maps (construct with cell_positions_m, gain_lin)")
        if pred is None:
            raise DetectorError(f"{self.name}: the {self.kind} detector needs predicted_dbm (the twin's prediction)")

    def _fit(self, x, pred):
        self._need(pred)
        if self.gain_lin.shape[1] != x.shape[1]:
            raise DetectorError(f"gains have {self.gain_lin.shape[1]} SUs, residuals {x.shape[1]}")
        comp = x[~np.isnan(x).any(axis=1)]
        if comp.shape[0] < 2:
            raise DetectorError(f"{self.name}: need at least 2 complete normal snapshots")
        self.mean_, self.cov_, shrink = ledoit_wolf(comp)
        self.fit_info["shrinkage"] = shrink
        self._fit_tails(comp)
        self._train = self._score(x, pred)

    def _fit_tails(self, complete_rows: np.ndarray) -> None:
        """Hook: anything else the model error needs from the complete normal rows (mean_, cov_ set)."""

    def _training_scores(self):
        return self._train

    def _arrays(self):
        return {"cell_positions_m": self.cell_positions_m, "gain_lin": self.gain_lin, "mean": self.mean_,
                "cov": self.cov_, "train_scores": self._train}  # fmt: skip

    def _restore(self, arrays):
        self.set_cells(arrays["cell_positions_m"], arrays["gain_lin"])
        self.mean_, self.cov_, self._train = arrays["mean"], arrays["cov"], arrays["train_scores"]
