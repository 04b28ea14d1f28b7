"""Issue 6 material fit: differentiable ray tracing on the tiny hall (real Sionna RT, a few seconds).

Synthetic measurements come from the same ray tracer with a known concrete (ε_r 7.0) plus per-SU
offsets and dwell-averaged noise; the fit starts from the ITU concrete (ε_r ≈ 5.24) and must find it.
24 points: 6 held out to test, 5 to choose when to stop, 13 to fit.
"""

from __future__ import annotations

import dataclasses as dc
import math

import numpy as np
import pytest

from calibration.material_fit import FitError, FitSettings, RayTracedPowers, fit_materials
from calibration.points import CampaignPoint, measurement_matrix, read_points_csv, write_points_csv
from central.twin.site import load_site, site_to_toml
from central.twin.positions import sample_positions

FAST = FitSettings(iterations=60, samples_per_src=5_000, patience=15, seed=1)


@pytest.fixture(scope="module")
def campaign(tiny_site):
    rng = np.random.default_rng(3)
    pts = sample_positions(tiny_site, 24, rng)
    model = RayTracedPowers(tiny_site, pts, np.full(len(pts), 20.0), FAST)
    truth, _ = model.predict({"concrete": (7.0, 0.13)})
    offsets = np.array([1.5, -2.0])
    measured = truth + offsets + rng.normal(0.0, 0.1, truth.shape)
    return pts, measured, offsets, model


def test_gradient_matches_finite_differences(campaign):
    _, _, _, model = campaign
    w = np.random.default_rng(0).normal(size=(model.n_tx, model.n_su))
    pred, backward = model.predict({"concrete": (5.0, 0.2)})
    grad = backward(w)  # d(Σ w·pred)/d(ln ε, ln σ)
    h = 1e-2
    up, _ = model.predict({"concrete": (5.0 * math.exp(h), 0.2)})
    dn, _ = model.predict({"concrete": (5.0 * math.exp(-h), 0.2)})
    fd = float(np.sum(w * (up - dn)) / (2 * h))
    assert grad[0] == pytest.approx(fd, rel=0.05, abs=1e-3)
    assert abs(grad[0]) > 1e-2  # the tiny hall's concrete walls do matter


def test_fit_recovers_permittivity_and_offsets(tiny_site, campaign):
    pts, measured, offsets, _ = campaign
    steps = []
    res = fit_materials(tiny_site, pts, np.full(len(pts), 20.0), measured, FAST, progress=steps.append)
    eps, _ = res.materials["concrete"]
    print(f"\nε_r {res.initial_materials['concrete'][0]:.2f} → {eps:.3f} in {len(res.history)} steps, "
          f"{res.fit_s:.1f} s; held-out RMSE {res.rmse_db('holdout', False):.2f} → {res.rmse_db('holdout'):.2f} dB")
    assert abs(res.initial_materials["concrete"][0] - 5.24) < 0.1
    # 5 %: the stopping step is chosen on 5 validation points of a two-SU hall, whose 0.1 dB noise
    # prefers ε_r ≈ 6.8 here; with 4 of 16 points held out and stopping on the test points it was 3 %
    assert eps == pytest.approx(7.0, rel=0.05)
    np.testing.assert_allclose([res.offsets_db[s] for s in tiny_site.su_ids], offsets, atol=0.3)
    assert res.rmse_db("holdout") < 0.5 * res.rmse_db("holdout", after=False)
    assert steps and steps[0].iteration == 0 and len(steps) == len(res.history)
    # the calibrated site: explicit ε_r, σ with provenance, readable back
    cal = res.calibrated_site(tiny_site, "ci-campaign", "2026-11-24")
    m = cal.materials["concrete"]
    assert m.itu_type is None and m.relative_permittivity == pytest.approx(eps, abs=1e-3)
    assert "ci-campaign" in m.provenance and "2026-11-24" in m.provenance and "RMSE" in m.provenance
    assert cal.materials["metal"] == tiny_site.materials["metal"]


def test_fit_refuses_what_it_cannot_use(tiny_site, campaign):
    pts, measured, _, _ = campaign
    with pytest.raises(FitError, match="shape"):
        fit_materials(tiny_site, pts, 20.0, measured[:, :1], FAST)
    with pytest.raises(FitError, match="need at least"):
        fit_materials(tiny_site, pts[:3], 20.0, measured[:3], FAST)
    n_hold = round(FAST.holdout_fraction * len(pts))
    silent = measured.copy()
    silent[np.random.default_rng(FAST.seed).permutation(len(pts))[:n_hold]] = -99.0  # at the noise floor
    with pytest.raises(FitError, match="held-out points has a usable reading"):
        fit_materials(tiny_site, pts, 20.0, silent, FAST)
    with pytest.raises(FitError, match="not in the site"):
        fit_materials(tiny_site, pts, 20.0, measured, dc.replace(FAST, materials=("glass",)))


def test_site_file_round_trip(tiny_site, tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(site_to_toml(tiny_site, header="calibrated\nby a test"))
    assert path.read_text().startswith("# calibrated\n# by a test\n")
    assert load_site(path) == tiny_site


def test_points_csv_round_trip_and_matrix(tmp_path):
    su = ["a", "b", "c"]
    pts = [CampaignPoint((1.0, 2.0, 1.5), 20.0, su, np.array([-50.0, np.nan, -60.0]), np.array([0.5, np.nan, 1.0]),
                         np.array([10, 0, 10]), rejected="b: no readings"),
           CampaignPoint((3.0, 2.0, 1.5), 17.0, su[::-1], np.array([-40.0, -45.0, -48.0]), np.ones(3),
                         np.array([9, 9, 9]))]  # fmt: skip
    back = read_points_csv(write_points_csv(pts, tmp_path / "p.csv"))
    assert [p.rejected for p in back] == ["b: no readings", ""] and back[1].su_ids == su[::-1]
    np.testing.assert_array_equal(back[0].count, [10, 0, 10])
    pos, power, meas = measurement_matrix(back, su)
    assert pos.shape == (1, 3) and power.tolist() == [17.0]
    np.testing.assert_allclose(meas, [[-48.0, -45.0, -40.0]])  # columns in the requested SU order


def test_fit_command_writes_a_calibrated_site_and_report(tiny_site, campaign, tmp_path, capsys):
    from calibration import cli
    from tests.conftest import DATA

    pts, measured, _, _ = campaign
    points = [CampaignPoint(tuple(p), 20.0, tiny_site.su_ids, m, np.full(2, 0.3), np.full(2, 30)) for p, m in zip(pts, measured)]
    csv = write_points_csv(points, tmp_path / "hall.csv")
    out = tmp_path / "calibrated.toml"
    assert cli.main(["fit", str(csv), "--site", str(DATA / "tiny_hall.toml"), "--out", str(out), "--iterations", "8"]) == 0
    site = load_site(out)
    conc = site.materials["concrete"]
    assert conc.itu_type is None and conc.relative_permittivity > 5.3 and "campaign hall" in conc.provenance
    assert (tmp_path / "calibrated-report.md").exists() and (tmp_path / "calibrated-report_scatter.png").exists()
    assert "held-out test RMSE" in capsys.readouterr().out
    assert cli.main(["fit", str(tmp_path / "nope.csv"), "--site", str(DATA / "tiny_hall.toml"), "--out", str(out)]) == 2
