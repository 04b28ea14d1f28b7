"""Calibration campaigns in the central unit: reference-transmitter points and what every SU measured.

At commissioning a site engineer carries a reference transmitter (known position in m, EIRP in dBm)
through the hall; for every placement ("point") the central unit gathers the readings the nodes
stream in anyway (``POST /api/v1/ingest``, stored in ``measurements``) over a dwell window and keeps,
per sensing unit, the mean received power (dBm), its spread (dB) and the number of readings. The
material fit (``calibration/``) later reads the points back over the API.

This module holds the records and the rules, not the SQL (:mod:`central.store`) or HTTP
(:mod:`central.api`):

- :func:`aggregate` turns a window's readings into per-SU statistics and decides whether the point
  is usable: a point is **rejected** (kept, with the reason, but not used by the fit) when any SU was
  saturated during the dwell (its power is only a lower bound), below its receiver's range (digital
  zeros), or had fewer than ``min_count`` readings (missing: node down, uplink behind, SU not
  served by any node).
- :func:`check_position` refuses reference positions outside the hall or inside an obstacle.
- :func:`wait_for_window` waits for the dwell to end and for the nodes' uploads to catch up with it.

Only one campaign is open at a time (the readings of a window belong to one reference transmitter);
campaign names are never reused, so an exported file names exactly one campaign.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from central.twin.site import Site
from node.protocol import POWER_DBM_RANGE

CAMPAIGN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
CAMPAIGN_STATES = ("open", "closed")
POINT_SOURCES = ("live", "import")
MAX_DWELL_S = 600.0  # one point's window at most (a request blocks for it)
DEFAULT_SETTLE_S = 2.0  # how long to wait after the window for late uploads (nodes batch their readings)
POLL_S = 0.1
# A node reports the floor of the protocol's power range when its buffer held only digital zeros.
UNDERRANGE_DBM = POWER_DBM_RANGE[0] + 1e-6


class CampaignNotFound(LookupError):
    """No campaign of that name (HTTP 404)."""


class CampaignConflict(ValueError):
    """The request contradicts the campaign's state: name taken, another campaign open, campaign
    closed (HTTP 409). The message says what to do."""


@dataclass(frozen=True)
class Campaign:
    id: int
    name: str
    state: str  # "open" | "closed"
    description: str
    created_ns: int
    created_by: str  # the operator who started it
    closed_ns: int | None
    su_ids: tuple[str, ...]  # the site's sensing units when it started: the columns of every point
    n_points: int = 0
    n_accepted: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["su_ids"] = list(self.su_ids)
        d["n_rejected"] = self.n_points - self.n_accepted
        return d


@dataclass(frozen=True)
class SuReading:
    """One SU at one point: mean power over the dwell (dBm, averaged in mW), spread of the readings
    (dB), how many readings and how many of them were saturated. ``mean_dbm``/``std_db`` are None
    when there was no reading."""

    su_id: str
    mean_dbm: float | None
    std_db: float | None
    count: int
    saturated: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class NewPoint:
    """A point about to be stored (its index is assigned by the store)."""

    position_m: tuple[float, float, float]
    power_dbm: float  # reference transmitter's EIRP
    readings: tuple[SuReading, ...]
    rejected: str = ""  # why it is not used; "" = usable
    since_ns: int | None = None  # the dwell window (None for imported points)
    until_ns: int | None = None
    source: str = "live"  # "live" (aggregated here) | "import" (from a file)


@dataclass(frozen=True)
class CampaignPoint:
    campaign: str
    index: int  # 0, 1, … in the order the points were stored
    position_m: tuple[float, float, float]
    power_dbm: float
    readings: tuple[SuReading, ...]
    rejected: str
    since_ns: int | None
    until_ns: int | None
    source: str
    created_ns: int

    @property
    def usable(self) -> bool:
        return not self.rejected

    def to_dict(self) -> dict:
        return {"campaign": self.campaign, "index": self.index, "position_m": list(self.position_m),
                "power_dbm": self.power_dbm, "rejected": self.rejected, "usable": self.usable,
                "since_ns": self.since_ns, "until_ns": self.until_ns, "source": self.source,
                "created_ns": self.created_ns, "readings": [r.to_dict() for r in self.readings]}  # fmt: skip


# --------------------------------------------------------------------------------------- the rules


def mean_power_dbm(powers_dbm: Sequence[float]) -> float:
    """Mean power of readings given in dBm, averaged in the linear domain (mW) and reported in dBm.

    Power is what adds and averages physically: the mean of dB values is the log of the geometric
    mean, biased low by fading and noise (by 2.5 dB for Rayleigh fading, i.e. exponentially
    distributed power). Computed relative to the strongest reading so that nothing under/overflows.
    """
    if not powers_dbm:
        raise ValueError("no readings to average")
    top = max(powers_dbm)
    return top + 10.0 * math.log10(sum(10.0 ** ((p - top) / 10.0) for p in powers_dbm) / len(powers_dbm))


def std_db(powers_dbm: Sequence[float]) -> float:
    """Sample standard deviation of the readings in dB (0 for a single reading): the spread the fit
    weighs a point's SU by, and a sign of a moving reference or an interferer when large."""
    n = len(powers_dbm)
    if n < 2:
        return 0.0
    m = sum(powers_dbm) / n
    return math.sqrt(sum((p - m) ** 2 for p in powers_dbm) / (n - 1))


def aggregate(su_ids: Sequence[str], readings: Mapping[str, Sequence[tuple[float, bool]]],
              min_count: int = 1) -> tuple[tuple[SuReading, ...], str]:  # fmt: skip
    """Per-SU statistics of a dwell window and the reason the point is rejected ("" if usable).

    ``readings[su_id]`` are (power_dbm, saturated) of every reading of that SU in the window. A
    saturated reading is counted (its power is a lower bound, and the point is rejected anyway). A
    reading at the protocol's floor (:data:`UNDERRANGE_DBM`: the node saw digital zeros, the signal
    was below its ADC's range) has no power at all: it is left out of the statistics and rejects the
    point too, since the fit would otherwise see a missing SU as a very weak one.
    """
    out, under = [], []
    for su in su_ids:
        rs = readings.get(su, ())
        powers = [p for p, _ in rs if p > UNDERRANGE_DBM]
        if len(powers) < len(rs):
            under.append(f"{su} ({len(rs) - len(powers)} of {len(rs)})")
        if powers:
            n_sat = sum(1 for p, s in rs if s and p > UNDERRANGE_DBM)
            out.append(
                SuReading(su, round(mean_power_dbm(powers), 4), round(std_db(powers), 4), len(powers), n_sat)
            )
        else:
            out.append(SuReading(su, None, None, 0, 0))
    reasons = [rejection_reason(out, min_count)]
    if under:
        reasons.append("below the receiver's range (digital zero): " + ", ".join(under))
    return tuple(out), "; ".join(r for r in reasons if r)


def rejection_reason(readings: Iterable[SuReading], min_count: int = 1) -> str:
    """Why a point with these per-SU readings cannot be used ("" if it can): an SU was saturated
    during the dwell (its power is only a lower bound), or has no mean or fewer than ``min_count``
    readings (0 for imported files, whose count column may be unknown)."""
    readings = list(readings)
    saturated = [f"{r.su_id} ({r.saturated} of {r.count})" for r in readings if r.saturated]
    missing = [r.su_id if r.count == 0 else f"{r.su_id} ({r.count} reading{'s' * (r.count != 1)})"
               for r in readings if r.count < min_count or r.mean_dbm is None]  # fmt: skip
    reasons = []
    if saturated:
        reasons.append("saturated during the dwell: " + ", ".join(saturated))
    if missing:
        reasons.append(
            ("no readings: " if min_count <= 1 else f"fewer than {min_count} readings: ") + ", ".join(missing)
        )
    return "; ".join(reasons)


def check_position(site: Site, position_m: Sequence[float]) -> str:
    """Why a reference transmitter cannot be at ``position_m`` (m), or "" if it can: it must be in
    the hall and not inside an obstacle (a typo in a robot's log, or the wrong hall's coordinates)."""
    size = site.hall_size_m
    if not all(0.0 <= p <= s for p, s in zip(position_m, size)):
        return (f"position_m {list(position_m)} is outside the hall "
                f"[0..{size[0]:g}] x [0..{size[1]:g}] x [0..{size[2]:g}] m")  # fmt: skip
    ob = site.obstacle_at(tuple(float(p) for p in position_m))  # type: ignore[arg-type]
    if ob is not None:
        return f"position_m {list(position_m)} is inside obstacle {ob.name!r}"
    return ""


async def wait_for_window(until_ns: int, caught_up: Callable[[], Awaitable[bool]], settle_s: float,
                          cancelled: Callable[[], Awaitable[bool]] | None = None,
                          clock_ns: Callable[[], int] = time.time_ns) -> bool:  # fmt: skip
    """Wait until the window has ended (``clock_ns() >= until_ns``), then up to ``settle_s`` more
    until ``caught_up()`` says every node has reported past the window (nodes upload in batches, so
    the window's last readings arrive a little after it). Returns False if ``cancelled()`` turned
    true (the client went away): the caller then stores nothing.

    Runs on the event loop and sleeps there, so a request that blocks for a 10 s dwell holds no
    worker thread.
    """
    while (left := (until_ns - clock_ns()) / 1e9) > 0:
        await asyncio.sleep(min(left, 0.25))
        if cancelled is not None and await cancelled():
            return False
    deadline = time.monotonic() + settle_s
    while not await caught_up() and time.monotonic() < deadline:
        await asyncio.sleep(POLL_S)
        if cancelled is not None and await cancelled():
            return False
    return True
