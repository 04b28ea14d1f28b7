"""Jammer localisation: a point source fitted over the twin's gain-map cells, in the linear power domain.

Every valid cell c of the transmitter plane is a candidate emitter position with known linear path
gains g_cj to the SUs (reciprocity maps, :meth:`Predictor.cell_gains`). With P_j the measured and
P̂_j the predicted power (mW) at the usable SUs (not stale, not saturated), the excess power is
e_j = max(P_j − P̂_j, 0). A point source of power p at c adds p·g_cj, so for each cell

    p_c = max(Σ_j w_j e_j g_cj / Σ_j w_j g_cj², 0)     (weighted least squares, closed form)
    J_c = Σ_j w_j (e_j − p_c g_cj)²

and the estimate is argmin_c J_c. All cells at once: two (C × n_su) mat-vecs (~5000 cells × 12 SUs:
tens of µs).

Weights w_j = 1 / P_j² make the misfit *relative*: (e_j − p g_cj) / P_j ≈ ln(10)/10 · (dB misfit at
SU j), so J_c is, to first order, the Gaussian log-likelihood of a point source under dB-domain model
error (the error the twin actually makes: ε_j ~ N(0, σ) dB, multiplicative in mW). Plain linear least
squares (w = 1) lets the SU with the largest absolute power dominate, and there a 1 dB model error is
worth more mW than the whole jammer contribution at a distant SU. On the reference hall (12 SUs at
1.5 m, 3 legitimate TXs + one 20 dBm jammer anywhere outside the lines, context error 0.37 m; 400
draws per σ) the relative weights give a median (p90) error of 0.65 (6.1) / 6.5 (22) / 11 (27) m at
σ = 0 / 3 / 6 dB, against 1.8 (17) / 12 (29) / 15 (29) m for uniform weights. Neither re-ranking the
best cells by the exact (capped) dB misfit nor 3 × 3 smoothing of the gain maps changed these figures
measurably, so the closed form is kept. In the tail cases inspected at σ = 0 the cause was cell-to-cell
roughness of the traced maps (several dB between neighbouring cells).

:class:`GlrtLocaliser` (issue 5) is the drop-in alternative: the same interface, backed by a fitted
:class:`models.detectors.GlrtDetector` (exact likelihood of a point source under the learned dB-domain
model-error covariance, power searched in the linear domain). Pass it as ``localiser=`` to the engine.

Saturated SUs only give a lower bound on power, so they are left out of the fit; when *only*
saturation is known, :meth:`PointSourceLocaliser.near` returns the cell that every saturated SU hears
best (maximises the minimum gain to them): next to a single saturated SU, between several.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from central.twin.predictor import Predictor
from models.detectors.glrt import GlrtDetector


@dataclass(frozen=True)
class Localisation:
    position_m: tuple[float, float, float]  # centre of the best cell
    cell: int  # index into the localiser's cells
    power_dbm: float  # estimated source power (EIRP into the gain maps), -inf when no excess
    cost: float  # weighted misfit J at the best cell (dimensionless: squared relative errors)
    n_sus: int  # SUs used


class PointSourceLocaliser:
    def __init__(self, positions_m, gain_lin):
        self.positions_m = np.asarray(positions_m, dtype=np.float64)
        g = np.asarray(gain_lin, dtype=np.float64)
        if g.ndim != 2 or g.shape[0] != self.positions_m.shape[0]:
            raise ValueError(f"gain_lin {g.shape} does not match {self.positions_m.shape[0]} cell positions")
        self.gain_lin = np.ascontiguousarray(g)
        self.gain_sq = self.gain_lin * self.gain_lin
        with np.errstate(divide="ignore"):
            self.gain_db = 10.0 * np.log10(self.gain_lin)

    @classmethod
    def from_predictor(cls, predictor: Predictor) -> PointSourceLocaliser:
        cg = predictor.cell_gains()
        return cls(cg.positions_m, cg.gain_lin)

    @property
    def num_cells(self) -> int:
        return self.positions_m.shape[0]

    def cost_map(self, measured_dbm, predicted_dbm, usable=None) -> tuple[np.ndarray, np.ndarray]:
        """(J_c, p_c in mW) for every cell; SUs not ``usable`` (or NaN) get zero weight."""
        meas = np.asarray(measured_dbm, dtype=np.float64)
        pred = np.asarray(predicted_dbm, dtype=np.float64)
        ok = np.isfinite(meas) & np.isfinite(pred)
        if usable is not None:
            ok &= np.asarray(usable, dtype=bool)
        pm = np.power(10.0, np.where(ok, meas, 0.0) * 0.1)
        pp = np.power(10.0, np.where(ok, pred, 0.0) * 0.1)
        e = np.where(ok, np.maximum(pm - pp, 0.0), 0.0)
        w = np.where(ok, 1.0 / (pm * pm), 0.0)
        a = self.gain_lin @ (w * e)
        b = self.gain_sq @ w
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(b > 0, np.maximum(a / b, 0.0), 0.0)
        cost = float((w * e * e).sum()) - 2.0 * p * a + p * p * b
        return cost, p

    def locate(self, measured_dbm, predicted_dbm, usable=None) -> Localisation | None:
        """Best single point source explaining the excess power; None with fewer than 2 usable SUs
        or no excess anywhere."""
        inputs = self._inputs(measured_dbm, predicted_dbm, usable)
        if inputs is None:
            return None
        meas, pred, ok = inputs
        n = int(ok.sum())
        cost, p = self.cost_map(meas, pred, ok)
        c = int(np.argmin(cost))
        x, y, z = self.positions_m[c]
        with np.errstate(divide="ignore"):
            p_dbm = float(10.0 * np.log10(p[c]))
        return Localisation((float(x), float(y), float(z)), c, p_dbm, float(cost[c]), n)

    @staticmethod
    def _inputs(measured_dbm, predicted_dbm, usable) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(measured, predicted, usable mask), or None when there is nothing to locate: fewer than
        2 usable SUs, or no usable SU above its prediction."""
        meas = np.asarray(measured_dbm, dtype=np.float64)
        pred = np.asarray(predicted_dbm, dtype=np.float64)
        ok = np.isfinite(meas) & np.isfinite(pred)
        if usable is not None:
            ok &= np.asarray(usable, dtype=bool)
        if int(ok.sum()) < 2 or not (meas[ok] > pred[ok]).any():
            return None
        return meas, pred, ok

    def near(self, sus) -> tuple[float, float, float] | None:
        """The cell that all the given SUs (bool mask or indices) hear best: max over cells of the
        minimum gain (dB) to them."""
        idx = np.flatnonzero(np.asarray(sus)) if np.asarray(sus).dtype == bool else np.asarray(sus, dtype=int)
        if idx.size == 0:
            return None
        c = int(np.argmax(self.gain_db[:, idx].min(axis=1)))
        x, y, z = self.positions_m[c]
        return float(x), float(y), float(z)


class GlrtLocaliser(PointSourceLocaliser):
    """:meth:`locate` by the point-source GLRT of a fitted :class:`GlrtDetector` (its cells and gains);
    :meth:`near` and :meth:`cost_map` as :class:`PointSourceLocaliser`. ``cost`` is −(likelihood gain)."""

    def __init__(self, detector: GlrtDetector):
        if not detector.fitted or detector.gain_lin is None:
            raise ValueError("GlrtLocaliser needs a fitted GlrtDetector with gain maps")
        super().__init__(detector.cell_positions_m, detector.gain_lin)
        self.detector = detector

    def locate(self, measured_dbm, predicted_dbm, usable=None) -> Localisation | None:
        inputs = self._inputs(measured_dbm, predicted_dbm, usable)
        if inputs is None:
            return None
        meas, pred, ok = inputs
        n = int(ok.sum())
        resid = np.where(ok, meas - pred, np.nan)
        gain, cell, p = self.detector.glrt(resid, np.where(ok, pred, np.nan))
        if not gain[0] > 0:
            return None
        c = int(cell[0])
        pos = self.positions_m[c]
        z = float(pos[2]) if pos.shape[0] > 2 else 0.0
        return Localisation(
            (float(pos[0]), float(pos[1]), z), c, float(10.0 * np.log10(p[0])), -float(gain[0]), n
        )
