"""Predictor arithmetic on hand-made gain maps: interpolation, linear power sums, noise floor, invalid cells."""

from __future__ import annotations

import numpy as np
import pytest

from central.twin.gain_maps import GainMaps
from central.twin.grid import PlaneGrid
from central.twin.predictor import Predictor

HALL = (4.0, 3.0, 3.0)  # 4 x 3 cells of 1 m


def make_predictor(gain_db, valid=None, noise_dbm=-100.0):
    gain_db = np.asarray(gain_db, dtype=np.float32)
    n_su, ny, nx = gain_db.shape
    valid = np.ones((ny, nx), bool) if valid is None else valid
    g = gain_db.copy()
    g[:, ~valid] = np.nan
    maps = GainMaps("k", "t", [f"su{j}" for j in range(n_su)], np.zeros((n_su, 3)),
                    PlaneGrid(1.0, nx, ny, 1.5, valid), g, ["paths"] * n_su)  # fmt: skip
    return Predictor(maps, noise_dbm, HALL)


def plane_db(a=-60.0, bx=-2.0, by=-1.0):
    """A gain map linear in dB over the cell centres: bilinear interpolation must reproduce it exactly."""
    xs, ys = np.arange(4) + 0.5, np.arange(3) + 0.5
    X, Y = np.meshgrid(xs, ys)
    return a + bx * X + by * Y


def test_interpolation_reproduces_a_plane_exactly():
    p = make_predictor([plane_db(), plane_db(-70, 1.0, 0.5)])
    pts = np.array([[0.5, 0.5], [1.2, 2.1], [3.49, 0.77], [2.0, 1.0]])
    got = p.lookup(pts).gain_db
    np.testing.assert_allclose(got[:, 0], -60 - 2 * pts[:, 0] - pts[:, 1], atol=1e-4)
    np.testing.assert_allclose(got[:, 1], -70 + pts[:, 0] + 0.5 * pts[:, 1], atol=1e-4)


def test_positions_beyond_the_outer_cell_centres_take_the_edge_value():
    p = make_predictor([plane_db()])
    got = p.lookup([[0.1, 0.2], [3.9, 2.95]]).gain_db[:, 0]
    np.testing.assert_allclose(got, [-60 - 1 - 0.5, -60 - 7 - 2.5], atol=1e-4)


def test_single_transmitter_power_adds_gain_in_db_plus_noise_in_mw():
    p = make_predictor(np.full((2, 3, 4), -80.0))
    got = p.predict([[1.0, 1.0, 1.5]], [20.0])
    expected = 10 * np.log10(10 ** (-60 / 10) + 10 ** (-100 / 10))
    np.testing.assert_allclose(got, [expected, expected], atol=1e-9)


def test_two_equal_transmitters_add_3_db_in_the_linear_domain():
    p = make_predictor(np.full((1, 3, 4), -80.0), noise_dbm=-200.0)
    one = p.predict([[1.0, 1.0]], [10.0])
    two = p.predict([[1.0, 1.0], [3.0, 2.0]], [10.0, 10.0])
    np.testing.assert_allclose(two - one, 10 * np.log10(2), atol=1e-9)


def test_no_transmitter_reads_the_noise_floor():
    p = make_predictor(np.full((3, 3, 4), -80.0), noise_dbm=-97.5)
    got = p.predict([[1.0, 1.0], [2.0, 2.0]], [-np.inf, -np.inf])
    np.testing.assert_allclose(got, -97.5)


def test_batch_equals_single_snapshots():
    rng = np.random.default_rng(1)
    p = make_predictor(rng.uniform(-90, -50, (5, 3, 4)))
    pos = rng.uniform([0, 0], [4, 3], (20, 3, 2))
    pw = rng.uniform(0, 23, (20, 3))
    pw[3, 1] = -np.inf
    batch = p.predict(pos, pw)
    assert batch.shape == (20, 5)
    for b in range(20):
        np.testing.assert_allclose(batch[b], p.predict(pos[b], pw[b]), atol=1e-9)


def test_invalid_cells_never_contribute():
    valid = np.ones((3, 4), bool)
    valid[1, 2] = False
    g = np.full((1, 3, 4), -70.0)
    g[0, 1, 2] = 0.0  # would dominate if it leaked into the interpolation
    p = make_predictor(g, valid)
    got = p.lookup([[2.3, 1.4], [2.5, 1.5]])
    np.testing.assert_allclose(got.gain_db[:, 0], -70.0, atol=1e-5)
    assert not got.fallback[0]


def test_deep_inside_an_obstacle_falls_back_to_the_nearest_valid_cell():
    valid = np.ones((3, 4), bool)
    valid[:, 1:3] = False  # a wall of invalid cells two wide
    g = plane_db()[None]
    p = make_predictor(g, valid)
    got = p.lookup([[1.6, 1.5]])
    assert got.fallback[0]
    assert got.gain_db[0, 0] in (g[0, 1, 0], g[0, 1, 3])


@pytest.mark.parametrize("pos", [[[-0.1, 1.0]], [[1.0, 3.2]], [[np.nan, 1.0]]])
def test_positions_outside_the_hall_are_rejected(pos):
    p = make_predictor(np.full((1, 3, 4), -80.0))
    with pytest.raises(ValueError, match="outside the hall"):
        p.predict(pos, [20.0])


def test_mismatched_shapes_and_bad_powers_are_rejected():
    p = make_predictor(np.full((1, 3, 4), -80.0))
    with pytest.raises(ValueError, match="disagree"):
        p.predict([[1.0, 1.0]], [20.0, 20.0])
    with pytest.raises(ValueError, match="finite dBm"):
        p.predict([[1.0, 1.0]], [np.nan])


def test_cell_gain_matrix_lists_only_valid_cells():
    valid = np.ones((3, 4), bool)
    valid[0, 0] = False
    p = make_predictor(np.stack([plane_db(), plane_db(-50)]), valid)
    cg = p.cell_gains()
    assert cg.positions_m.shape == (11, 3) and cg.gain_lin.shape == (11, 2)
    assert not any(np.allclose(c[:2], [0.5, 0.5]) for c in cg.positions_m)
    x, y = cg.positions_m[:, 0], cg.positions_m[:, 1]
    np.testing.assert_allclose(cg.gain_db[:, 1], -50 - 2 * x - y, atol=1e-4)
    np.testing.assert_allclose(cg.gain_lin, 10 ** (cg.gain_db / 10))


# ------------------------------------------------------------------------- the spectral twin


def test_sub_band_prediction_puts_power_only_where_it_is_allocated_and_sums_to_the_wideband_one():
    from central.live import TxContext
    from contracts.band_plan import BandPlan

    plan = BandPlan(3.7e9)
    widths = [b.width_hz for b in plan.grid]
    p = make_predictor([plane_db(), plane_db(-70, 1.0, 0.5)], noise_dbm=-95.0)
    agv = TxContext("agv-1", 0, (1.2, 2.1, 1.5), 20.0, allocation=((5, 17.0), (6, 17.0)))
    ue = TxContext("ue-2", 0, (3.0, 0.5, 1.5), 10.0)  # no allocation reported: spread over the PRB grid
    txs = [agv, ue]
    powers = np.array([t.subband_powers_dbm(plan) for t in txs])
    spec = p.predict_subbands([t.position_m for t in txs], powers, widths, plan.occupied_hz, leakage_db=-np.inf)
    assert spec.shape == (2, 16)
    wide = p.predict([t.position_m for t in txs], [10 * np.log10(10**1.7 * 2), 10.0])
    np.testing.assert_allclose(10 * np.log10((10 ** (spec / 10)).sum(axis=1)), wide, atol=1e-6)
    g = p.lookup(np.array([agv.position_m])).gain_db[0]
    noise_5 = 10 ** (-9.5) * widths[5] / plan.occupied_hz
    ue_5 = 10 ** ((10 + p.lookup(np.array([ue.position_m])).gain_db[0] + 10 * np.log10(widths[5] / plan.occupied_hz)) / 10)
    np.testing.assert_allclose(spec[:, 5], 10 * np.log10(10 ** ((17 + g) / 10) + ue_5 + noise_5), atol=1e-9)
    idle = p.predict_subbands(np.zeros((0, 3)), np.zeros((0, 16)), widths, plan.occupied_hz)
    np.testing.assert_allclose(10 * np.log10((10 ** (idle / 10)).sum(axis=1)), [-95.0, -95.0], atol=1e-9)
    # the node's estimator leaks into the neighbours of the AGV's sub-bands 5–6, and the twin says so
    leaky = p.predict_subbands([agv.position_m], powers[:1], widths, plan.occupied_hz)
    alone = p.predict_subbands([agv.position_m], powers[:1], widths, plan.occupied_hz, leakage_db=-np.inf)
    noise = 10 * np.log10(10 ** (-9.5) * np.array(widths) / plan.occupied_hz)
    np.testing.assert_allclose(leaky[:, [5, 6]], alone[:, [5, 6]], atol=0.02)
    np.testing.assert_allclose(10 * np.log10(10 ** (leaky[:, 4] / 10) - 10 ** (noise[4] / 10)), 17 + g - 25.0, atol=0.01)
    np.testing.assert_allclose(leaky[:, 9], alone[:, 9], atol=1e-9)


def test_an_idle_transmitter_adds_nothing_to_the_wideband_prediction():
    from central.detection.assembly import SnapshotAssembler
    from central.live import TxContext

    p = make_predictor([plane_db(), plane_db(-70, 1.0, 0.5)])
    asm = SnapshotAssembler(p)
    busy = TxContext("agv-1", 0, (1.2, 2.1, 1.5), 20.0)
    idle = TxContext("agv-2", 0, (3.0, 0.5, 1.5), 20.0, allocation=())
    np.testing.assert_allclose(asm.predict([busy, idle]), asm.predict([busy]))
