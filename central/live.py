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
    spectral_score: float | None = None  # the spectral test's (models.detectors.spectral); None without one
    spectral_threshold: float | None = None
    affected_subbands: tuple[int, ...] = ()  # where the spectral test sees the excess, while its verdict is anomalous
    # each detector's own verdict (None: it could not run), of which ``anomalous`` is the "or": which one saw it
    wideband_anomalous: bool | None = None
    spectral_anomalous: bool | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        for t in d["txs"]:
            t["allocation"] = (None if t["allocation"] is None else  # as the context API takes and serves it
                               [{"subband": b, "power_dbm": p} for b, p in t["allocation"]])  # fmt: skip
        d["score"] = _finite_or_none(self.score)
        d["threshold"] = _finite_or_none(self.threshold)
        d["spectral_score"] = _finite_or_none(self.spectral_score)
        d["spectral_threshold"] = _finite_or_none(self.spectral_threshold)
        for su in d["sus"]:
            for k in ("measured_dbm", "predicted_dbm", "residual_db"):
                su[k] = _finite_or_none(su[k])
            for k in ("subband_measured_dbm", "subband_predicted_dbm"):
                su[k] = [_finite_or_none(v) for v in su[k]]
        return d


@dataclass(frozen=True)
class LikelihoodMap:
    """The jammer's position likelihood over the floor, normalised to 1 at its peak, on a coarse grid
    (cells of ``cell_m``; row-major ``values``, row 0 at y = origin_y): what the dashboard's heat map draws."""

    origin_m: tuple[float, float]  # lower-left corner of cell (0, 0)
    cell_m: float
    shape: tuple[int, int]  # (rows along y, columns along x)
    values: tuple[float, ...]  # rows × columns, in [0, 1]; 0 where no cell of the twin's maps lies


@dataclass(frozen=True)
class Interference:
    """What a residual alarm's interference is, where it is, and what the network should do about it
    (:mod:`central.detection.characterise`). Sub-band ids are the site's band plan's (GET /band-plan)."""

    interference_class: str  # narrowband | partial-band | wideband | sweeping | deceptive
    subbands: tuple[int, ...]  # affected sub-bands (ascending)
    subbands_text: str  # "sub-bands 5–6 (PRBs 85–118)"
    avoid_subbands: tuple[int, ...]  # what a scheduler should leave unallocated now (() for wideband: move band)
    eirp_dbm: float | None  # estimated EIRP of the emitter, summed over the affected sub-bands
    position_m: tuple[float, float] | None  # most likely position
    region_m: tuple[tuple[float, float], ...]  # centres of the cells of the 90 % likelihood region
    region_cell_m: float  # those cells' size
    time_pattern: str  # "continuous" | "duty-cycled"
    duty: float | None  # fraction of the alarm's snapshots with the emitter seen on
    mimics_tx: str | None  # the legitimate TX whose allocation it follows (deceptive), else None
    countermeasure: str
    likelihood: LikelihoodMap | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["eirp_dbm"] = _finite_or_none(self.eirp_dbm)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Interference:
        lk = d.get("likelihood")
        lk = None if lk is None else LikelihoodMap(tuple(lk["origin_m"]), float(lk["cell_m"]), tuple(lk["shape"]),
                                                   tuple(lk["values"]))  # fmt: skip
        pos = d.get("position_m")
        return cls(d["interference_class"], tuple(d["subbands"]), d["subbands_text"], tuple(d["avoid_subbands"]),
                   d.get("eirp_dbm"), None if pos is None else tuple(pos), tuple(tuple(p) for p in d["region_m"]),
                   float(d["region_cell_m"]), d["time_pattern"], d.get("duty"), d.get("mimics_tx"),
                   d["countermeasure"], lk)  # fmt: skip


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
    # residual alarms with spectral detection: what the interference is (None: wideband evidence only)
    interference: Interference | None = None

    @property
    def avoid_subbands(self) -> tuple[int, ...]:
        """Sub-bands a scheduler should leave unallocated while this alarm is active."""
        return () if self.interference is None or self.state != "active" else self.interference.avoid_subbands

    def to_dict(self) -> dict:
        d = asdict(self)
        d["peak_score"] = _finite_or_none(self.peak_score)
        d["interference"] = None if self.interference is None else self.interference.to_dict()
        d["avoid_subbands"] = list(self.avoid_subbands)
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
