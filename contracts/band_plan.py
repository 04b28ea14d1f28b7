"""The monitored band and its sub-band grid: one definition the site file, the nodes and the central
unit share.

A private 5G network schedules its users in physical resource blocks (PRBs: 12 subcarriers each), and
the scheduler's allocations, the twin's spectral prediction and an alarm's countermeasure ("exclude
sub-bands 5–6, PRBs 85–119, from scheduling") all speak of the same groups of PRBs. A band plan is an
NR carrier (centre, channel bandwidth, subcarrier spacing, number of PRBs) split into ``subbands``
consecutive groups of PRBs: sub-band k holds PRBs ⌊k·N/K⌋ … ⌊(k+1)·N/K⌋ − 1, so the groups differ by at
most one PRB. The PRB grid sits centred in the channel, the rest is guard band.

A reading says which plan it was measured against by its :attr:`BandPlan.fingerprint`, so the central
unit never mixes sub-band powers of different grids.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

SUBCARRIERS_PER_PRB = 12
MAX_SUBBANDS = 64  # node.protocol allows at most 64 sub-band powers per reading
# 3GPP TS 38.101-1 table 5.3.2-1, maximum transmission bandwidth (PRBs) of FR1 channels, by
# subcarrier spacing (Hz) and channel bandwidth (MHz). Other combinations must give ``prbs`` explicitly.
NR_FR1_PRBS = {
    15e3: {5: 25, 10: 52, 15: 79, 20: 106, 25: 133, 30: 160, 40: 216, 50: 270},
    30e3: {10: 24, 15: 38, 20: 51, 25: 65, 30: 78, 40: 106, 50: 133, 60: 162, 70: 189, 80: 217, 90: 245, 100: 273},
}


# What the node's sub-band estimate (node.dsp: Welch, Hann window, ~30 kHz bins) puts of a sub-band's
# power into each neighbour: −25 dB, measured against the IQ chain (tests/test_replay.py). The spectral
# twin adds it to its prediction: next to a busy sub-band an idle one reads far above the noise.
SUBBAND_LEAKAGE_DB = -25.0


def neighbour_sum(x):
    """Per sub-band (last axis), the sum of its two neighbours' values (one at the band's edges): what
    leaks into it, times the leakage."""
    out = np.zeros_like(x)
    out[..., 1:] += x[..., :-1]
    out[..., :-1] += x[..., 1:]
    return out


def own_power(x, leakage_db: float):
    """The inverse of ``x + 10^(leakage_db/10)·neighbour_sum(x)`` (last axis): each sub-band's own power,
    from readings (mW) in which every sub-band leaked that fraction into its neighbours. Exact (a
    K × K solve), not first order: a link 60 dB above the noise leaks visibly even at second order."""
    x = np.asarray(x, dtype=np.float64)
    return x @ _unleak_matrix(x.shape[-1], float(leakage_db))


def own_power_scatter(x, leakage_db: float):
    """(…, K) how much a relative error ε of every reading (mW, last axis) moves :func:`own_power`'s
    result, per unit of ε: √Σ_k (M_kb·x_k)², M the inverse of the leakage. Why: next to an idle sub-band
    whose neighbour holds a link 60 dB over the noise, the inverse subtracts that link's leakage at
    first order and adds it back at second; a few % scatter of those terms is many times the idle
    sub-band's own power."""
    x = np.asarray(x, dtype=np.float64)
    return np.sqrt((x * x) @ (_unleak_matrix(x.shape[-1], float(leakage_db)) ** 2))


@functools.lru_cache(maxsize=8)
def _unleak_matrix(k: int, leakage_db: float) -> np.ndarray:
    mix = np.eye(k) + 10 ** (leakage_db / 10) * neighbour_sum(np.eye(k))  # symmetric
    return np.linalg.inv(mix)


class BandPlanError(ValueError):
    """A band plan that cannot be; the message names the field."""


@dataclass(frozen=True)
class SubBand:
    id: int  # 0 … subbands − 1, from the lowest frequency up
    first_prb: int
    last_prb: int  # inclusive
    center_hz: float
    width_hz: float

    @property
    def low_hz(self) -> float:
        return self.center_hz - self.width_hz / 2

    @property
    def high_hz(self) -> float:
        return self.center_hz + self.width_hz / 2


@dataclass(frozen=True)
class BandPlan:
    center_hz: float
    bandwidth_hz: float = 100e6  # the channel bandwidth
    scs_hz: float = 30e3  # subcarrier spacing
    prbs: int = 0  # 0: the 3GPP maximum for this bandwidth and spacing (NR_FR1_PRBS)
    subbands: int = 16

    def __post_init__(self):
        for name in ("center_hz", "bandwidth_hz", "scs_hz"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise BandPlanError(f"band.{name} must be a number > 0, got {v!r}")
        if self.bandwidth_hz >= self.center_hz:
            raise BandPlanError(f"band.bandwidth_hz ({self.bandwidth_hz:g}) must be below band.center_hz ({self.center_hz:g})")
        if not self.prbs:
            mhz = self.bandwidth_hz / 1e6
            table = NR_FR1_PRBS.get(self.scs_hz, {})
            if mhz not in table:
                raise BandPlanError(f"band.prbs: no standard PRB count for {mhz:g} MHz at {self.scs_hz / 1e3:g} kHz spacing; "
                                    "give band.prbs")  # fmt: skip
            object.__setattr__(self, "prbs", table[mhz])
        if isinstance(self.prbs, bool) or not isinstance(self.prbs, int) or self.prbs < 1:
            raise BandPlanError(f"band.prbs must be a whole number ≥ 1, got {self.prbs!r}")
        if self.occupied_hz > self.bandwidth_hz:
            raise BandPlanError(f"band.prbs: {self.prbs} PRBs of {self.prb_hz / 1e3:g} kHz ({self.occupied_hz / 1e6:g} MHz) "
                                f"do not fit in {self.bandwidth_hz / 1e6:g} MHz")  # fmt: skip
        if isinstance(self.subbands, bool) or not isinstance(self.subbands, int) or not 1 <= self.subbands <= min(MAX_SUBBANDS, self.prbs):
            raise BandPlanError(f"band.subbands must be a whole number in 1..{min(MAX_SUBBANDS, self.prbs)}, got {self.subbands!r}")

    @property
    def prb_hz(self) -> float:
        return SUBCARRIERS_PER_PRB * self.scs_hz

    @property
    def occupied_hz(self) -> float:
        """Width of the PRB grid (the transmission bandwidth), centred in the channel."""
        return self.prbs * self.prb_hz

    @cached_property  # derived once: the snapshot path asks for it every evaluation
    def grid(self) -> tuple[SubBand, ...]:
        k, n = self.subbands, self.prbs
        low = self.center_hz - self.occupied_hz / 2
        out = []
        for i in range(k):
            first, end = i * n // k, (i + 1) * n // k
            out.append(SubBand(i, first, end - 1, low + (first + end) / 2 * self.prb_hz, (end - first) * self.prb_hz))
        return tuple(out)

    @cached_property
    def shares_db(self) -> tuple[float, ...]:
        """Each sub-band's share of the PRB grid's width (dB): the part of a full-band EIRP at constant
        spectral density that falls in it."""
        return tuple(10 * math.log10(b.width_hz / self.occupied_hz) for b in self.grid)

    @cached_property
    def fingerprint(self) -> str:
        """A short hash of the plan: equal plans, equal fingerprints (what a reading carries)."""
        blob = json.dumps({k: float(v) for k, v in self.to_dict().items()}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, default_center_hz: float | None = None) -> BandPlan:
        """From a ``[band]`` table (site file or node config); ``center_hz`` defaults to
        ``default_center_hz`` (the site's carrier). Unknown keys are errors."""
        if not isinstance(d, dict):
            raise BandPlanError(f"[band] must be a table, got {type(d).__name__}")
        if unknown := set(d) - set(cls.__dataclass_fields__):
            raise BandPlanError(f"[band]: unknown keys {sorted(unknown)}")
        center = d.get("center_hz", default_center_hz)
        if center is None:
            raise BandPlanError("band.center_hz is required")
        return cls(center, d.get("bandwidth_hz", 100e6), d.get("scs_hz", 30e3), d.get("prbs", 0), d.get("subbands", 16))

    def differences(self, other: BandPlan) -> list[str]:
        """What differs between this plan and ``other``, one line per field (empty: the same plan)."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {a[k]:g} here, {b[k]:g} there" for k in a if float(a[k]) != float(b[k])]

    def describe(self, ids) -> str:
        """Sub-bands ``ids`` as an operator reads them: "sub-bands 5–6 (PRBs 85–119)", runs joined by ", "."""
        ids = sorted(set(int(i) for i in ids))
        if not ids:
            return "no sub-band"
        runs, start = [], ids[0]
        for prev, cur in zip(ids, ids[1:] + [None]):
            if cur != prev + 1:
                runs.append((start, prev))
                start = cur
        grid = self.grid
        parts = [(f"{a}" if a == b else f"{a}–{b}") + f" (PRBs {grid[a].first_prb}–{grid[b].last_prb})" for a, b in runs]
        return ("sub-band " if len(ids) == 1 else "sub-bands ") + ", ".join(parts)
