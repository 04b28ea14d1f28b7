"""The simulated world the simulated SDR senses: "true" gain maps plus a scenario of emitters over time.

The twin predicts from maps traced with its own material guesses; the world uses maps traced with
different ("true") materials, so calibration and detection face a real gap, as in a plant. Every
simulated node process and the central unit's simulated context feed read the same scenario file
and share a start time, so they agree on who transmits where without talking to each other:
positions are a deterministic function of scenario time.

Scenario file (TOML); times are seconds since the scenario start, positions metres in hall
coordinates, offsets relative to ``scenario.center_hz`` (or, without it, to whatever the SDR is
tuned to)::

    [scenario]
    name = "hall-a-jammer"
    center_hz = 3.7e9                 # optional

    [[emitters]]
    id = "gnb-1"
    role = "legitimate"               # legitimate | jammer
    tx_power_dbm = 20.0
    position_m = [10.0, 20.0, 1.5]    # fixed ...
    offset_hz = 0.0                   # band and waveform (defaults shown)
    bandwidth_hz = 10e6
    waveform = "ofdm"                 # ofdm | noise | tone | sweep
    duty_cycle = 1.0
    period_s = 1e-3

    [[emitters]]
    id = "agv-7"
    role = "legitimate"
    tx_power_dbm = 20.0
    waypoints_m = [[2.0, 2.0, 1.5], [2.0, 38.0, 1.5], [38.0, 38.0, 1.5]]   # ... or a closed loop
    speed_m_s = 1.2                   # from the first waypoint at start_s, back to it, and round again

    [[emitters]]
    id = "jammer"
    role = "jammer"
    tx_power_dbm = 20.0
    position_m = [25.0, 12.0, 1.5]
    waveform = "noise"
    start_s = 30.0                    # active over [start_s, end_s); end_s omitted: until the end
    end_s = 90.0
"""

from __future__ import annotations

import dataclasses
import math
import time
import tomllib
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import numpy as np

from contracts.gain_maps import GAIN_FLOOR_DB, GainMapFile
from contracts.toml_fields import ConfigError, Fields
from node.sdr.base import IQBuffer, SdrReadError
from node.sdr.simulated import Emitter, ReceiverModel, SimulatedSdr, Waveform
from contracts.band_plan import BandPlan, BandPlanError
from sim.impairments import Impairments
from sim.scheduler import Scheduler, SchedulerSettings

ROLES = ("legitimate", "jammer")
WAVEFORMS: tuple[str, ...] = get_args(Waveform)
# Received powers below this are not synthesised: 150 dB under the thermal floor of any band.
NEGLIGIBLE_DBM = -250.0
# The maps cover one horizontal plane; an emitter further off it than this is a scenario for other maps.
PLANE_TOLERANCE_M = 0.5

Point = tuple[float, float, float]


class ScenarioError(ValueError):
    """A scenario that cannot run (in this world). The message names the file and the offending entry."""


# --------------------------------------------------------------------------------------------------
# Scenario: plain data, validated at load


@dataclass(frozen=True)
class ScenarioEmitter:
    """One transmitter of the scenario: what it sends (at its antenna), where it is, and when it is on."""

    id: str
    role: str  # "legitimate" | "jammer"
    tx_power_dbm: float
    position_m: Point | None = None  # fixed, or ...
    waypoints_m: tuple[Point, ...] | None = None  # ... a closed loop travelled at speed_m_s
    speed_m_s: float | None = None
    offset_hz: float = 0.0
    bandwidth_hz: float = 10e6
    waveform: str = "ofdm"
    duty_cycle: float = 1.0
    period_s: float = 1e-3
    start_s: float = 0.0
    end_s: float | None = None  # exclusive; None: active until the scenario ends
    # a jammer that mimics this legitimate emitter: it transmits in the sub-bands the scheduler gives
    # that one (a deceptive jammer), at its own spectral density; needs a [scheduler]
    follows: str | None = None
    # a jammer on in a random fraction of ``random_slot_s`` slots (a duty cycle meant to evade a
    # detector that looks at one snapshot at a time); the draw per slot is a pure function of the
    # emitter id and the slot, so every node process sees the same on/off pattern
    random_duty: float | None = None
    random_slot_s: float = 0.1

    def is_active(self, t_s: float) -> bool:
        if not (self.start_s <= t_s and (self.end_s is None or t_s < self.end_s)):
            return False
        return self.random_duty is None or self.on_in_slot(math.floor(t_s / self.random_slot_s))

    def on_in_slot(self, slot: int) -> bool:
        """Whether a randomly duty-cycled emitter is on in ``slot`` (probability ``random_duty``)."""
        return bool(np.random.default_rng([zlib.crc32(self.id.encode()), slot & 0xFFFFFFFF]).random() < self.random_duty)

    @property
    def anchor_points_m(self) -> tuple[Point, ...]:
        """The fixed position, or the waypoints."""
        return (self.position_m,) if self.position_m is not None else self.waypoints_m  # type: ignore[return-value]

    @property
    def loop_length_m(self) -> float:
        return 0.0 if self.waypoints_m is None else float(_loop(self.waypoints_m)[1][-1])

    def position_at(self, t_s: float) -> Point:
        """Where the emitter is at scenario time ``t_s`` (before ``start_s``: where it will start)."""
        if self.position_m is not None:
            return self.position_m
        s = self.speed_m_s * max(t_s - self.start_s, 0.0)  # type: ignore[operator]
        return tuple(float(c) for c in self.points_along_loop(np.array([s]))[0])  # type: ignore[return-value]

    def points_along_loop(self, distance_m: np.ndarray) -> np.ndarray:
        """Positions (len, 3) at path distances from the first waypoint, wrapping round the loop."""
        pts, cum = _loop(self.waypoints_m)  # type: ignore[arg-type]
        s = np.mod(distance_m, cum[-1])
        i = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(pts) - 2)
        frac = (s - cum[i]) / (cum[i + 1] - cum[i])  # side="right": never a zero-length segment
        return pts[i] + frac[:, None] * (pts[i + 1] - pts[i])

    def as_received(self, power_dbm: float) -> Emitter:
        """This emitter's signal as one SDR receives it, at that power."""
        return Emitter(power_dbm, self.offset_hz, self.bandwidth_hz, self.waveform,  # type: ignore[arg-type]
                       self.duty_cycle, self.period_s)  # fmt: skip


def _loop(waypoints_m) -> tuple[np.ndarray, np.ndarray]:
    """Closed-loop vertices (first repeated at the end) and cumulative path length at each."""
    pts = np.array(list(waypoints_m) + [waypoints_m[0]], dtype=float)
    cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    return pts, cum


@dataclass(frozen=True)
class Scenario:
    name: str
    emitters: tuple[ScenarioEmitter, ...]
    center_hz: float | None = None  # what the emitters' offset_hz are relative to; None: the tuned centre
    description: str = ""
    band_plan: BandPlan | None = None  # [band]: the monitored carrier the scheduler allocates in
    scheduler: SchedulerSettings | None = None  # [scheduler]: legitimate emitters follow its allocations

    def active_at(self, t_s: float) -> list[ScenarioEmitter]:
        return [e for e in self.emitters if e.is_active(t_s)]


def scenario_from_dict(doc: dict, source: str = "<scenario>") -> Scenario:
    """Build and validate a :class:`Scenario` from a parsed TOML document."""
    try:
        return _scenario(Fields(doc, "", source))
    except ConfigError as e:
        raise ScenarioError(str(e)) from None


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: not valid TOML: {e}") from None
    return scenario_from_dict(doc, str(path))


def _scenario(top: Fields) -> Scenario:
    head = top.sub("scenario")
    name = head.string("name", default="scenario")
    description = head.string("description") if head.has("description") else ""
    center_hz = head.real("center_hz", 1e6, 1e11) if head.has("center_hz") else None
    head.reject_unknown()
    band_plan = scheduler = None
    if top.has("band"):
        try:
            band_plan = BandPlan.from_dict(top.sub("band").table, default_center_hz=center_hz)
        except BandPlanError as e:
            raise top.error("band", str(e)) from None
        if center_hz is None:
            center_hz = band_plan.center_hz
        elif center_hz != band_plan.center_hz:
            raise top.error("band", f"center_hz {band_plan.center_hz:g} is not the scenario's {center_hz:g}")
    if top.has("scheduler"):
        if band_plan is None:
            raise top.error("scheduler", "needs the [band] plan it allocates in")
        g = top.sub("scheduler")
        try:
            scheduler = SchedulerSettings(g.real("period_s", 1e-3, 3600.0, default=1.0), g.real("load_min", 0.0, 1.0, default=0.2),
                                          g.real("load_max", 0.0, 1.0, default=0.9), g.real("idle_probability", 0.0, 1.0, default=0.15),
                                          g.integer("seed", 0, 2**31 - 1, default=0))  # fmt: skip
        except ValueError as e:
            raise g.error("load_min" if "load" in str(e) else "idle_probability", str(e)) from None
        g.reject_unknown()

    items = top.raw("emitters", [])
    if not isinstance(items, list) or not items:
        raise top.error("emitters", "expected at least one [[emitters]] table")
    emitters: list[ScenarioEmitter] = []
    for i, table in enumerate(items):
        eid = table.get("id") if isinstance(table, dict) else None
        f = Fields(table, f"emitters[{i}]" + (f" ({eid})" if isinstance(eid, str) else ""), top.source)
        e = _emitter(f)
        if any(x.id == e.id for x in emitters):
            raise f.error("id", f"duplicate emitter id {e.id!r}")
        emitters.append(e)
    top.reject_unknown()
    legitimate = {e.id for e in emitters if e.role == "legitimate"}
    for i, e in enumerate(emitters):
        if e.follows is not None and (scheduler is None or e.follows not in legitimate or e.role != "jammer"):
            why = ("needs a [scheduler]" if scheduler is None else "only a jammer follows" if e.role != "jammer"
                   else f"{e.follows!r} is not a legitimate emitter of this scenario")  # fmt: skip
            raise ScenarioError(f"{top.source}: emitters[{i}] ({e.id}).follows: {why}")
    return Scenario(name, tuple(emitters), center_hz, description, band_plan, scheduler)


def _emitter(f: Fields) -> ScenarioEmitter:
    fixed, moving = f.has("position_m"), f.has("waypoints_m")
    if fixed == moving:
        raise f.error("position_m", "give either position_m (fixed) or waypoints_m with speed_m_s (moving)")
    if fixed and f.has("speed_m_s"):
        raise f.error("speed_m_s", "applies to waypoints_m only")
    duty = f.real("duty_cycle", 0.0, 1.0, default=1.0)
    if duty <= 0:
        raise f.error("duty_cycle", "must be > 0")
    start = f.real("start_s", 0.0, 1e9, default=0.0)
    end = f.real("end_s", 0.0, math.inf) if f.has("end_s") else None
    if end is not None and end <= start:
        raise f.error("end_s", f"{end:g} is not after start_s {start:g}")
    e = ScenarioEmitter(
        id=f.string("id"),
        role=f.string("role", choices=ROLES),
        tx_power_dbm=f.real("tx_power_dbm", -100.0, 80.0),
        position_m=f.vector("position_m", 3) if fixed else None,  # type: ignore[arg-type]
        waypoints_m=_points(f, "waypoints_m") if moving else None,
        speed_m_s=f.real("speed_m_s", 1e-6, 1e3) if moving else None,
        offset_hz=f.real("offset_hz", -1e10, 1e10, default=0.0),
        bandwidth_hz=f.real("bandwidth_hz", 1.0, 1e10, default=10e6),
        waveform=f.string("waveform", "ofdm", choices=WAVEFORMS),
        duty_cycle=duty,
        period_s=f.real("period_s", 1e-9, 3600.0, default=1e-3),
        start_s=start,
        end_s=end,
        follows=f.string("follows") if f.has("follows") else None,
        random_duty=f.real("random_duty", 0.0, 1.0) if f.has("random_duty") else None,
        random_slot_s=f.real("random_slot_s", 1e-3, 3600.0, default=0.1),
    )
    f.reject_unknown()
    if e.random_duty is not None and (e.role != "jammer" or not e.random_duty > 0):
        raise f.error("random_duty", "a jammer's fraction of slots on, in (0, 1]" if e.role == "jammer" else
                      "only a jammer is duty-cycled at random (the scheduler decides when legitimate ones send)")  # fmt: skip
    if moving and not e.loop_length_m > 0:
        raise f.error("waypoints_m", "all waypoints coincide: the loop has no length")
    return e


def _points(f: Fields, key: str) -> tuple[Point, ...]:
    v = f.raw(key)
    if not isinstance(v, list) or len(v) < 2:
        raise f.error(key, f"expected a list of at least 2 [x, y, z] points, got {v!r}")
    return tuple(Fields({f"{key}[{i}]": p}, f.where, f.source).vector(f"{key}[{i}]", 3) for i, p in enumerate(v))  # type: ignore[misc]


# --------------------------------------------------------------------------------------------------
# World: scenario × true gain maps → what each SU receives


@dataclass(frozen=True)
class EmitterState:
    """An active emitter at one instant: what a context feed reports about a legitimate transmitter."""

    id: str
    role: str
    position_m: Point
    tx_power_dbm: float
    offset_hz: float
    bandwidth_hz: float


class World:
    """The true gain maps (a gain-map file, e.g. from ``rftwin-central twin build --out``) and a scenario.

    Checks at construction that every emitter stays on the maps' plane, inside the mapped area and out
    of obstacles (moving ones along their whole loop), so a scenario written for another hall fails
    at start-up, not as silently wrong powers.
    """

    def __init__(self, maps: GainMapFile, scenario: Scenario):
        self.maps = maps
        self.scenario = scenario
        self.impairments = Impairments.from_dict(maps.meta.get("impairments"))
        self._gains = maps.gain_lookup()
        self._su_index = {su: j for j, su in enumerate(maps.su_ids)}
        for e in scenario.emitters:
            self._check_emitter(e)
        self.scheduler: Scheduler | None = None  # the scenario's, allocating to its legitimate emitters
        if scenario.scheduler is not None:
            legit = [e.id for e in scenario.emitters if e.role == "legitimate"]
            self.scheduler = Scheduler(scenario.band_plan, legit, scenario.scheduler)  # type: ignore[arg-type]

    @classmethod
    def load(cls, maps_path: str | Path, scenario_path: str | Path) -> World:
        return cls(GainMapFile.load(Path(maps_path)), load_scenario(scenario_path))

    @property
    def su_ids(self) -> list[str]:
        return list(self._su_index)

    def su_index(self, su_id: str) -> int:
        if su_id not in self._su_index:
            raise ValueError(f"unknown sensing unit {su_id!r}; the world's maps have {self.su_ids}")
        return self._su_index[su_id]

    def gain_offset_db(self, su_id: str) -> float:
        """The world's own per-SU model error (``meta["su_gain_offsets_db"]``, written by
        ``rftwin-sim make-world``): a loss the twin and the node's calibration do not know."""
        self.su_index(su_id)
        return float(self.maps.meta.get("su_gain_offsets_db", {}).get(su_id, 0.0))

    def active_at(self, t_s: float) -> list[EmitterState]:
        return [EmitterState(e.id, e.role, e.position_at(t_s), e.tx_power_dbm, e.offset_hz, e.bandwidth_hz)
                for e in self.scenario.active_at(t_s)]  # fmt: skip

    def legitimate_at(self, t_s: float) -> list[EmitterState]:
        """The legitimate transmitters on air at ``t_s``, with their true positions (a context feed's source)."""
        return [s for s in self.active_at(t_s) if s.role == "legitimate"]

    def emitters_at(self, su_id: str, t_s: float) -> list[Emitter]:
        """What SU ``su_id`` receives at scenario time ``t_s``: tx power + true gain (dB) per active emitter.

        Emitters with no path to the SU (gain at the maps' floor) or a negligible received power are
        left out: they would only cost synthesis time.
        """
        j = self.su_index(su_id)
        active = self.scenario.active_at(t_s)
        if not active:
            return []
        gain_db = self._gains.lookup([e.position_at(t_s) for e in active]).gain_db[:, j]
        allocated = self.scheduler.subbands_at(t_s) if self.scheduler is not None else {}
        out = []
        for e, g in zip(active, gain_db):
            rx_dbm = e.tx_power_dbm + float(g)
            if g > GAIN_FLOOR_DB + 1e-6 and rx_dbm >= NEGLIGIBLE_DBM:
                scheduled = e.follows or (e.id if e.role == "legitimate" else None)
                if scheduled in allocated:
                    out += self._in_subbands(e, rx_dbm, allocated[scheduled])
                else:
                    out.append(e.as_received(rx_dbm))
        return out

    def _in_subbands(self, e: ScenarioEmitter, rx_dbm: float, subbands: tuple[int, ...]) -> list[Emitter]:
        """A scheduled emitter as received: one signal per run of consecutive allocated sub-bands, at the
        power spectral density of ``rx_dbm`` over the whole PRB grid (nothing when idle)."""
        plan = self.scenario.band_plan
        grid = plan.grid  # type: ignore[union-attr]
        out, run = [], []
        for b in sorted(subbands) + [None]:
            if run and (b is None or b != run[-1] + 1):
                lo, hi = grid[run[0]].low_hz, grid[run[-1]].high_hz
                share_db = 10 * math.log10((hi - lo) / plan.occupied_hz)  # type: ignore[union-attr]
                out.append(dataclasses.replace(e.as_received(rx_dbm + share_db), offset_hz=(lo + hi) / 2 - plan.center_hz,  # type: ignore[union-attr]
                                               bandwidth_hz=hi - lo))  # fmt: skip
                run = []
            if b is not None:
                run.append(b)
        return out

    def _check_emitter(self, e: ScenarioEmitter) -> None:
        pts = np.array(e.anchor_points_m)
        if e.waypoints_m is not None:  # the whole loop, at half-cell steps
            step = self.maps.cell_size_m / 2
            pts = np.vstack([pts, e.points_along_loop(np.arange(0.0, e.loop_length_m, step))])
        extent = np.array(self.maps.extent_m)
        outside = ~((pts[:, :2] >= 0) & (pts[:, :2] <= extent)).all(axis=1)
        off_plane = np.abs(pts[:, 2] - self.maps.height_m) > PLANE_TOLERANCE_M
        if outside.any():
            p = pts[outside][0]
            raise ScenarioError(f"emitter {e.id!r}: position {p.round(2).tolist()} is outside the world's maps "
                                f"(0..{extent[0]:g} m x 0..{extent[1]:g} m)")  # fmt: skip
        if off_plane.any():
            p = pts[off_plane][0]
            raise ScenarioError(f"emitter {e.id!r}: position {p.round(2).tolist()} is off the maps' plane at "
                                f"z = {self.maps.height_m:g} m (tolerance {PLANE_TOLERANCE_M} m)")  # fmt: skip
        blocked = self._gains.lookup(pts).fallback
        if blocked.any():
            p = pts[blocked][0]
            raise ScenarioError(f"emitter {e.id!r}: position {p.round(2).tolist()} is inside an obstacle")


# --------------------------------------------------------------------------------------------------
# The SDR backend that senses the world


class SimulatedWorldSdr:
    """An SdrBackend for one SU: the simulated SDR, fed before every read with what the world sends.

    Scenario time is ``clock() − start_time_s``; separate node processes given the same start time
    (and the same scenario and maps) see one consistent world. ``gain_offset_db`` is a loss or gain
    between the air and the receiver that the node's calibration table does not know (a cable, a
    detuned antenna): it scales every received signal, not the receiver's own noise. None takes the
    world's own offset for this SU (:meth:`World.gain_offset_db`). The world's impairments
    (:mod:`sim.impairments`, from its file) add a slow gain drift and a per-reading term to every
    received signal, and make a read fail (:class:`SdrReadError`) while this SU is dropped out. The
    output is IQ samples only; the power the DSP reports is whatever it measures in them.
    """

    def __init__(
        self,
        world: World,
        su_id: str,
        *,
        gain_offset_db: float | None = None,
        receiver: ReceiverModel = ReceiverModel(),
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        start_time_s: float | None = None,
    ):
        world.su_index(su_id)
        if gain_offset_db is None:
            gain_offset_db = world.gain_offset_db(su_id)
        if not math.isfinite(gain_offset_db):
            raise ValueError(f"gain_offset_db must be finite, got {gain_offset_db}")
        self.world, self.su_id = world, su_id
        self.gain_offset_db = float(gain_offset_db)
        self._clock = clock
        self.start_time_s = float(clock() if start_time_s is None else start_time_s)
        self._sdr = SimulatedSdr(receiver=receiver, seed=seed)
        self._rng = np.random.default_rng(None if seed is None else seed + 1)  # the impairments' own draws

    @property
    def center_hz(self) -> float:
        return self._sdr.center_hz

    @property
    def sample_rate_hz(self) -> float:
        return self._sdr.sample_rate_hz

    @property
    def gain_db(self) -> float:
        return self._sdr.gain_db

    def scenario_time_s(self) -> float:
        return self._clock() - self.start_time_s

    def tune(self, center_hz: float, sample_rate_hz: float) -> None:
        self._sdr.tune(center_hz, sample_rate_hz)

    def set_gain(self, gain_db: float) -> None:
        self._sdr.set_gain(gain_db)

    def read(self, n: int) -> IQBuffer:
        now_s = self._clock()
        t_s = now_s - self.start_time_s
        imp = self.world.impairments
        if imp.dropped_out(self.su_id, t_s):
            raise SdrReadError(f"simulated dropout of {self.su_id} (world impairments: {imp.dropout_s:g} s slots)")
        received = self.world.emitters_at(self.su_id, t_s)
        # the world's impairments: a slow drift of this SU's gain and a per-reading term per emitter
        extra_db = imp.gain_drift_db(self.su_id, t_s) + imp.reading_noise(self._rng, len(received))
        received = [dataclasses.replace(e, power_dbm=e.power_dbm + float(x)) for e, x in zip(received, extra_db)]
        self._sdr.emitters = [x for x in map(self._in_baseband, received) if x is not None]
        buf = self._sdr.read(n)
        return dataclasses.replace(buf, t_ns=round(now_s * 1e9))  # stamped on the world's clock

    def close(self) -> None:
        self._sdr.close()

    def _in_baseband(self, e: Emitter) -> Emitter | None:
        """The emitter where this tuning puts it, with the unknown gain offset; None if outside the span
        (the anti-alias filter removes it)."""
        shift_hz = 0.0 if self.world.scenario.center_hz is None else self.world.scenario.center_hz - self.center_hz
        offset_hz = e.offset_hz + shift_hz
        half_bw_hz = 0.0 if e.waveform == "tone" else e.bandwidth_hz / 2
        if abs(offset_hz) - half_bw_hz >= self.sample_rate_hz / 2:
            return None
        return dataclasses.replace(e, power_dbm=e.power_dbm + self.gain_offset_db, offset_hz=offset_hz)
