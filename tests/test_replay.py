"""The replay harness (sim/replay.py, bench/replay.py): power-domain readings from a world, fed through the
real DetectionEngine on a simulated clock.

A tiny synthetic world throughout (numpy gain maps in tmp_path, no ray tracing, no ~/.cache): 16 m x 12 m
at 1 m cells, an obstacle, six SUs with free-space-like gains, one of them without a path to the west
strip where no AGV goes; the twin's predictor is built on the same maps without that strip (the world
differs from it there, by its per-SU offsets and by its impairments only).
"""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest

from central.config import DetectionConfig
from central.detection.live import engine_config
from central.twin.gain_maps import GainMaps
from central.twin.grid import PlaneGrid
from central.twin.predictor import Predictor
from contracts.gain_maps import GAIN_FLOOR_DB, GainMapFile
from node.calibration_table import CalibrationTable
from node.dsp import measure_band_power
from sim.impairments import Impairments
from sim.replay import (T0_NS, ReadingModel, Replay, ReplaySettings, drift_db, dropped_out, power_readings,
                        received_dbm, ttd_figures)  # fmt: skip
from sim.world import SimulatedWorldSdr, World, scenario_from_dict

NX, NY, H = 16, 12, 1.5
SU_XY = [(0.8, 0.8), (15.2, 0.8), (0.8, 11.2), (15.2, 11.2), (8.0, 0.5), (8.0, 11.5)]
NO_PATH_SU, NO_PATH_X_M = 3, 1.0  # in the world, su3 has no path from x < 1 m (the AGVs keep to x >= 2 m)
SCENARIO = {
    "scenario": {"name": "tiny replay"},
    "emitters": [
        {"id": "agv-a", "role": "legitimate", "tx_power_dbm": 20.0, "bandwidth_hz": 18e6, "speed_m_s": 1.0,
         "waypoints_m": [[2.0, 2.0, H], [14.0, 2.0, H], [14.0, 10.0, H], [2.0, 10.0, H]]},
        {"id": "agv-b", "role": "legitimate", "tx_power_dbm": 20.0, "bandwidth_hz": 18e6, "speed_m_s": 1.0,
         "waypoints_m": [[4.0, 3.5, H], [12.0, 3.5, H], [12.0, 8.5, H], [4.0, 8.5, H]]},
        {"id": "scripted", "role": "jammer", "tx_power_dbm": 20.0, "position_m": [8.0, 2.0, H], "start_s": 5.0},
    ],
}  # fmt: skip


def gains_db(no_path: bool = True) -> np.ndarray:
    X, Y = np.meshgrid(np.arange(NX) + 0.5, np.arange(NY) + 0.5)
    g = np.stack([-40.0 - 20.0 * np.log10(np.maximum(np.hypot(X - x, Y - y), 0.5)) for x, y in SU_XY])
    if no_path:
        g[NO_PATH_SU][X < NO_PATH_X_M] = GAIN_FLOOR_DB
    return g


def valid_mask() -> np.ndarray:
    v = np.ones((NY, NX), bool)
    v[5:7, 7:9] = False  # an obstacle in the middle (x 7..9, y 5..7)
    return v


def tiny_world(tmp_path, imp: Impairments = Impairments(), offsets=(0.5, -0.7, 0.2, 1.1, -0.3, 0.0)) -> World:
    g = gains_db().astype(np.float32)
    valid = valid_mask()
    g[:, ~valid] = np.nan
    su_ids = [f"su{j}" for j in range(len(SU_XY))]
    meta = {"site_name": "tiny-replay", "su_ids": su_ids, "cell_size_m": 1.0, "height_m": H,
            "su_gain_offsets_db": dict(zip(su_ids, offsets)), "impairments": imp.to_dict()}  # fmt: skip
    path = tmp_path / "world.npz"
    GainMapFile(meta, g, valid, np.array([[x, y, 2.0] for x, y in SU_XY])).save(path)
    return World(GainMapFile.load(path), scenario_from_dict(SCENARIO))


def tiny_predictor() -> Predictor:
    g = gains_db(no_path=False).astype(np.float32)
    valid = valid_mask()
    g[:, ~valid] = np.nan
    grid = PlaneGrid(1.0, NX, NY, H, valid)
    maps = GainMaps("tiny", "tiny-replay", [f"su{j}" for j in range(len(SU_XY))],
                    np.array([[x, y, 2.0] for x, y in SU_XY]), grid, g, ["paths"] * len(SU_XY))  # fmt: skip
    return Predictor(maps, -100.0, (float(NX), float(NY), 4.0))


IMPAIRED = Impairments(reading_noise_db=1.0, drift_db=0.5, drift_period_s=600.0, seed=3)
PRODUCT = engine_config(SimpleNamespace(detection=DetectionConfig()))  # the shipped [detection] defaults (its
# detector is overridden where a test depends on it: the product's default may change)


# ---------------------------------------------------------------------------------------- the world's readings


def test_the_vectorised_gains_agree_with_the_worlds_own_per_reading_path(tmp_path):
    rep = Replay(tiny_world(tmp_path), tiny_predictor(), PRODUCT, seed=4)
    assert [e.id for e in rep.world.scenario.emitters] == ["agv-a", "agv-b"]  # the scenario's jammer dropped
    assert all(e.start_s < 0 for e in rep.world.scenario.emitters)  # a per-seed phase on the loops
    rep.add_jammer((0.3, 6.0), 10.0, 12.0, 30.0)  # a fixed emitter, on for part of the ticks, no path to su3
    ks = np.arange(0, 600, 7)
    t_s = (np.concatenate([rep.reading_times_ns(k, k + 1) for k in ks]) - T0_NS) * 1e-9
    rx = received_dbm(rep.lookup, rep.world.scenario.emitters, t_s)
    left_out = 0
    for i in range(len(ks)):
        for j, su in enumerate(rep.su_ids):
            want = sorted(e.power_dbm for e in rep.world.emitters_at(su, float(t_s[i, j])))
            got = sorted(rx[np.isfinite(rx[:, i, j]), i, j])
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
            left_out += len(rep.world.scenario.active_at(float(t_s[i, j]))) - len(want)
    assert left_out > 0  # the no-path rule was exercised (the jammer west of x = 1 m, at su3)
    assert np.isfinite(rx[2]).any() and not np.isfinite(rx[2]).all()  # the jammer was on for some ticks only


def test_readings_in_the_power_domain_match_the_iq_chain(tmp_path):
    """Without impairments, a power-domain reading is what the simulated SDR + node DSP measure (the
    same world, the demo's 0 dB gain and 16384 samples) to within the IQ estimate's own scatter; weak
    signals sit on the 12-bit ADC's quantisation floor in both."""
    world = tiny_world(tmp_path)
    model = ReadingModel()
    lookup = world.maps.gain_lookup()
    rng = np.random.default_rng(0)
    for t_s in (1.0, 7.3, 20.0):
        t_ns = np.full((1, len(world.su_ids)), T0_NS + round(t_s * 1e9), dtype=np.int64)
        r = power_readings(world, lookup, world.scenario.emitters, t_ns, model, rng)
        for j, su in enumerate(world.su_ids):
            sdr = SimulatedWorldSdr(world, su, seed=j, clock=lambda: T0_NS / 1e9 + t_s, start_time_s=T0_NS / 1e9)
            sdr.tune(model.center_hz, model.sample_rate_hz)
            sdr.set_gain(model.gain_db)
            buf = sdr.read(model.samples)
            bp = measure_band_power(buf.samples, model.dsp)
            iq_dbm = CalibrationTable.constant(model.full_scale_dbm(), buf.center_hz, buf.gain_db).dbfs_to_dbm(
                bp.power_dbfs, buf.center_hz, buf.gain_db)  # fmt: skip
            assert r.power_dbm[0, j] == pytest.approx(iq_dbm, abs=0.3), (t_s, su)
            assert bool(r.saturated[0, j]) == bp.saturated
    floor = 10 * math.log10(model.band_noise_mw())
    assert floor == pytest.approx(-85.5, abs=0.2)  # quantisation (−85.9) over thermal (−96.0) at 0 dB gain


def test_saturation_threshold_is_where_gaussian_samples_clip():
    m = ReadingModel()
    assert 10 * math.log10(m.saturation_mw()) == pytest.approx(-19.16, abs=0.05)  # −9.16 dBFS at 0 dB gain
    assert 10 * math.log10(dataclasses.replace(m, gain_db=20.0).saturation_mw()) == pytest.approx(-39.16, abs=0.05)


def test_drift_and_dropouts_are_the_worlds_own_functions(tmp_path):
    imp = Impairments(drift_db=0.5, drift_period_s=600.0, dropout_per_h=300.0, dropout_s=2.0, seed=5)
    world = tiny_world(tmp_path, imp)
    t = np.random.default_rng(1).uniform(0.0, 5000.0, (300, len(world.su_ids)))
    want_d = [[imp.gain_drift_db(su, x) for su, x in zip(world.su_ids, row)] for row in t]
    np.testing.assert_allclose(drift_db(world, t), want_d, atol=1e-5)
    want_o = [[imp.dropped_out(su, x) for su, x in zip(world.su_ids, row)] for row in t]
    assert (dropped_out(world, t) == np.array(want_o)).all() and np.array(want_o).any()


# ---------------------------------------------------------------------------------------- the engine


@pytest.mark.parametrize("detector", ["ed", "bayes"])
def test_normal_operation_raises_few_false_alarms_and_the_counters_add_up(tmp_path, detector):
    rep = Replay(tiny_world(tmp_path, IMPAIRED), tiny_predictor(), dataclasses.replace(PRODUCT, detector=detector),
                 seed=1)  # fmt: skip
    learned = rep.learn(60.0)
    assert learned["detector"].startswith(detector) and learned["n_snapshots"] >= 590  # the first snapshot: no reading
    residual, saturation = rep.run_normal(240.0)
    assert rep.k == 3000 and rep.t_s == pytest.approx(300.0)
    assert len(residual) <= 2 and not saturation
    assert all(e.kind == "residual" and e.phase == "normal" and 60.0 < e.t_s <= 300.0 for e in residual)
    n = len(rep.su_ids)
    s = rep.stats
    assert s["ticks"] == rep.engine.stats["evaluations"] == 3000 and s["normal_ticks"] == 2400
    assert s["readings"] + s["dropped_readings"] == 3000 * n and s["dropped_readings"] == 0
    assert rep.engine.assembler.stats["measurements"] == s["readings"]  # every record taken, in order
    assert s["contexts"] == 2 * 601  # two AGVs, every 0.5 s from t = 0 to 300 s inclusive
    assert rep.engine.stats["anomalous"] < 0.1 * 2400  # a few times target_far: 60 s do not see the drift
    snap = rep.last_snapshot
    assert snap.t_ns == T0_NS + 300 * 10**9 and len(snap.txs) == 2 and not any(su.stale for su in snap.sus)


@pytest.mark.parametrize("detector", ["ed", "bayes", "fusion"])  # bayes, fusion: fitted with predictions
def test_a_strong_jammer_near_an_su_is_detected_within_its_on_period(tmp_path, detector):
    rep = Replay(tiny_world(tmp_path, IMPAIRED), tiny_predictor(), dataclasses.replace(PRODUCT, detector=detector),
                 seed=2)  # fmt: skip
    assert rep.learn(60.0)["detector"].startswith(detector)
    r = rep.trial(20.0, on_s=10.0, gap_s=5.0, lead_in_max_s=3.0, position_xy_m=(2.5, 10.5))  # 1.7 m from su2
    # the product's CUSUM raises once ⌈threshold / (z − drift)⌉ snapshots have piled up: a few for a strong jammer
    assert r["ttd_s"] is not None and 0.1 <= r["ttd_s"] < 2.0 and r["raised_on"] == 1
    assert r["invalidated"] == 0 and not r["stuck"] and r["saturation"] == 0
    assert r["located_error_m"] is not None and r["located_error_m"] < 3.0
    assert rep.engine.residual_alarms.active is None  # cleared after the jammer went off
    assert r["t_on_s"] + 10.0 + 5.0 <= rep.t_s
    # a jammer far too weak to see is a miss, and a miss is no time at all
    r = rep.trial(-60.0, on_s=5.0, gap_s=1.0, lead_in_max_s=2.0, position_xy_m=(8.0, 9.5))
    assert r["ttd_s"] is None and r["raised_on"] == 0 and r["located_error_m"] is None


def test_dropouts_make_sus_stale_in_the_engines_snapshot(tmp_path):
    imp = dataclasses.replace(IMPAIRED, dropout_per_h=360.0, dropout_s=2.0)  # a fifth of the 2 s slots
    world = tiny_world(tmp_path, imp)
    su = "su1"
    slot = next(s for s in range(5, 500) if imp.dropped_out(su, (s + 0.5) * 2.0)
                and not imp.dropped_out(su, (s - 0.5) * 2.0) and not imp.dropped_out(su, (s + 1.5) * 2.0))
    start_s, end_s = slot * 2.0, slot * 2.0 + 2.0
    rep = Replay(world, tiny_predictor(), PRODUCT, seed=3)
    j = rep.su_ids.index(su)

    rep.run(start_s - 0.1)
    assert not rep.last_snapshot.sus[j].stale
    seen = []  # (evaluation time, su1 stale, age of su1's latest reading) over its dropout slot
    rep.run(end_s - 0.05, lambda k, snap, tr: seen.append(((snap.t_ns - T0_NS) / 1e9, snap.sus[j].stale,
                                                           float(rep.engine.last_residuals.age_s[j]))))  # fmt: skip
    for t, stale, age_s in seen:
        if t >= start_s + 0.1:
            assert t - age_s < start_s  # no reading from su1 during its dropout slot
        assert stale == (age_s > PRODUCT.stale_s + 1e-9), (t, age_s)  # stale once its last reading is > 1 s old
        if t > start_s + PRODUCT.stale_s + 0.1:
            assert stale
    assert seen[-1][1] and rep.last_snapshot.sus[j].measured_dbm is None
    rep.run(end_s + 0.5)
    assert not rep.last_snapshot.sus[j].stale  # back with the next slot
    assert rep.stats["dropped_readings"] >= 20


def test_ttd_percentiles_count_misses_as_infinitely_late():
    f = ttd_figures([0.2, 0.3, None, 0.5])
    assert f["pd"] == 0.75 and f["ttd_p50_s"] == 0.3 and f["ttd_p95_s"] is None
    assert f["ttd_p95_s_detected"] == 0.5 and f["ttd_p50_s_detected"] == 0.3
    assert ttd_figures([None, None])["ttd_p50_s"] is None and ttd_figures([None])["pd"] == 0.0


def test_settings_travel_to_the_readings(tmp_path):
    rep = Replay(tiny_world(tmp_path), tiny_predictor(), PRODUCT,
                 ReplaySettings(readings=ReadingModel(gain_db=40.0)), seed=0)  # fmt: skip
    rep.run(1.0)
    assert rep.stats["saturated_readings"] > 0  # full scale at −50 dBm: the AGVs clip the nearby SUs


# ---------------------------------------------------------------------------------------- per sub-band


def test_sub_band_readings_match_the_iq_chain_with_the_scheduler_and_a_narrowband_jammer(tmp_path):
    """With a band plan, the power-domain readings per sub-band are what a node with [band.plan]
    measures in IQ: the AGVs only in the sub-bands the scheduler gives them, a narrowband jammer in
    its own; leakage and scatter as the node's Welch estimate."""
    from contracts.band_plan import BandPlan
    from node.dsp import Band, BandPowerConfig

    plan = BandPlan(3.7e9, 100e6, subbands=16)
    b = plan.grid[5]
    doc = {**SCENARIO, "band": plan.to_dict(), "scheduler": {"seed": 3},
           "emitters": SCENARIO["emitters"][:2] + [
               {"id": "narrow", "role": "jammer", "tx_power_dbm": 0.0, "waveform": "noise", "position_m": [8.0, 2.0, H],
                "offset_hz": b.center_hz - plan.center_hz, "bandwidth_hz": b.width_hz}]}  # fmt: skip
    world = tiny_world(tmp_path)
    world = World(world.maps, scenario_from_dict(doc))
    model = ReadingModel.for_plan(plan)
    dsp = BandPowerConfig(model.sample_rate_hz, Band(0.0, plan.occupied_hz),
                          tuple(Band(s.center_hz - plan.center_hz, s.width_hz) for s in plan.grid), band_plan=plan.fingerprint)  # fmt: skip
    rng = np.random.default_rng(0)
    for t_s in (1.5, 4.5):
        t_ns = np.full((1, len(world.su_ids)), T0_NS + round(t_s * 1e9), dtype=np.int64)
        r = power_readings(world, world.maps.gain_lookup(), world.scenario.emitters, t_ns, model, rng)
        busy = {s for bands in world.scheduler.subbands_at(t_s).values() for s in bands}
        for j, su in enumerate(world.su_ids[:3]):
            sdr = SimulatedWorldSdr(world, su, seed=j, clock=lambda: T0_NS / 1e9 + t_s, start_time_s=T0_NS / 1e9)
            sdr.tune(model.center_hz, model.sample_rate_hz)
            sdr.set_gain(model.gain_db)
            buf = sdr.read(model.samples)
            bp = measure_band_power(buf.samples, dsp)
            cal = CalibrationTable.constant(model.full_scale_dbm(), buf.center_hz, buf.gain_db)
            iq = np.array([cal.dbfs_to_dbm(p, buf.center_hz, buf.gain_db) for p in bp.subband_powers_dbfs])
            strong = iq > iq.min() + 10  # busy sub-bands and the jammer's: the two must agree there
            np.testing.assert_allclose(r.subband_dbm[0, j][strong], iq[strong], atol=1.0)
            near = busy | {n for s in busy | {5} for n in (s - 1, s + 1)}  # leakage into the neighbours
            assert strong[5] and set(np.flatnonzero(strong)) <= near
            assert r.power_dbm[0, j] == pytest.approx(10 * np.log10((10 ** (r.subband_dbm[0, j] / 10)).sum()))


def test_the_replay_learns_the_spectral_test_and_names_a_narrowband_jammer(tmp_path):
    """Through the real engine on the simulated clock: learned on normal operation with the scheduler,
    a 10 dBm jammer in one sub-band raises a residual alarm that says which sub-band to avoid."""
    from contracts.band_plan import BandPlan

    plan = BandPlan(3.7e9, 100e6, subbands=16)
    doc = {**SCENARIO, "band": plan.to_dict(), "scheduler": {"seed": 3}}
    world = World(tiny_world(tmp_path).maps, scenario_from_dict(doc))
    rep = Replay(world, tiny_predictor(), dataclasses.replace(PRODUCT, detector="ed"),
                 ReplaySettings(readings=ReadingModel.for_plan(plan)), seed=1)  # fmt: skip
    learned = rep.learn(120.0)
    assert learned["spectral_snapshots"] >= 1000 and learned["spectral_threshold"] > 0
    b = plan.grid[9]
    out = rep.trial(10.0, 20.0, 10.0, position_xy_m=(13.0, 9.0),
                    signal={"offset_hz": b.center_hz - plan.center_hz, "bandwidth_hz": b.width_hz})  # fmt: skip
    assert out["ttd_s"] is not None and out["ttd_s"] < 5.0
    assert out["raised_outside"] == 0
