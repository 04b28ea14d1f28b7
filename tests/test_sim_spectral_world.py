"""The simulated world per sub-band: with a scheduler, a legitimate emitter is on air only in the
sub-bands it is allocated, a deceptive jammer in the ones of the transmitter it mimics, and the
node's DSP measures exactly that from the synthesised IQ; the context feed reports the same allocation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from contracts.band_plan import BandPlan
from node.calibration_table import CalibrationTable
from node.dsp import Band, BandPowerConfig, measure_band_power
from node.sdr.simulated import THERMAL_DBM_PER_HZ
from sim.context_feed import ContextFeed
from sim.world import ScenarioError, SimulatedWorldSdr, World
from tests.test_node_simworld import Clock, near_gain_db, scenario, synthetic_maps
from tests.test_node_simulated_sdr import RX

FS = 30.72e6
PLAN = BandPlan(3.7e9, 20e6, subbands=8)  # 51 PRBs, 18.36 MHz: inside the radio's usable 24.6 MHz
SCHEDULED = """
    [scenario]
    name = "scheduled"

    [band]
    center_hz = 3.7e9
    bandwidth_hz = 20e6
    subbands = 8

    [scheduler]
    seed = 3
    idle_probability = 0.2

    [[emitters]]
    id = "gnb"
    role = "legitimate"
    tx_power_dbm = 20.0
    position_m = [8.5, 6.5, 1.5]

    [[emitters]]
    id = "agv"
    role = "legitimate"
    tx_power_dbm = 20.0
    position_m = [6.5, 6.5, 1.5]
"""
MIMIC = """
    [[emitters]]
    id = "mimic"
    role = "jammer"
    tx_power_dbm = 10.0
    position_m = [1.5, 1.5, 1.5]
    waveform = "noise"
    follows = "gnb"
"""


def busy_slot(world: World, tx: str, min_subbands: int = 2) -> float:
    return next(t + 0.5 for t in range(200) if len(world.scheduler.subbands_at(t + 0.5)[tx]) >= min_subbands
                and len(world.scheduler.subbands_at(t + 0.5)[tx]) < PLAN.subbands)  # fmt: skip


def test_a_scheduled_emitter_is_received_in_its_allocated_sub_bands_at_its_spectral_density(tmp_path):
    world = World(synthetic_maps(tmp_path), scenario(SCHEDULED))
    t = busy_slot(world, "gnb")
    mine = world.scheduler.subbands_at(t)["gnb"]
    gnb = [e for e in world.emitters_at("near", t) if e.power_dbm < -70 + 100]  # both legitimate emitters
    lo = [PLAN.grid[b].low_hz - PLAN.center_hz for b in mine]
    got = [e for e in gnb if any(abs((e.offset_hz - e.bandwidth_hz / 2) - x) < 1 for x in lo)]
    covered = sorted(b for e in got for b in range(PLAN.subbands)
                     if e.offset_hz - e.bandwidth_hz / 2 - 1 <= PLAN.grid[b].low_hz - PLAN.center_hz < e.offset_hz + e.bandwidth_hz / 2 - 1)  # fmt: skip
    assert covered == sorted(mine)
    full_rx_dbm = 20.0 + near_gain_db(8.5, 6.5)
    total = 10 * math.log10(sum(10 ** (e.power_dbm / 10) for e in got))
    share = sum(PLAN.grid[b].width_hz for b in mine) / PLAN.occupied_hz
    assert total == pytest.approx(full_rx_dbm + 10 * math.log10(share), abs=1e-6)
    idle_t = next(t + 0.5 for t in range(200) if not world.scheduler.subbands_at(t + 0.5)["gnb"])
    assert all(e.offset_hz != 0 or e.bandwidth_hz != 10e6 for e in world.emitters_at("near", idle_t))
    assert len(world.emitters_at("near", idle_t)) == sum(1 for _ in _runs(world.scheduler.subbands_at(idle_t)["agv"]))


def _runs(ids):
    ids = sorted(ids)
    return [i for k, i in enumerate(ids) if k == 0 or ids[k - 1] != i - 1]


def test_the_nodes_dsp_sees_power_only_in_the_allocated_sub_bands(tmp_path):
    world = World(synthetic_maps(tmp_path), scenario(SCHEDULED + MIMIC))
    t = busy_slot(world, "gnb")
    alloc = world.scheduler.subbands_at(t)
    busy = set(alloc["gnb"]) | set(alloc["agv"])
    clock = Clock(1_700_000_000.0 + t)
    sdr = SimulatedWorldSdr(world, "near", seed=5, clock=clock, start_time_s=1_700_000_000.0, receiver=RX)
    sdr.tune(PLAN.center_hz, FS)
    sdr.set_gain(30.0)
    cfg = BandPowerConfig(FS, Band(0.0, PLAN.occupied_hz), tuple(Band(b.center_hz - PLAN.center_hz, b.width_hz) for b in PLAN.grid))
    buf = sdr.read(1 << 17)
    bp = measure_band_power(buf.samples, cfg)
    table = CalibrationTable.constant(-RX.dbm_to_dbfs_offset_db(buf.gain_db), buf.center_hz, buf.gain_db)
    sub = np.array([table.dbfs_to_dbm(p, buf.center_hz, buf.gain_db) for p in bp.subband_powers_dbfs])
    noise = THERMAL_DBM_PER_HZ + RX.noise_figure_db + 10 * np.log10([b.width_hz for b in PLAN.grid])
    used = np.array([b in busy for b in range(PLAN.subbands)])
    beside = np.array([not used[b] and (b > 0 and used[b - 1] or b < PLAN.subbands - 1 and used[b + 1])
                       for b in range(PLAN.subbands)])  # fmt: skip
    quiet = ~used & ~beside
    assert quiet.any() and (sub[quiet] - noise[quiet] < 3.0).all()  # idle sub-bands read the noise floor
    assert (sub[used] - noise[used] > 20.0).all()
    # An idle sub-band next to a busy one catches the Welch window's main lobe at their common edge
    # (Hann, 30 kHz bins): up to about 1 % of the neighbour's power, never near the neighbour itself.
    if beside.any():
        assert (sub[beside] < sub[used].min() - 10.0).all()
    mimic_in = [b for b in alloc["gnb"] if b not in alloc["agv"]]
    assert set(alloc["gnb"]) <= busy and mimic_in  # the mimic sits in gnb's sub-bands, nowhere else


def test_the_feed_reports_the_allocation_the_world_transmits(tmp_path):
    world = World(synthetic_maps(tmp_path), scenario(SCHEDULED))
    t0 = 1.8e9
    t = busy_slot(world, "gnb")
    feed = ContextFeed(world, t0, (10.0, 8.0), clock=lambda: t0 + t)
    reports = {r.tx_id: r for r in feed.reports()}
    assert tuple(b for b, _ in reports["gnb"].allocation) == world.scheduler.subbands_at(t)["gnb"]


@pytest.mark.parametrize("text, why", [
    (SCHEDULED.replace("[band]", "[bandx]"), "scheduler: needs the [band] plan"),
    (SCHEDULED + MIMIC.replace('follows = "gnb"', 'follows = "nobody"'), "'nobody' is not a legitimate emitter"),
    (SCHEDULED + MIMIC.replace('role = "jammer"', 'role = "legitimate"'), "only a jammer follows"),
    (SCHEDULED.replace("idle_probability = 0.2", "idle_probability = 1.0"), "idle_probability must be in"),
])  # fmt: skip
def test_a_scenario_that_cannot_schedule_is_refused_naming_why(text, why):
    with pytest.raises(ScenarioError, match=why.replace("[", r"\[").replace("]", r"\]")):
        scenario(text)


RANDOM_DUTY = """
    [[emitters]]
    id = "pulsed"
    role = "jammer"
    tx_power_dbm = 20.0
    position_m = [1.5, 1.5, 1.5]
    waveform = "noise"
    random_duty = 0.3
    random_slot_s = 0.1
    start_s = 10.0
"""


def test_a_randomly_duty_cycled_jammer_is_on_in_about_its_fraction_of_slots_the_same_in_every_process(tmp_path):
    a = scenario(SCHEDULED + RANDOM_DUTY).emitters[-1]
    b = scenario(SCHEDULED + RANDOM_DUTY).emitters[-1]
    on = [a.is_active(10.0 + 0.1 * k + 0.05) for k in range(4000)]
    assert np.mean(on) == pytest.approx(0.3, abs=0.03)
    assert on == [b.is_active(10.0 + 0.1 * k + 0.05) for k in range(4000)]  # no shared state, same pattern
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, on, 0])))[::2]
    assert runs.mean() == pytest.approx(1 / 0.7, rel=0.15)  # independent slots: geometric bursts
    assert not a.is_active(5.0)  # before start_s it is off whatever the draw
    world = World(synthetic_maps(tmp_path), scenario(SCHEDULED + RANDOM_DUTY))
    k_on = next(k for k in range(100) if a.on_in_slot(100 + k))
    k_off = next(k for k in range(100) if not a.on_in_slot(100 + k))
    waveforms = lambda t: [e.waveform for e in world.emitters_at("near", t)]  # noqa: E731
    assert "noise" in waveforms((100 + k_on) * 0.1 + 0.05) and "noise" not in waveforms((100 + k_off) * 0.1 + 0.05)


def test_random_duty_is_for_jammers_only():
    with pytest.raises(ScenarioError, match="only a jammer is duty-cycled at random"):
        scenario(SCHEDULED + RANDOM_DUTY.replace('role = "jammer"', 'role = "legitimate"'))
    with pytest.raises(ScenarioError, match="random_duty"):
        scenario(SCHEDULED + RANDOM_DUTY.replace("random_duty = 0.3", "random_duty = 0.0"))
