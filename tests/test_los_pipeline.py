"""Issue 7 LoS/NLoS pipeline on the tiny hall, end to end in CI time: twin dataset → AWGN-augmented
ResNet training → ONNX export → onnxruntime agrees with torch → the central unit's model class.
(The real figures come from bench/los.py on factory-hall-a.)"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.los.dataset import LosDatasetSettings, add_awgn, ls_estimate, split_by_position  # noqa: E402
from models.los.features import network_input  # noqa: E402
from models.los.onnx_model import LosModelError, LosOnnxModel  # noqa: E402
from models.los.resnet import LosResNet, count_flops  # noqa: E402
from models.los.train import (  # noqa: E402
    LosTrainSettings,
    export_onnx,
    predict_torch,
    train_resnet,
)
from evaluation.protocol import auc_score  # noqa: E402
from tests.conftest import DATA  # noqa: E402

GNB = (4.0, 3.0, 3.8)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from evaluation.los_dataset import generate_los_dataset

    s = LosDatasetSettings(site=str(DATA / "tiny_hall.toml"), gnb_position_m=GNB, rows=4, cols=8, num_subcarriers=128,
                           ue_spacing_m=0.5, ue_jitter_m=0.0, max_depth=2, samples_per_src=5000, max_paths_per_ue=500,
                           chain_hash_slots_per_ue=5000)  # fmt: skip
    return s, generate_los_dataset(s, cache_dir=tmp_path_factory.mktemp("los"))


def test_flop_counter_reproduces_the_papers_resnet34_figure():
    # ResNet34 with the ImageNet stem on a 32 × 128 input: the paper quotes 0.58 GFLOPs
    assert count_flops(LosResNet(34, 64)) / 1e9 == pytest.approx(0.58, abs=0.01)
    assert count_flops(LosResNet(18, 32)) < count_flops(LosResNet(18, 64)) / 3


def test_awgn_has_the_stated_snr():
    rng = np.random.default_rng(0)
    h = (rng.standard_normal((4, 32, 128)) + 1j * rng.standard_normal((4, 32, 128))).astype(np.complex64)
    noisy = add_awgn(h, np.array([0.0, 10.0, np.inf, -10.0]), rng)
    snr = 10 * np.log10(np.mean(np.abs(h) ** 2, axis=(1, 2)) / np.mean(np.abs(noisy - h) ** 2, axis=(1, 2)).clip(1e-30))
    np.testing.assert_allclose(snr[[0, 1, 3]], [0.0, 10.0, -10.0], atol=0.1)
    assert np.array_equal(noisy[2], h[2])


def test_tiny_dataset_trains_exports_and_onnxruntime_agrees_with_torch(tiny, tmp_path):
    s, ds = tiny
    assert ds.h.shape[1:] == (32, 128) and 0.1 < ds.los.mean() < 0.9
    train, test = split_by_position(ds.ue_positions_m, 0.3, 0, labels=ds.los, block_m=2.0)
    # 20 epochs (~4 s): with AWGN augmentation the per-epoch loss is noisy, and in 6 epochs some seeds
    # had not yet separated the classes (the last epoch's loss above the first's)
    settings = LosTrainSettings(depth=18, width=8, epochs=20, batch_size=32, seed=0, threads=1)
    epochs = []
    model, history = train_resnet(ds.h[train], ds.los[train], s.rows, s.cols, settings, progress=epochs.append)
    assert len(history) == len(epochs) == 20
    assert np.mean([e["loss"] for e in history[-5:]]) < history[0]["loss"]
    # it learned: the clean training channels are separated (an untrained network gives about 0.5)
    assert auc_score(ds.los[train], predict_torch(model, network_input(ds.h[train], s.rows, s.cols))) > 0.95
    x = network_input(ls_estimate(ds.h[test], 15.0, np.random.default_rng(1)), s.rows, s.cols)
    p_torch = predict_torch(model, x)
    meta = {"rows": s.rows, "cols": s.cols, "num_subcarriers": s.num_subcarriers, "gnb_position_m": list(GNB)}
    onnx_path = export_onnx(model, tmp_path / "los.onnx", meta)
    ort = LosOnnxModel(onnx_path)
    np.testing.assert_allclose(ort.predict_features(x), p_torch, atol=1e-5)
    assert ort.meta["gnb_position_m"] == list(GNB) and (ort.rows, ort.cols) == (s.rows, s.cols)
    np.testing.assert_allclose(ort.predict_channel(ds.h[test][:3]), predict_torch(model, network_input(ds.h[test][:3], s.rows, s.cols)), atol=1e-5)
    with pytest.raises(LosModelError, match="must be"):
        ort.predict_channel(ds.h[test][:1, :16])
    with pytest.raises(LosModelError, match="no such LoS model"):
        LosOnnxModel(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(LosModelError, match="not a loadable"):
        LosOnnxModel(tmp_path / "junk.onnx")
