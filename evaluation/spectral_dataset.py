"""Spectral detection datasets: per-sub-band snapshots of a physical world that is not the twin.

One *realisation* is one snapshot: ``n_legit`` legitimate transmitters uniform over the world's
transmitter plane (20 dBm over the full PRB grid, at constant spectral density: a transmitter's EIRP in
sub-band b is its full-band EIRP times b's share of the grid), each given sub-bands by the simulated
scheduler (the caller's, e.g. :class:`sim.scheduler.Scheduler`, one slot per realisation: load 20–90 %, idle gaps), and,
with probability ``jammer_prob``, a jammer of one :class:`JammerSpec` type.

- **Measured** (what a node reports per sub-band; the world's side): the world's gain maps (PT: true
  materials, clutter, diffraction, diffuse reflection) at the true positions; model error on each
  legitimate transmitter–SU link (``error="link"``: one N(0, σ) dB draw per link, the same in all of
  its sub-bands) or per SU (``error="common"``: one draw per SU for all its sub-bands, a calibration
  error); a receiver noise floor per SU that differs from the twin's by N(0, ``nf_spread_db``) dB,
  drawn once for the hardware (``nf_seed``: every draw has the same nodes); the DSP's leakage of
  ``leakage_db`` of each sub-band's power into its neighbours (the Welch PSD of the node, measured:
  ~1 %); and the power estimator's scatter (relative standard deviation
  1/sqrt(samples × width / sample rate), linear power).
- **Predicted** (the DT's side): the twin's prediction per sub-band from the scheduler's allocations at
  the transmitters' positions with a localisation error (radial N(0, 0.37 m)); it knows no jammer.

Jammer types (``JAMMERS``): wideband noise, narrowband noise in one random sub-band, narrowband inside a
sub-band a legitimate transmitter uses now (the stealthy case), a single tone, partial-band (4
consecutive sub-bands), a sweep (in one reading it straddles two neighbouring sub-bands), duty-cycled
at random (on in ``duty`` of the snapshots; the label stays "installed"), and deceptive (follows one
legitimate transmitter's allocation, at its own spectral density, from elsewhere: off when that one idles).

**Episodes** (``episode_len`` > 1): consecutive realisations share the transmitters', the jammer's
positions and the model error, and the scheduler moves on one slot every ``snapshots_per_slot``
snapshots; a sweep advances one sub-band per snapshot. Needed where the class shows only over time
(sweeping, deceptive, duty-cycled).

Everything comes from one ``numpy.random.default_rng(seed)`` in a fixed order; σ only scales the unit
normal draws (common random numbers), so :meth:`SpectralDataset.measured_dbm` gives any σ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from central.twin.positions import sample_positions
from contracts.band_plan import SUBBAND_LEAKAGE_DB, BandPlan, neighbour_sum
from evaluation.dataset import perturb_positions


@dataclass(frozen=True)
class JammerSpec:
    key: str  # the benchmark's name, e.g. "narrow10"
    kind: str  # wide | narrow | narrow_busy | tone | partial | sweep | deceptive
    power_dbm: float  # EIRP: over its sub-bands (narrow, tone, partial, sweep) or over the full grid (wide, deceptive)
    duty: float = 1.0  # fraction of snapshots on, at random
    expected_class: str = ""  # what characterisation should call it

    @property
    def truth_class(self) -> str:
        return self.expected_class or {"wide": "wideband", "narrow": "narrowband", "narrow_busy": "narrowband",
                                       "tone": "narrowband", "partial": "partial-band", "sweep": "sweeping",
                                       "deceptive": "deceptive"}[self.kind]  # fmt: skip


JAMMERS = (
    JammerSpec("wide20", "wide", 20.0),
    JammerSpec("narrow10", "narrow", 10.0),
    JammerSpec("narrow0busy", "narrow_busy", 0.0),
    JammerSpec("duty30", "wide", 20.0, duty=0.3),
    JammerSpec("deceptive10", "deceptive", 10.0),
    JammerSpec("tone10", "tone", 10.0),
    JammerSpec("partial10", "partial", 10.0),
    JammerSpec("sweep10", "sweep", 10.0),
)
PARTIAL_SUBBANDS = 4


@dataclass(frozen=True)
class ReceiverSpec:
    samples: int = 16384  # per reading
    sample_rate_hz: float = 122.88e6  # a 100 MHz carrier in one tuning
    leakage_db: float = SUBBAND_LEAKAGE_DB  # of a sub-band's power into each neighbour (the node's Welch PSD)
    nf_spread_db: float = 1.0  # per-SU noise-floor difference the twin does not know ...
    nf_seed: int = 0  # ... drawn once for the hardware: the same in every draw (train, validation, test)


@dataclass
class SpectralDataset:
    plan: BandPlan
    jammer: JammerSpec | None
    installed: np.ndarray  # (N,) bool: a jammer is in this realisation
    on: np.ndarray  # (N,) bool: it transmits in this snapshot
    jammer_position_m: np.ndarray  # (N, 3), NaN without a jammer
    jammer_subband_eirp_dbm: np.ndarray  # (N, K) its EIRP per sub-band (−inf where it sends nothing)
    legit_mw: np.ndarray  # (N, T, n, K) received legitimate power per TX, before model error
    jam_mw: np.ndarray  # (N, n, K) received jammer power
    noise_mw: np.ndarray  # (n, K) the world's receiver noise per SU and sub-band
    z_link: np.ndarray  # (N, T, n) unit normals of the per-link model error
    z_su: np.ndarray  # (N, n) unit normals of the per-SU error
    scatter: np.ndarray  # (N, n, K) unit normals of the power estimator
    predicted_dbm: np.ndarray  # (N, n, K) the DT's prediction
    allocations: list  # per realisation: {tx id: tuple of sub-bands}
    tx_ids: tuple[str, ...]
    episode: np.ndarray  # (N,) episode index
    receiver: ReceiverSpec = field(default_factory=ReceiverSpec)

    @property
    def n(self) -> int:
        return int(self.installed.shape[0])

    def measured_dbm(self, sigma_db: float, error: str = "link") -> np.ndarray:
        """What the nodes report (N, n, K) at model error σ, per link or common to an SU's sub-bands."""
        if error not in ("link", "common"):
            raise ValueError(f"error must be 'link' or 'common', got {error!r}")
        if error == "link":
            legit = (self.legit_mw * np.power(10.0, sigma_db * self.z_link / 10)[..., None]).sum(axis=1)
            air = legit + self.jam_mw
        else:
            air = (self.legit_mw.sum(axis=1) + self.jam_mw) * np.power(10.0, sigma_db * self.z_su / 10)[..., None]
        rx = air + self.noise_mw[None]
        leak = 10 ** (self.receiver.leakage_db / 10)
        rx = rx + leak * neighbour_sum(rx)
        widths = np.array([b.width_hz for b in self.plan.grid])
        rel_sd = 1.0 / np.sqrt(self.receiver.samples * widths / self.receiver.sample_rate_hz)
        return 10 * np.log10(np.maximum(rx * (1 + rel_sd * self.scatter), 1e-30))

    @property
    def groups(self) -> np.ndarray:
        """(N, K) the index of the legitimate transmitter each sub-band is allocated to, −1 where idle."""
        g = np.full((self.n, self.plan.subbands), -1, dtype=np.int64)
        for i, alloc in enumerate(self.allocations):
            for t, tx in enumerate(self.tx_ids):
                g[i, list(alloc[tx])] = t
        return g

    @property
    def jammer_subbands(self) -> list[tuple[int, ...]]:
        """Per realisation, the sub-bands the jammer sends in (() when off or absent)."""
        return [tuple(int(b) for b in np.flatnonzero(np.isfinite(r))) for r in self.jammer_subband_eirp_dbm]


def _jammer_subband_eirp(spec: JammerSpec, plan: BandPlan, alloc: dict, first_alloc: dict, followed: str,
                         pick: float, sweep_pos: float) -> np.ndarray:
    """The jammer's EIRP per sub-band in one snapshot. ``pick`` in [0, 1) (one per episode) places a static
    emitter: its sub-band (narrow, tone: anywhere; narrow_busy: among those busy in the episode's first
    snapshot) or its first sub-band (partial)."""
    k, shares = plan.subbands, np.array(plan.shares_db)
    out = np.full(k, -np.inf)
    if spec.kind == "wide":
        out[:] = spec.power_dbm + shares
    elif spec.kind in ("narrow", "tone"):
        out[int(pick * k)] = spec.power_dbm
    elif spec.kind == "narrow_busy":
        busy = sorted({b for bands in first_alloc.values() for b in bands})
        out[busy[int(pick * len(busy))] if busy else int(pick * k)] = spec.power_dbm
    elif spec.kind == "partial":
        lo = int(pick * (k - PARTIAL_SUBBANDS + 1))
        w = np.array([plan.grid[b].width_hz for b in range(lo, lo + PARTIAL_SUBBANDS)])
        out[lo : lo + PARTIAL_SUBBANDS] = spec.power_dbm + 10 * np.log10(w / w.sum())
    elif spec.kind == "sweep":  # straddles sub-bands ⌊pos⌋ and ⌊pos⌋ + 1 (mod K) within one reading
        b0, frac = int(math.floor(sweep_pos)) % k, sweep_pos - math.floor(sweep_pos)
        out[b0] = spec.power_dbm + 10 * math.log10(max(1 - frac, 1e-3))
        out[(b0 + 1) % k] = spec.power_dbm + 10 * math.log10(max(frac, 1e-3))
    elif spec.kind == "deceptive":
        for b in alloc[followed]:
            out[b] = spec.power_dbm + shares[b]
    else:
        raise ValueError(f"unknown jammer kind {spec.kind!r}")
    return out


def generate_spectral_dataset(
    twin,
    world,
    plan: BandPlan,
    n: int,
    seed: int = 0,
    *,
    jammer: JammerSpec | None = None,
    jammer_prob: float = 0.5,
    n_legit: int = 3,
    tx_power_dbm: float = 20.0,
    loc_error_std_m: float = 0.37,
    episode_len: int = 1,
    snapshots_per_slot: int = 10,
    receiver: ReceiverSpec = ReceiverSpec(),
    scheduler=None,
) -> SpectralDataset:
    """``n`` snapshots (``n`` // ``episode_len`` episodes). ``twin``: the DT (a :class:`central.twin.Twin`);
    ``world``: the twin whose maps play the physical world (same SUs). ``scheduler(plan, tx_ids)``: makes
    the allocator (an object with ``subbands_at(t_s)`` and ``settings.period_s``, e.g.
    ``lambda plan, ids: sim.scheduler.Scheduler(plan, ids, SchedulerSettings(seed=seed))``; evaluation
    does not import the simulation, so the caller passes it)."""
    if scheduler is None:
        raise ValueError("scheduler: pass a factory of the allocator (sim.scheduler.Scheduler), see the docstring")
    if world.site.su_positions_m != twin.site.su_positions_m:
        raise ValueError("world and twin have other SUs")
    if n % episode_len:
        raise ValueError(f"n ({n}) must be a multiple of episode_len ({episode_len})")
    rng = np.random.default_rng(seed)
    n_ep, n_su, k = n // episode_len, len(twin.site.sensing_units), plan.subbands
    tx_ids = tuple(f"tx-{i + 1}" for i in range(n_legit))
    sched = scheduler(plan, tx_ids)
    rep = lambda a: np.repeat(a, episode_len, axis=0)  # noqa: E731  (per episode → per snapshot)
    # Fixed draw order: positions, jammer flags and positions, localisation error, model errors (the noise
    # floors are the hardware's, from their own seed).
    tx = rep(sample_positions(world.site, n_ep * n_legit, rng).reshape(n_ep, n_legit, 3))
    installed = rep(rng.random(n_ep) < jammer_prob) if jammer is not None else np.zeros(n, dtype=bool)
    jam_pos = rep(sample_positions(world.site, n_ep, rng))
    tx_est = rep(perturb_positions(twin.site, tx[::episode_len], loc_error_std_m, rng))
    z_link = rep(rng.standard_normal((n_ep, n_legit, n_su)))
    z_su = rep(rng.standard_normal((n_ep, n_su)))
    nf_db = np.random.default_rng(receiver.nf_seed).normal(0.0, receiver.nf_spread_db, n_su)  # the nodes' own
    scatter = rng.standard_normal((n, n_su, k))
    on = installed & (rng.random(n) < jammer.duty) if jammer is not None and jammer.duty < 1 else installed.copy()
    followed = [tx_ids[i] for i in rng.integers(n_legit, size=n_ep)]
    sweep_start = rng.uniform(0, k, n_ep)
    pick = rng.random(n_ep)

    step = np.arange(n) % episode_len
    slots = (np.arange(n) // episode_len) * 1000 + step // snapshots_per_slot  # a new slot per episode
    allocations = [sched.subbands_at((s + 0.5) * sched.settings.period_s) for s in slots]
    shares = np.array(plan.shares_db)
    p_tx = np.full((n, n_legit, k), -np.inf)
    for i, alloc in enumerate(allocations):
        for t, tid in enumerate(tx_ids):
            for b in alloc[tid]:
                p_tx[i, t, b] = tx_power_dbm + shares[b]
    g_world = world.predictor.lookup(tx.reshape(-1, 3)).gain_db.reshape(n, n_legit, n_su)
    legit_mw = np.power(10.0, (p_tx[:, :, None, :] + g_world[..., None]) / 10)  # (N, T, n, K)

    jam_eirp = np.full((n, k), -np.inf)
    if jammer is not None:
        for i in np.flatnonzero(on):
            e = i // episode_len
            jam_eirp[i] = _jammer_subband_eirp(jammer, plan, allocations[i], allocations[e * episode_len],
                                               followed[e], pick[e], sweep_start[e] + step[i])  # fmt: skip
    g_jam = world.predictor.lookup(jam_pos).gain_db  # (N, n)
    jam_mw = np.power(10.0, (jam_eirp[:, None, :] + g_jam[..., None]) / 10)
    widths = np.array([b.width_hz for b in plan.grid])
    noise_mw = 10 ** (world.predictor.noise_floor_dbm / 10) * widths[None, :] / plan.occupied_hz * np.power(10.0, nf_db / 10)[:, None]

    widths_hz, hall = widths, np.array(twin.site.hall_size_m[:2])
    pred = np.empty((n, n_su, k))
    for i in range(n):
        pred[i] = twin.predictor.predict_subbands(np.clip(tx_est[i], 0, [*hall, np.inf]), p_tx[i], widths_hz,
                                                  plan.occupied_hz)  # fmt: skip
    jam_pos = np.where(installed[:, None], jam_pos, np.nan)
    return SpectralDataset(plan, jammer, installed, on, jam_pos, jam_eirp, legit_mw, jam_mw, noise_mw, z_link, z_su,
                           scatter, pred, allocations, tx_ids, np.arange(n) // episode_len, receiver)  # fmt: skip
