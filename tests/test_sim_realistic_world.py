"""The world is not the twin: unmodelled clutter, impairments of real readings, and the world file
that carries them (tests/test_central_sim.py traces a whole world through ``rftwin-sim make-world``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from central.twin.site import resolve_site
from contracts.gain_maps import GainMapFile
from node.sdr.base import SdrReadError
from sim.clutter import GAP_M, ClutterError, draw_clutter, with_clutter
from sim.impairments import Impairments
from sim.world import World, scenario_from_dict
from sim.world_builder import IN_MODEL, WorldRecipe, demo_scenario_toml, route_points_m
from tests.test_node_simworld import LEGIT_AND_JAMMER, Clock, measure_dbm, scenario, synthetic_maps, world_sdr

HALL_A = resolve_site("factory-hall-a-truth")


def demo_routes() -> list[tuple[float, ...]]:
    import tomllib

    return route_points_m(scenario_from_dict(tomllib.loads(demo_scenario_toml(HALL_A, 60.0, (36.0, 8.0)))))


# --------------------------------------------------------------------------------------------------
# Clutter


def footprint_distance_m(box, p) -> float:
    lo, hi = np.array(box.min_m[:2]), np.array(box.max_m[:2])
    return float(np.linalg.norm(np.maximum(np.maximum(lo - p[:2], np.asarray(p[:2]) - hi), 0.0)))


def test_clutter_stands_clear_of_the_routes_the_sus_the_surveyed_obstacles_and_itself():
    routes = demo_routes()
    n = WorldRecipe().clutter_count(HALL_A)
    assert n == 20  # 1.25 per 100 m² of a 40 m × 40 m hall
    clutter = draw_clutter(HALL_A, np.random.default_rng(7), n, routes, clearance_m=1.0)
    assert len(clutter) == n and len({b.name for b in clutter}) == n
    assert {b.material for b in clutter} <= {"wood", "chipboard", "metal", "concrete"}
    for i, b in enumerate(clutter):
        assert all(lo >= 0 and hi <= lim for lo, hi, lim in zip(b.min_m, b.max_m, HALL_A.hall_size_m))
        assert min(footprint_distance_m(b, p) for p in routes) >= 1.0
        assert min(footprint_distance_m(b, su.position_m) for su in HALL_A.sensing_units) >= 1.0
        for o in (*HALL_A.obstacles, *clutter[:i]):
            apart = any(b.min_m[k] >= o.max_m[k] + GAP_M or o.min_m[k] >= b.max_m[k] + GAP_M for k in (0, 1))
            assert apart, (b, o)


def test_clutter_is_drawn_per_seed_and_becomes_part_of_a_valid_site_with_its_own_hash():
    routes = demo_routes()
    a = draw_clutter(HALL_A, np.random.default_rng(7), 20, routes)
    assert draw_clutter(HALL_A, np.random.default_rng(7), 20, routes) == a
    assert draw_clutter(HALL_A, np.random.default_rng(8), 20, routes) != a
    world_site = with_clutter(HALL_A, a, "hall-a-world")
    assert len(world_site.obstacles) == len(HALL_A.obstacles) + 20 and world_site.name == "hall-a-world"
    assert world_site.materials["concrete"] == HALL_A.materials["concrete"]  # the world's true concrete
    assert world_site.materials["wood"].itu_type == "wood"
    assert world_site.content_hash() != HALL_A.content_hash()  # its own traced maps, never the twin's


def test_a_hall_without_room_for_the_clutter_says_how_much_fitted():
    with pytest.raises(ClutterError, match=r"only \d+ of 400 clutter objects fit"):
        draw_clutter(HALL_A, np.random.default_rng(0), 400, demo_routes(), max_tries=50)


# --------------------------------------------------------------------------------------------------
# Impairments


def test_drift_is_slow_bounded_and_differs_per_su_and_dropouts_take_their_share_of_time():
    imp = Impairments(drift_db=0.5, drift_period_s=1800.0, dropout_per_h=2.0, dropout_s=20.0, seed=3)
    t = np.arange(0.0, 3600.0, 10.0)
    a = np.array([imp.gain_drift_db("su01", x) for x in t])
    b = np.array([imp.gain_drift_db("su02", x) for x in t])
    assert np.abs(a).max() <= 0.5 and np.ptp(a) > 0.9  # a full cycle within the hour
    assert np.abs(np.diff(a)).max() < 0.02  # slow: < 0.02 dB per 10 s
    assert not np.allclose(a, b)  # each SU its own phase
    # 2 per hour of 20 s each: 1.1 % of the time; over 1000 h of slots, within a few per mille
    slots = [imp.dropped_out("su01", s * 20.0 + 1.0) for s in range(180_000)]
    assert np.mean(slots) == pytest.approx(2.0 * 20.0 / 3600.0, abs=0.002)
    assert imp.dropped_out("su01", 4321.0) == Impairments(**imp.to_dict()).dropped_out("su01", 4321.0)
    assert Impairments.from_dict(None) == Impairments() == IN_MODEL.impairments


@pytest.mark.parametrize("kw, why", [
    ({"reading_noise_db": -1.0}, "reading_noise_db must be finite and >= 0"),
    ({"drift_period_s": 0.0}, "drift_period_s must be finite and > 0"),
    ({"dropout_per_h": 100.0, "dropout_s": 60.0}, "more than half of the time"),
])  # fmt: skip
def test_impossible_impairments_are_refused(kw, why):
    with pytest.raises(ValueError, match=why):
        Impairments(**kw)
    with pytest.raises(ValueError, match="unknown impairment fields"):
        Impairments.from_dict({"fading": 1.0})


def impaired_world(tmp_path, imp: Impairments) -> World:
    maps = synthetic_maps(tmp_path)
    GainMapFile({**maps.meta, "impairments": imp.to_dict()}, maps.gain_db, maps.valid, maps.su_positions_m).save(
        tmp_path / "impaired.npz")  # fmt: skip
    return World(GainMapFile.load(tmp_path / "impaired.npz"), scenario(LEGIT_AND_JAMMER))


def test_the_world_file_carries_the_impairments_and_the_sdr_feels_them(tmp_path):
    clock = Clock()
    plain = world_sdr(World(synthetic_maps(tmp_path), scenario(LEGIT_AND_JAMMER)), "near", clock)
    noisy = world_sdr(impaired_world(tmp_path, Impairments(reading_noise_db=2.0, seed=1)), "near", clock)
    p = np.array([measure_dbm(plain)[0] for _ in range(40)])
    q = np.array([measure_dbm(noisy)[0] for _ in range(40)])
    assert p.std() < 0.2 and 1.2 < q.std() < 3.0  # 2 dB per reading on a signal 40 dB above the noise
    assert abs(q.mean() - p.mean()) < 1.5


def test_a_dropped_out_su_gives_no_reading_until_its_slot_ends(tmp_path):
    imp = Impairments(dropout_per_h=60.0, dropout_s=10.0, seed=5)  # a sixth of the time
    world = impaired_world(tmp_path, imp)
    out_at = next(t for t in np.arange(0.5, 3600.0, 10.0) if imp.dropped_out("near", t))
    back_at = next(t for t in np.arange(out_at, 3600.0, 10.0) if not imp.dropped_out("near", t))
    clock = Clock()
    sdr = world_sdr(world, "near", clock)
    clock.t_s = sdr.start_time_s + out_at
    with pytest.raises(SdrReadError, match="simulated dropout of near"):
        sdr.read(1024)
    clock.t_s = sdr.start_time_s + back_at
    assert math.isfinite(measure_dbm(sdr)[0])
