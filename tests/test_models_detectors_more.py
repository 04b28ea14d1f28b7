"""Issue 5's detectors (models.detectors: maxres, gauss, gls, glrt, bayes) on synthetic data.

Synthetic world: a 40 m × 40 m plane of candidate cells, 12 SUs, random log-distance gain matrices with
shadowing; legitimate TXs and jammers (20 dBm) at random cells; the twin's prediction is the exact sum
of legitimate powers and the measurement carries a correlated, per-SU-scaled model error ε (dB).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from models.detectors import (
    BayesDetector,
    DetectorError,
    GaussDetector,
    GlrtDetector,
    MaxResidualDetector,
    ledoit_wolf,
    load_detector,
    make_detector,
    read_metadata,
    robust_clean,
)

N_SU = 12


def scene(seed=0, step=2.0):
    rng = np.random.default_rng(seed)
    xs = np.arange(step / 2, 40.0, step)
    cx, cy = np.meshgrid(xs, xs, indexing="ij")
    cells = np.c_[cx.ravel(), cy.ravel(), np.full(cx.size, 1.5)]
    su = rng.uniform(2.0, 38.0, (N_SU, 2))
    d = np.sqrt(((cells[:, None, :2] - su[None]) ** 2).sum(-1) + 1.0)
    g_db = -40.0 - 25.0 * np.log10(d) + rng.normal(0.0, 2.0, d.shape)
    return cells, 10.0 ** (g_db / 10.0)


def draw(rng, g, n, sigma, jam, rho=0.4, base=0.3, jam_dbm=20.0):
    """(Δ dB, predicted dBm, jammer cell or −1) for n snapshots."""
    c = rng.integers(0, g.shape[0], (n, 3))
    pm = 100.0 * g[c].sum(axis=1) + 1e-10
    scale = np.linspace(0.4, 1.6, N_SU)
    chol = np.linalg.cholesky((1 - rho) * np.eye(N_SU) + rho)
    eps = base * rng.normal(size=(n, N_SU)) + sigma * (rng.normal(size=(n, N_SU)) @ chol.T) * scale
    meas = pm * 10.0 ** (eps / 10.0)
    jc = np.full(n, -1)
    if jam:
        jc = rng.integers(0, g.shape[0], n)
        meas = meas + 10.0 ** (jam_dbm / 10.0) * g[jc]
    return 10.0 * np.log10(meas) - 10.0 * np.log10(pm), 10.0 * np.log10(pm), jc


def auc(s0, s1):
    s = np.r_[s0, s1]
    r = s.argsort(kind="stable").argsort() + 1
    return (r[len(s0) :].sum() - len(s1) * (len(s1) + 1) / 2) / (len(s0) * len(s1))


@pytest.fixture(scope="module")
def world():
    cells, g = scene()
    rng = np.random.default_rng(1)
    sigma = 3.0
    tr = draw(rng, g, 3000, sigma, False)
    h0 = draw(rng, g, 4000, sigma, False)
    h1 = draw(rng, g, 1000, sigma, True)
    return cells, g, tr, h0, h1


def build(kind, cells, g, **kw):
    if kind == "glrt":
        kw = dict(cell_positions_m=cells, gain_lin=g, top_k=32, **kw)
    if kind in ("bayes", "fusion"):
        kw = dict(cell_positions_m=cells, gain_lin=g, **kw)
    return make_detector(kind, **kw)


KINDS = ["maxres", "gauss", "gls", "glrt", "bayes", "fusion"]


@pytest.mark.parametrize("kind", KINDS)
def test_detector_beats_ed_and_holds_its_false_alarm_rate(world, kind):
    cells, g, (xtr, ptr, _), (x0, p0, _), (x1, p1, _) = world
    ed = make_detector("ed").fit(xtr)
    auc_ed = auc(ed.score(x0), ed.score(x1))
    det = build(kind, cells, g).fit(xtr, predicted_dbm=ptr)
    t = time.perf_counter()
    s1 = det.score(x1, predicted_dbm=p1)
    us = (time.perf_counter() - t) / len(x1) * 1e6
    s0 = det.score(x0, predicted_dbm=p0)
    a = auc(s0, s1)
    far = float((s0 > det.threshold).mean())
    print(
        f"\n{kind}: AUC {a:.3f} vs ED {auc_ed:.3f}; FAR {far:.3f} (target 0.05); {us:.1f} µs/snapshot "
        f"({len(cells) if kind in ('glrt', 'bayes', 'fusion') else '-'} cells)"
    )
    assert a > auc_ed + (0.0 if kind in ("gls", "gauss") else 0.03)
    assert abs(far - 0.05) < 0.015


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(world, kind, tmp_path):
    cells, g, (xtr, ptr, _), (x0, p0, _), _ = world
    det = build(kind, cells, g).fit(xtr[:800], predicted_dbm=ptr[:800], su_ids=[f"su{i}" for i in range(N_SU)],
                                    provenance={"test": kind})  # fmt: skip
    meta = det.save(tmp_path / kind)
    back = load_detector(meta)
    assert type(back) is type(det) and back.threshold == det.threshold and back.su_ids == det.su_ids
    assert read_metadata(meta)["kind"] == kind
    np.testing.assert_allclose(
        back.score(x0[:50], predicted_dbm=p0[:50]), det.score(x0[:50], predicted_dbm=p0[:50])
    )
    np.testing.assert_allclose(back.training_scores(), det.training_scores())


@pytest.mark.parametrize("kind", KINDS)
def test_missing_sus(world, kind):
    cells, g, (xtr, ptr, _), (x0, p0, _), (x1, p1, _) = world
    xtr = xtr.copy()
    xtr[::9, 2] = np.nan
    xtr[4, :] = np.nan
    det = build(kind, cells, g).fit(xtr, predicted_dbm=ptr)
    assert det.fit_info["n_all_missing"] == 1 and np.isfinite(det.threshold)
    x = np.r_[x0[:400], x1[:400]].copy()
    p = np.r_[p0[:400], p1[:400]].copy()
    x[::3, [0, 5]] = np.nan
    x[1, :] = np.nan
    s = det.score(x, predicted_dbm=p)
    assert np.isnan(s[1]) and np.isfinite(np.delete(s, 1)).all()
    assert not det.decide(x, predicted_dbm=p)[1]
    # still detects with SUs missing, and normal rows with missing SUs keep a sane false-alarm rate
    y = np.r_[np.zeros(400), np.ones(400)].astype(bool)
    keep = np.isfinite(s)
    assert auc(s[keep & ~y], s[keep & y]) > 0.7
    if kind in ("gauss", "gls"):
        xm = x0.copy()
        xm[:, [0, 5, 7]] = np.nan
        assert abs(det.decide(xm).mean() - 0.05) < 0.02


def test_glrt_localises_the_injected_source_exactly_without_noise_and_near_with_noise():
    cells, g = scene(step=2.0)
    rng = np.random.default_rng(5)
    # σ = 0: no model error at all (a tiny ε only to fit the covariance).
    xtr, ptr, _ = draw(rng, g, 1000, 0.0, False, base=0.05)
    det = GlrtDetector(cells, g, top_k=32, target_far=0.01).fit(xtr, predicted_dbm=ptr)
    x1, p1, jc = draw(rng, g, 200, 0.0, True, base=0.0)
    pos, p_dbm = det.locate(x1, p1)
    err = np.linalg.norm(pos - cells[jc, :2], axis=1)
    assert np.median(err) == 0.0 and (err == 0).mean() > 0.9
    np.testing.assert_allclose(np.median(p_dbm), 20.0, atol=0.1)
    # σ = 1 dB model error: within a few cells (2 m) for most.
    xtr, ptr, _ = draw(rng, g, 2000, 1.0, False)
    det = GlrtDetector(cells, g, top_k=32).fit(xtr, predicted_dbm=ptr)
    x1, p1, jc = draw(rng, g, 300, 1.0, True)
    pos, _ = det.locate(x1, p1)
    err = np.linalg.norm(pos - cells[jc, :2], axis=1)
    print(f"\nGLRT localisation σ=1 dB: median {np.median(err):.2f} m, p90 {np.percentile(err, 90):.2f} m")
    assert np.median(err) <= 2 * 2.0 * np.sqrt(2)


def test_glrt_needs_prediction_and_gains(world):
    cells, g, (xtr, ptr, _), _, _ = world
    with pytest.raises(DetectorError, match="predicted_dbm"):
        GlrtDetector(cells, g).fit(xtr)
    with pytest.raises(DetectorError, match="gain maps"):
        GlrtDetector().fit(xtr, predicted_dbm=ptr)
    with pytest.raises(DetectorError, match="do not match"):
        GlrtDetector(cells[:-1], g)
    det = GlrtDetector(cells, g).fit(xtr[:300], predicted_dbm=ptr[:300])
    with pytest.raises(DetectorError, match="predicted_dbm"):
        det.score(xtr[:3])


@pytest.mark.parametrize("kind", ["maxres", "gauss", "glrt", "bayes"])
def test_robust_training_survives_two_percent_jammed_snapshots(world, kind):
    cells, g, (xtr, ptr, _), (x0, p0, _), (x1, p1, _) = world
    rng = np.random.default_rng(9)
    n_bad = int(0.02 * len(xtr) / 0.98)
    xb, pb, _ = draw(rng, g, n_bad, 3.0, True, jam_dbm=30.0)
    xc, pc = np.r_[xtr, xb], np.r_[ptr, pb]
    far = 0.01

    def evaluate(x, p, c):
        det = build(kind, cells, g, target_far=far).fit(x, predicted_dbm=p, contamination=c)
        s0, s1 = det.score(x0, predicted_dbm=p0), det.score(x1, predicted_dbm=p1)
        return auc(s0, s1), float((s0 > det.threshold).mean()), float((s1 > det.threshold).mean()), det

    clean = evaluate(xtr, ptr, 0.0)
    naive = evaluate(xc, pc, 0.0)
    robust = evaluate(xc, pc, 0.05)
    print(
        f"\n{kind} (AUC, FAR, Pd @1%): clean {clean[:3]}, contaminated {naive[:3]}, cleaned {robust[:3]}; "
        f"{robust[3].fit_info['cleaning']}"
    )
    assert robust[3].fit_info["cleaning"]["dropped"] >= 0.8 * n_bad
    assert abs(robust[0] - clean[0]) < 0.01
    assert abs(robust[1] - clean[1]) < 0.004 and abs(clean[1] - far) < 0.01
    assert robust[2] > clean[2] - 0.03
    # Without cleaning the 2 % jammed snapshots raise the threshold: detection at 1 % FAR drops.
    assert naive[2] < robust[2] - 0.03
    # cleaning a clean set costs (almost) nothing
    again = evaluate(xtr, ptr, 0.05)
    assert abs(again[1] - clean[1]) < 0.004 and abs(again[0] - clean[0]) < 0.01


def test_ledoit_wolf_matches_the_closed_form_and_is_well_conditioned():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20, N_SU)) @ rng.normal(size=(N_SU, N_SU))
    mean, cov, shrink = ledoit_wolf(x)
    np.testing.assert_allclose(mean, x.mean(axis=0))
    assert 0.0 < shrink < 1.0 and np.linalg.cond(cov) < np.linalg.cond(np.cov(x.T, bias=True))
    try:
        from sklearn.covariance import ledoit_wolf as sk_lw
    except ImportError:
        return
    sk_cov, sk_shrink = sk_lw(x)
    np.testing.assert_allclose(cov, sk_cov, rtol=1e-10, atol=1e-12)
    assert shrink == pytest.approx(sk_shrink)


def test_robust_clean_drops_the_outliers_only():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2000, N_SU))
    x[:40, :3] += 15.0
    keep, info = robust_clean(x, 0.05)
    assert not keep[:40].any() and keep[40:].mean() > 0.99 and info["dropped"] >= 40


def test_maxres_standardises_per_su():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(500, N_SU)) * np.linspace(0.5, 5, N_SU)
    raw = MaxResidualDetector(standardise=False).fit(x)
    std = MaxResidualDetector().fit(x)
    np.testing.assert_allclose(raw.score(x[:5]), x[:5].max(axis=1))
    assert std.scale_[-1] > 5 * std.scale_[0]
    assert isinstance(make_detector("gauss"), GaussDetector)


def test_glrt_localiser_is_a_drop_in_for_the_engine():
    from central.detection.localise import GlrtLocaliser, PointSourceLocaliser

    cells, g = scene(step=2.0)
    rng = np.random.default_rng(7)
    xtr, ptr, _ = draw(rng, g, 800, 0.0, False, base=0.05)
    loc = GlrtLocaliser(GlrtDetector(cells, g, top_k=32).fit(xtr, predicted_dbm=ptr))
    assert isinstance(loc, PointSourceLocaliser) and loc.num_cells == len(cells)
    x1, p1, jc = draw(rng, g, 20, 0.0, True, base=0.0)
    hits = 0
    for i in range(20):
        usable = np.ones(N_SU, bool)
        usable[3] = False
        r = loc.locate(p1[i] + x1[i], p1[i], usable)
        assert r is not None and r.n_sus == N_SU - 1
        hits += np.allclose(r.position_m[:2], cells[jc[i], :2])
    assert hits >= 17
    assert loc.locate(p1[0], p1[0]) is None  # no excess anywhere
    assert loc.near([0, 1]) is not None
    with pytest.raises(ValueError):
        GlrtLocaliser(GlrtDetector(cells, g))


def test_glrt_mean_aggregate_scores_and_round_trips(world, tmp_path):
    cells, g, (xtr, ptr, _), (x0, p0, _), (x1, p1, _) = world
    with pytest.raises(DetectorError, match="aggregate"):
        GlrtDetector(cells, g, aggregate="median")
    det = GlrtDetector(cells, g, top_k=32, aggregate="mean").fit(xtr[:600], predicted_dbm=ptr[:600])
    s0, s1 = det.score(x0[:300], predicted_dbm=p0[:300]), det.score(x1[:300], predicted_dbm=p1[:300])
    assert auc(s0, s1) > 0.75
    back = load_detector(det.save(tmp_path / "m"))
    assert back.aggregate == "mean"
    np.testing.assert_allclose(back.score(x1[:20], predicted_dbm=p1[:20]), s1[:20])


def draw_db_additive(rng, g, n, sigma, jam, jam_dbm=20.0):
    """The paper's data model: the twin's error ε (dB) is added to the *total* power, jammer included."""
    c = rng.integers(0, g.shape[0], (n, 3))
    pm = 100.0 * g[c].sum(axis=1) + 1e-10
    jc = rng.integers(0, g.shape[0], n) if jam else np.full(n, -1)
    total = pm + (10.0 ** (jam_dbm / 10.0) * g[jc] if jam else 0.0)
    eps = 0.3 * rng.normal(size=(n, N_SU)) + sigma * rng.normal(size=(n, N_SU))
    return 10.0 * np.log10(total / pm) + eps, 10.0 * np.log10(pm), jc


def test_bayes_average_beats_the_glrt_maximum_when_the_jammer_is_buried_in_model_error():
    """At σ = 6 dB most jammers are weak against the model error: averaging the likelihood ratio over
    position and power pays no look-elsewhere cost, the GLRT's maximum does."""
    cells, g = scene(step=2.0)
    rng = np.random.default_rng(11)
    xtr, ptr, _ = draw_db_additive(rng, g, 3000, 6.0, False)
    x0, p0, _ = draw_db_additive(rng, g, 2000, 6.0, False)
    x1, p1, _ = draw_db_additive(rng, g, 2000, 6.0, True)
    aucs = {}
    for kind in ("ed", "glrt", "bayes"):
        det = build(kind, cells, g).fit(xtr, predicted_dbm=ptr)
        aucs[kind] = auc(det.score(x0, predicted_dbm=p0), det.score(x1, predicted_dbm=p1))
    print(f"\nσ = 6 dB, dB-additive model error: {aucs}")
    assert aucs["bayes"] > aucs["glrt"] + 0.01 and aucs["bayes"] > aucs["ed"] + 0.01


def test_bayes_locates_the_source_and_checks_its_arguments():
    cells, g = scene(step=1.0)
    rng = np.random.default_rng(12)
    xtr, ptr, _ = draw_db_additive(rng, g, 1500, 0.0, False)
    det = BayesDetector(cells, g, cell_spacing_m=2.0).fit(xtr, predicted_dbm=ptr)
    assert det._coarse.size == len(cells) // 4  # one cell per 2 m square
    x1, p1, jc = draw_db_additive(rng, g, 100, 0.0, True)
    pos, evidence = det.locate(x1, p1)
    err = np.linalg.norm(pos - cells[jc, :2], axis=1)
    print(f"\nBayes localisation σ=0: median {np.median(err):.2f} m, p90 {np.percentile(err, 90):.2f} m")
    assert np.median(err) <= 1.0 and (evidence > 0).all()
    x1[0, :] = np.nan
    assert np.isnan(det.locate(x1[:2], p1[:2])[0][0]).all()
    np.testing.assert_array_equal(det.powers_dbm, [0.0, 6.0, 12.0, 18.0, 24.0, 30.0])
    with pytest.raises(DetectorError, match="power grid"):
        BayesDetector(cells, g, power_dbm_min=10, power_dbm_max=0)
    with pytest.raises(DetectorError, match="predicted_dbm"):
        BayesDetector(cells, g).fit(xtr)
    with pytest.raises(DetectorError, match="gain maps"):
        BayesDetector().fit(xtr, predicted_dbm=ptr)


def test_student_dof_fit_finds_heavy_tails_and_leaves_gaussian_data_gaussian():
    from models.detectors.bayes import fit_student_dof

    rng = np.random.default_rng(21)
    m, n = N_SU, 20_000
    gauss_q = (rng.normal(size=(n, m)) ** 2).sum(axis=1)
    assert fit_student_dof(gauss_q, m) >= 50.0  # Gaussian residuals: the fit stays at (or near) ν = ∞
    nu = 4.0  # multivariate t with unit covariance: z · sqrt((ν − 2) / w), w ~ χ²_ν per snapshot
    t = rng.normal(size=(n, m)) * np.sqrt((nu - 2.0) / rng.chisquare(nu, (n, 1)))
    assert fit_student_dof((t**2).sum(axis=1), m) in (3.0, 4.0, 5.0)


def test_student_t_bayes_beats_the_gaussian_one_when_normal_residuals_have_outliers(tmp_path):
    """A twin's error against a world it does not model has heavy tails: a Gaussian likelihood reads
    a normal outlier as a jammer; the Student-t one, with ν learned from the normal data, does not."""
    cells, g = scene(step=2.0)
    rng = np.random.default_rng(22)

    def heavy(n, jam):
        x, p, jc = draw_db_additive(rng, g, n, 1.0, jam, jam_dbm=10.0)
        w = rng.chisquare(3.0, (n, 1))  # one scale per snapshot: a whole snapshot off the model
        return x * np.sqrt(1.0 / w), p, jc

    (xtr, ptr, _), (x0, p0, _), (x1, p1, _) = heavy(3000, False), heavy(2000, False), heavy(2000, True)
    aucs = {}
    for tails in ("gauss", "student"):
        det = BayesDetector(cells, g, tails=tails).fit(xtr, predicted_dbm=ptr)
        aucs[tails] = auc(det.score(x0, predicted_dbm=p0), det.score(x1, predicted_dbm=p1))
    student = BayesDetector(cells, g, tails="student").fit(xtr, predicted_dbm=ptr)
    print(f"\nheavy-tailed model error: {aucs}, ν = {student.dof_}")
    assert np.isfinite(student.dof_) and student.dof_ <= 5.0
    assert aucs["student"] > aucs["gauss"] + 0.02
    back = load_detector(student.save(tmp_path / "bt"))
    assert back.tails == "student" and back.dof_ == student.dof_
    np.testing.assert_allclose(back.score(x0[:20], predicted_dbm=p0[:20]), student.score(x0[:20], predicted_dbm=p0[:20]))
    with pytest.raises(DetectorError, match="tails"):
        BayesDetector(cells, g, tails="cauchy")


def test_fusion_holds_up_where_the_twins_gains_are_wrong_and_where_they_are_right():
    """ED ignores the gains, Bayes relies on them. With the twin's gains right, and with them 8 dB
    (log-normal, per cell and SU) off the jammer's true ones, the fusion of the two is never below
    the weaker and stays within 0.03 of the better."""
    cells, g = scene(step=2.0)
    rng = np.random.default_rng(23)
    g_wrong = g * 10 ** (rng.normal(0.0, 8.0, g.shape) / 10)  # what the twin believes
    xtr, ptr, _ = draw_db_additive(rng, g, 3000, 1.0, False)
    x0, p0, _ = draw_db_additive(rng, g, 2000, 1.0, False)
    x1, p1, _ = draw_db_additive(rng, g, 2000, 1.0, True, jam_dbm=0.0)
    ed = make_detector("ed").fit(xtr)
    auc_ed = auc(ed.score(x0), ed.score(x1))
    for gains, label in ((g, "right"), (g_wrong, "wrong")):
        a = {}
        for kind in ("bayes", "fusion"):
            det = build(kind, cells, gains).fit(xtr, predicted_dbm=ptr)
            a[kind] = auc(det.score(x0, predicted_dbm=p0), det.score(x1, predicted_dbm=p1))
        print(f"\ngains {label}: ED {auc_ed:.3f}, {a}")
        assert a["fusion"] >= min(auc_ed, a["bayes"]) and a["fusion"] >= max(auc_ed, a["bayes"]) - 0.03


def test_normal_quantile_is_monotone_continues_above_the_training_range_and_keeps_nan():
    from models.detectors.base import normal_quantile

    ref = np.sort(np.random.default_rng(0).normal(size=1000))
    s = np.array([-10.0, -1.0, 0.0, 1.0, ref[-1], ref[-1] + 1.0, ref[-1] + 2.0, np.nan])
    z = normal_quantile(s, ref)
    assert np.all(np.diff(z[:-1]) > 0) and np.isnan(z[-1])
    assert z[2] == pytest.approx(0.0, abs=0.1) and z[3] == pytest.approx(1.0, abs=0.1)


def test_one_score_gets_the_same_normal_scale_value_as_in_an_array():
    from models.detectors.base import NormalScale

    ref = np.sort(np.random.default_rng(1).normal(size=500))
    scale = NormalScale.of(ref)
    scores = np.array([-9.0, ref[0], -0.4, 0.0, ref[250], 1.7, ref[-1], ref[-1] + 0.5, np.nan])
    one_by_one = np.array([float(scale(float(s))) for s in scores])
    np.testing.assert_allclose(one_by_one, scale(scores), rtol=1e-12, atol=1e-12)  # NaN in the same place
