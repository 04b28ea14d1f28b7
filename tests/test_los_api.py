"""``POST /api/v1/los``: LoS from the twin's geometry or a channel estimate through the ONNX ResNet
(hot-reloaded from the models directory), and every refusal with its reason."""

from __future__ import annotations

import base64
import os
import warnings

import numpy as np
import pytest

from central.api import AppState, create_app
from central.events import EventBus
from central.los import MODEL_FILE, segment_hits_box
from central.store import Store
from tests.central_helpers import VIEWER, central_config

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from fastapi.testclient import TestClient

GNB = [20.0, 20.0, 4.9]  # ceiling centre of factory-hall-a


@pytest.fixture
def api(tmp_path):
    cfg = central_config(tmp_path)
    store = Store(cfg.db_path)
    client = TestClient(create_app(AppState(cfg, store, EventBus(), cfg.load_site())))
    yield client, cfg
    client.close()
    store.close()


def post(client, body):
    return client.post("/api/v1/los", json=body, headers=VIEWER)


def test_segment_box_intersection():
    lo, hi = np.array([1.0, 1.0, 0.0]), np.array([2.0, 2.0, 3.0])
    assert segment_hits_box(np.array([0.0, 1.5, 1.0]), np.array([3.0, 1.5, 1.0]), lo, hi)
    assert not segment_hits_box(np.array([0.0, 0.5, 1.0]), np.array([3.0, 0.5, 1.0]), lo, hi)
    assert not segment_hits_box(np.array([0.0, 1.5, 4.0]), np.array([3.0, 1.5, 3.5]), lo, hi)  # above
    assert not segment_hits_box(np.array([0.0, 1.0, 1.0]), np.array([3.0, 1.0, 1.0]), lo, hi)  # grazes a face
    assert not segment_hits_box(np.array([0.0, 1.5, 1.0]), np.array([0.9, 1.5, 1.0]), lo, hi)  # stops short


def test_position_is_answered_from_the_twin_geometry(api):
    client, _ = api
    # line-2 occupies x 18..22, y 22..36, z 0..3: a UE right behind it, low, is hidden from the ceiling gNB
    r = post(client, {"position_m": [20.0, 37.0, 1.5], "gnb_position_m": GNB})
    assert r.status_code == 200 and r.json() == {"los_probability": 0.0, "los": False, "source": "geometry",
                                                 "blocked_by": "line-2", "model": None}  # fmt: skip
    r = post(client, {"position_m": [15.0, 20.0, 1.5], "gnb_position_m": GNB})  # the aisle between lines
    assert r.status_code == 200 and r.json()["los"] is True and r.json()["source"] == "geometry"


@pytest.mark.parametrize(
    "body, status, reason",
    [
        ({"position_m": [20.0, 30.0, 1.5], "gnb_position_m": GNB}, 422, "inside obstacle 'line-2'"),
        ({"position_m": [50.0, 3.0, 1.5], "gnb_position_m": GNB}, 422, "not inside the hall"),
        ({"position_m": [5.0, 3.0]}, 422, "position_m"),
        ({}, 422, "exactly one of channel or position_m"),
        ({"position_m": [5.0, 3.0, 1.5], "channel": {"shape": [2, 2], "data_b64": "AAAA"}}, 422, "exactly one"),
        ({"position_m": [5.0, 3.0, 1.5], "colour": "red"}, 422, "colour"),
        ({"channel": {"shape": [128, 512], "data_b64": "AAAA"}}, 503, "no LoS model installed"),
        # strict types (found by schemathesis: true and "2" were taken for numbers)
        ({"position_m": [5.0, 3.0, True], "gnb_position_m": GNB}, 422, "position_m[2]: Input should be a valid number"),
        ({"position_m": [5.0, "2", 1.5], "gnb_position_m": GNB}, 422, "position_m[1]: Input should be a valid number"),
        ({"position_m": [5.0, 3.0, 1.5], "gnb_position_m": [20.0, 20.0, "4.9"]}, 422, "gnb_position_m[2]"),
        ({"channel": {"shape": [True, 512], "data_b64": "AAAA"}}, 422, "channel.shape[0]: Input should be a valid integer"),
        ({"channel": {"shape": [128.5, 512], "data_b64": "AAAA"}}, 422, "channel.shape[0]: Input should be a valid integer"),
        ({"channel": {"shape": [128.0, 512], "data_b64": "AAAA"}}, 503, "no LoS model installed"),  # 128.0 is an integer
        ({"position_m": None, "channel": None}, 422, "exactly one"),
    ],
)
def test_refusals_carry_their_reason(api, body, status, reason):
    client, _ = api
    r = post(client, body)
    assert r.status_code == status and reason in r.json()["detail"], r.text
    assert r.headers["content-type"] == "application/problem+json" and r.json()["status"] == status


def test_a_position_needs_no_model(api):
    """Without an installed model (and no gNB given) the geometry still answers: the gNB is then the
    middle of the hall's ceiling, 0.2 m below it (factory-hall-a: 20, 20, 4.8)."""
    client, _ = api
    r = post(client, {"position_m": [20.0, 37.0, 1.5]})  # behind line-2, low
    assert r.status_code == 200 and r.json()["blocked_by"] == "line-2" and r.json()["source"] == "geometry", r.text
    r = post(client, {"position_m": [15.0, 20.0, 1.5], "channel": None})  # null counts as absent
    assert r.status_code == 200 and r.json()["los"] is True, r.text


def test_malformed_json_is_a_422_not_a_500(api):
    client, _ = api
    r = client.post("/api/v1/los", content=b"{not json", headers={**VIEWER, "Content-Type": "application/json"})
    assert r.status_code == 422


def channel_b64(h: np.ndarray) -> dict:
    return {"shape": list(h.shape), "data_b64": base64.b64encode(h.astype("<c8").tobytes()).decode()}


def test_channel_estimate_goes_through_the_installed_onnx_model_and_hot_reloads(api, tmp_path):
    pytest.importorskip("torch")
    from models.los.onnx_model import LosOnnxModel
    from models.los.resnet import LosResNet
    from models.los.train import export_onnx

    client, cfg = api
    rows, cols, n_sc = 8, 16, 512
    meta = {"rows": rows, "cols": cols, "num_subcarriers": n_sc, "gnb_position_m": GNB}
    path = cfg.models_dir / MODEL_FILE
    export_onnx(LosResNet(18, 8).eval(), path, meta)
    rng = np.random.default_rng(0)
    h = (rng.standard_normal((rows * cols, n_sc)) + 1j * rng.standard_normal((rows * cols, n_sc))).astype(np.complex64)
    r = post(client, {"channel": channel_b64(h)})
    assert r.status_code == 200, r.text
    p = r.json()["los_probability"]
    assert 0.0 <= p <= 1.0 and r.json()["source"] == "model" and r.json()["model"] == MODEL_FILE
    assert p == pytest.approx(float(LosOnnxModel(path).predict_channel(h)[0]), abs=1e-6)
    # the position path now takes the gNB from the model's metadata
    assert post(client, {"position_m": [20.0, 37.0, 1.5]}).json()["blocked_by"] == "line-2"
    # refusals on the model path
    bad = channel_b64(h[:64])
    assert "channel estimate must be" in post(client, {"channel": bad}).json()["detail"]
    short = {"shape": [rows * cols, n_sc], "data_b64": base64.b64encode(b"\0" * 16).decode()}
    assert "needs" in post(client, {"channel": short}).json()["detail"]
    assert "base64" in post(client, {"channel": {"shape": [1, 1], "data_b64": "***"}}).json()["detail"]
    zeros = channel_b64(np.zeros((rows * cols, n_sc), np.complex64))
    assert "all zeros" in post(client, {"channel": zeros}).json()["detail"]
    # a new model file is picked up without a restart
    torch_model = LosResNet(18, 8).eval()
    for prm in torch_model.head.parameters():
        prm.data.fill_(0.0)  # logit 0: probability exactly one half
    export_onnx(torch_model, path, meta)
    os.utime(path, (1e9, 1e9))  # a distinct mtime even on coarse filesystem clocks
    assert post(client, {"channel": channel_b64(h)}).json()["los_probability"] == pytest.approx(0.5, abs=1e-6)
