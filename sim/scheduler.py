"""A simulated radio-resource scheduler: which sub-bands each legitimate transmitter gets, every second.

A private 5G cell's scheduler hands out PRBs to its users as load comes and goes; the twin needs those
allocations to predict power per sub-band, and a detector must not mistake a busy sub-band for a
jammer. This one reallocates every ``period_s``: the cell's load is drawn uniformly in
[``load_min``, ``load_max``] of the band plan's sub-bands, each transmitter sits the slot out with
probability ``idle_probability`` (idle gaps), and the busy ones share the load as consecutive blocks
of sub-bands (NR allocates contiguous PRBs; the blocks wrap around the band's top edge), each block a
random size, in a random order, from a random start.

Every allocation is a pure function of (seed, slot, transmitter ids): the context feed and the
simulated radios of separate node processes compute the same one without talking, as
:mod:`sim.impairments` does for drift and dropouts. Power: a transmitter keeps its power spectral
density, so its EIRP in a sub-band is its full-band EIRP times the sub-band's share of the PRB grid
(uplink power control per PRB), and its total falls with the sub-bands it is given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contracts.band_plan import BandPlan


@dataclass(frozen=True)
class SchedulerSettings:
    period_s: float = 1.0
    load_min: float = 0.2  # fraction of the band plan's sub-bands in use, per slot
    load_max: float = 0.9
    idle_probability: float = 0.15  # per transmitter and slot
    seed: int = 0

    def __post_init__(self):
        if not self.period_s > 0:
            raise ValueError(f"period_s must be > 0, got {self.period_s}")
        if not 0.0 < self.load_min <= self.load_max <= 1.0:
            raise ValueError(f"need 0 < load_min <= load_max <= 1, got {self.load_min}, {self.load_max}")
        if not 0.0 <= self.idle_probability < 1.0:
            raise ValueError(f"idle_probability must be in [0, 1), got {self.idle_probability}")


class Scheduler:
    def __init__(self, plan: BandPlan, tx_ids: Sequence[str], settings: SchedulerSettings = SchedulerSettings()):
        self.plan = plan
        self.tx_ids = tuple(sorted(tx_ids))
        self.settings = settings
        self._share_db = plan.shares_db  # a sub-band's part of the full-band EIRP

    def slot(self, t_s: float) -> int:
        return math.floor(t_s / self.settings.period_s)

    def subbands_at(self, t_s: float) -> dict[str, tuple[int, ...]]:
        """Sub-band ids per transmitter in the slot holding ``t_s`` (disjoint; () = idle)."""
        s, k = self.settings, self.plan.subbands
        rng = np.random.default_rng([s.seed, self.slot(t_s) & 0xFFFFFFFF])
        load = rng.uniform(s.load_min, s.load_max)
        busy = [tx for tx, idle in zip(self.tx_ids, rng.random(len(self.tx_ids)) < s.idle_probability) if not idle]
        out: dict[str, tuple[int, ...]] = {tx: () for tx in self.tx_ids}
        n_used = max(len(busy), round(load * k)) if busy else 0
        if not busy or n_used > k:  # more busy transmitters than sub-bands: the last ones wait
            busy, n_used = busy[:k], min(n_used, k)
        if not busy:
            return out
        cuts = np.sort(rng.choice(np.arange(1, n_used), size=len(busy) - 1, replace=False)) if len(busy) > 1 else []
        sizes = np.diff([0, *cuts, n_used])
        start = int(rng.integers(k))
        for tx, lo, size in zip(rng.permutation(busy), np.cumsum([0, *sizes[:-1]]), sizes):
            out[str(tx)] = tuple(sorted(int((start + lo + i) % k) for i in range(size)))
        return out

    def allocation_dbm(self, tx_id: str, t_s: float, full_band_eirp_dbm: float) -> tuple[tuple[int, float], ...]:
        """(sub-band, EIRP dBm) of ``tx_id``'s allocation at ``t_s``, at the constant spectral density of
        ``full_band_eirp_dbm`` over the whole PRB grid; () when idle."""
        return tuple((b, float(full_band_eirp_dbm + self._share_db[b])) for b in self.subbands_at(t_s)[tx_id])

    @staticmethod
    def total_dbm(allocation: tuple[tuple[int, float], ...]) -> float:
        """The EIRP summed over an allocation (−inf when idle)."""
        return 10 * math.log10(sum(10 ** (p / 10) for _, p in allocation)) if allocation else -math.inf
