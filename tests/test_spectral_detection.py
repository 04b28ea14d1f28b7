"""The spectral test (models.detectors.spectral) and alarm characterisation (central.detection.characterise)
on a synthetic hall: log-distance gains, so the behaviour is pinned without ray tracing."""

from __future__ import annotations

import numpy as np
import pytest

from central.detection.characterise import Finding, InterferenceTracker, finding_of, likelihood_region
from contracts.band_plan import SUBBAND_LEAKAGE_DB, BandPlan, neighbour_sum
from models.detectors.base import DetectorError
from models.detectors.spectral import FORMAT, SpectralDetector

PLAN = BandPlan.from_dict({"center_hz": 3.7e9, "bandwidth_hz": 100e6, "scs_hz": 30e3, "subbands": 16})
K = PLAN.subbands
HALL = (20.0, 10.0)
XS, YS = np.meshgrid(np.arange(0.5, HALL[0], 1.0), np.arange(0.5, HALL[1], 1.0))
CELLS = np.column_stack([XS.ravel(), YS.ravel(), np.full(XS.size, 1.5)])
SUS = np.array([[1, 1], [10, 1], [19, 1], [1, 9], [10, 9], [19, 9], [5, 5], [15, 5]], dtype=float)
SHARES = np.array(PLAN.shares_db)
NOISE_DBM = -95.0 + 10 * np.log10(np.array([b.width_hz for b in PLAN.grid]) / PLAN.occupied_hz)


def gain_db(xy: np.ndarray) -> np.ndarray:
    """(P, n_su) log-distance path gain: −40 dB at 1 m, exponent 2.5."""
    d = np.linalg.norm(np.asarray(xy)[:, None, :2] - SUS[None], axis=2)
    return -40.0 - 25.0 * np.log10(np.maximum(d, 0.5))


GAIN_LIN = 10 ** (gain_db(CELLS) / 10)


def read_dbm(mw: np.ndarray) -> np.ndarray:
    """What a node reads (dBm) of the power (mW) in each sub-band: its estimator leaks SUBBAND_LEAKAGE_DB
    of every sub-band into each neighbour, as the twin predicts."""
    return 10 * np.log10(mw + 10 ** (SUBBAND_LEAKAGE_DB / 10) * neighbour_sum(mw))


def received_dbm(tx_xy, tx_subband_dbm) -> np.ndarray:
    """(n_su, K) power from point sources with EIRP per sub-band (−inf: off), noise included."""
    mw = (10 ** ((np.asarray(tx_subband_dbm)[:, None, :] + gain_db(tx_xy)[..., None]) / 10)).sum(axis=0)
    return read_dbm(mw + 10 ** (NOISE_DBM / 10))


def allocation(rng) -> dict[str, tuple[int, ...]]:
    start, a, b = int(rng.integers(K)), int(rng.integers(2, 6)), int(rng.integers(2, 6))
    return {"tx-1": tuple(sorted((start + i) % K for i in range(a))),
            "tx-2": tuple(sorted((start + a + i) % K for i in range(b)))}  # fmt: skip


def groups_of(alloc) -> np.ndarray:
    """(K,) the transmitter index each sub-band is allocated to (−1: idle), as the engine builds it."""
    g = np.full(K, -1)
    for t, tx in enumerate(("tx-1", "tx-2")):
        g[list(alloc[tx])] = t
    return g


def snapshot(rng, sigma_db=2.0, jammer=None, alloc=None, tx_xy=((4.0, 3.0), (16.0, 7.0))):
    """(measured, predicted, allocation): two legitimate TXs per their allocation, model error σ per
    link, plus an optional jammer (xy, EIRP per sub-band)."""
    alloc = alloc or allocation(rng)
    p = np.full((2, K), -np.inf)
    for t, tx in enumerate(("tx-1", "tx-2")):
        p[t, list(alloc[tx])] = 20.0 + SHARES[list(alloc[tx])]
    pred = received_dbm(np.array(tx_xy), p)
    err = rng.normal(0, sigma_db, (2, len(SUS)))
    legit = (10 ** ((p[:, None, :] + gain_db(np.array(tx_xy))[..., None] + err[..., None]) / 10)).sum(axis=0)
    mw = legit + 10 ** (NOISE_DBM / 10) * 10 ** (rng.normal(0, 0.1, (len(SUS), K)) / 10)
    if jammer is not None:
        xy, eirp = jammer
        mw = mw + 10 ** ((eirp[None, :] + gain_db(np.array([xy]))[0][:, None]) / 10)
    return read_dbm(mw), pred, alloc


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(1)
    data = [snapshot(rng) for _ in range(1500)]
    det = SpectralDetector(CELLS, GAIN_LIN, NOISE_DBM, target_far=0.01)
    det.fit(np.array([d[0] for d in data]), np.array([d[1] for d in data]), np.array([groups_of(d[2]) for d in data]))
    return det


def narrowband(b: int, dbm: float) -> np.ndarray:
    e = np.full(K, -np.inf)
    e[b] = dbm
    return e


def test_normal_snapshots_it_never_saw_alarm_at_about_the_target_rate(fitted):
    rng = np.random.default_rng(2)
    data = [snapshot(rng) for _ in range(2000)]
    s = fitted.score(np.array([d[0] for d in data]), np.array([d[1] for d in data]), np.array([groups_of(d[2]) for d in data]))
    far = float(np.mean(s > fitted.threshold))
    assert 0.002 <= far <= 0.03, far


def test_normal_statistics_separate_idle_from_busy_sub_bands_and_a_links_error_from_its_sub_bands(fitted):
    idle, busy = fitted.contrast_stats.sigma_db[..., 0], fitted.contrast_stats.sigma_db[..., 1]
    link = fitted.allocation_stats.sigma_db[..., 1]
    assert np.median(idle) < 0.3  # noise-floor scatter
    assert np.median(busy) < 0.5  # the 2 dB link error is common to an allocation: the contrast takes it out ...
    assert 1.5 < np.median(link) < 2.5  # ... and the allocation residual carries it, once per link


def test_a_weak_narrowband_jammer_in_an_idle_sub_band_is_found_named_and_located(fitted):
    rng = np.random.default_rng(3)
    alloc = {"tx-1": (0, 1, 2), "tx-2": (10, 11)}
    meas, pred, _ = snapshot(rng, jammer=((12.0, 4.0), narrowband(6, -10.0)), alloc=alloc)
    ev = fitted.evidence(meas, pred, groups_of(alloc))
    assert ev.score > 10 * fitted.threshold
    assert ev.affected == (6,)
    fit = fitted.locate(meas, pred, ev.affected)
    assert np.hypot(fit.position_m[0] - 12.0, fit.position_m[1] - 4.0) <= 1.5
    assert abs(fit.eirp_dbm - (-10.0)) < 2.0


def test_the_band_total_hides_what_the_spectral_test_sees(fitted):
    """A 0 dBm jammer in one busy sub-band: < 1 dB on any SU's band total, yet past the threshold."""
    rng = np.random.default_rng(4)
    alloc = {"tx-1": tuple(range(0, 8)), "tx-2": tuple(range(8, 16))}
    meas, pred, _ = snapshot(rng, sigma_db=0.0, jammer=((7.0, 5.0), narrowband(9, 0.0)), alloc=alloc)
    clean, _, _ = snapshot(np.random.default_rng(4), sigma_db=0.0, alloc=alloc)
    total = lambda x: 10 * np.log10((10 ** (x / 10)).sum(axis=1))  # noqa: E731
    assert np.max(total(meas) - total(clean)) < 1.0
    assert fitted.evidence(meas, pred, groups_of(alloc)).score > fitted.threshold


def test_an_emitter_that_follows_a_transmitters_allocation_shows_in_the_allocation_residual_only(fitted):
    """10 dB under tx-2's spectral density in tx-2's sub-bands, next to the SU at (1, 9), far from tx-2: the contrast
    takes it out with tx-2's link error, the allocation residual names tx-2."""
    rng = np.random.default_rng(13)
    alloc = {"tx-1": (0, 1, 2, 3), "tx-2": (8, 9, 10, 11, 12)}
    deceptive = np.where(np.isin(np.arange(K), alloc["tx-2"]), 10.0 + SHARES, -np.inf)
    meas, pred, _ = snapshot(rng, jammer=((2.0, 8.0), deceptive), alloc=alloc)
    ev = fitted.evidence(meas, pred, groups_of(alloc))
    z_contrast, z_allocation = fitted.component_scores(meas[None], pred[None], groups_of(alloc)[None])
    assert z_contrast[0] < 3.0 < 6.0 < z_allocation[0]
    assert ev.score > fitted.threshold and ev.component == "allocation" and ev.transmitter == 1
    assert ev.affected == alloc["tx-2"]
    assert np.hypot(*(fitted.positions_m[ev.cell][:2] - (2.0, 8.0))) <= 3.0


def test_a_detector_of_another_version_is_refused_with_a_reason(fitted, tmp_path):
    meta = fitted.save(tmp_path / "spectral")
    doc = meta.read_text().replace(FORMAT, "rftwin-spectral-detector/1")
    meta.write_text(doc)
    with pytest.raises(DetectorError, match="learn it again"):
        SpectralDetector.load(tmp_path / "spectral")


def test_save_and_load_give_the_same_scores(fitted, tmp_path):
    rng = np.random.default_rng(5)
    data = [snapshot(rng) for _ in range(20)]
    m, p, g = np.array([d[0] for d in data]), np.array([d[1] for d in data]), np.array([groups_of(d[2]) for d in data])
    fitted.save(tmp_path / "spectral")
    again = SpectralDetector.load(tmp_path / "spectral")
    np.testing.assert_allclose(again.score(m, p, g), fitted.score(m, p, g))
    assert again.threshold == fitted.threshold


def test_unusable_snapshots_are_not_scored(fitted):
    rng = np.random.default_rng(6)
    meas, pred, _ = snapshot(rng)
    meas[1:] = np.nan
    assert np.isnan(fitted.score(meas[None], pred[None])[0])


# ------------------------------------------------------------------ characterisation


def tracker():
    return InterferenceTracker(PLAN, CELLS, HALL)


def run(fitted, rng, jammer_at, n=30, slot=10, jammer_xy=(12.0, 6.0)):
    """Feed ``n`` snapshots (allocations change every ``slot``) to a tracker; ``jammer_at(i, alloc)``
    gives the jammer's EIRP per sub-band (or None: off)."""
    tr = tracker()
    alloc = allocation(rng)
    for i in range(n):
        if i % slot == 0:
            alloc = allocation(rng)
        eirp = jammer_at(i, alloc)
        meas, pred, _ = snapshot(rng, sigma_db=1.0, alloc=alloc, jammer=None if eirp is None else (jammer_xy, eirp))
        ev = fitted.evidence(meas, pred, groups_of(alloc))
        tr.add(finding_of(i, fitted, ev, meas, pred, alloc, ("tx-1", "tx-2")))  # groups_of's order
    return tr.interference()


def test_a_static_narrowband_jammer_is_narrowband_with_its_sub_bands_to_avoid(fitted):
    got = run(fitted, np.random.default_rng(7), lambda i, a: np.where(np.isin(np.arange(K), [5, 6]), 7.0, -np.inf))
    assert got.interference_class == "narrowband"
    assert got.subbands == (5, 6) and got.avoid_subbands == (5, 6)
    assert got.countermeasure.startswith("narrowband: exclude sub-bands 5–6 (PRBs 85–")
    assert got.time_pattern == "continuous"
    assert np.hypot(got.position_m[0] - 12.0, got.position_m[1] - 6.0) <= 2.0
    assert any(np.hypot(x - 12.0, y - 6.0) <= 1.0 for x, y in got.region_m)
    assert abs(got.eirp_dbm - 10.0) < 2.0  # 7 dBm in each of two sub-bands


def test_an_emitter_that_follows_a_transmitters_allocation_is_named_deceptive(fitted):
    """At tx-2's spectral density less 5 dB, by the SU at (1, 9), 15 m from tx-2."""
    got = run(fitted, np.random.default_rng(8), lambda i, a: np.where(np.isin(np.arange(K), a["tx-2"]), 15.0 + SHARES, -np.inf),
              jammer_xy=(2.0, 8.0))  # fmt: skip
    assert got.interference_class == "deceptive" and got.mimics_tx == "tx-2"
    assert got.avoid_subbands == ()
    assert "mimicking TX tx-2" in got.countermeasure


def test_a_sweep_is_sweeping_and_a_wideband_jammer_wideband(fitted):
    sweep = run(fitted, np.random.default_rng(9), lambda i, a: narrowband(i % K, 0.0))
    assert sweep.interference_class == "sweeping" and sweep.avoid_subbands == ()
    wide = run(fitted, np.random.default_rng(10), lambda i, a: 10.0 + SHARES)
    assert wide.interference_class == "wideband" and wide.subbands == tuple(range(K))
    assert wide.countermeasure.startswith("wideband: move band; locate and remove near (")
    assert abs(wide.eirp_dbm - 10.0) < 3.0  # seen in the idle sub-bands only, sent over the whole grid


def test_a_jammer_on_a_third_of_the_time_is_duty_cycled_with_its_duty(fitted):
    on = np.random.default_rng(11).random(60) < 0.33
    got = run(fitted, np.random.default_rng(12), lambda i, a: (10.0 + SHARES) if on[i] else None, n=60)
    assert got.time_pattern == "duty-cycled"
    assert abs(got.duty - on.mean()) < 0.1
    assert "(on " in got.countermeasure


def finding(i, subbands, alloc, tx=None, seen=True, evidence_z=None) -> Finding:
    """A tracker's input as the engine makes it, without a location fit."""
    return Finding(i, seen, tuple(sorted(subbands)) if seen else (), alloc, transmitter=tx, evidence_z=evidence_z)


def test_an_emitter_present_in_every_snapshot_is_continuous_though_the_threshold_misses_it_in_one_of_three():
    alloc = {"tx-1": (1, 2), "tx-2": (8, 9)}
    tr = tracker()
    for i in range(30):
        tr.add(finding(i, (5,), alloc, seen=i % 3 != 0, evidence_z=3.0 if i % 3 == 0 else 8.0))  # threshold ≈ 3.1
    got = tr.interference()
    assert got.time_pattern == "continuous" and got.duty == 1.0
    off = tracker()
    for i in range(30):  # on in a third of the snapshots, normal evidence in the rest
        off.add(finding(i, (5,), alloc, seen=i % 3 == 0, evidence_z=8.0 if i % 3 == 0 else 0.5))
    assert off.interference().time_pattern == "duty-cycled" and off.interference().duty == pytest.approx(1 / 3, abs=0.01)


def test_nothing_is_said_before_the_emitter_was_seen_in_three_snapshots():
    alloc = {"tx-1": (1, 2), "tx-2": (8, 9)}
    tr = tracker()
    for i, seen in enumerate((True, False, True)):
        tr.add(finding(i, (5,), alloc, seen=seen))
    assert tr.interference() is None  # two sightings: one of them may be the test's own false crossing
    tr.add(finding(3, (5,), alloc))
    assert tr.interference().interference_class == "narrowband"


def test_an_emitter_the_test_puts_in_one_transmitters_moving_allocation_is_deceptive_despite_stray_sub_bands():
    allocs = [{"tx-1": (1, 2), "tx-2": (8, 9, 10)}, {"tx-1": (4, 5, 6), "tx-2": (12, 13)}, {"tx-1": (14,), "tx-2": (0, 1, 2)}]
    tr = tracker()
    for i in range(30):
        a = allocs[i // 10]
        tr.add(finding(i, set(a["tx-2"]) | {3, 7, 11}, a, tx="tx-2"))  # stray contrast sub-bands: Jaccard ≤ 0.5
    got = tr.interference()
    assert got.interference_class == "deceptive" and got.mimics_tx == "tx-2" and got.subbands == (0, 1, 2)


def test_an_emitter_in_a_sub_band_that_one_transmitter_keeps_being_given_is_narrowband_not_deceptive():
    allocs = [{"tx-1": (5,), "tx-2": (8, 9)}, {"tx-1": (4, 5, 6), "tx-2": (12, 13)}, {"tx-1": (5, 6), "tx-2": (0, 1)}]
    tr = tracker()
    for i in range(30):
        tr.add(finding(i, (5,), allocs[i // 10], tx="tx-1"))  # the allocation residual names whoever holds 5
    got = tr.interference()
    assert got.interference_class == "narrowband" and got.subbands == (5,) and got.mimics_tx is None


def test_the_90_percent_region_holds_90_percent_of_the_likelihood():
    cost = np.random.default_rng(0).random(500) * 10
    lik, mask = likelihood_region(cost, 3.0, 0.9)
    assert lik.max() == 1.0
    assert lik[mask].sum() >= 0.9 * lik.sum() > lik[mask].sum() - lik[mask].min()


def test_the_contrast_residual_removes_a_links_error_but_keeps_a_jammer_in_its_allocation():
    from models.detectors.spectral import contrast

    leak = 10 ** (-25.0 / 10)
    noise = 10 ** (NOISE_DBM / 10)

    def powers(signal_mw):  # what the node reads: noise, signal, and the estimator's leakage into the neighbours
        nb = np.zeros_like(signal_mw)
        nb[:, 1:] += signal_mw[:, :-1]
        nb[:, :-1] += signal_mw[:, 1:]
        return 10 * np.log10(noise + signal_mw + leak * nb)

    expected = np.zeros((len(SUS), K))
    expected[:, [2, 3, 4, 5]] = 10 ** (np.linspace(-60, -40, len(SUS)) / 10)[:, None]  # tx-1's block
    expected[:, 9] = 1e-7  # tx-2, one sub-band
    world = expected.copy()
    world[:, [2, 3, 4, 5]] *= 10 ** 1.2  # the twin under-predicts tx-1's link to every SU by 12 dB ...
    world[3, 4] *= 4.0  # ... and a jammer adds 3 × as much again in sub-band 4 at SU 3 (+6 dB)
    groups = np.full(K, -1)
    groups[[2, 3, 4, 5]], groups[9] = 0, 1
    meas, pred = powers(world), powers(expected)
    rc = contrast(meas[None], pred[None], groups[None], -25.0, NOISE_DBM)[0]
    assert np.abs(np.delete(rc[:, [2, 3, 4, 5]], 2, axis=1)).max() < 0.1 and rc[3, 4] == pytest.approx(6.0, abs=0.1)
    assert np.isnan(rc[:, 9]).all()  # one sub-band: no reference within the allocation
    # the idle neighbours of tx-1's block read mostly its leakage, 12 dB more than predicted: not used ...
    assert np.isnan(rc[:, [1, 6]]).all() and np.abs((meas - pred)[:, [1, 6]]).min() > 5.0
    # ... unless something of their own stands above it: a jammer in sub-band 6 at SU 5
    world[5, 6] += 100 * world[5, 5]
    rc = contrast(powers(world)[None], pred[None], groups[None], -25.0, NOISE_DBM)[0]
    assert rc[5, 6] > 15.0 and np.isnan(np.delete(rc[:, 6], 5)).all()


def test_the_allocation_median_is_numpys_nanmedian_over_each_allocation():
    from models.detectors.spectral import allocation_nanmedian

    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 5, K))
    x[rng.random(x.shape) < 0.3] = np.nan  # unusable readings are left out
    groups = rng.integers(-1, 4, size=(40, K))
    groups[0] = -1  # nothing allocated
    x[1][:, groups[1] == 2] = np.nan  # an allocation with no usable reading at all
    med = allocation_nanmedian(x, groups)
    assert med.shape == (40, 5, 4)
    for n in range(40):
        for t in range(4):
            sb = groups[n] == t
            for j in range(5):
                v = x[n, j, sb]
                want = np.median(v[~np.isnan(v)]) if (~np.isnan(v)).any() else np.nan
                assert med[n, j, t] == pytest.approx(want, nan_ok=True)
