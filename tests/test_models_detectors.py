"""Residual detectors (models.detectors): ED and LOF as in the paper, one interface, save/load, NaN."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.detectors import (
    DetectorError,
    EnergyDetector,
    LocalOutlierFactor,
    LofDetector,
    ResidualDetector,
    load_detector,
    make_detector,
    model_paths,
    read_metadata,
)

N_SU = 12


def normal_residuals(n, rng, sigma=3.0):
    """Correlated Gaussian residuals (a shared offset plus per-SU noise), like a twin's model error."""
    common = rng.normal(0.0, 1.0, (n, 1))
    scale = np.linspace(0.5, 1.5, N_SU) * sigma
    return common + rng.normal(0.0, 1.0, (n, N_SU)) * scale


def jammed_residuals(n, rng):
    x = normal_residuals(n, rng)
    x[:, :4] += rng.uniform(10.0, 25.0, (n, 4))
    return x


@pytest.mark.parametrize("far", [0.05, 0.01])
def test_ed_threshold_gives_the_target_false_alarm_rate_on_held_out_normals(far):
    rng = np.random.default_rng(1)
    det = EnergyDetector(target_far=far).fit(normal_residuals(5000, rng))
    held_out = normal_residuals(40_000, rng)
    rate = det.decide(held_out).mean()
    assert abs(rate - far) < max(0.3 * far, 0.004), rate
    assert det.decide(jammed_residuals(1000, rng)).mean() > 0.9


def test_ed_defaults_to_the_papers_95th_percentile_of_training_means():
    rng = np.random.default_rng(2)
    x = normal_residuals(2000, rng)
    det = EnergyDetector().fit(x)
    assert det.target_far == 0.05 and det.name == "ed"
    assert det.threshold == pytest.approx(np.percentile(x.mean(axis=1), 95))


def test_ed_score_is_the_mean_of_sorted_residuals_and_ignores_missing_sus():
    rng = np.random.default_rng(3)
    det = EnergyDetector().fit(normal_residuals(100, rng))
    x = rng.normal(0, 5, (4, N_SU))
    np.testing.assert_allclose(det.score(x), np.sort(x, axis=1)[:, ::-1].mean(axis=1))
    x[0, [1, 5]] = np.nan
    x[1, :] = np.nan
    s = det.score(x)
    assert s[0] == pytest.approx(np.nanmean(x[0]))
    assert np.isnan(s[1])
    assert not det.decide(x)[1]  # an unscorable snapshot is not an anomaly


def test_ed_fits_on_snapshots_with_missing_sus():
    rng = np.random.default_rng(4)
    x = normal_residuals(500, rng)
    x[::7, 3] = np.nan
    x[5, :] = np.nan
    det = EnergyDetector().fit(x)
    assert det.n_train == 499 and det.fit_info["n_all_missing"] == 1
    assert np.isfinite(det.threshold)
    assert det.su_limit_db.shape == (N_SU,) and np.isfinite(det.su_limit_db).all()


def test_lof_matches_sklearn_novelty_lof():
    sk = pytest.importorskip("sklearn.neighbors")
    rng = np.random.default_rng(5)
    train = normal_residuals(1500, rng)
    test = np.vstack([normal_residuals(300, rng), jammed_residuals(100, rng)])
    ref = sk.LocalOutlierFactor(n_neighbors=100, novelty=True).fit(train)
    det = LofDetector().fit(train)
    ours, theirs = det.score(test), -ref.score_samples(test)
    assert np.corrcoef(ours, theirs)[0, 1] > 0.99
    np.testing.assert_allclose(ours, theirs, rtol=1e-9)
    np.testing.assert_array_equal(ours > 1.5, ref.predict(test) == -1)  # sklearn's "auto" offset
    # Training scores are the leave-one-out LOFs (sklearn's negative_outlier_factor_).
    np.testing.assert_allclose(det.training_scores(), -ref.negative_outlier_factor_, rtol=1e-9)
    assert det.threshold == pytest.approx(np.quantile(-ref.negative_outlier_factor_, 0.95))


@pytest.mark.filterwarnings("ignore:n_neighbors")
def test_lof_matches_sklearn_with_duplicates_and_few_samples():
    sk = pytest.importorskip("sklearn.neighbors")
    rng = np.random.default_rng(6)
    train = rng.normal(size=(60, 3))  # fewer samples than n_neighbors: k = N - 1
    train = np.vstack([train, train[:10]])  # exact duplicates
    test = np.vstack([rng.normal(size=(20, 3)), train[:5]])
    ref = sk.LocalOutlierFactor(n_neighbors=100, novelty=True).fit(train)
    lof = LocalOutlierFactor(100).fit(train)
    assert lof.k_ == len(train) - 1
    np.testing.assert_allclose(lof.score(test), -ref.score_samples(test), rtol=1e-7)
    np.testing.assert_allclose(lof.train_lof_, -ref.negative_outlier_factor_, rtol=1e-7)


def test_lof_needs_complete_vectors():
    rng = np.random.default_rng(7)
    x = normal_residuals(400, rng)
    x[:20, 0] = np.nan
    det = LofDetector(n_neighbors=20).fit(x)
    assert det.fit_info["n_incomplete_dropped"] == 20
    assert not det.handles_missing
    y = normal_residuals(3, rng)
    y[1, 4] = np.nan
    s = det.score(y)
    assert np.isfinite(s[[0, 2]]).all() and np.isnan(s[1])


def test_lof_separates_jammed_from_normal():
    rng = np.random.default_rng(8)
    det = LofDetector().fit(normal_residuals(3000, rng))
    assert det.decide(normal_residuals(2000, rng)).mean() < 0.08
    assert det.decide(jammed_residuals(500, rng)).mean() > 0.9


@pytest.mark.parametrize("kind", ["ed", "lof"])
def test_save_load_round_trip(kind, tmp_path):
    rng = np.random.default_rng(9)
    su_ids = [f"su{j:02d}" for j in range(1, N_SU + 1)]
    det = make_detector(kind, target_far=0.02).fit(normal_residuals(600, rng), su_ids=su_ids,
                                                     provenance={"twin_key": "abc", "campaign": "t1"})  # fmt: skip
    meta_path = det.save(tmp_path / "models" / "det")
    npz, meta_json = model_paths(tmp_path / "models" / "det")
    assert meta_path == meta_json and npz.exists()
    meta = read_metadata(npz)
    assert meta["kind"] == kind and meta["provenance"] == {"twin_key": "abc", "campaign": "t1"}
    assert meta["su_ids"] == su_ids and meta["target_far"] == 0.02 and meta["n_train"] == 600
    json.dumps(meta)
    back = load_detector(meta_path)
    assert type(back) is type(det) and back.name == det.name
    assert back.threshold == det.threshold and back.su_ids == su_ids
    y = np.vstack([normal_residuals(50, rng), jammed_residuals(10, rng)])
    np.testing.assert_array_equal(back.score(y), det.score(y))
    np.testing.assert_array_equal(back.training_scores(), det.training_scores())
    np.testing.assert_array_equal(back.su_limit_db, det.su_limit_db)
    assert type(ResidualDetector.load(npz)) is type(det)


def test_load_refuses_a_tampered_or_mismatched_model(tmp_path):
    rng = np.random.default_rng(10)
    EnergyDetector().fit(normal_residuals(100, rng)).save(tmp_path / "ed.npz")
    with pytest.raises(DetectorError, match="not 'lof'"):
        LofDetector.load(tmp_path / "ed.json")
    (tmp_path / "ed.npz").write_bytes((tmp_path / "ed.npz").read_bytes()[:-10] + b"0123456789")
    with pytest.raises(DetectorError, match="checksum"):
        load_detector(tmp_path / "ed")


def test_threshold_from_held_out_normals_and_refitting_the_rate():
    rng = np.random.default_rng(11)
    hold = normal_residuals(3000, rng)
    det = LofDetector(n_neighbors=50).fit(normal_residuals(1000, rng), holdout_db=hold)
    assert det.fit_info["threshold_from"] == "holdout"
    assert det.threshold == pytest.approx(np.quantile(det.score(hold), 0.95))
    t1 = det.set_threshold(target_far=0.01)
    assert t1 > det.score(hold).min() and det.target_far == 0.01


def test_contaminated_training_is_trimmed():
    rng = np.random.default_rng(12)
    clean = normal_residuals(2000, rng)
    dirty = np.vstack([clean, jammed_residuals(40, rng)])  # 2 % jammed
    naive = EnergyDetector(target_far=0.01).fit(dirty)
    robust = EnergyDetector(target_far=0.01).fit(dirty, contamination=0.02)
    ref = EnergyDetector(target_far=0.01).fit(clean)
    assert robust.fit_info["cleaning"]["dropped"] == pytest.approx(41, abs=2)
    assert abs(robust.threshold - ref.threshold) < abs(naive.threshold - ref.threshold)


def test_input_validation():
    rng = np.random.default_rng(13)
    with pytest.raises(DetectorError, match="not fitted"):
        EnergyDetector().score(np.zeros(N_SU))
    det = EnergyDetector().fit(normal_residuals(50, rng))
    with pytest.raises(DetectorError, match="fitted on 12"):
        det.score(np.zeros(5))
    with pytest.raises(DetectorError, match="inf"):
        det.score(np.full(N_SU, np.inf))
    with pytest.raises(DetectorError, match="unknown detector"):
        make_detector("nope")
    with pytest.raises(DetectorError, match="target_far"):
        EnergyDetector(target_far=0.0)
    assert det.score(np.zeros(N_SU)).shape == (1,)
    assert isinstance(make_detector("energy"), EnergyDetector)  # config files may spell it out


def test_a_rare_false_alarm_rate_from_few_scores_extrapolates_the_tail_instead_of_taking_the_maximum():
    """0.1 % from 70 Gaussian scores: the empirical quantile is about the largest score, which new normal
    scores exceed ~1/71 of the time; the tail model's threshold holds the rate near what was asked."""
    from models.detectors import quantile_threshold

    rng = np.random.default_rng(0)
    fresh = rng.normal(size=1_000_000)
    empirical, extrapolated = [], []
    for _ in range(200):
        train = rng.normal(size=70)
        empirical.append(np.mean(fresh > np.quantile(train, 0.999)))
        extrapolated.append(np.mean(fresh > quantile_threshold(train, 0.001)))
    assert np.median(empirical) > 0.008  # about 1/71, eight times what was asked
    assert np.median(extrapolated) < 0.002  # conservative for a Gaussian tail, as documented
    many = rng.normal(size=20_000)  # far·N = 20: the plain empirical quantile
    assert quantile_threshold(many, 0.001) == np.quantile(many, 0.999)
