"""Spectral snapshots: measured and expected power per SU and sub-band, and their residual matrix.

The wideband snapshot (:mod:`central.detection.assembly`) keeps one number per SU; a narrowband or a
deceptive jammer hides in it. Here every SU keeps the sub-band powers of its latest reading taken
against the site's band plan (readings of another plan, or of none, are not used: the node is
flagged at ingest), and the twin predicts each SU's power per sub-band from the scheduler's
allocations (:meth:`central.twin.predictor.Predictor.predict_subbands`). The residual is a matrix
(SU × sub-band), in dB, and as excess power (mW above the prediction, 0 below it), which is what a
jammer adds where the prediction sits at the noise floor and a dB residual of noise on noise would
mean little. ``busy`` says, per sub-band, whether the scheduler gave it to a legitimate transmitter:
the normal statistics of a sub-band differ with its allocation state.

Rules as for wideband snapshots: an SU is stale when its latest usable reading is more than
``stale_s`` from the evaluation time, saturated when that reading says so; either way its residuals
are NaN. Readings replace each other in (seq, time) order, the SU mapping is the wideband assembler's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from central.detection.assembly import SnapshotAssembler, supersedes
from central.live import TxContext
from contracts.band_plan import BandPlan
from node.protocol import Measurement


@dataclass(frozen=True)
class SpectralResiduals:
    t_ns: int
    su_ids: tuple[str, ...]
    measured_dbm: np.ndarray  # (n_su, K); NaN where stale or never seen
    predicted_dbm: np.ndarray  # (n_su, K)
    residual_db: np.ndarray  # (n_su, K); NaN where not usable
    excess_mw: np.ndarray  # (n_su, K): max(0, measured − predicted) in mW; NaN where not usable
    usable: np.ndarray  # (n_su,) bool
    busy: np.ndarray  # (K,) bool: allocated to a legitimate transmitter now


class SpectralAssembler:
    def __init__(self, wide: SnapshotAssembler, plan: BandPlan):
        self.wide, self.plan = wide, plan
        self._widths_hz = np.array([b.width_hz for b in plan.grid])  # predict_subbands shares the noise by width
        n = len(wide.su_ids)
        # latest (seq, t_ns, sub-band powers (K,), saturated) per SU slot; one tuple swapped at a time
        self._latest: list[tuple[int, int, np.ndarray, bool] | None] = [None] * n
        self.stats = {"readings": 0, "other_plan": 0, "out_of_order": 0}

    def update(self, m: Measurement) -> bool:
        """Take one ingested reading; False when not used (another plan or none, an unknown node, older)."""
        if m.band_plan != self.plan.fingerprint or len(m.subband_powers_dbm) != self.plan.subbands:
            self.stats["other_plan"] += 1
            return False
        j = self.wide.su_index_of(m.node_id)
        if j is None:
            return False
        cur = self._latest[j]
        if cur is not None and not supersedes(m, cur[0], cur[1]):
            self.stats["out_of_order"] += 1
            return False
        self._latest[j] = (m.seq, m.t_ns, np.array(m.subband_powers_dbm, dtype=np.float64), m.saturated)
        self.stats["readings"] += 1
        return True

    def predict(self, txs: Sequence[TxContext]) -> np.ndarray:
        """Expected power (dBm) per SU and sub-band for these transmitters (noise floor included)."""
        on = [c for c in txs if c.transmitting]
        positions = np.array([c.position_m[:2] for c in on], dtype=np.float64).reshape(len(on), 2)
        hall = self.wide.hall_xy_m  # the same clipping as the wideband prediction
        powers = np.array([c.subband_powers_dbm(self.plan) for c in on]).reshape(len(on), self.plan.subbands)
        return self.wide.predictor.predict_subbands(np.clip(positions, 0.0, hall), powers, self._widths_hz,
                                                    self.plan.occupied_hz)  # fmt: skip

    def assemble(self, t_ns: int, txs: Sequence[TxContext] | None = None) -> SpectralResiduals:
        """The spectral snapshot at ``t_ns``; ``txs``: the contexts (default: the wideband assembler's valid ones)."""
        txs = self.wide.valid_contexts(t_ns) if txs is None else txs
        n, k = len(self.wide.su_ids), self.plan.subbands
        measured = np.full((n, k), np.nan)
        usable = np.zeros(n, dtype=bool)
        for j, rec in enumerate(list(self._latest)):
            if rec is None or abs(t_ns - rec[1]) > self.wide.stale_ns:
                continue
            measured[j] = rec[2]
            usable[j] = not rec[3]
        predicted = self.predict(txs)
        residual = np.where(usable[:, None], measured - predicted, np.nan)
        with np.errstate(invalid="ignore"):
            excess = np.where(usable[:, None], np.maximum(10 ** (measured / 10) - 10 ** (predicted / 10), 0.0), np.nan)
        busy = np.zeros(k, dtype=bool)
        for c in txs:
            if c.allocation is None and c.transmitting:
                busy[:] = True  # no allocation reported: it may be anywhere in the band
            for b, p in c.allocation or ():
                busy[b] |= math.isfinite(p)
        return SpectralResiduals(t_ns, self.wide.su_ids, measured, predicted, residual, excess, usable, busy)
