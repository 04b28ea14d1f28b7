"""Sweeping a band plan wider than the radio: the tunings (steps) a node goes through.

A radio measures cleanly only inside the central ``usable_span_hz = sample_rate_hz × (1 − 2·edge_crop)``
of what it samples (the anti-alias filter rolls off at the edges). A band plan wider than that is
swept: the node retunes its LO in steps, each step's usable span holding whole sub-bands of the
plan, and together the steps cover every sub-band exactly once, in order. A stock ADALM-Pluto
(AD9363, about 20 MHz of RF bandwidth) at 25 MS/s with edge_crop 0.1 has 20 MHz usable: a 100 MHz
carrier of 16 sub-bands of 6.1–6.5 MHz takes six steps of three sub-bands (the last of one).

Planning (:func:`plan_sweep`): the fewest steps, found greedily from the lowest sub-band up (adding
sub-bands while the step's span, lowest edge to highest edge, fits the usable span), then the same
number of steps with the sub-bands shared out as evenly as they fit (so steps are alike and the
last one is not a sliver). Each step's LO sits at the middle of its span, so its sub-bands lie
symmetrically inside the usable span. A sub-band wider than the usable span cannot be measured at
any tuning: that is an error naming it, not a silent partial reading.

Each step is measured from its own buffer, after the radio has settled (the backend discards
``discard_buffers_after_retune`` buffers after every retune; :mod:`node.sdr.base`), and gives one
reading: :attr:`node.protocol.Measurement.subband_ids` names its sub-bands, ``power_dbm`` is the power
in them, ``f_center_hz`` / ``bandwidth_hz`` describe the span they cover, and ``t_ns`` is the time of
that step's buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.band_plan import BandPlan
from node.dsp import Band, BandPowerConfig

# A step may fill the usable span to within this fraction (float rounding of LO and edges must never
# push a sub-band out of it in BandPowerConfig's own check).
FIT_MARGIN = 1e-9


class SweepError(ValueError):
    """A band plan this radio cannot sweep; the message names the sub-band and the figures."""


def usable_span_hz(sample_rate_hz: float, edge_crop: float) -> float:
    """The width a radio measures cleanly around its LO (the DSP's edge crop respected)."""
    return sample_rate_hz * (1 - 2 * edge_crop)


@dataclass(frozen=True)
class SweepStep:
    index: int
    center_hz: float  # the LO of this step (absolute)
    subband_ids: tuple[int, ...]  # the plan's sub-bands this step measures, ascending
    band: BandPowerConfig  # the step's span and its sub-bands, relative to center_hz

    @property
    def low_hz(self) -> float:
        return self.center_hz + self.band.band.edges_hz[0]

    @property
    def high_hz(self) -> float:
        return self.center_hz + self.band.band.edges_hz[1]

    @property
    def span_hz(self) -> float:
        return self.band.band.bandwidth_hz


@dataclass(frozen=True)
class SweepPlan:
    plan: BandPlan
    sample_rate_hz: float
    edge_crop: float
    steps: tuple[SweepStep, ...]

    @property
    def usable_hz(self) -> float:
        return usable_span_hz(self.sample_rate_hz, self.edge_crop)

    @property
    def sweeps(self) -> bool:
        """True when more than one tuning is needed (a one-step plan is an ordinary full-band reading)."""
        return len(self.steps) > 1

    def describe(self) -> list[str]:
        """One line per step, as ``rftwin-node check`` prints them."""
        return [f"step {s.index}: LO {s.center_hz / 1e6:.3f} MHz, {s.low_hz / 1e6:.3f}–{s.high_hz / 1e6:.3f} MHz, "
                f"{self.plan.describe(s.subband_ids)}" for s in self.steps]  # fmt: skip


def plan_sweep(plan: BandPlan, sample_rate_hz: float, *, edge_crop: float = 0.1, nperseg: int = 1024) -> SweepPlan:
    """The steps that sweep ``plan`` with a radio at ``sample_rate_hz`` (see the module docstring)."""
    usable = usable_span_hz(sample_rate_hz, edge_crop)
    fit = usable * (1 - FIT_MARGIN)
    grid = plan.grid
    for b in grid:
        if b.width_hz > fit:
            raise SweepError(
                f"sub-band {b.id} (PRBs {b.first_prb}–{b.last_prb}) is {b.width_hz / 1e6:g} MHz wide, wider than the "
                f"radio's usable {usable / 1e6:g} MHz (sample_rate_hz {sample_rate_hz / 1e6:g} MHz × (1 − 2·edge_crop "
                f"{edge_crop:g})): no tuning measures it whole; raise radio.sample_rate_hz or split the plan into "
                f"more sub-bands")  # fmt: skip

    def fits(first: int, last: int) -> bool:
        return grid[last].high_hz - grid[first].low_hz <= fit

    greedy: list[tuple[int, int]] = []
    first = 0
    while first < len(grid):
        last = first
        while last + 1 < len(grid) and fits(first, last + 1):
            last += 1
        greedy.append((first, last))
        first = last + 1
    n, k = len(greedy), len(grid)
    even, start = [], 0
    for i in range(n):
        size = k // n + (1 if i < k % n else 0)
        even.append((start, start + size - 1))
        start += size
    groups = even if all(fits(a, b) for a, b in even) else greedy
    steps = []
    for i, (a, b) in enumerate(groups):
        low, high = grid[a].low_hz, grid[b].high_hz
        lo_hz = (low + high) / 2
        subs = tuple(Band(s.center_hz - lo_hz, s.width_hz) for s in grid[a : b + 1])
        try:
            cfg = BandPowerConfig(sample_rate_hz, Band(0.0, high - low), subs, nperseg=nperseg, edge_crop=edge_crop,
                                  band_plan=plan.fingerprint)  # fmt: skip
        except ValueError as e:
            raise SweepError(f"step {i} ({plan.describe(range(a, b + 1))}): {e}") from None
        steps.append(SweepStep(i, lo_hz, tuple(range(a, b + 1)), cfg))
    return SweepPlan(plan, float(sample_rate_hz), float(edge_crop), tuple(steps))
