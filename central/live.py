"""The records the live system passes around and shows: snapshots, alarms, node health.

Defined once here so that detection (which produces them), the store and the API (which keep and
serve them) and the dashboard (which draws their JSON, ``to_dict``) agree. Units in the names; times
are UTC nanoseconds (``_ns``); positions are hall coordinates in metres.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from contracts.band_plan import BandPlan


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass(frozen=True)
class TxContext:
    """A legitimate transmitter as the context feed reports it (estimated position, not the truth)."""

    tx_id: str
    t_ns: int
    position_m: tuple[float, float, float]
    power_dbm: float  # total EIRP; with an allocation, the sum over its sub-bands
    f_center_hz: float = 0.0
    bandwidth_hz: float = 0.0
    # The scheduler's allocation over the site's band plan: (sub-band id, EIRP dBm in that sub-band)
    # per allocated sub-band; () idle (transmits nothing); None not reported (power_dbm spread evenly
    # over the band plan's PRB grid).
    allocation: tuple[tuple[int, float], ...] | None = None

    @property
    def transmitting(self) -> bool:
        return self.allocation is None or len(self.allocation) > 0

    def subband_powers_dbm(self, plan: BandPlan) -> np.ndarray:
        """EIRP per sub-band of ``plan`` (dBm, −inf where it does not transmit), shape (subbands,)."""
        if self.allocation is None:
            return self.power_dbm + np.array(plan.shares_db)
        out = np.full(plan.subbands, -np.inf)
        for b, p in self.allocation:
            out[b] = p
        return out


@dataclass(frozen=True)
class SuState:
    """One sensing unit inside a snapshot. ``measured_dbm`` is None when the SU is stale (no reading
    within the staleness limit); ``residual_db`` is None when it cannot be computed (stale, or
    saturated: a saturated reading is only a lower bound)."""

    su_id: str
    position_m: tuple[float, float, float]
    measured_dbm: float | None
    predicted_dbm: float | None
    residual_db: float | None
    stale: bool
    saturated: bool
    # per sub-band of the site's band plan, when the SU's readings follow it (else empty): what it
    # measured (None where stale) and what the twin expects from the scheduler's allocations
    subband_measured_dbm: tuple[float | None, ...] = ()
    subband_predicted_dbm: tuple[float, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    t_ns: int  # end of the window
    sus: tuple[SuState, ...]
    txs: tuple[TxContext, ...]
    score: float | None  # detector score; None when no detector could run
    threshold: float | None
    anomalous: bool  # the verdict feeding the alarms: the CUSUM's with integration "cusum", else score > threshold
    detector: str  # name of the detector that produced the score ("" if none)
    reason: str = ""  # "", "residual", "saturation", "insufficient data"
    suspected_position_m: tuple[float, float] | None = None
    busy_subbands: tuple[int, ...] = ()  # sub-bands the scheduler gave a legitimate transmitter

    def to_dict(self) -> dict:
        d = asdict(self)
        for t in d["txs"]:
            t["allocation"] = None if t["allocation"] is None else [list(a) for a in t["allocation"]]
        d["score"] = _finite_or_none(self.score)
        d["threshold"] = _finite_or_none(self.threshold)
        for su in d["sus"]:
            for k in ("measured_dbm", "predicted_dbm", "residual_db"):
                su[k] = _finite_or_none(su[k])
            for k in ("subband_measured_dbm", "subband_predicted_dbm"):
                su[k] = [_finite_or_none(v) for v in su[k]]
        return d


@dataclass(frozen=True)
class Alarm:
    id: int
    kind: str  # "residual" (twin and reality disagree) or "saturation" (an SU's front end overloaded)
    state: str  # "active" or "cleared"
    start_ns: int
    end_ns: int | None
    peak_score: float | None
    affected_sus: tuple[str, ...]
    suspected_position_m: tuple[float, float] | None
    acknowledged_by: str | None = None
    acknowledged_ns: int | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["peak_score"] = _finite_or_none(self.peak_score)
        return d


@dataclass(frozen=True)
class NodeHealth:
    node_id: str
    position_m: tuple[float, float, float]
    last_seen_ns: int | None  # receive time of its latest record
    last_t_ns: int | None  # measurement time of its latest record
    last_power_dbm: float | None
    records: int
    saturated: bool
    healthy: bool  # seen within the staleness limit and not saturated
    detail: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)
