"""Replaying simulated operation through the real detection engine, faster than real time.

The benchmark ``bench/replay.py`` asks how the product behaves over a day: how many false alarms
the live engine raises per 24 h in normal operation, and how soon it raises one when a jammer
appears. Running the demo (node processes synthesising IQ, HTTP, the service) for 24 h would take
24 h; this module runs the same chain on a simulated clock instead:

- **Readings** in the *power domain*, from the simulated world (:class:`sim.world.World`: its true
  gain maps, its scenario, its per-SU gain offsets and its impairments), 10 per second per SU, each
  stamped with its own reading time (every SU reads at its own phase within the 0.1 s period). IQ is
  not synthesised: 24 h × 10 Hz × 12 SUs is ~10 M readings of 16384 samples each, hours of FFTs per
  simulated day. Per SU j and reading at time t (what :class:`sim.world.SimulatedWorldSdr` + the
  simulated SDR + the node's DSP do to it, in expectation and scatter):

  received mW = Σ over active emitters e of 10^((P_e + G_world[e, j](t) + offset_j + drift_j(t) + n_ejt) / 10)

  with ``offset_j`` = :meth:`World.gain_offset_db`, ``drift_j`` = :meth:`Impairments.gain_drift_db`
  and ``n`` ~ N(0, ``reading_noise_db``) per emitter and reading (:meth:`Impairments.reading_noise`);
  plus the receiver's noise in the band: thermal (−174 dBm/Hz + 10·log10(band) + noise figure) and the
  ADC's quantisation noise (12 bits at full scale −10 dBm − gain: at the demo's 0 dB gain it is the
  larger of the two, ~−86 dBm in 20 MHz, as in the IQ the simulated SDR produces); then the power
  estimator's own scatter (relative standard deviation 1/sqrt(N), N = 16384 samples, in linear
  power); reported in dBm. A reading is **saturated** when the total power over the sampled span
  would clip the ADC as :func:`node.dsp.measure_band_power` flags it (more than 1e-4 of Gaussian
  samples at the rails, or compression within 1 dB of full scale). An SU that is dropped out
  (:meth:`Impairments.dropped_out`) gives no reading: the engine turns it stale after ``stale_s``.
- **Emitters**: the world's scenario (the demo's AGVs) with a per-seed start phase along their
  loops, plus the jammers a benchmark switches on and off (:meth:`Replay.add_jammer`). Gains come
  from the world's gain lookup at the emitters' positions, the positions from the scenario emitters'
  own path functions, with the same rule as :meth:`World.emitters_at` (no path at the maps' floor, or
  a negligible power: left out); a test checks one against the other.
- **Context**: :class:`sim.context_feed.ContextFeed` itself on the simulated clock (true positions +
  radial N(0, 0.37 m) error in a uniform direction, clipped to the hall), every 0.5 s as in the
  demo. Jammers are never in it.
- **Engine**: :class:`central.detection.DetectionEngine` on the twin's predictor, fed record by
  record (``on_measurements`` with the real :class:`node.protocol.Measurement`), ``on_context`` when a
  report is due, ``evaluate(t)`` once per window. Learning as the service does it
  (:meth:`central.detection.live.LiveDetection.learn`): the residual rows of the snapshots of a
  normal period with at least ``min_usable_sus`` finite residuals, with their predictions, then
  ``engine.learn(x, predicted_dbm=...)``.

Everything random comes from one seed per :class:`Replay`. The world itself (maps, offsets,
impairments, clutter) is the world file's; seeds change the noise, the AGVs' start phases, the SUs'
reading phases, and (in the benchmark) the jammers' times and positions.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm

from central.detection.alarms import RAISED
from central.detection.engine import REALLOCATING, DetectionEngine, EngineConfig
from central.live import Snapshot
from contracts.band_plan import SUBBAND_LEAKAGE_DB, BandPlan, neighbour_sum
from contracts.gain_maps import GAIN_FLOOR_DB
from node.dsp import Band, BandPowerConfig
from node.protocol import Measurement
from node.sdr.simulated import THERMAL_DBM_PER_HZ, ReceiverModel
from sim.context_feed import ContextFeed
from sim.world import NEGLIGIBLE_DBM, Scenario, ScenarioEmitter, World

S = 1_000_000_000  # ns per second
T0_NS = 1_700_000_000 * S  # the simulated clock's scenario start (UTC ns)


@dataclass(frozen=True)
class ReadingModel:
    """The node's receiver and DSP as the power-domain readings model them (the demo's node settings:
    sim.station.StationSettings, node.sdr.simulated.ReceiverModel, node.dsp.BandPowerConfig)."""

    bandwidth_hz: float = 20e6  # the monitored band
    sample_rate_hz: float = 30.72e6  # the sampled span (thermal and quantisation noise are white over it)
    samples: int = 16384  # per reading: the power estimator's scatter is 1/sqrt(samples), relative
    gain_db: float = 0.0  # the demo's RX gain: full scale at −10 dBm
    center_hz: float = 3.7e9
    receiver: ReceiverModel = ReceiverModel()
    dsp: BandPowerConfig = field(default_factory=lambda: BandPowerConfig(30.72e6, Band(0.0, 20e6)))
    # With a band plan, every reading also carries the power per sub-band of the plan (as a node with
    # [band.plan] reports it); the band is then the plan's PRB grid (set bandwidth_hz and sample_rate_hz
    # to match: a 100 MHz carrier in one tuning needs 122.88 MS/s). The node's Welch PSD leaks a little
    # of a sub-band's power into each neighbour: −25 dB, which tests/test_replay.py checks against the IQ chain.
    band_plan: BandPlan | None = None
    leakage_db: float = SUBBAND_LEAKAGE_DB

    @classmethod
    def for_plan(cls, plan: BandPlan, sample_rate_hz: float = 122.88e6, **kw) -> ReadingModel:
        """The readings of a node measuring ``plan`` in one tuning at ``sample_rate_hz``."""
        band = Band(0.0, plan.occupied_hz)
        return cls(bandwidth_hz=plan.occupied_hz, sample_rate_hz=sample_rate_hz, center_hz=plan.center_hz,
                   dsp=BandPowerConfig(sample_rate_hz, band), band_plan=plan, **kw)  # fmt: skip

    def subband_noise_mw(self) -> np.ndarray:
        """(K,) the receiver's thermal and quantisation noise in each sub-band of the plan."""
        return np.array([self.thermal_mw(b.width_hz) + self.quantisation_mw(b.width_hz) for b in self.band_plan.grid])

    def full_scale_dbm(self) -> float:
        """Antenna power (dBm) at 0 dBFS."""
        return -self.receiver.dbm_to_dbfs_offset_db(self.gain_db)

    def thermal_mw(self, bandwidth_hz: float) -> float:
        return 10 ** ((THERMAL_DBM_PER_HZ + 10 * math.log10(bandwidth_hz) + self.receiver.noise_figure_db) / 10)

    def quantisation_mw(self, bandwidth_hz: float) -> float:
        """The ADC's rounding noise (uniform, LSB²/12 per rail, white over the span), antenna-referred."""
        lsb = 1.0 / 2 ** (self.receiver.adc_bits - 1)  # of full scale
        total_fs = 2 * lsb**2 / 12  # I and Q, in units of full-scale power
        return total_fs * 10 ** (self.full_scale_dbm() / 10) * bandwidth_hz / self.sample_rate_hz

    def band_noise_mw(self) -> float:
        return self.thermal_mw(self.bandwidth_hz) + self.quantisation_mw(self.bandwidth_hz)

    def span_noise_mw(self) -> float:
        return self.thermal_mw(self.sample_rate_hz) + self.quantisation_mw(self.sample_rate_hz)

    def saturation_mw(self) -> float:
        """Total power over the span (antenna, mW) from which a reading is flagged saturated: Gaussian
        samples (OFDM and noise are) clip on more than ``saturation_clip_fraction`` of the samples, or
        the power is within ``compression_dbfs`` of full scale, whichever is lower."""
        # P(|I| or |Q| >= level) = 1 − (1 − 2 Q(level/σ))² with σ² = P/2 (P in full-scale units)
        f = self.dsp.saturation_clip_fraction
        per_rail = 1 - math.sqrt(1 - f)  # two-sided, one rail
        sigma = self.dsp.clip_level / float(norm.isf(per_rail / 2))
        clip_dbfs = 10 * math.log10(2 * sigma**2)
        return 10 ** ((min(clip_dbfs, self.dsp.compression_dbfs) + self.full_scale_dbm()) / 10)


# --------------------------------------------------------------------------------------------------
# The world's emitters, vectorised over reading times


def emitter_active(e: ScenarioEmitter, t_s: np.ndarray) -> np.ndarray:
    """:meth:`ScenarioEmitter.is_active` over an array of scenario times (a random duty asked once per slot)."""
    on = t_s >= e.start_s
    on = on if e.end_s is None else on & (t_s < e.end_s)
    if e.random_duty is not None and on.any():
        slots = np.floor(t_s / e.random_slot_s).astype(np.int64)
        u, inv = np.unique(slots, return_inverse=True)
        on = on & np.array([e.on_in_slot(int(x)) for x in u])[inv].reshape(t_s.shape)
    return on


def emitter_positions(e: ScenarioEmitter, t_s: np.ndarray) -> np.ndarray:
    """:meth:`ScenarioEmitter.position_at` over an array of times: (..., 3), same arithmetic."""
    t_s = np.asarray(t_s, dtype=float)
    if e.position_m is not None:
        return np.broadcast_to(np.array(e.position_m, dtype=float), (*t_s.shape, 3))
    s = e.speed_m_s * np.maximum(t_s.ravel() - e.start_s, 0.0)
    return e.points_along_loop(s).reshape(*t_s.shape, 3)


def received_dbm(lookup, emitters: Sequence[ScenarioEmitter], t_s: np.ndarray) -> np.ndarray:
    """Tx power + the world's gain (dBm), (E, T, n_su): emitter e as SU j receives it at ``t_s[t, j]``
    (each SU at its own reading time), −inf where the emitter is off or, as in
    :meth:`World.emitters_at`, has no path (gain at the maps' floor) or a negligible power.
    ``lookup``: the world's :class:`contracts.gain_maps.GainLookup` (``world.maps.gain_lookup()``)."""
    t_s = np.asarray(t_s, dtype=float)
    T, n = t_s.shape
    out = np.full((len(emitters), T, n), -np.inf)
    rows, cols = np.arange(T * n), np.tile(np.arange(n), T)
    for i, e in enumerate(emitters):
        active = emitter_active(e, t_s)
        if not active.any():
            continue
        if e.position_m is not None:
            g = np.broadcast_to(lookup.lookup(np.array([e.position_m])).gain_db[0], (T, n))
        else:
            g = lookup.lookup(emitter_positions(e, t_s).reshape(-1, 3)).gain_db[rows, cols].reshape(T, n)
        rx = e.tx_power_dbm + g
        keep = active & (g > GAIN_FLOOR_DB + 1e-6) & (rx >= NEGLIGIBLE_DBM)
        out[i] = np.where(keep, rx, -np.inf)
    return out


def subband_shares(world: World, e: ScenarioEmitter, plan: BandPlan, t_s: np.ndarray) -> np.ndarray:
    """(T, n_su, K) the part of emitter ``e``'s received power in each sub-band of ``plan`` at ``t_s``, as
    :meth:`World.emitters_at` puts it on air: a scheduled emitter (legitimate, or a jammer that
    ``follows`` one) at its power spectral density over the PRB grid in its allocated sub-bands only
    (the parts sum to less than 1 when it has fewer), any other by the overlap of its band with each
    sub-band (a tone: all in the sub-band that holds it)."""
    grid = plan.grid
    k = plan.subbands
    scheduled = e.follows or (e.id if e.role == "legitimate" else None)
    sched = world.scheduler
    if sched is not None and scheduled in sched.tx_ids:
        share = np.array([b.width_hz for b in grid]) / plan.occupied_hz
        slots = np.floor(t_s / sched.settings.period_s).astype(np.int64)
        u, inv = np.unique(slots, return_inverse=True)
        masks = np.zeros((len(u), k))
        for i, slot in enumerate(u):
            masks[i, list(sched.subbands_at((slot + 0.5) * sched.settings.period_s)[scheduled])] = 1.0
        return (masks * share)[inv].reshape(*t_s.shape, k)
    centre = (world.scenario.center_hz or plan.center_hz) + e.offset_hz
    lo_hz = np.array([b.low_hz for b in grid])
    hi_hz = np.array([b.high_hz for b in grid])
    if e.waveform == "tone":
        part = ((centre >= lo_hz) & (centre < hi_hz)).astype(float)
    else:
        part = np.clip(np.minimum(hi_hz, centre + e.bandwidth_hz / 2) - np.maximum(lo_hz, centre - e.bandwidth_hz / 2), 0.0,
                       None) / e.bandwidth_hz  # fmt: skip
    return np.broadcast_to(part, (*t_s.shape, k))


def drift_db(world: World, t_s: np.ndarray) -> np.ndarray:
    """:meth:`Impairments.gain_drift_db` of every SU (columns) at ``t_s`` (T, n_su): the world's
    function on a grid (1 s or 1/1000 of its period, the finer) interpolated linearly (the drift is a
    slow sinusoid: the interpolation error is below 1e-5 dB)."""
    imp = world.impairments
    if imp.drift_db == 0.0:
        return np.zeros_like(t_s)
    step = min(1.0, imp.drift_period_s / 1000)
    lo, hi = math.floor(t_s.min() / step), math.ceil(t_s.max() / step)
    grid = np.arange(lo, hi + 1) * step
    out = np.empty_like(t_s)
    for j, su in enumerate(world.su_ids):
        out[:, j] = np.interp(t_s[:, j], grid, [imp.gain_drift_db(su, float(t)) for t in grid])
    return out


def dropped_out(world: World, t_s: np.ndarray) -> np.ndarray:
    """:meth:`Impairments.dropped_out` of every SU (columns) at ``t_s`` (T, n_su): asked once per
    ``dropout_s`` slot (the function is constant over a slot, by its definition), at the slot's middle."""
    imp = world.impairments
    if imp.dropout_per_h == 0.0:
        return np.zeros(t_s.shape, bool)
    slots = np.floor(t_s / imp.dropout_s).astype(np.int64)
    out = np.empty(t_s.shape, bool)
    for j, su in enumerate(world.su_ids):
        u, inv = np.unique(slots[:, j], return_inverse=True)
        out[:, j] = np.array([imp.dropped_out(su, (s + 0.5) * imp.dropout_s) for s in u])[inv]
    return out


@dataclass(frozen=True)
class Readings:
    """One chunk of ticks: what every SU reports per reading period (T, n_su)."""

    t_s: np.ndarray  # reading times (scenario s)
    t_ns: np.ndarray  # int64, on the simulated clock
    power_dbm: np.ndarray
    saturated: np.ndarray  # bool
    present: np.ndarray  # bool: False while the SU is dropped out (no reading)
    subband_dbm: np.ndarray | None = None  # (T, n_su, K) with the model's band plan, else None


def power_readings(world: World, lookup, emitters: Sequence[ScenarioEmitter], t_ns: np.ndarray,
                   model: ReadingModel, rng: np.random.Generator) -> Readings:  # fmt: skip
    """The readings every SU takes at its reading times ``t_ns`` (T, n_su, int ns on the simulated clock)."""
    t_s = (t_ns - T0_NS) * 1e-9
    rx = received_dbm(lookup, emitters, t_s)  # (E, T, n)
    offsets = np.array([world.gain_offset_db(su) for su in world.su_ids])
    extra = offsets + drift_db(world, t_s)  # (T, n): scales every received signal, not the receiver's noise
    noise = world.impairments.reading_noise(rng, rx.size).reshape(rx.shape)
    per_emitter_mw = np.power(10.0, (rx + extra + noise) / 10.0)  # (E, T, n); −inf → 0 mW
    if model.band_plan is not None:
        return _subband_readings(world, emitters, model, per_emitter_mw, t_s, t_ns, rng)
    signal_mw = per_emitter_mw.sum(axis=0)
    band_mw = signal_mw + model.band_noise_mw()
    band_mw = band_mw * (1.0 + rng.standard_normal(band_mw.shape) / math.sqrt(model.samples))
    power = 10 * np.log10(np.maximum(band_mw, 1e-30))
    saturated = signal_mw + model.span_noise_mw() >= model.saturation_mw()
    return Readings(t_s, t_ns, power, saturated, ~dropped_out(world, t_s))


def _subband_readings(world: World, emitters, model: ReadingModel, per_emitter_mw: np.ndarray, t_s, t_ns, rng) -> Readings:
    """Readings per sub-band: each emitter's power shared out over the plan's sub-bands
    (:func:`subband_shares`), the receiver's noise per sub-band, the estimator's scatter per sub-band
    (relative standard deviation 1/sqrt(samples × width / sample rate)), the DSP's leakage into the
    neighbours; the band power is their sum, saturation as without a plan (the whole span's power)."""
    plan = model.band_plan
    sub = np.zeros((*t_s.shape, plan.subbands))
    for e, mw in zip(emitters, per_emitter_mw):
        if mw.any():
            sub += mw[..., None] * subband_shares(world, e, plan, t_s)
    signal_mw = per_emitter_mw.sum(axis=0)
    sub = sub + model.subband_noise_mw()
    widths = np.array([b.width_hz for b in plan.grid])
    sub = sub * (1.0 + rng.standard_normal(sub.shape) / np.sqrt(model.samples * widths / model.sample_rate_hz))
    leak = 10 ** (model.leakage_db / 10)
    sub = sub + leak * neighbour_sum(sub)
    sub = np.maximum(sub, 1e-30)
    power = 10 * np.log10(sub.sum(axis=-1))
    saturated = signal_mw + model.span_noise_mw() >= model.saturation_mw()
    return Readings(t_s, t_ns, power, saturated, ~dropped_out(world, t_s), 10 * np.log10(sub))


# --------------------------------------------------------------------------------------------------
# The replay


def phased_scenario(scenario: Scenario, rng: np.random.Generator) -> Scenario:
    """The scenario without its own jammers, each moving legitimate emitter started a random part of
    its loop before scenario time 0 (``start_s`` < 0: on air from the start, somewhere else on its loop)."""
    out = []
    for e in scenario.emitters:
        if e.role == "jammer":
            continue
        if e.waypoints_m is not None and e.start_s == 0.0:
            e = dataclasses.replace(e, start_s=-float(rng.uniform(0.0, e.loop_length_m / e.speed_m_s)))
        out.append(e)
    return dataclasses.replace(scenario, emitters=tuple(out))


@dataclass(frozen=True)
class ReplaySettings:
    tick_s: float = 0.1  # one reading per SU and one evaluation per tick (10 Hz)
    context_period_s: float = 0.5  # as the demo's feed (sim.station.StationSettings)
    localisation_error_m: float = 0.37
    chunk_s: float = 60.0  # readings are generated this many seconds at a time
    readings: ReadingModel = ReadingModel()


@dataclass
class Event:
    """One raised alarm (residual or saturation) as the replay saw it."""

    t_s: float  # scenario time of the evaluation that raised it
    kind: str
    affected_sus: tuple[str, ...]
    score: float | None
    threshold: float | None
    detector: str
    stale_sus: tuple[str, ...]  # stale in the raising snapshot (dropouts)
    phase: str  # "normal", "lead-in", "on", "after" (what the benchmark was doing)


class Replay:
    """The simulated plant + the engine, advanced tick by tick on a simulated clock.

    ``world``: the world as loaded (its scenario's own jammers are dropped; the AGVs get a per-seed
    phase); ``predictor``: the twin's; ``config``: the engine's settings. :attr:`world` always holds
    the emitters on air or scheduled (legitimate + jammers), so that :meth:`World.emitters_at` answers
    for the same world the readings come from.
    """

    def __init__(self, world: World, predictor, config: EngineConfig, settings: ReplaySettings = ReplaySettings(),
                 seed: int = 0, phase: bool = True):  # fmt: skip
        self.rng = np.random.default_rng(seed)
        self.settings = settings
        scenario = phased_scenario(world.scenario, self.rng) if phase else dataclasses.replace(
            world.scenario, emitters=tuple(e for e in world.scenario.emitters if e.role != "jammer"))  # fmt: skip
        self.world = World(world.maps, scenario)
        self.lookup = world.maps.gain_lookup()
        self.engine = DetectionEngine(predictor, config, band_plan=settings.readings.band_plan)
        if set(self.engine.su_ids) != set(self.world.su_ids):
            raise ValueError(f"world SUs {self.world.su_ids} differ from the twin's {list(self.engine.su_ids)}")
        self.su_ids = self.world.su_ids
        self.tick_ns = round(settings.tick_s * S)
        self.ctx_period_ns = round(settings.context_period_s * S)
        n = len(self.su_ids)
        self.read_phase_ns = np.sort(self.rng.integers(0, self.tick_ns, n))[self.rng.permutation(n)]
        self._now_s = T0_NS / S
        self.feed = ContextFeed(self.world, T0_NS / S, self.world.maps.extent_m, settings.localisation_error_m,
                                seed=int(self.rng.integers(2**31)), clock=lambda: self._now_s)  # fmt: skip
        self.k = 0  # next tick; tick k's readings fall in [k, k+1)·tick, its evaluation at (k+1)·tick
        self.next_ctx_ns = T0_NS
        self._chunk: Readings | None = None
        self._chunk_k0 = 0
        self.last_snapshot: Snapshot | None = None
        # Called with every snapshot, whatever the caller of run() watches (e.g. to record the scores).
        self.on_snapshot: Callable[[Snapshot], None] | None = None
        self.stats = {"ticks": 0, "readings": 0, "dropped_readings": 0, "saturated_readings": 0, "contexts": 0,
                      "normal_ticks": 0, "stale_su_snapshots": 0}  # fmt: skip
        self.sim_wall_s = 0.0

    # ------------------------------------------------------------------ clock

    @property
    def t_s(self) -> float:
        """Scenario time of the last evaluation (0 before the first)."""
        return self.k * self.tick_ns / S

    def eval_ns(self, k: int) -> int:
        return T0_NS + (k + 1) * self.tick_ns

    # ------------------------------------------------------------------ emitters

    def add_jammer(self, position_xy_m: tuple[float, float], power_dbm: float, start_s: float, end_s: float,
                   jammer_id: str | None = None, **signal) -> ScenarioEmitter:  # fmt: skip
        """Schedule a fixed noise jammer (18 MHz, as the demo's) over [start_s, end_s) scenario time;
        jammers already off are dropped from the world. Readings are regenerated from now on.
        ``signal``: other :class:`ScenarioEmitter` fields (``bandwidth_hz``, ``offset_hz``, ``waveform``,
        ``random_duty``, ``random_slot_s``, ``follows``)."""
        if start_s < self.t_s:
            raise ValueError(f"jammer start {start_s} s is in the past (now {self.t_s} s)")
        h = self.world.maps.height_m
        e = ScenarioEmitter(jammer_id or f"jammer-{start_s:.1f}", "jammer", float(power_dbm),
                            position_m=(float(position_xy_m[0]), float(position_xy_m[1]), h),
                            start_s=float(start_s), end_s=float(end_s), **{"bandwidth_hz": 18e6, "waveform": "noise", **signal})  # fmt: skip
        keep = tuple(x for x in self.world.scenario.emitters
                     if x.role != "jammer" or x.end_s is None or x.end_s > self.t_s)  # fmt: skip
        self._set_world(World(self.world.maps, dataclasses.replace(self.world.scenario, emitters=keep + (e,))))
        return e

    def _set_world(self, world: World) -> None:
        self.world = world
        self.feed.world = world
        self._chunk = None  # regenerate from the current tick

    # ------------------------------------------------------------------ readings

    def reading_times_ns(self, k0: int, k1: int) -> np.ndarray:
        """(k1 − k0, n_su) int64: SU j reads at tick start + its own phase."""
        ks = np.arange(k0, k1, dtype=np.int64)
        return T0_NS + ks[:, None] * self.tick_ns + self.read_phase_ns[None, :]

    def _readings(self, k: int) -> tuple[Readings, int]:
        c = self._chunk
        if c is None or not self._chunk_k0 <= k < self._chunk_k0 + len(c.t_s):
            n = max(1, round(self.settings.chunk_s / self.settings.tick_s))
            self._chunk = c = power_readings(self.world, self.lookup, self.world.scenario.emitters,
                                             self.reading_times_ns(k, k + n), self.settings.readings, self.rng)  # fmt: skip
            self._chunk_k0 = k
            self._rows = (c.power_dbm.tolist(), c.saturated.tolist(), c.present.tolist(), c.t_ns.tolist(),
                          None if c.subband_dbm is None else [[tuple(su) for su in row] for row in c.subband_dbm.tolist()])  # fmt: skip
        return c, k - self._chunk_k0

    # ------------------------------------------------------------------ running

    def run(self, until_s: float, on_tick: Callable[[int, Snapshot, list], bool | None] | None = None) -> int:
        """Advance until the evaluation at scenario time ``until_s`` (inclusive); ``on_tick(k, snapshot,
        transitions)`` after every evaluation, returning True stops early. Returns the ticks run."""
        t_wall = time.perf_counter()
        engine, su_ids = self.engine, self.su_ids
        fc, bw = self.settings.readings.center_hz, self.settings.readings.bandwidth_hz
        plan = self.settings.readings.band_plan
        plan_fp = "" if plan is None else plan.fingerprint
        k_end = math.floor(round(until_s * S) / self.tick_ns + 1e-9)  # evaluations at (k+1)·tick <= until
        ran = 0
        stats = self.stats
        while self.k < k_end:
            k = self.k
            _, row = self._readings(k)
            power, sat, present, tns = (r[row] for r in self._rows[:4])
            if self._rows[4] is None:
                ms = [Measurement(su_ids[j], k + 1, tns[j], fc, bw, power[j], saturated=sat[j])
                      for j in range(len(su_ids)) if present[j]]  # fmt: skip
            else:
                sub = self._rows[4][row]
                ms = [Measurement(su_ids[j], k + 1, tns[j], fc, bw, power[j], sub[j], saturated=sat[j], band_plan=plan_fp)
                      for j in range(len(su_ids)) if present[j]]  # fmt: skip
            stats["readings"] += len(ms)
            stats["dropped_readings"] += len(su_ids) - len(ms)
            stats["saturated_readings"] += sum(m.saturated for m in ms)
            engine.on_measurements(ms)
            t_ns = self.eval_ns(k)
            while self.next_ctx_ns <= t_ns:
                self._now_s = self.next_ctx_ns / S
                reports = self.feed.reports()
                engine.on_context(reports)
                stats["contexts"] += len(reports)
                self.next_ctx_ns += self.ctx_period_ns
            snap, transitions = engine.evaluate(t_ns)
            self.last_snapshot = snap
            if self.on_snapshot is not None:
                self.on_snapshot(snap)
            self.k = k + 1
            ran += 1
            if on_tick is not None and on_tick(k, snap, transitions):
                break
        stats["ticks"] += ran
        self.sim_wall_s += time.perf_counter() - t_wall
        return ran

    def event(self, snap: Snapshot, alarm, phase: str) -> Event:
        return Event((snap.t_ns - T0_NS) / S, alarm.kind, tuple(alarm.affected_sus), snap.score, snap.threshold,
                     snap.detector, tuple(s.su_id for s in snap.sus if s.stale), phase)  # fmt: skip

    # ------------------------------------------------------------------ learning

    def learn(self, learn_s: float) -> dict:
        """Run ``learn_s`` of normal operation from now, then learn normal statistics from it as the
        service does (:meth:`central.detection.live.LiveDetection.learn`): the residual rows of its
        snapshots and the twin's predictions (float32, as the service's buffer keeps them) with at least
        ``min_usable_sus`` finite residuals, then ``engine.learn(x, predicted_dbm=...)`` with the
        configured detector and false-alarm rate (point-source detectors such as ``bayes`` need the
        predictions; ED ignores them)."""
        rows: list[np.ndarray] = []
        preds: list[np.ndarray] = []
        spectral: list[tuple[np.ndarray, np.ndarray]] = []
        sat_raised = [0]

        def keep(k, snap, transitions):
            sat_raised[0] += sum(t.event == RAISED for t in transitions)
            if snap.reason == REALLOCATING:  # readings of other allocations than the prediction's: not normal data
                return
            r, sr = self.engine.last_residuals, self.engine.last_spectral
            rows.append(np.array(r.residual_db, dtype=np.float32))
            preds.append(np.array(r.predicted_dbm, dtype=np.float32))
            if sr is not None and sr.t_ns == r.t_ns:
                spectral.append((np.where(sr.usable[:, None], sr.measured_dbm, np.nan).astype(np.float32),
                                 sr.predicted_dbm.astype(np.float32), self.engine.allocation_groups(r.txs)))  # fmt: skip

        self.run(self.t_s + learn_s, keep)
        n = len(self.engine.su_ids)
        x = np.array(rows, dtype=np.float64).reshape(-1, n)
        usable = np.isfinite(x).sum(axis=1) >= self.engine.min_usable_sus
        pred = np.array(preds, dtype=np.float64).reshape(-1, n)[usable]
        det = self.engine.learn(x[usable], predicted_dbm=pred, provenance={"replay_learn_s": learn_s})
        out = {"n_snapshots": int(usable.sum()), "threshold": float(det.threshold), "detector": det.name,
               "saturation_alarms": sat_raised[0]}  # fmt: skip
        if spectral:  # the spectral test too, on the same snapshots, as the service learns it
            sd = self.engine.learn_spectral(np.array([m for m, _, _ in spectral], dtype=np.float64),
                                            np.array([p for _, p, _ in spectral], dtype=np.float64),
                                            np.array([g for _, _, g in spectral], dtype=np.int64))  # fmt: skip
            out.update(spectral_threshold=float(sd.threshold), spectral_snapshots=len(spectral))
        return out

    # ------------------------------------------------------------------ normal operation

    def run_normal(self, duration_s: float) -> tuple[list[Event], list[Event]]:
        """``duration_s`` of normal operation (no jammer): (residual alarms raised, saturation alarms
        raised). Every residual alarm here is a false alarm."""
        residual: list[Event] = []
        saturation: list[Event] = []

        def watch(k, snap, transitions):
            self.stats["normal_ticks"] += 1
            if any(s.stale for s in snap.sus):
                self.stats["stale_su_snapshots"] += 1
            for t in transitions:
                if t.event == RAISED:
                    (residual if t.alarm.kind == "residual" else saturation).append(self.event(snap, t.alarm, "normal"))

        self.run(self.t_s + duration_s, watch)
        return residual, saturation

    # ------------------------------------------------------------------ jammer trials

    def jammer_position(self) -> tuple[float, float]:
        """A uniform position where the world has room: a valid cell of its maps, not a fallback lookup."""
        maps = self.world.maps
        ex, ey = maps.extent_m
        c = maps.cell_size_m
        for _ in range(10_000):
            x, y = self.rng.uniform(0.0, ex), self.rng.uniform(0.0, ey)
            iy, ix = min(int(y / c), maps.valid.shape[0] - 1), min(int(x / c), maps.valid.shape[1] - 1)
            if maps.valid[iy, ix] and not self.lookup.lookup(np.array([[x, y]])).fallback[0]:
                return float(x), float(y)
        raise RuntimeError("no room for a jammer in the world's maps")

    def trial(self, power_dbm: float, on_s: float, gap_s: float, lead_in_max_s: float = 30.0,
              clear_max_s: float = 600.0, position_xy_m: tuple[float, float] | None = None,
              signal: dict | None = None) -> dict:  # fmt: skip
        """One jammer trial from now: wait a random lead-in (uniform in [1, lead_in_max_s] s; if a
        residual alarm is active at the planned switch-on, that counts as an invalidated start: wait
        until it clears and draw again), switch a fixed noise jammer on at a random position for
        ``on_s``, then off; wait ``gap_s`` and until the alarm has cleared (at most ``clear_max_s``).

        Returns ``ttd_s`` (first residual "raised" after switch-on − switch-on; None: a miss, no alarm
        within the on-period), the position, ``invalidated`` (starts postponed by an active alarm),
        ``raised_outside`` (residual alarms raised in the lead-in or after switch-off: false alarms
        outside the normal period), ``saturation`` (saturation alarms raised), ``stuck`` (the alarm
        did not clear within clear_max_s), ``located_error_m`` (distance from the jammer to the
        detecting alarm's suspected position; None without one)."""
        eng = self.engine
        out = {"power_dbm": power_dbm, "invalidated": 0, "raised_outside": 0, "saturation": 0, "raised_on": 0,
               "events": []}  # fmt: skip
        phase = ["lead-in"]
        pos = (math.nan, math.nan)
        t_on_ns = [0]
        first = [None]

        def watch(k, snap, transitions):
            for t in transitions:
                if t.event != RAISED:
                    continue
                if t.alarm.kind == "saturation":
                    out["saturation"] += 1
                    continue
                if phase[0] == "on":
                    out["raised_on"] += 1
                    if first[0] is None:
                        first[0] = (snap.t_ns - t_on_ns[0]) / S
                        p = t.alarm.suspected_position_m
                        out["located_error_m"] = None if p is None else float(math.dist(p[:2], pos[:2]))
                else:
                    out["raised_outside"] += 1
                    out["events"].append(self.event(snap, t.alarm, phase[0]))

        while True:  # lead-in
            start = self.t_s + float(self.rng.uniform(1.0, lead_in_max_s))
            self.run(start, watch)
            if eng.residual_alarms.active is None:
                break
            out["invalidated"] += 1
            self.run(self.t_s + clear_max_s, lambda k, s, tr: watch(k, s, tr) or eng.residual_alarms.active is None)
        pos = position_xy_m if position_xy_m is not None else self.jammer_position()
        out["located_error_m"] = None
        t_on = self.t_s
        t_on_ns[0] = T0_NS + self.k * self.tick_ns
        self.add_jammer(pos, power_dbm, t_on, t_on + on_s, **(signal or {}))
        phase[0] = "on"
        self.run(t_on + on_s, watch)
        phase[0] = "after"
        self.run(self.t_s + gap_s, watch)
        cleared_by = self.t_s + clear_max_s
        if eng.residual_alarms.active is not None:
            self.run(cleared_by, lambda k, s, tr: watch(k, s, tr) or eng.residual_alarms.active is None)
        out.update(ttd_s=first[0], position_m=pos, t_on_s=t_on, t_on_ns=t_on_ns[0],
                   stuck=eng.residual_alarms.active is not None)  # fmt: skip
        return out


# --------------------------------------------------------------------------------------------------
# Figures


def percentile_or_none(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile by nearest rank (the ceil(q/100 · N)-th smallest value), with misses as +inf:
    None when it falls on a miss or there are no values."""
    v = np.sort(np.asarray(list(values), dtype=float))
    if v.size == 0:
        return None
    p = float(v[max(math.ceil(q / 100 * v.size - 1e-9), 1) - 1])
    return None if not math.isfinite(p) else p


def ttd_figures(ttds: Sequence[float | None]) -> dict:
    """Pd, TTD p50/p95 over all trials (misses = +inf) and over detected trials (``_detected``)."""
    all_ = [math.inf if t is None else t for t in ttds]
    det = [t for t in ttds if t is not None]
    rnd = lambda x: None if x is None else round(x, 3)  # noqa: E731
    return {
        "trials": len(all_), "detected": len(det), "pd": round(len(det) / len(all_), 4) if all_ else None,
        "ttd_p50_s": rnd(percentile_or_none(all_, 50)), "ttd_p95_s": rnd(percentile_or_none(all_, 95)),
        "ttd_p50_s_detected": rnd(percentile_or_none(det, 50)), "ttd_p95_s_detected": rnd(percentile_or_none(det, 95)),
    }  # fmt: skip
