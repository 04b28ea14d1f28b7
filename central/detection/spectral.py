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

**Per sub-band, not per reading.** A node whose radio is narrower than the band plan sweeps it
(:mod:`node.sweep`): each of its readings covers a few sub-bands (``Measurement.subband_ids``), taken at
its own time. So the assembler keeps the latest power *of every sub-band* of every SU, each with its
own seq and time (readings replace each other per sub-band in (seq, time) order,
:func:`central.detection.assembly.supersedes`), and a full-band reading simply fills all of them at once.
Staleness is per sub-band: a sub-band whose latest power is more than ``stale_s`` from the evaluation
time is NaN (measured, residual, excess; ``fresh`` says which are not). An SU is **usable** when at
least one of its sub-bands is fresh and none of its fresh sub-bands comes from a saturated reading (a
saturated step makes the SU unusable while that step is fresh, as a saturated full-band reading does):
a usable SU may so have NaN sub-bands, which a detector must skip (``fresh``). For a node that does
not sweep this is the rule of wideband snapshots: all its sub-bands share one time. The SU mapping
is the wideband assembler's, and this assembler gives it the band plan
(:meth:`central.detection.assembly.SnapshotAssembler.use_band_plan`), from which the wideband snapshot
gets a sweeping SU's full-band total.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from central.detection.assembly import SnapshotAssembler, SubbandLatest
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
    usable: np.ndarray  # (n_su,) bool: some sub-band fresh, none of the fresh ones saturated
    busy: np.ndarray  # (K,) bool: allocated to a legitimate transmitter now
    fresh: np.ndarray | None = None  # (n_su, K) bool: measured within stale_s (None: all where usable)


class SpectralAssembler:
    def __init__(self, wide: SnapshotAssembler, plan: BandPlan):
        self.wide, self.plan = wide, plan
        wide.use_band_plan(plan)  # the wideband snapshot's totals of sweeping SUs follow the same plan
        self._widths_hz = np.array([b.width_hz for b in plan.grid])  # predict_subbands shares the noise by width
        n = len(wide.su_ids)
        # the latest power of every sub-band per SU slot (its own seq, time, saturation): node.sweep
        self._latest: list[SubbandLatest | None] = [None] * n
        self._lock = threading.Lock()  # assemble() copies a slot's arrays while update() writes them
        self.stats = {"readings": 0, "other_plan": 0, "out_of_order": 0}

    def update(self, m: Measurement) -> bool:
        """Take one ingested reading, full-band or a sweep step; False when not used (another plan or
        none, sub-bands the plan does not have, an unknown node, older in every sub-band it covers)."""
        k = self.plan.subbands
        ids = m.subband_ids
        if m.band_plan != self.plan.fingerprint or (len(m.subband_powers_dbm) != k if not ids else
                                                    len(ids) != len(m.subband_powers_dbm) or max(ids) >= k):  # fmt: skip
            self.stats["other_plan"] += 1
            return False
        j = self.wide.su_index_of(m.node_id)
        if j is None:
            return False
        with self._lock:
            cur = self._latest[j]
            if cur is None:
                cur = self._latest[j] = SubbandLatest(k)
            if not cur.update(m):
                self.stats["out_of_order"] += 1
                return False
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
        fresh = np.zeros((n, k), dtype=bool)
        saturated = np.zeros((n, k), dtype=bool)
        with self._lock:
            for j, rec in enumerate(self._latest):
                if rec is None:
                    continue
                fresh[j] = (rec.t_ns > 0) & (np.abs(t_ns - rec.t_ns) <= self.wide.stale_ns)
                measured[j] = np.where(fresh[j], rec.dbm, np.nan)
                saturated[j] = rec.saturated & fresh[j]
        usable = fresh.any(axis=1) & ~saturated.any(axis=1)
        measured_ok = fresh & usable[:, None]
        predicted = self.predict(txs)
        residual = np.where(measured_ok, measured - predicted, np.nan)
        with np.errstate(invalid="ignore"):
            excess = np.where(measured_ok, np.maximum(10 ** (measured / 10) - 10 ** (predicted / 10), 0.0), np.nan)
        busy = np.zeros(k, dtype=bool)
        for c in txs:
            if c.allocation is None and c.transmitting:
                busy[:] = True  # no allocation reported: it may be anywhere in the band
            for b, p in c.allocation or ():
                busy[b] |= math.isfinite(p)
        return SpectralResiduals(t_ns, self.wide.su_ids, measured, predicted, residual, excess, usable, busy, fresh)
