"""LoS/NLoS twin dataset, features and baselines (issue 7): tiny-hall ray tracing and synthetic channels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from central.los import segment_hits_box
from models.los.dataset import (
    LosDataset,
    LosDatasetSettings,
    add_awgn,
    channels_from_paths,
    load_los_dataset,
    ls_estimate,
    normalise_channels,
    split_by_position,
)
from models.los.features import (
    FEATURE_NAMES,
    adcpm,
    angle_bins,
    downsample_max,
    handcrafted_features,
    log_normalise,
    power_delay_profile,
)

SPACING_HZ = 240e3


def plane_wave(rows, cols, n_sc, u_row, u_col, delay_bin, power=1.0, spacing_hz=SPACING_HZ):
    """One path: phase step u (cycles per element) along each array axis, delay on bin ``delay_bin``."""
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    steer = np.exp(2j * np.pi * (u_row * r + u_col * c)).reshape(rows * cols)
    f = (np.arange(n_sc) - n_sc // 2) * spacing_hz
    tau = delay_bin / (n_sc * spacing_hz)
    return (np.sqrt(power) * steer[:, None] * np.exp(-2j * np.pi * f * tau)[None, :]).astype(np.complex64)


# --------------------------------------------------------------------------------------------------
# Ray-traced dataset on the tiny hall

# Near the west wall, 0.5 m above the cabinet's top (x 3..5, y 2..4, z 0..2): a deep shadow on its east side
# (a ceiling gNB would leave the tiny hall's 2 m cabinet only a sliver of shadow, all of it near grazing).
GNB = (0.7, 2.9, 2.5)


@pytest.fixture(scope="module")
def tiny_settings_los():
    from tests.conftest import DATA

    return LosDatasetSettings(site=str(DATA / "tiny_hall.toml"), gnb_position_m=GNB, rows=4, cols=8,
                              num_subcarriers=128, ue_spacing_m=1.0, ue_jitter_m=0.0, max_depth=2,
                              samples_per_src=5000, max_paths_per_ue=500, chain_hash_slots_per_ue=5000)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_los(tiny_settings_los, tmp_path_factory):
    from evaluation.los_dataset import generate_los_dataset

    cache = tmp_path_factory.mktemp("los-cache")
    calls = []
    ds = generate_los_dataset(tiny_settings_los, cache_dir=cache, progress=lambda d, t: calls.append((d, t)))
    return ds, cache, calls


@pytest.mark.raytracing
def test_dataset_shapes_dtypes_and_normalisation(tiny_los, tiny_settings_los, tiny_site):
    ds, _, calls = tiny_los
    s = tiny_settings_los
    assert ds.meta["cache_hit"] is False and calls and calls[-1] == (ds.n, ds.n)
    assert ds.n == 8 * 6 - 4  # 1 m grid over 8 m × 6 m, minus the cabinet's four cells
    assert ds.h.shape == (ds.n, 32, 128) and ds.h.dtype == np.complex64
    assert ds.los.dtype == bool and ds.ue_positions_m.shape == (ds.n, 3)
    assert np.allclose(ds.ue_positions_m[:, 2], s.ue_height_m)
    assert np.allclose(np.mean(np.abs(ds.h) ** 2, axis=(1, 2)), 1.0, rtol=1e-4)
    assert ds.gain_db.shape == (ds.n,) and np.all((ds.gain_db < -30) & (ds.gain_db > -90))
    assert np.allclose(ds.rx_power_dbm, s.ue_tx_power_dbm + ds.gain_db)
    assert np.all(ds.num_paths >= 1)
    assert ds.meta["site_hash"] == tiny_site.content_hash() and ds.meta["sionna_version"]
    assert 0.2 < ds.los_fraction < 0.95


@pytest.mark.raytracing
def test_los_labels_follow_the_geometry(tiny_los, tiny_site):
    ds, _, _ = tiny_los
    (cabinet,) = tiny_site.obstacles
    lo, hi, m = np.asarray(cabinet.min_m), np.asarray(cabinet.max_m), 0.05
    # Geometrical optics is discontinuous at a grazing ray: compare where 5 cm either way agree.
    surely_blocked = np.array([segment_hits_box(GNB, p, lo + m, hi - m) for p in ds.ue_positions_m])
    maybe_blocked = np.array([segment_hits_box(GNB, p, lo - m, hi + m) for p in ds.ue_positions_m])
    clear = surely_blocked == maybe_blocked
    assert clear.sum() >= ds.n - 2 and 8 <= surely_blocked.sum() <= 20
    assert np.array_equal(ds.los[clear], ~surely_blocked[clear])
    at = {tuple(np.round(p[:2], 2)): label for p, label in zip(ds.ue_positions_m, ds.los)}
    assert at[(5.5, 2.5)] is np.False_  # right behind the cabinet as seen from the gNB
    assert at[(6.5, 3.5)] is np.False_
    assert at[(1.5, 0.5)] is np.True_  # in plain view
    assert at[(2.5, 4.5)] is np.True_


@pytest.mark.raytracing
def test_los_channel_peaks_where_the_geometry_says(tiny_los):
    """End-to-end convention check: the strongest ADCPM bin of a LoS UE is its direct path, at delay
    bin 0 and at the spatial frequencies the gNB→UE direction gives on the panel (rows along −z,
    columns along +y for the default orientation)."""
    ds, _, _ = tiny_los
    g = adcpm(ds.h, 4, 8)
    d = ds.ue_positions_m - np.asarray(GNB)
    k = d / np.linalg.norm(d, axis=1, keepdims=True)
    u_row, u_col = -0.5 * k[:, 2], 0.5 * k[:, 1]
    hits = 0
    idx = np.flatnonzero(ds.los)
    for i in idx:
        r, c, n = np.unravel_index(np.argmax(g[i]), g[i].shape)
        near = lambda u, b, m: abs((u - angle_bins(m)[b] + 0.5) % 1.0 - 0.5) <= 1.0 / m + 1e-9  # noqa: E731
        hits += n == 0 and near(u_row[i], r, 4) and near(u_col[i], c, 8)
    assert hits >= 0.8 * len(idx), (hits, len(idx))


@pytest.mark.raytracing
def test_second_call_hits_the_cache_and_round_trips(tiny_los, tiny_settings_los, monkeypatch, tmp_path):
    import evaluation.los_dataset as gen

    ds, cache, _ = tiny_los
    monkeypatch.setattr(gen, "trace_channels", lambda *a, **k: pytest.fail("traced again despite the cache"))
    again = gen.generate_los_dataset(tiny_settings_los, cache_dir=cache)
    assert again.meta["cache_hit"] is True
    assert np.array_equal(again.h, ds.h) and np.array_equal(again.los, ds.los)
    assert again.settings == tiny_settings_los
    # Another setting is another key (would trace: the monkeypatch fails the test if it were a hit).
    with pytest.raises(pytest.fail.Exception):
        gen.generate_los_dataset(dataclasses.replace(tiny_settings_los, seed=1), cache_dir=cache)

    path = ds.save(tmp_path / "los")
    back = load_los_dataset(path)
    assert path.suffix == ".npz" and not list(tmp_path.glob("*.tmp"))
    for name in ("h", "los", "ue_positions_m", "gain_db", "num_paths"):
        assert np.array_equal(getattr(back, name), getattr(ds, name)), name
        assert getattr(back, name).dtype == getattr(ds, name).dtype, name
    assert back.settings == ds.settings and back.meta["site_hash"] == ds.meta["site_hash"]


def test_bad_settings_and_bad_positions_are_refused(tiny_site):
    from evaluation.los_dataset import ue_positions

    with pytest.raises(ValueError, match="rows"):
        LosDatasetSettings(rows=0)
    with pytest.raises(ValueError, match="ue_jitter_m"):
        LosDatasetSettings(ue_spacing_m=0.5, ue_jitter_m=0.3)
    with pytest.raises(ValueError, match="num_subcarriers"):
        LosDatasetSettings(num_subcarriers=511)
    with pytest.raises(ValueError, match="ue_height_m"):
        ue_positions(tiny_site, LosDatasetSettings(ue_height_m=9.0))
    s = LosDatasetSettings()
    assert s.bandwidth_hz >= 100e6 and s.delay_bin_m <= 3.0
    assert LosDatasetSettings.from_dict(s.to_dict()) == s


def test_ue_grid_is_seeded_jittered_free_and_capped(tiny_site):
    from evaluation.los_dataset import ue_positions

    s = LosDatasetSettings(site="tiny", ue_spacing_m=0.5, ue_jitter_m=0.25, seed=3)
    a, b = ue_positions(tiny_site, s), ue_positions(tiny_site, s)
    assert np.array_equal(a, b) and len(a) > 150
    assert not any(tiny_site.obstacle_at(tuple(p)) for p in a)
    assert np.all((a[:, :2] > 0) & (a[:, :2] < np.array(tiny_site.hall_size_m[:2])))
    capped = ue_positions(tiny_site, dataclasses.replace(s, n_samples=20))
    assert len(capped) == 20 and {tuple(p) for p in capped} <= {tuple(p) for p in a}


# --------------------------------------------------------------------------------------------------
# Channels from paths, normalisation, split


def test_channels_from_paths_is_the_sum_of_delayed_paths():
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((3, 4, 5)) + 1j * rng.standard_normal((3, 4, 5))).astype(np.complex64)
    tau = rng.uniform(0, 2e-7, (3, 5))
    valid = rng.random((3, 5)) < 0.7
    f = (np.arange(16) - 8) * SPACING_HZ
    h = channels_from_paths(a, tau, f, valid)
    for i in range(3):
        ref = (a[i][:, valid[i]] @ np.exp(-2j * np.pi * tau[i, valid[i], None] * f)).astype(np.complex64)
        assert np.allclose(h[i], ref, atol=1e-4)
    hn, gain = normalise_channels(h)
    assert np.allclose(np.mean(np.abs(hn) ** 2, axis=(1, 2)), 1.0, rtol=1e-5)
    assert np.allclose(gain, 10 * np.log10(np.mean(np.abs(h.astype(complex)) ** 2, axis=(1, 2))), atol=1e-4)
    with pytest.raises(ValueError, match="zero"):
        normalise_channels(np.zeros((1, 2, 2), np.complex64))


def test_split_holds_out_whole_blocks():
    rng = np.random.default_rng(1)
    pos = np.column_stack([rng.uniform(0, 40, 3000), rng.uniform(0, 40, 3000), np.full(3000, 1.5)])
    train, test = split_by_position(pos, 0.25, seed=0, block_m=4.0)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 3000
    assert 0.22 < len(test) / 3000 < 0.30
    blk = lambda idx: {tuple(b) for b in np.floor(pos[idx, :2] / 4.0).astype(int)}  # noqa: E731
    assert not blk(train) & blk(test)  # no block on both sides
    again = split_by_position(pos, 0.25, seed=0, block_m=4.0)
    assert np.array_equal(again[1], test)
    assert not np.array_equal(split_by_position(pos, 0.25, seed=1)[1], test)
    with pytest.raises(ValueError, match="holdout_fraction"):
        split_by_position(pos, 1.0)
    with pytest.raises(ValueError, match="one"):
        split_by_position(pos[:5] * 0.01, 0.5)


def test_split_with_labels_keeps_the_los_fraction():
    rng = np.random.default_rng(2)
    pos = np.column_stack([rng.uniform(0, 40, 4000), rng.uniform(0, 40, 4000)])
    los = (pos[:, 0] < 14) | (pos[:, 1] > 30)  # LoS in large connected areas, as behind production lines
    fractions = []
    for seed in range(5):
        train, test = split_by_position(pos, 0.25, seed=seed, labels=los)
        assert 0.2 < len(test) / len(pos) < 0.32
        fractions.append(los[test].mean())
    assert np.max(np.abs(np.array(fractions) - los.mean())) < 0.06, (fractions, los.mean())
    with pytest.raises(ValueError, match="labels"):
        split_by_position(pos, 0.25, labels=los[:10])


def test_split_accepts_a_dataset():
    s = LosDatasetSettings(rows=1, cols=2, num_subcarriers=2)
    pos = np.column_stack([np.arange(20.0), np.zeros(20), np.full(20, 1.5)])
    ds = LosDataset(np.ones((20, 2, 2), np.complex64), np.arange(20) % 2 == 0, pos, np.zeros(20, np.float32),
                    np.ones(20, np.int32), s)  # fmt: skip
    train, test = split_by_position(ds, 0.3, seed=0, block_m=4.0)
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(20))
    assert ds.subset(test).n == len(test)


# --------------------------------------------------------------------------------------------------
# Noise: the SNR definition


@pytest.mark.parametrize("fn", [add_awgn, ls_estimate])
def test_noise_has_the_stated_snr(fn):
    rng = np.random.default_rng(7)
    h = np.stack([plane_wave(4, 8, 64, 0.1, -0.2, 3, power=p) for p in (1.0, 1e-6, 50.0)])
    for snr_db in (-15.0, 0.0, 15.0):
        est = fn(h, snr_db, rng)
        assert est.dtype == np.complex64 and est.shape == h.shape
        noise = est.astype(complex) - h
        p_signal = np.mean(np.abs(h) ** 2, axis=(1, 2))
        measured = 10 * np.log10(p_signal / np.mean(np.abs(noise) ** 2, axis=(1, 2)))
        assert np.allclose(measured, snr_db, atol=0.25), measured  # 2048 entries per sample: ±0.1 dB
        # circular and white: real and imaginary parts equal, no correlation across subcarriers
        assert abs(np.mean(noise.real**2) / np.mean(noise.imag**2) - 1) < 0.1
        assert abs(np.mean(noise[..., 1:] * noise[..., :-1].conj())) < 0.05 * np.mean(np.abs(noise) ** 2)
    per_sample = fn(h, np.array([np.inf, 0.0, np.inf]), rng)
    assert np.allclose(per_sample[0], h[0], atol=1e-6) and not np.allclose(per_sample[1], h[1], atol=1e-3)
    with pytest.raises(ValueError):
        fn(h[0], 0.0, rng)


# --------------------------------------------------------------------------------------------------
# Features


def test_adcpm_of_a_plane_wave_peaks_at_its_angle_and_delay_bin():
    rows, cols, n_sc = 4, 8, 64
    u_row, u_col, delay = 0.25, -0.375, 5  # on-grid: rows bin 3 of (-0.5..0.25), cols bin 1 of (-0.5..0.375)
    h = plane_wave(rows, cols, n_sc, u_row, u_col, delay, power=2.0)[None]
    g = adcpm(h, rows, cols)
    assert g.shape == (1, rows, cols, n_sc) and g.dtype == np.float32
    assert np.unravel_index(np.argmax(g[0]), g[0].shape) == (3, 1, delay)
    assert angle_bins(rows)[3] == u_row and angle_bins(cols)[1] == u_col
    assert np.isclose(g.max(), 2.0 * rows * cols * n_sc, rtol=1e-4)  # all the energy in one bin
    assert np.isclose(g.sum(), np.sum(np.abs(h) ** 2), rtol=1e-4)  # unitary transforms
    # off-grid: the peak is the nearest bin
    g2 = adcpm(plane_wave(rows, cols, n_sc, 0.02, 0.14, 9.3)[None], rows, cols)
    assert np.unravel_index(np.argmax(g2[0]), g2[0].shape) == (2, 5, 9)


def test_downsample_is_a_non_overlapping_max_pool():
    rng = np.random.default_rng(0)
    x = rng.random((2, 8, 16, 512)).astype(np.float32)
    y = downsample_max(x)
    assert y.shape == (2, 32, 128) and y.dtype == np.float32
    # angle bin a = r'·8 + c' pools rows 2r'..2r'+1, cols 2c'..2c'+1; delay bin d pools 4d..4d+3
    for a, d in [(0, 0), (13, 77), (31, 127)]:
        r, c = divmod(a, 8)
        assert y[1, a, d] == x[1, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2, 4 * d : 4 * d + 4].max()
    assert np.isclose(y.max(), x.max())
    spike = np.zeros((1, 8, 16, 512), np.float32)
    spike[0, 5, 9, 301] = 1.0
    assert np.argwhere(downsample_max(spike)[0]).tolist() == [[2 * 8 + 4, 75]]
    flat = downsample_max(x.reshape(2, 128, 512), rows=8, cols=16)
    assert np.array_equal(flat, y)
    assert downsample_max(rng.random((1, 4, 8, 128)).astype(np.float32)).shape == (1, 32, 128)  # (1, 1) pool
    with pytest.raises(ValueError, match="delay"):
        downsample_max(rng.random((1, 8, 16, 500)))
    with pytest.raises(ValueError, match="angle"):
        downsample_max(rng.random((1, 2, 4, 512)))
    with pytest.raises(ValueError, match="rows and cols"):
        downsample_max(rng.random((1, 128, 512)))


def test_log_normalise_is_per_sample_and_bounded():
    x = np.zeros((3, 32, 128), np.float32)
    x[0, 1, 2] = 1e-9
    x[0, 4, 5] = 1e-12  # 30 dB below the peak
    x[1] = 5.0
    out = log_normalise(x, dynamic_range_db=60.0)
    assert out.shape == (3, 1, 32, 128) and out.dtype == np.float32
    assert out[0, 0, 1, 2] == 1.0 and np.isclose(out[0, 0, 4, 5], 0.5) and out[0, 0, 0, 0] == 0.0
    assert np.all(out[1] == 1.0) and np.all(out[2] == 0.0)  # flat sample; all-zero sample stays finite
    assert np.allclose(log_normalise(x * 1e6), out)  # scale-free


def test_pdp_and_rms_delay_spread_of_a_two_tap_channel():
    rows, cols, n_sc = 2, 4, 128
    p1, p2, n1, n2 = 1.0, 0.4, 3, 10
    h = (plane_wave(rows, cols, n_sc, 0.0, 0.25, n1, p1) + plane_wave(rows, cols, n_sc, 0.25, -0.25, n2, p2))[None]
    pdp = power_delay_profile(h)
    assert np.isclose(pdp[0, n1], p1, rtol=1e-4) and np.isclose(pdp[0, n2], p2, rtol=1e-4)
    assert np.isclose(pdp.sum(), np.mean(np.abs(h) ** 2), rtol=1e-4)
    f = handcrafted_features(h, rows, cols, subcarrier_spacing_hz=SPACING_HZ)
    assert f.shape == (1, len(FEATURE_NAMES))
    bin_ns = 1e9 / (n_sc * SPACING_HZ)
    closed_form = (n2 - n1) * bin_ns * np.sqrt(p1 * p2) / (p1 + p2)
    assert np.isclose(f[0, FEATURE_NAMES.index("rms_delay_spread_ns")], closed_form, rtol=1e-3)
    assert np.isclose(f[0, FEATURE_NAMES.index("rss_db")], 10 * np.log10(p1 + p2), atol=1e-3)
    assert np.isclose(f[0, FEATURE_NAMES.index("max_path_power_db")], 10 * np.log10(p1), atol=1e-3)
    assert f[0, FEATURE_NAMES.index("rise_time_ns")] == 0.0  # the first tap is the strongest
    # the stronger tap later: rise time = their distance; gain_db shifts the power features only
    h2 = (plane_wave(rows, cols, n_sc, 0.0, 0.0, n1, 0.2) + plane_wave(rows, cols, n_sc, 0.0, 0.0, n2, 1.0))[None]
    f2 = handcrafted_features(h2, rows, cols, subcarrier_spacing_hz=SPACING_HZ, gain_db=-60.0)
    assert np.isclose(f2[0, FEATURE_NAMES.index("rise_time_ns")], (n2 - n1) * bin_ns)
    assert np.isclose(f2[0, FEATURE_NAMES.index("rss_db")], 10 * np.log10(1.2) - 60.0, atol=1e-3)


def test_angle_spreads_are_zero_for_one_path_and_grow_with_two():
    rows, cols, n_sc = 4, 8, 64
    one = plane_wave(rows, cols, n_sc, 0.25, -0.25, 2)[None]
    two = one + plane_wave(rows, cols, n_sc, -0.25, 0.25, 6)[None]
    f1, f2 = handcrafted_features(np.concatenate([one, two]), rows, cols)
    az, el = FEATURE_NAMES.index("aoa_spread_az_deg"), FEATURE_NAMES.index("aoa_spread_el_deg")
    assert f1[az] < 1e-3 and f1[el] < 1e-3
    assert np.isclose(f2[az], 30.0, atol=1e-2) and np.isclose(f2[el], 30.0, atol=1e-2)  # arcsin(±0.5) = ±30°


def test_features_are_finite_on_noise_and_validate_input():
    rng = np.random.default_rng(0)
    h = ls_estimate(np.stack([plane_wave(4, 8, 64, 0.1, 0.2, 4)] * 5), -15.0, rng)
    f = handcrafted_features(h, 4, 8)
    assert np.isfinite(f).all()
    with pytest.raises(ValueError, match="antennas"):
        handcrafted_features(h, 2, 8)
    with pytest.raises(ValueError, match="complex"):
        adcpm(np.abs(h), 4, 8)


# --------------------------------------------------------------------------------------------------
# Baselines


def test_baselines_separate_an_easy_problem():
    pytest.importorskip("sklearn")
    from models.los.baselines import BASELINE_KINDS, predict_proba, train_baseline

    rng = np.random.default_rng(0)
    n = 600
    y = rng.random(n) < 0.4
    X = rng.standard_normal((n, 6)) + np.where(y[:, None], 2.0, 0.0) * np.array([1, 1, -1, -1, 0, 0])
    X[:, 2] *= 1e-8  # features in very different units (delay spread in s): standardisation handles it
    Xt, yt = X[:400], y[:400]
    for kind in BASELINE_KINDS:
        model = train_baseline(kind, Xt, yt, seed=0)
        p = predict_proba(model, X[400:])
        assert p.shape == (200,) and np.all((p >= 0) & (p <= 1))
        assert np.mean((p >= 0.5) == y[400:]) > 0.9, kind
    with pytest.raises(ValueError, match="unknown baseline"):
        train_baseline("xgboost", Xt, yt)
    with pytest.raises(ValueError, match="one class"):
        train_baseline("rf", Xt, np.zeros(400, bool))
    with pytest.raises(ValueError, match="non-finite"):
        train_baseline("rf", np.full((4, 2), np.nan), np.array([0, 1, 0, 1]))


def test_features_and_dataset_import_without_sklearn_or_central():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "models" / "los"
    for name in ("dataset.py", "features.py"):
        tree = ast.parse((root / name).read_text())
        mods = {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        mods |= {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not mods & {"sklearn", "torch", "sionna", "central", "evaluation"}, (name, mods)
