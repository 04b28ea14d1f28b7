"""Issue 15: robustness stresses and the choice of one default detector on a validation split."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.dataset import generate_dataset
from evaluation.protocol import evaluate_arrays
from evaluation.selection import (BASELINE, CANDIDATES, Candidate, Condition, auc_table, choose_default,
                                  margins_over_baseline)  # fmt: skip
from evaluation.stress import STRESSES, Stress, dropped_su_mask, model_error_db, stressed_residuals


def test_each_stress_keeps_sigma_but_changes_the_form_of_the_error():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((200_000, 4))
    su = np.array([[0.0, 0.0, 1.5], [5.0, 0.0, 1.5], [40.0, 0.0, 1.5], [0.0, 40.0, 1.5]])
    iid = model_error_db("dropped_su", 3.0, z, su, 1)
    heavy = model_error_db("heavy_tails", 3.0, z, su, 1)
    corr = model_error_db("correlated", 3.0, z, su, 1)
    for e in (iid, heavy, corr):
        np.testing.assert_allclose(e.std(axis=0), 3.0, rtol=0.03)
    kurt = lambda e: float(((e / e.std(axis=0)) ** 4).mean())  # noqa: E731
    assert kurt(iid) == pytest.approx(3.0, abs=0.1) and kurt(heavy) > 5.0  # Student t_3: heavy tails
    c = np.corrcoef(corr.T)
    assert c[0, 1] == pytest.approx(np.exp(-5 / 15), abs=0.02)  # SUs 5 m apart: strongly correlated
    assert abs(c[0, 2]) < 0.1 and abs(np.corrcoef(iid.T)[0, 1]) < 0.02
    with pytest.raises(ValueError, match="stress kind"):
        model_error_db("wobbly", 3.0, z, su, 1)
    with pytest.raises(ValueError, match="stress kind"):
        Stress("wobbly", 3.0)


def test_dropped_su_hides_one_su_per_snapshot_at_test_time_only(tiny_twin):
    ds = generate_dataset(tiny_twin, 200, seed=3)
    delta, missing = stressed_residuals(ds, Stress("dropped_su", 3.0), seed=5)
    np.testing.assert_allclose(delta, ds.delta_db(3.0))
    assert missing.shape == delta.shape and (missing.sum(axis=1) == 1).all()
    np.testing.assert_array_equal(missing, dropped_su_mask(ds.n, ds.n_su, 5))
    seen = {}

    class Spy:  # records what the detector is trained and tested on
        threshold = 0.0

        def fit(self, x, predicted_dbm=None):
            seen["train_nan"] = int(np.isnan(x).sum())

        def score(self, x, predicted_dbm=None):
            seen.setdefault("test_nan_rows", []).append(int(np.isnan(x).any(axis=1).sum()))
            seen.setdefault("test_rows", []).append(len(x))
            return np.nanmean(x, axis=1)

    evaluate_arrays(Spy, delta, ds.jammer, missing_at_test=missing)
    assert seen["train_nan"] == 0 and seen["test_nan_rows"] == seen["test_rows"]


def _table(values: dict) -> dict:
    return {(h, c, n): v for (h, c), row in values.items() for n, v in row.items()}


def test_the_default_is_the_candidate_whose_worst_margin_over_ed_is_largest():
    table = _table({
        ("1.5m", "sigma0"): {"ed": 0.90, "gls": 0.91, "bayes": 0.88, "bayes_t": 0.905},
        ("1.5m", "sigma6"): {"ed": 0.77, "gls": 0.773, "bayes": 0.80, "bayes_t": 0.79},
        ("5m", "sigma0"): {"ed": 0.98, "gls": 0.99, "bayes": 0.97, "bayes_t": 0.985},
    })  # fmt: skip
    assert margins_over_baseline(table, "bayes")[("1.5m", "sigma0")] == pytest.approx(-0.02)
    # bayes has the best single figure, but loses to ED at σ = 0; gls never gains much at σ = 6
    assert choose_default(table) == ("bayes_t", pytest.approx(0.005))
    # a candidate not scored everywhere cannot be chosen; ED itself (margin 0) is the fallback
    del table[("5m", "sigma0", "bayes_t")]
    assert choose_default(table)[0] == "gls"
    worse = {k: (v - 0.05 if k[2] != BASELINE else v) for k, v in table.items()}
    assert choose_default(worse) == ("ed", 0.0)


def test_auc_table_runs_every_candidate_under_every_condition(tiny_twin):
    ds = generate_dataset(tiny_twin, 300, seed=4)
    cands = (Candidate("ed", "ed"), Candidate("gls", "gls"), Candidate("needs_twin", "bayes"))
    params = lambda kind: None if kind == "bayes" else {}  # noqa: E731  (a twin that cannot supply gains)
    conds = (Condition(3.0), Condition(3.0, "heavy_tails"), Condition(3.0, "dropped_su"))
    table = auc_table(cands, {"tiny": (ds, params)}, conds)
    assert set(table) == {("tiny", c.tag, n) for c in conds for n in ("ed", "gls")}
    assert all(0.0 <= v <= 1.0 for v in table.values())
    assert table[("tiny", "sigma3", "ed")] != table[("tiny", "heavy_tails_sigma3", "ed")]
    assert {c.name for c in CANDIDATES} >= {"ed", "bayes", "bayes_t"} and set(STRESSES) == {
        "heavy_tails", "correlated", "dropped_su"}  # fmt: skip
