"""Path-loss surrogate (issue 7, first paper): training on the tiny hall's traced maps, ONNX export,
the onnxruntime predictor's parity with the map predictor, the manifest's site gate, the central
config switch, and a detection dataset with the surrogate as the digital twin (issue 5's RF row)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from central.config import ConfigError, parse_config
from central.twin.surrogate import load_surrogate, site_info, surrogate_data, surrogate_twin
from models.surrogate import SurrogateError, SurrogatePredictor, holdout_mask, read_manifest
from models.surrogate.mlp import MlpParams, export_mlp_onnx, predict_mlp, train_mlp
from models.surrogate.rf import export_rf_onnx, predict_rf, train_rf
from models.surrogate.train import TrainConfig, evaluate_surrogate, train_surrogate

pytestmark = pytest.mark.raytracing

TINY_MLP = MlpParams(hidden=32, layers=2, fourier=8, epochs=40, batch=16)


@pytest.fixture(scope="module")
def data(tiny_twin):
    return surrogate_data(tiny_twin)


@pytest.fixture(scope="module")
def bundles(tiny_twin, data, tmp_path_factory):
    root = tmp_path_factory.mktemp("surrogates")
    info = site_info(tiny_twin)
    for kind in ("rf", "mlp"):
        cfg = TrainConfig(kind, holdout_fraction=0.25, n_trees=10, n_jobs=1, mlp=TINY_MLP)
        train_surrogate(data, info, root / kind, cfg)
    return root


def _ort(onnx_bytes: bytes, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0].astype(np.float64)


def test_samples_are_the_traced_cells(tiny_twin, data):
    grid = tiny_twin.maps.grid
    assert data.n == grid.num_valid and data.num_su == 2
    np.testing.assert_array_equal(data.gain_db, tiny_twin.maps.gain_db[:, grid.valid].T)
    x = data.features()
    assert x.dtype == np.float32 and x.shape == (data.n, 4)
    d_low = np.linalg.norm(data.positions_m - np.asarray(tiny_twin.site.su_positions_m[0]), axis=1)
    np.testing.assert_allclose(x[:, 2], d_low, rtol=1e-6)
    for split in ("random", "blocks"):
        m = holdout_mask(data, 0.25, split, seed=3)
        assert 0 < m.sum() < data.n
        np.testing.assert_array_equal(m, holdout_mask(data, 0.25, split, seed=3))  # seeded
    with pytest.raises(ValueError, match="split"):
        holdout_mask(data, 0.2, "nearby")


def test_onnxruntime_agrees_with_sklearn_and_torch(data):
    x, y = data.features(), data.targets()
    rf = train_rf(x, y, n_trees=10, n_jobs=1)
    np.testing.assert_allclose(_ort(export_rf_onnx(rf, x.shape[1]), x), predict_rf(rf, x), rtol=0, atol=1e-4)
    net = train_mlp(x, y, TINY_MLP)
    np.testing.assert_allclose(_ort(export_mlp_onnx(net, x.shape[1]), x), predict_mlp(net, x), rtol=0, atol=1e-4)
    # The forests fit their training cells closely (grid values repeat exactly: thresholds must be float32-safe).
    assert np.median(np.abs(predict_rf(rf, x) - y)) < 3.0


def test_manifest_records_provenance_and_accuracy(tiny_twin, bundles):
    for kind in ("rf", "mlp"):
        m = read_manifest(bundles / kind)
        assert m.kind == kind and m.site_hash == tiny_twin.site.content_hash()
        assert m.twin_key == tiny_twin.maps.key and m.su_ids == ["low", "high"]
        assert m.n_train + m.n_holdout == tiny_twin.maps.grid.num_valid
        assert np.isfinite(m.holdout_rmse_db) and m.onnx_max_abs_diff_db <= 1e-3 and m.created
        assert {"model.onnx", "plane.npz", "manifest.json"} <= {p.name for p in (bundles / kind).iterdir()}


@pytest.mark.parametrize("kind", ["rf", "mlp"])
def test_predictor_interface_parity(tiny_twin, bundles, kind):
    ref = tiny_twin.predictor
    sur = SurrogatePredictor.load(bundles / kind, site_hash=tiny_twin.site.content_hash())
    assert sur.num_su == ref.num_su and sur.noise_floor_dbm == ref.noise_floor_dbm
    assert sur.maps.su_ids == tiny_twin.maps.su_ids
    np.testing.assert_array_equal(sur.maps.su_positions_m, tiny_twin.maps.su_positions_m)
    g, sg = tiny_twin.maps.grid, sur.maps.grid
    assert (sg.nx, sg.ny, sg.cell_size_m, sg.height_m) == (g.nx, g.ny, g.cell_size_m, g.height_m)
    tx = np.array([[1.0, 1.0, 1.5], [6.5, 4.5, 1.5], [2.0, 5.0, 1.5]])
    p = np.array([20.0, 10.0, 15.0])
    for pred in (ref, sur):
        assert pred.predict(tx, p).shape == (2,)
        assert pred.predict(np.stack([tx, tx]), np.stack([p, p])).shape == (2, 2)
        np.testing.assert_allclose(pred.predict(tx[:, :2], p), pred.predict(tx, p))  # z ignored
        # absent transmitters (−inf dBm): only the noise floor, and no contribution of their position
        np.testing.assert_allclose(pred.predict(tx, np.full(3, -np.inf)), np.full(2, -100.0))
        np.testing.assert_allclose(pred.predict(tx, [20.0, -np.inf, -np.inf]), pred.predict(tx[:1], [20.0]))
        with pytest.raises(ValueError, match="outside the hall"):
            pred.predict([[9.0, 1.0, 1.5]], [20.0])
        with pytest.raises(ValueError, match="finite"):
            pred.predict(tx, [np.nan, 0.0, 0.0])
        with pytest.raises(ValueError, match="disagree"):
            pred.predict(tx, [1.0, 2.0])
    look = sur.lookup(np.array([[[4.0, 3.0, 1.5], [1.0, 1.0, 1.5]]]))  # the first inside the cabinet
    assert look.gain_db.shape == (1, 2, 2) and look.fallback.tolist() == [[True, False]]
    cg, rcg = sur.cell_gains(), ref.cell_gains()
    np.testing.assert_array_equal(cg.positions_m, rcg.positions_m)
    assert cg.gain_lin.shape == rcg.gain_lin.shape and np.allclose(cg.gain_lin, 10 ** (cg.gain_db / 10))
    report = evaluate_surrogate(sur, surrogate_data(tiny_twin))
    assert report.holdout.rmse_db == pytest.approx(read_manifest(bundles / kind).holdout_rmse_db, abs=1e-3)


def test_refuses_another_sites_model_and_broken_directories(tiny_site, bundles, tmp_path):
    with pytest.raises(SurrogateError, match="content hash"):
        SurrogatePredictor.load(bundles / "rf", site_hash="0123456789abcdef")
    moved = replace(tiny_site, noise_floor_dbm=-90.0)  # any change of what the ray tracer sees, or noise
    with pytest.raises(SurrogateError, match="retrain"):
        load_surrogate(moved, bundles / "rf")
    with pytest.raises(SurrogateError, match="no such surrogate directory"):
        SurrogatePredictor.load(tmp_path / "nowhere")
    with pytest.raises(SurrogateError, match="no manifest.json"):
        SurrogatePredictor.load(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text(json.dumps({"format": 1, "kind": "rf"}))
    with pytest.raises(SurrogateError, match="missing"):
        SurrogatePredictor.load(bad)


def _config(tmp_path: Path, site: str, **twin) -> object:
    doc = {"site": site, "data_dir": str(tmp_path / "data"), "advertise": False}
    if twin:
        doc["twin"] = twin
    return parse_config(doc, "<test>", tmp_path)


def test_config_switch(tiny_site, bundles, tmp_path):
    site = str(Path(__file__).parent / "data" / "tiny_hall.toml")
    assert _config(tmp_path, site).twin.predictor == "maps"  # the default
    cfg = _config(tmp_path, site, predictor="surrogate", surrogate_dir=str(bundles / "rf"))
    assert cfg.twin.predictor == "surrogate" and cfg.twin.surrogate_dir == bundles / "rf"
    with pytest.raises(ConfigError, match="twin.predictor: 'rt' is not one of maps, surrogate"):
        _config(tmp_path, site, predictor="rt")
    with pytest.raises(ConfigError, match="twin.surrogate_dir: missing"):
        _config(tmp_path, site, predictor="surrogate")
    with pytest.raises(ConfigError, match="twin.surrogate_dir: .*no such surrogate directory"):
        _config(tmp_path, site, predictor="surrogate", surrogate_dir="nowhere")
    with pytest.raises(ConfigError, match="twin.surrogate_dir: .*content hash"):
        _config(tmp_path, "factory-hall-a", predictor="surrogate", surrogate_dir=str(bundles / "rf"))
    with pytest.raises(ConfigError, match="twin.surogate_dir: unknown key"):
        _config(tmp_path, site, surogate_dir="x")


def test_surrogate_twin_drives_the_detection_engine(tiny_site, bundles):
    from central.detection.engine import DetectionEngine

    twin = surrogate_twin(tiny_site, bundles / "rf")
    engine = DetectionEngine.from_twin(twin)
    assert engine.su_ids == ("low", "high")
    assert engine.localiser.num_cells == twin.maps.grid.num_valid
    assert twin.maps.key.startswith("surrogate-rf-")


def test_dataset_with_the_surrogate_as_digital_twin(tiny_twin, bundles):
    from evaluation.dataset import generate_dataset

    rf = SurrogatePredictor.load(bundles / "rf", site_hash=tiny_twin.site.content_hash())
    base = generate_dataset(tiny_twin, 60, seed=5)
    ds = generate_dataset(tiny_twin, 60, seed=5, dt_predictor=rf)
    np.testing.assert_array_equal(ds.tx_est_positions_m, base.tx_est_positions_m)  # same draws
    np.testing.assert_array_equal(ds.pt_dbm, base.pt_dbm)  # PT stays the ray-traced maps
    np.testing.assert_allclose(ds.dt_dbm, rf.predict(ds.tx_est_positions_m, np.full((60, 3), 20.0)))
    assert not np.allclose(ds.dt_dbm, base.dt_dbm)
    assert ds.meta["dt_predictor"].startswith("surrogate-rf-") and "dt_predictor" not in base.meta
