"""The simulated world: scenario files, emitters over time, true-map received powers, and the SDR that senses it."""

from __future__ import annotations

import math
import textwrap
import tomllib

import numpy as np
import pytest

from node.dsp import Band, BandPowerConfig, measure_band_power
from contracts.gain_maps import GAIN_FLOOR_DB, GainMapFile
from node.sdr.simulated import THERMAL_DBM_PER_HZ
from sim.world import ScenarioError, SimulatedWorldSdr, World, load_scenario, scenario_from_dict
from tests.test_node_simulated_sdr import CFG, FS, RX, expected_dbm, measure_dbm

# Synthetic world: 10 m x 8 m at 1 m cells, an obstacle over x 4..6, y 3..5, and two SUs whose gain is
# a plane in dB (bilinear interpolation reproduces it exactly). Far's gain is at the no-path floor for x < 2.
NX, NY = 10, 8


def near_gain_db(x, y):
    return -60.0 - 2.0 * x - 1.0 * y


def far_gain_db(x, y):
    return -80.0 + 1.0 * x + 0.5 * y


def synthetic_maps(tmp_path) -> GainMapFile:
    X, Y = np.meshgrid(np.arange(NX) + 0.5, np.arange(NY) + 0.5)
    valid = np.ones((NY, NX), bool)
    valid[3:5, 4:6] = False
    far = far_gain_db(X, Y)
    far[X < 2] = GAIN_FLOOR_DB
    g = np.stack([near_gain_db(X, Y), far]).astype(np.float32)
    g[:, ~valid] = np.nan
    meta = {"site_name": "synthetic", "su_ids": ["near", "far"], "cell_size_m": 1.0, "height_m": 1.5}
    GainMapFile(meta, g, valid, np.array([[1.0, 1.0, 1.5], [9.0, 7.0, 1.5]])).save(tmp_path / "world.npz")
    return GainMapFile.load(tmp_path / "world.npz")


def scenario(text: str, source="<test>"):
    return scenario_from_dict(tomllib.loads(textwrap.dedent(text)), source)


LEGIT_AND_JAMMER = """
    [scenario]
    name = "two"

    [[emitters]]
    id = "gnb"
    role = "legitimate"
    tx_power_dbm = 20.0
    position_m = [8.5, 6.5, 1.5]
    bandwidth_hz = 9e6

    [[emitters]]
    id = "jam"
    role = "jammer"
    tx_power_dbm = 20.0
    position_m = [1.5, 1.5, 1.5]
    waveform = "noise"
    bandwidth_hz = 9e6
    start_s = 30.0
"""

LOOP = """
    [[emitters]]
    id = "agv"
    role = "legitimate"
    tx_power_dbm = 10.0
    waypoints_m = [[1.0, 1.0, 1.5], [9.0, 1.0, 1.5], [9.0, 7.0, 1.5], [1.0, 7.0, 1.5]]
    speed_m_s = 2.0
    start_s = 5.0
    end_s = 100.0
"""


class Clock:
    def __init__(self, t_s: float = 1_700_000_000.0):
        self.t_s = t_s

    def __call__(self) -> float:
        return self.t_s


# --------------------------------------------------------------------------------------------------
# Scenario files


def test_a_scenario_file_parses_with_defaults(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(textwrap.dedent(LEGIT_AND_JAMMER))
    s = load_scenario(path)
    assert s.name == "two" and s.center_hz is None
    gnb, jam = s.emitters
    assert (gnb.id, gnb.role, gnb.tx_power_dbm, gnb.position_m) == ("gnb", "legitimate", 20.0, (8.5, 6.5, 1.5))
    assert (gnb.waveform, gnb.offset_hz, gnb.duty_cycle, gnb.start_s, gnb.end_s) == ("ofdm", 0.0, 1.0, 0.0, None)
    assert jam.role == "jammer" and jam.waveform == "noise" and jam.start_s == 30.0


@pytest.mark.parametrize(
    "entry, message",
    [
        ('role = "friend"', r"role: 'friend' is not one of legitimate, jammer"),
        ('waveform = "laser"', r"waveform: 'laser' is not one of ofdm"),
        ("duty_cycle = 0.0", r"duty_cycle: must be > 0"),
        ("start_s = 10.0\nend_s = 10.0", r"end_s: 10 is not after start_s 10"),
        ("waypoints_m = [[1, 1, 1.5], [2, 2, 1.5]]\nspeed_m_s = 1.0", r"position_m: give either position_m"),
        ("speed_m_s = 1.0", r"speed_m_s: applies to waypoints_m only"),
        ("tx_power_dbm_ = 3", r"tx_power_dbm_: unknown key"),
        ("bandwidth_hz = -1.0", r"bandwidth_hz: -1 is outside"),
    ],
)
def test_bad_emitter_entries_are_named(entry, message):
    good = {"id": "e", "role": "legitimate", "tx_power_dbm": 20.0, "position_m": [1, 1, 1.5]}
    with pytest.raises(ScenarioError, match=r"^<test>: emitters\[0\] \(e\)\." + message):
        scenario_from_dict({"emitters": [{**good, **tomllib.loads(entry)}]}, "<test>")


M = {"id": "m", "role": "jammer", "tx_power_dbm": 1.0}


@pytest.mark.parametrize(
    "doc, message",
    [
        ({}, r"emitters: expected at least one \[\[emitters\]\]"),
        ({"emitters": [{**M, "waypoints_m": [[1, 1, 1.5]], "speed_m_s": 1.0}]},
         r"emitters\[0\] \(m\)\.waypoints_m: expected a list of at least 2"),
        ({"emitters": [{**M, "waypoints_m": [[1, 1, 1.5], [1, 1]], "speed_m_s": 1.0}]},
         r"emitters\[0\] \(m\)\.waypoints_m\[1\]: expected 3 numbers"),
        ({"emitters": [{**M, "waypoints_m": [[1, 1, 1.5], [1, 1, 1.5]], "speed_m_s": 1.0}]},
         r"emitters\[0\] \(m\)\.waypoints_m: all waypoints coincide"),
        ({"emitters": [{**M, "waypoints_m": [[1, 1, 1.5], [2, 1, 1.5]]}]}, r"emitters\[0\] \(m\)\.speed_m_s: missing"),
        ({"emitters": [{"id": "m", "role": "jammer", "position_m": [1, 1, 1.5]}]},
         r"emitters\[0\] \(m\)\.tx_power_dbm: missing"),
        ({"scenario": {"centre_hz": 3.7e9}, "emitters": [{**M, "position_m": [1, 1, 1.5]}]},
         r"scenario\.centre_hz: unknown key"),
        (tomllib.loads(textwrap.dedent(LEGIT_AND_JAMMER.replace('"jam"', '"gnb"'))),
         r"emitters\[1\] \(gnb\)\.id: duplicate emitter id 'gnb'"),
    ],
)  # fmt: skip
def test_bad_scenarios_fail_with_the_entry_named(doc, message):
    with pytest.raises(ScenarioError, match=r"^<test>: " + message):
        scenario_from_dict(doc, "<test>")


def test_unreadable_scenario_files_fail_with_the_file_named(tmp_path):
    with pytest.raises(ScenarioError, match="nope.toml: cannot read"):
        load_scenario(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("[[emitters]\n")
    with pytest.raises(ScenarioError, match="bad.toml: not valid TOML"):
        load_scenario(tmp_path / "bad.toml")


def test_a_moving_emitter_travels_its_loop_at_speed_from_its_start():
    (agv,) = scenario(LOOP).emitters
    assert agv.loop_length_m == pytest.approx(28.0)
    assert agv.position_at(0.0) == (1.0, 1.0, 1.5)  # not started yet: waits at the first waypoint
    assert agv.position_at(5.0) == (1.0, 1.0, 1.5)
    np.testing.assert_allclose(agv.position_at(7.0), (5.0, 1.0, 1.5))  # 4 m along the first leg
    np.testing.assert_allclose(agv.position_at(5.0 + 5.5), (9.0, 4.0, 1.5))  # 11 m: 3 m up the second
    np.testing.assert_allclose(agv.position_at(5.0 + 13.0), (1.0, 3.0, 1.5))  # 26 m: on the way home
    np.testing.assert_allclose(agv.position_at(5.0 + 14.0 + 2.0), (5.0, 1.0, 1.5))  # round again
    # Deterministic: every process computes the same position for the same time.
    assert agv.position_at(42.123) == scenario(LOOP).emitters[0].position_at(42.123)


def test_emitters_are_active_over_start_inclusive_end_exclusive():
    (agv,) = scenario(LOOP).emitters
    assert [agv.is_active(t) for t in (4.99, 5.0, 99.99, 100.0)] == [False, True, True, False]
    s = scenario(LEGIT_AND_JAMMER)
    assert [e.id for e in s.active_at(29.9)] == ["gnb"]
    assert [e.id for e in s.active_at(30.0)] == ["gnb", "jam"]
    assert [e.id for e in s.active_at(1e7)] == ["gnb", "jam"]  # no end_s: on for good


# --------------------------------------------------------------------------------------------------
# World: received power from the true maps


def test_received_power_is_tx_power_plus_the_true_map_gain(tmp_path):
    world = World(synthetic_maps(tmp_path), scenario(LEGIT_AND_JAMMER))
    (gnb,) = world.emitters_at("near", 10.0)
    assert gnb.power_dbm == pytest.approx(20.0 + near_gain_db(8.5, 6.5), abs=1e-4)
    assert (gnb.waveform, gnb.bandwidth_hz) == ("ofdm", 9e6)
    powers = {e.waveform: e.power_dbm for e in world.emitters_at("near", 30.0)}
    assert powers["noise"] == pytest.approx(20.0 + near_gain_db(1.5, 1.5), abs=1e-4)


def test_a_moving_emitter_is_received_where_it_is_now(tmp_path):
    world = World(synthetic_maps(tmp_path), scenario(LOOP))
    for t in (6.0, 9.3, 17.0):
        x, y, _ = scenario(LOOP).emitters[0].position_at(t)
        (e,) = world.emitters_at("near", t)
        assert e.power_dbm == pytest.approx(10.0 + near_gain_db(x, y), abs=1e-4)
    assert world.emitters_at("near", 100.0) == []


def test_no_path_emitters_are_not_received(tmp_path):
    world = World(synthetic_maps(tmp_path), scenario(LEGIT_AND_JAMMER))
    assert [e.waveform for e in world.emitters_at("far", 40.0)] == ["ofdm"]  # the jammer at x 1.5 has no path


def test_legitimate_at_reports_true_positions_and_powers_of_legitimate_emitters_only(tmp_path):
    world = World(synthetic_maps(tmp_path), scenario(LEGIT_AND_JAMMER + LOOP))
    at = world.legitimate_at(40.0)
    assert [(s.id, s.tx_power_dbm) for s in at] == [("gnb", 20.0), ("agv", 10.0)]
    assert at[0].position_m == (8.5, 6.5, 1.5)
    assert at[1].position_m == scenario(LOOP).emitters[0].position_at(40.0)
    assert [s.id for s in world.active_at(40.0)] == ["gnb", "jam", "agv"]


@pytest.mark.parametrize(
    "where, message",
    [
        ("position_m = [10.5, 1.0, 1.5]", r"'e': position \[10.5, 1.0, 1.5\] is outside the world's maps"),
        ("position_m = [5.0, 4.0, 1.5]", r"'e': position \[5.0, 4.0, 1.5\] is inside an obstacle"),
        ("position_m = [1.0, 1.0, 3.0]", r"'e': position \[1.0, 1.0, 3.0\] is off the maps' plane"),
        ("waypoints_m = [[1, 4, 1.5], [9, 4, 1.5]]\nspeed_m_s = 1.0", r"'e': position \[4.\d+, 4.0, 1.5\] is inside"),
    ],
)
def test_a_scenario_that_does_not_fit_the_world_is_refused(tmp_path, where, message):
    s = scenario(f'[[emitters]]\nid = "e"\nrole = "jammer"\ntx_power_dbm = 1.0\n{where}\n')
    with pytest.raises(ScenarioError, match=message):
        World(synthetic_maps(tmp_path), s)


def test_unknown_sensing_units_are_refused(tmp_path):
    world = World(synthetic_maps(tmp_path), scenario(LEGIT_AND_JAMMER))
    with pytest.raises(ValueError, match="unknown sensing unit 'su99'"):
        world.emitters_at("su99", 0.0)
    with pytest.raises(ValueError, match="unknown sensing unit 'su99'"):
        SimulatedWorldSdr(world, "su99")


def test_gain_map_files_are_checked(tmp_path):
    maps = synthetic_maps(tmp_path)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="other.npz: not a gain-map file"):
        GainMapFile.load(tmp_path / "other.npz")
    GainMapFile({**maps.meta, "su_ids": ["a"]}, maps.gain_db, maps.valid, maps.su_positions_m).save(tmp_path / "b.npz")
    with pytest.raises(ValueError, match="b.npz: inconsistent gain-map file: 1 SUs"):
        GainMapFile.load(tmp_path / "b.npz")


# --------------------------------------------------------------------------------------------------
# The SDR backend: IQ from the world, through the DSP


def world_sdr(world, su_id, clock, gain_db=20.0, **kw) -> SimulatedWorldSdr:
    sdr = SimulatedWorldSdr(world, su_id, receiver=RX, seed=7, clock=clock, start_time_s=clock.t_s, **kw)
    sdr.tune(3.7e9, FS)
    sdr.set_gain(gain_db)
    return sdr


def test_the_world_sdr_is_an_sdr_backend_that_returns_12_bit_iq_on_the_world_clock(tmp_path):
    clock = Clock()
    sdr = world_sdr(World(synthetic_maps(tmp_path), scenario(LEGIT_AND_JAMMER)), "near", clock)
    clock.t_s += 12.5
    buf = sdr.read(4096)
    assert buf.samples.dtype == np.complex64 and buf.samples.size == 4096
    codes = buf.samples.view(np.float32) * 2048
    np.testing.assert_array_equal(codes, np.rint(codes))
    assert buf.t_ns == round(clock.t_s * 1e9) and sdr.scenario_time_s() == 12.5
    sdr.close()
    with pytest.raises(RuntimeError, match="closed"):
        sdr.read(10)


def test_a_jammer_switching_on_at_30_s_raises_the_reading_at_the_su_near_it(tmp_path):
    clock = Clock()
    world = World(synthetic_maps(tmp_path), scenario(LEGIT_AND_JAMMER))
    near, far = world_sdr(world, "near", clock), world_sdr(world, "far", clock)
    readings = {}
    for t in (10.0, 29.0, 31.0, 60.0):
        clock.t_s = near.start_time_s + t
        readings[t] = (measure_dbm(near)[0], measure_dbm(far)[0])
    legit_near = 20.0 + near_gain_db(8.5, 6.5)
    both_near = 10 * math.log10(10 ** (legit_near / 10) + 10 ** ((20.0 + near_gain_db(1.5, 1.5)) / 10))
    for t in (10.0, 29.0):
        assert readings[t][0] == pytest.approx(expected_dbm(legit_near, 20.0), abs=0.5)
    for t in (31.0, 60.0):
        assert readings[t][0] == pytest.approx(expected_dbm(both_near, 20.0), abs=0.5)
        assert readings[t][0] > readings[10.0][0] + 15.0
        assert readings[t][1] == pytest.approx(readings[10.0][1], abs=0.3)  # no path to far: unchanged


def test_an_unknown_gain_offset_shifts_the_reading_by_that_much(tmp_path):
    clock = Clock()
    world = World(synthetic_maps(tmp_path), scenario(LEGIT_AND_JAMMER))
    plain = measure_dbm(world_sdr(world, "near", clock))[0]
    lossy = measure_dbm(world_sdr(world, "near", clock, gain_offset_db=-3.0))[0]
    hot = measure_dbm(world_sdr(world, "near", clock, gain_offset_db=2.5))[0]
    assert lossy - plain == pytest.approx(-3.0, abs=0.15)
    assert hot - plain == pytest.approx(2.5, abs=0.15)


def test_emitters_sit_where_the_tuning_puts_them(tmp_path):
    text = LEGIT_AND_JAMMER.replace('name = "two"', 'name = "two"\ncenter_hz = 3.7e9').replace("9e6", "6e6")
    clock = Clock()
    world = World(synthetic_maps(tmp_path), scenario(text))
    sdr = world_sdr(world, "near", clock)
    cfg = BandPowerConfig(sample_rate_hz=FS, band=Band(0, 20e6), subbands=(Band(-6e6, 8e6), Band(6e6, 8e6)))
    sdr.tune(3.706e9, FS)  # the emitters' band now lies at -6 MHz in baseband
    bp = measure_band_power(sdr.read(2**16).samples, cfg)
    signal, empty = (p - RX.dbm_to_dbfs_offset_db(20.0) for p in bp.subband_powers_dbfs)
    assert signal == pytest.approx(expected_dbm(20.0 + near_gain_db(8.5, 6.5), 20.0, 8e6), abs=0.5)
    assert empty < signal - 30
    sdr.tune(3.75e9, FS)  # 50 MHz away: outside the sampled span, filtered out before the ADC
    got, _ = measure_dbm(sdr)
    assert got == pytest.approx(expected_dbm(-300.0, 20.0), abs=0.2)


# --------------------------------------------------------------------------------------------------
# Against the twin's own maps (ray-traced tiny hall): the world reads what the predictor reads

TINY_UE = """
    [[emitters]]
    id = "ue"
    role = "legitimate"
    tx_power_dbm = 0.0
    position_m = [2.0, 1.2, 1.5]
    bandwidth_hz = 9e6
"""
TINY = TINY_UE + """
    [[emitters]]
    id = "robot"
    role = "legitimate"
    tx_power_dbm = 5.0
    waypoints_m = [[1.0, 1.0, 1.5], [7.0, 1.0, 1.5], [7.0, 5.0, 1.5], [1.0, 5.0, 1.5]]
    speed_m_s = 0.7
    offset_hz = 5e6
    bandwidth_hz = 2e6
"""


@pytest.mark.raytracing
def test_world_power_matches_the_predictor_lookup_on_the_same_maps(tiny_twin):
    world = World(GainMapFile.load(tiny_twin.cache_path), scenario(TINY))
    assert world.su_ids == tiny_twin.maps.su_ids
    for t in (0.0, 3.3, 11.0, 25.0):
        pos = [e.position_at(t) for e in world.scenario.emitters]
        gain_db = tiny_twin.predictor.lookup(pos).gain_db
        for j, su in enumerate(world.su_ids):
            got = [e.power_dbm for e in world.emitters_at(su, t)]
            np.testing.assert_allclose(got, [0.0, 5.0] + gain_db[:, j], atol=1e-9)


@pytest.mark.raytracing
def test_end_to_end_a_strong_emitter_reads_its_true_power_in_dbm(tiny_twin):
    world = World(GainMapFile.load(tiny_twin.cache_path), scenario(TINY_UE))
    clock = Clock()
    sdr = world_sdr(world, "low", clock)
    clock.t_s += 1.0
    true_dbm = 0.0 + float(tiny_twin.predictor.lookup([2.0, 1.2, 1.5]).gain_db[0])
    assert true_dbm > -80.0  # strong: tens of dB over the in-band thermal floor
    got, bp = measure_dbm(sdr)
    assert not bp.saturated
    assert got == pytest.approx(expected_dbm(true_dbm, 20.0), abs=0.5)
    assert abs(got - (THERMAL_DBM_PER_HZ + RX.noise_figure_db + 10 * math.log10(CFG.band.bandwidth_hz))) > 20
