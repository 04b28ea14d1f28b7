"""Snapshot assembly: the latest reading of every SU + the current context → twin prediction → Δ.

:meth:`SnapshotAssembler.update` runs on every ingested record, so it is a dict lookup and a tuple
store (~1 µs); all the work happens in :meth:`SnapshotAssembler.assemble`, once per evaluation window.

State is "latest only": the assembler answers for *now* (the time the caller passes, normally the
wall clock), not for arbitrary past times; the store keeps history.

Rules (explicit, never silent):
- An SU is **stale** when its latest reading is more than ``stale_s`` from the evaluation time (either
  way: a reading far in the future means a node clock is wrong) or when it has never reported. Its
  measured power is not shown and its residual is unknown (NaN).
- An SU is **saturated** when its latest reading says so (LNA/ADC overload). The reading is only a
  lower bound, so the residual is unknown (NaN), but the measured power is kept and the flag is raised
  (the engine's saturation rule uses it).
- Ordering: a reading replaces the stored one when its seq is higher *or* its time is later, so a node
  with a wrong clock recovers when its clock is fixed, a node whose spool was wiped (seq restarts)
  recovers through time, and replayed old records (lower seq and earlier) never overwrite newer ones.
- A context (legitimate TX) older than ``context_max_age_s`` (or that far in the future) is ignored:
  the twin then predicts without it. A context with a non-finite position or power is refused.
  Positions outside the hall (the context feed's localisation error near a wall) are clipped onto it.
- Predicted = twin predictor from the valid contexts' positions and powers (dBm), which includes the
  twin's noise floor. Residual = measured − predicted (dB) for the usable (fresh, unsaturated) SUs.

Measurements map to SUs by ``node_id == su_id`` unless a ``node_to_su`` mapping is given; records of
unknown nodes are ignored and counted. Frequency bands are not matched yet (one monitored band).

**Step readings of a sweeping node** (``Measurement.subband_ids`` non-empty: a radio narrower than the
band plan, :mod:`node.sweep`) carry the power of a few sub-bands only; taken as they come, a step's
power would read as a band total some 8 dB low and the SU would look jammed or shadowed every other
step. So they never enter the snapshot as they are. Instead the assembler keeps, per SU, the latest
power of every sub-band of the site's band plan (each with its own seq and time, the ordering rule per
sub-band) and gives the SU the **full-band total synthesised from them**: the sum in mW of the latest
power of every sub-band, stamped with the time of the *oldest* of them (so the total is stale as soon
as any of its sub-bands is: a total that misses a sub-band would be biased low) and saturated when any
of them is. Until every sub-band has been seen once, the SU has no total. Step readings need the band
plan (:meth:`SnapshotAssembler.use_band_plan`; the :class:`central.detection.spectral.SpectralAssembler`
sets it): without it, or of another plan, they are skipped and counted (``stats["steps_skipped"]``).
``stale_s`` must then exceed a node's sweep time plus its upload delay. A reading whose
``subband_ids`` name every sub-band of the plan is a full-band reading.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from central.live import SuState, TxContext
from central.twin.predictor import Predictor
from contracts.band_plan import BandPlan
from node.protocol import Measurement


def is_step_reading(m: Measurement, plan: BandPlan | None) -> bool:
    """Whether ``m`` covers only part of the band plan (a sweeping node's step); a reading naming every
    sub-band of ``plan`` is a full-band one."""
    return bool(m.subband_ids) and (plan is None or len(m.subband_ids) != plan.subbands)


class SubbandLatest:
    """The latest power of every sub-band of one SU, each with its own seq and time (the ordering rule
    of :func:`supersedes`, per sub-band); filled by full-band and step readings alike. Written by one
    thread (ingest); readers copy the arrays."""

    __slots__ = ("dbm", "t_ns", "seq", "saturated")

    def __init__(self, k: int):
        self.dbm = np.full(k, np.nan)
        self.t_ns = np.zeros(k, dtype=np.int64)  # 0: never seen
        self.seq = np.full(k, -1, dtype=np.int64)
        self.saturated = np.zeros(k, dtype=bool)

    def update(self, m: Measurement) -> bool:
        """Take the sub-bands of ``m`` (all of them when ``subband_ids`` is empty) that it supersedes;
        False when it supersedes none (an older, replayed reading)."""
        ids = np.asarray(m.subband_ids if m.subband_ids else range(self.dbm.size), dtype=np.intp)
        newer = (m.seq > self.seq[ids]) | (m.t_ns > self.t_ns[ids])
        if not newer.any():
            return False
        take = ids[newer]
        self.dbm[take] = np.asarray(m.subband_powers_dbm, dtype=np.float64)[newer]
        self.t_ns[take], self.seq[take], self.saturated[take] = m.t_ns, m.seq, m.saturated
        return True

    @property
    def complete(self) -> bool:
        return bool((self.t_ns > 0).all())

    def total(self) -> tuple[int, int, float, bool]:
        """(seq, t_ns, power_dbm, saturated) of the full band synthesised from the latest sub-band powers:
        the newest seq, the oldest time, the mW sum, any saturated (see the module docstring)."""
        total_mw = float(np.sum(10.0 ** (self.dbm / 10.0)))
        p = 10.0 * math.log10(total_mw) if total_mw > 0 else -math.inf
        return int(self.seq.max()), int(self.t_ns.min()), p, bool(self.saturated.any())


def supersedes(m: Measurement, seq: int, t_ns: int) -> bool:
    """Whether reading ``m`` replaces the stored one of (``seq``, ``t_ns``): a higher seq *or* a later
    time (see the module docstring's ordering rule)."""
    return m.seq > seq or m.t_ns > t_ns


@dataclass(frozen=True)
class Residuals:
    """One assembled snapshot (arrays over SUs, in the twin's SU order)."""

    t_ns: int
    su_ids: tuple[str, ...]
    su_positions_m: np.ndarray  # (n_su, 3)
    measured_dbm: np.ndarray  # NaN where stale / never seen
    predicted_dbm: np.ndarray
    residual_db: np.ndarray  # NaN where not usable
    stale: np.ndarray  # bool
    saturated: np.ndarray  # bool (only among fresh SUs)
    age_s: np.ndarray  # age of the latest reading; NaN when never seen
    txs: tuple[TxContext, ...]  # contexts used for the prediction

    @property
    def usable(self) -> np.ndarray:
        return ~(self.stale | self.saturated)

    @property
    def n_usable(self) -> int:
        return int(self.usable.sum())

    def su_states(self) -> tuple[SuState, ...]:
        pos = [tuple(p) for p in self.su_positions_m.tolist()]
        meas, pred, res = self.measured_dbm.tolist(), self.predicted_dbm.tolist(), self.residual_db.tolist()
        stale, sat = self.stale.tolist(), self.saturated.tolist()
        fin = math.isfinite
        return tuple(
            SuState(su, pos[j], meas[j] if not stale[j] and fin(meas[j]) else None,
                    pred[j] if fin(pred[j]) else None, res[j] if fin(res[j]) else None, stale[j], sat[j])
            for j, su in enumerate(self.su_ids)
        )  # fmt: skip


class SnapshotAssembler:
    def __init__(
        self,
        predictor: Predictor,
        stale_s: float = 1.0,
        context_max_age_s: float = 5.0,
        node_to_su: Mapping[str, str] | None = None,
        su_ids: Sequence[str] | None = None,
        su_positions_m=None,
    ):
        self.predictor = predictor
        self.su_ids = tuple(su_ids if su_ids is not None else predictor.maps.su_ids)
        if len(self.su_ids) != predictor.num_su:
            raise ValueError(f"{len(self.su_ids)} SU ids for a twin with {predictor.num_su} SUs")
        pos = predictor.maps.su_positions_m if su_positions_m is None else su_positions_m
        self.su_positions_m = np.asarray(pos, dtype=np.float64).reshape(len(self.su_ids), 3)
        self.stale_ns = int(stale_s * 1e9)
        self.context_max_age_ns = int(context_max_age_s * 1e9)
        self.set_node_map(node_to_su)
        # Latest reading per SU: (seq, t_ns, power_dbm, saturated) or None. One tuple per slot, so a
        # reader in another thread never sees half an update.
        self._latest: list[tuple[int, int, float, bool] | None] = [None] * len(self.su_ids)
        self.band_plan: BandPlan | None = None
        self._subbands: dict[int, SubbandLatest] = {}  # per SU slot, for step readings (use_band_plan)
        self._contexts: dict[str, TxContext] = {}
        self._ctx_lock = threading.Lock()
        grid = predictor.maps.grid
        self._hall_xy = (grid.nx * grid.cell_size_m, grid.ny * grid.cell_size_m)
        self.stats = {"measurements": 0, "unknown_node": 0, "out_of_order": 0, "contexts": 0,
                      "contexts_refused": 0, "contexts_expired": 0, "contexts_clipped": 0,
                      "steps": 0, "steps_skipped": 0}  # fmt: skip

    def use_band_plan(self, plan: BandPlan | None) -> None:
        """The site's band plan, which step readings are assembled against (None: skip them)."""
        if plan != self.band_plan:
            self.band_plan = plan
            self._subbands = {}

    def set_node_map(self, node_to_su: Mapping[str, str] | None) -> None:
        """Which node serves which SU (enrolment can change it while running); None: node id = SU id."""
        index = {su: j for j, su in enumerate(self.su_ids)}
        mapping = dict(node_to_su) if node_to_su is not None else {su: su for su in self.su_ids}
        unknown = set(mapping.values()) - set(index)
        if unknown:
            raise ValueError(f"node_to_su maps onto unknown SUs {sorted(unknown)}")
        self._node_index = {node: index[su] for node, su in mapping.items()}

    def knows_node(self, node_id: str) -> bool:
        return node_id in self._node_index

    @property
    def hall_xy_m(self) -> tuple[float, float]:
        """The mapped floor (m) that context positions are clipped onto."""
        return self._hall_xy

    def su_index_of(self, node_id: str) -> int | None:
        """The SU slot a node's readings fill (None: a node this twin does not know)."""
        return self._node_index.get(node_id)

    # ------------------------------------------------------------------ updates (hot path)

    def update(self, m: Measurement) -> bool:
        """Take one ingested record; False when ignored (unknown node, or older than the stored one)."""
        j = self._node_index.get(m.node_id)
        if j is None:
            self.stats["unknown_node"] += 1
            return False
        if is_step_reading(m, self.band_plan):
            return self._update_step(j, m)
        cur = self._latest[j]
        if cur is not None and not supersedes(m, cur[0], cur[1]):
            self.stats["out_of_order"] += 1
            return False
        self._latest[j] = (m.seq, m.t_ns, m.power_dbm, m.saturated)
        self.stats["measurements"] += 1
        return True

    def _update_step(self, j: int, m: Measurement) -> bool:
        """A step reading: the SU's sub-band powers, and from them its synthesised full-band total."""
        plan = self.band_plan
        if plan is None or m.band_plan != plan.fingerprint or max(m.subband_ids) >= plan.subbands \
                or len(m.subband_ids) != len(m.subband_powers_dbm):  # fmt: skip
            self.stats["steps_skipped"] += 1
            return False
        latest = self._subbands.get(j)
        if latest is None:
            latest = self._subbands[j] = SubbandLatest(plan.subbands)
        if not latest.update(m):
            self.stats["out_of_order"] += 1
            return False
        self.stats["steps"] += 1
        if latest.complete:
            self._latest[j] = latest.total()
        return True

    def update_context(self, ctx: TxContext) -> bool:
        """Latest context per legitimate TX; False when refused (non-finite) or older than the stored one."""
        if len(ctx.position_m) not in (2, 3) or not all(math.isfinite(v) for v in ctx.position_m) \
                or not math.isfinite(ctx.power_dbm):  # fmt: skip
            self.stats["contexts_refused"] += 1
            return False
        with self._ctx_lock:
            cur = self._contexts.get(ctx.tx_id)
            if cur is not None and ctx.t_ns < cur.t_ns:
                return False
            self._contexts[ctx.tx_id] = ctx
        self.stats["contexts"] += 1
        return True

    def remove_context(self, tx_id: str) -> bool:
        """Forget a legitimate TX (switched off for good)."""
        with self._ctx_lock:
            return self._contexts.pop(tx_id, None) is not None

    # ------------------------------------------------------------------ assembly

    def valid_contexts(self, t_ns: int) -> tuple[TxContext, ...]:
        with self._ctx_lock:
            ctxs = list(self._contexts.values())
        fresh = tuple(c for c in ctxs if abs(t_ns - c.t_ns) <= self.context_max_age_ns)
        if len(fresh) < len(ctxs):
            self.stats["contexts_expired"] += len(ctxs) - len(fresh)
        return tuple(sorted(fresh, key=lambda c: c.tx_id))

    def predict(self, txs: Sequence[TxContext]) -> np.ndarray:
        """Twin prediction (dBm per SU) for these transmitters (noise floor included); a transmitter
        the scheduler left idle (an empty allocation) sends nothing."""
        txs = [c for c in txs if c.transmitting]
        if not txs:
            return np.full(self.predictor.num_su, self.predictor.noise_floor_dbm)
        xy = np.array([c.position_m[:2] for c in txs], dtype=np.float64)
        clipped = np.clip(xy, 0.0, self._hall_xy)
        if (clipped != xy).any():
            self.stats["contexts_clipped"] += int((clipped != xy).any(axis=1).sum())
        return self.predictor.predict(clipped, np.array([c.power_dbm for c in txs], dtype=np.float64))

    def assemble(self, t_ns: int) -> Residuals:
        n = len(self.su_ids)
        latest = list(self._latest)  # snapshot of the slots (each slot is swapped atomically)
        measured = np.full(n, np.nan)
        age_s = np.full(n, np.nan)
        stale = np.ones(n, dtype=bool)
        saturated = np.zeros(n, dtype=bool)
        for j, rec in enumerate(latest):
            if rec is None:
                continue
            _, t, p, sat = rec
            age_s[j] = (t_ns - t) * 1e-9
            stale[j] = abs(t_ns - t) > self.stale_ns
            if not stale[j]:
                measured[j] = p
                saturated[j] = sat
        txs = self.valid_contexts(t_ns)
        predicted = self.predict(txs)
        usable = ~(stale | saturated)
        residual = np.where(usable, measured - predicted, np.nan)
        return Residuals(t_ns, self.su_ids, self.su_positions_m, measured, predicted, residual, stale,
                         saturated, age_s, txs)  # fmt: skip
