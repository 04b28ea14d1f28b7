"""Issue 5 evaluation harness: dataset generation on the tiny twin, and the paper's CV protocol."""

from __future__ import annotations

import numpy as np
import pytest

from central.twin.positions import free_mask
from evaluation.dataset import generate_dataset, load_dataset
from evaluation.protocol import auc_score, cv_folds, evaluate, evaluate_arrays, pd_at_far, roc_curve


@pytest.fixture(scope="module")
def tiny_ds(tiny_twin):
    return generate_dataset(tiny_twin, 64, seed=7)


def test_dataset_shapes_and_ground_truth(tiny_twin, tiny_ds):
    ds, site = tiny_ds, tiny_twin.site
    n, n_su = 64, len(site.sensing_units)
    assert ds.tx_positions_m.shape == ds.tx_est_positions_m.shape == (n, 3, 3)
    assert ds.pt_dbm.shape == ds.dt_dbm.shape == ds.eps_unit.shape == (n, n_su)
    assert ds.jammer.dtype == bool and 0 < ds.jammer.sum() < n
    assert np.isnan(ds.jammer_position_m[~ds.jammer]).all()
    assert np.isfinite(ds.jammer_position_m[ds.jammer]).all()
    h = site.tx_plane.height_m
    for pos in (ds.tx_positions_m.reshape(-1, 3), ds.jammer_position_m[ds.jammer]):
        assert np.all(pos[:, 2] == h)
        assert free_mask(site, pos[:, :2], h).all()  # true positions are outside obstacles
        assert all(site.obstacle_at(tuple(p)) is None for p in pos)
    L, W, _ = site.hall_size_m
    est = ds.tx_est_positions_m
    assert (
        est[..., 0].min() >= 0
        and est[..., 0].max() <= L
        and est[..., 1].min() >= 0
        and est[..., 1].max() <= W
    )
    err = np.linalg.norm(est[..., :2] - ds.tx_positions_m[..., :2], axis=-1)
    assert 0 < np.median(err) < 1.5  # |N(0, 0.37)| has median 0.25 m; clipping only shrinks it
    # PT is the twin's prediction at the true positions, jammer included; DT at the erroneous ones.
    j = np.flatnonzero(ds.jammer)[0]
    pos = np.vstack([ds.tx_positions_m[j], ds.jammer_position_m[j]])
    np.testing.assert_allclose(ds.pt_dbm[j], tiny_twin.predictor.predict(pos, np.full(4, 20.0)))
    np.testing.assert_allclose(
        ds.dt_dbm[j], tiny_twin.predictor.predict(ds.tx_est_positions_m[j], np.full(3, 20.0))
    )
    np.testing.assert_allclose(ds.delta_db(3.0), ds.pt_dbm - ds.dt_dbm + 3.0 * ds.eps_unit)


def test_dataset_seed_determinism_and_roundtrip(tiny_twin, tiny_ds, tmp_path):
    again = generate_dataset(tiny_twin, 64, seed=7)
    other = generate_dataset(tiny_twin, 64, seed=8)
    for name in ("tx_positions_m", "tx_est_positions_m", "jammer", "pt_dbm", "dt_dbm", "eps_unit"):
        np.testing.assert_array_equal(getattr(again, name), getattr(tiny_ds, name))
    assert not np.array_equal(other.tx_positions_m, tiny_ds.tx_positions_m)
    path = tiny_ds.save(tmp_path / "ds.npz")
    back = load_dataset(path)
    assert back.seed == 7 and back.site == tiny_twin.site.name and back.sigmas_db == (0.0, 3.0, 6.0)
    np.testing.assert_array_equal(back.jammer, tiny_ds.jammer)
    np.testing.assert_array_equal(back.jammer_position_m, tiny_ds.jammer_position_m)
    np.testing.assert_array_equal(back.pt_dbm, tiny_ds.pt_dbm)
    with np.load(path, allow_pickle=False) as z:
        for s in (0, 3, 6):
            np.testing.assert_allclose(z[f"delta_sigma{s}"], tiny_ds.delta_db(s))


def test_no_error_no_jammer_gives_zero_residual(tiny_twin):
    ds = generate_dataset(tiny_twin, 32, seed=1, loc_error_std_m=0.0, jammer_prob=0.0)
    assert not ds.jammer.any()
    np.testing.assert_allclose(ds.delta_db(0.0), 0.0, atol=1e-9)
    # with a jammer every time, PT ≥ DT at every SU (an extra emitter only adds power)
    jam = generate_dataset(tiny_twin, 32, seed=1, loc_error_std_m=0.0, jammer_prob=1.0)
    assert jam.jammer.all() and (jam.delta_db(0.0) > 0).all()


def test_unseen_jammer_types_keep_the_scenario_draws(tiny_twin, tiny_ds, tmp_path):
    """A duty-cycled jammer transmits in a fraction of the windows (label: installed); a jammer on
    another twin's maps adds its power there. Neither changes the draws of the paper's scenario."""
    duty = generate_dataset(tiny_twin, 64, seed=7, jammer_duty=0.3)
    for name in ("tx_positions_m", "jammer", "eps_unit", "dt_dbm"):
        np.testing.assert_array_equal(getattr(duty, name), getattr(tiny_ds, name))
    assert (duty.jammer_on <= duty.jammer).all() and 0 < duty.jammer_on.sum() < duty.jammer.sum()
    np.testing.assert_array_equal(tiny_ds.jammer_on, tiny_ds.jammer)  # default: always on
    on, off = duty.jammer_on, duty.jammer & ~duty.jammer_on
    np.testing.assert_allclose(duty.pt_dbm[on], tiny_ds.pt_dbm[on])
    j = np.flatnonzero(off)[0]  # installed but silent: PT is the legitimate transmitters alone
    np.testing.assert_allclose(
        duty.pt_dbm[j], tiny_twin.predictor.predict(duty.tx_positions_m[j], np.full(3, 20.0))
    )
    back = load_dataset(duty.save(tmp_path / "duty.npz"))
    np.testing.assert_array_equal(back.jammer_on, duty.jammer_on)
    # the jammer's power through another twin's maps: with the same twin it is the same sum
    same = generate_dataset(tiny_twin, 64, seed=7, jammer_twin=tiny_twin)
    np.testing.assert_allclose(same.pt_dbm, tiny_ds.pt_dbm, atol=1e-9)
    weak = generate_dataset(tiny_twin, 64, seed=7, jammer_power_dbm=10.0)
    assert weak.jammer_power_dbm == 10.0 and (weak.pt_dbm[on] < tiny_ds.pt_dbm[on]).any()
    with pytest.raises(ValueError, match="jammer_duty"):
        generate_dataset(tiny_twin, 8, seed=1, jammer_duty=1.5)


def test_cli_writes_dataset(tiny_site, tiny_twin, tmp_path, monkeypatch):
    from central import twin as twin_mod
    from evaluation import cli

    monkeypatch.setattr(twin_mod.Twin, "load", classmethod(lambda cls, *a, **k: tiny_twin))
    out = tmp_path / "d.npz"
    assert cli.main(["dataset", "--site", "x", "--n", "20", "--seed", "3", "--out", str(out)]) == 0
    ds = load_dataset(out)
    assert ds.n == 20 and ds.seed == 3


# ---------------------------------------------------------------- protocol


def test_roc_auc_and_pd_on_known_cases():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=bool)
    assert auc_score(y, [0, 1, 2, 3, 4, 5, 6, 7]) == 1.0
    assert auc_score(y, [4, 5, 6, 7, 0, 1, 2, 3]) == 0.0
    assert auc_score(y, np.ones(8)) == 0.5  # all tied
    assert auc_score(y, [0, 1, 2, 5, 3, 4, 6, 7]) == pytest.approx(14 / 16)
    fpr, tpr, thr = roc_curve(y, [0, 1, 2, 5, 3, 4, 6, 7])
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1 and np.all(np.diff(fpr) >= 0)
    # 100 normals 0..99, 100 anomalies: 50 at 97.5 (two normals, 98 and 99, score higher), 50 at -1
    yn = np.r_[np.zeros(100, bool), np.ones(100, bool)]
    s = np.r_[np.arange(100.0), np.full(50, 97.5), np.full(50, -1.0)]
    assert pd_at_far(yn, s, 0.01) == 0.0  # 1 % FAR: only the normal at 99 may be above the threshold
    assert pd_at_far(yn, s, 0.02) == 0.5  # 2 % FAR admits 98.5
    assert pd_at_far(yn, s, 0.05) == 0.5


def test_cv_folds_partition():
    folds = cv_folds(103, 5, seed=0)
    assert len(folds) == 5 and sorted(np.concatenate(folds).tolist()) == list(range(103))


@pytest.mark.parametrize("kind", ["ed", "lof"])
def test_protocol_separable_and_identical(kind):
    rng = np.random.default_rng(0)
    n = 1000
    y = rng.random(n) < 0.5
    x = rng.normal(0.0, 1.0, (n, 12))
    sep = evaluate_arrays(
        kind, x + 10.0 * y[:, None], y, params={"n_neighbors": 20} if kind == "lof" else None
    )
    assert sep["auc"] > 0.999 and sep["pd1"] > 0.99
    same = evaluate_arrays(kind, x, y, params={"n_neighbors": 20} if kind == "lof" else None)
    assert abs(same["auc"] - 0.5) < 0.06
    # test sets: each fold's normals plus as many anomalies (never more than it has)
    assert same["n_test_anomalous"] <= same["n_test_normal"] == int((~y).sum())
    assert abs(same["own_threshold_far"] - 0.05) < 0.03  # the detector's 95th-percentile threshold


def test_evaluate_on_dataset_generic_over_kinds(tiny_twin):
    ds = generate_dataset(tiny_twin, 200, seed=2)
    seen = []

    def factory():
        from models.detectors import make_detector

        det = make_detector("ed")
        seen.append(det)
        return det

    r = evaluate(factory, ds, 0.0)
    assert len(seen) == 5 and set(r) >= {"auc", "pd1", "pd5", "roc"}
    assert 0.5 < r["auc"] <= 1.0 and 0 <= r["pd1"] <= r["pd5"] <= 1
    assert evaluate("ed", ds, 0.0)["auc"] == r["auc"]


def test_protocol_locates_the_tested_jammers(tiny_twin):
    ds = generate_dataset(tiny_twin, 200, seed=4)
    cg = tiny_twin.predictor.cell_gains()
    params = {"cell_positions_m": cg.positions_m, "gain_lin": cg.gain_lin}
    r = evaluate("glrt", ds, 0.0, params=params, locate=True)
    assert r["loc_error_m"].shape == r["loc_detected"].shape == (r["n_test_anomalous"],)
    # errors belong to the right jammers: far better than a guess (a random point in the hall). (The tiny
    # hall's 1 m cells and few rays make it a poor localisation world; bench/detection.py has the figures.)
    rng = np.random.default_rng(0)
    truth = ds.jammer_position_m[ds.jammer, :2]
    guess = np.linalg.norm(rng.uniform(0, 1, truth.shape) * tiny_twin.site.hall_size_m[:2] - truth, axis=1)
    print(f"\nlocalisation σ=0: median {np.median(r['loc_error_m']):.2f} m (guess {np.median(guess):.2f} m)")
    assert np.median(r["loc_error_m"]) < 0.7 * np.median(guess) and r["loc_detected"].mean() > 0.6
    assert "loc_error_m" not in evaluate("ed", ds, 0.0, locate=True)  # ED cannot locate
