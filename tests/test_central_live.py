"""Live detection inside the real service: ingest triggers evaluation, snapshots are stored, learning
normal statistics over the API is refused on too little data or a window with alarms, and a learned
detector is active at once."""

from __future__ import annotations

import time

import httpx
import pytest

from central.detection.engine import EngineConfig
from central.detection.live import LiveDetection
from central.service import CentralService
from tests.central_helpers import VIEWER, OPERATOR_TOKEN, central_config
from tests.conftest import DATA

pytestmark = pytest.mark.raytracing


@pytest.fixture
def live(tmp_path, tiny_twin):
    cfg = central_config(tmp_path, site=str(DATA / "tiny_hall.toml"))
    svc = CentralService(cfg, engine_factory=lambda state: LiveDetection(state, tiny_twin, EngineConfig(window_s=0.05)),
                         use_default_plugins=False, log_level="warning")  # fmt: skip
    svc.tokens = {su.id: svc.store.add_node(su.id, su.position_m, su_id=su.id) for su in svc.site.sensing_units}
    svc.seq = 0
    svc.start()
    yield svc
    svc.stop()


def feed(svc, rounds: int, power_dbm: float = -60.0, saturated: bool = False) -> None:
    """One reading per node per round, 60 ms apart (past the 50 ms window: one evaluation each)."""
    with httpx.Client(base_url=svc.url) as c:
        for _ in range(rounds):
            for nid, token in svc.tokens.items():
                rec = {"node_id": nid, "seq": svc.seq, "t_ns": time.time_ns(), "f_center_hz": 3.7e9,
                       "bandwidth_hz": 20e6, "power_dbm": power_dbm, "saturated": saturated}  # fmt: skip
                r = c.post("/api/v1/ingest", json={"protocol": 1, "node_id": nid, "records": [rec]},
                           headers={"Authorization": f"Bearer {token}"})  # fmt: skip
                assert r.status_code == 200, r.text
            svc.seq += 1
            time.sleep(0.06)


def learn(svc, **body) -> httpx.Response:
    return httpx.post(f"{svc.url}/api/v1/detector/learn", json=body, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})


def test_learning_needs_enough_data_then_activates_the_detector_at_once(live):
    feed(live, 10)
    r = learn(live, duration_s=30)
    assert r.status_code == 409 and "usable snapshots in the window" in r.json()["detail"]
    assert learn(live, duration_s=30).status_code == 409
    assert httpx.post(f"{live.url}/api/v1/detector/learn", json={}).status_code == 401  # operators only
    feed(live, 60)
    r = learn(live, duration_s=30)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["detector"] == "ed" and out["n_snapshots"] >= 50
    assert live.engine.engine.detector is not None and live.store.active_model("detector").id == out["model_id"]
    feed(live, 20)  # > 1 s: the store keeps one normal snapshot per second
    snaps = httpx.get(f"{live.url}/api/v1/snapshots", params={"limit": 5}, headers=VIEWER).json()
    assert snaps and snaps[-1]["detector"] == "ed"  # evaluated with the new detector, no restart


def test_a_point_source_detector_learns_through_the_api_with_the_twins_predictions(live):
    """The point-source detectors (the product's default is one) learn from residuals *and* the
    twin's prediction of each snapshot: the service keeps both for the learning window."""
    feed(live, 60)
    r = learn(live, duration_s=30, detector="bayes")
    assert r.status_code == 200, r.text
    assert r.json()["detector"] == "bayes" and r.json()["n_snapshots"] >= 50
    det = live.engine.engine.detector
    assert det.kind == "bayes" and det.mean_ is not None and det.n_train >= 50
    feed(live, 20)
    snaps = httpx.get(f"{live.url}/api/v1/snapshots", params={"limit": 5}, headers=VIEWER).json()
    assert snaps and snaps[-1]["detector"] == "bayes" and snaps[-1]["score"] is not None


def test_saturation_alarm_is_stored_and_blocks_learning_over_its_window(live):
    feed(live, 55)
    feed(live, 4, power_dbm=-20.0, saturated=True)
    alarms = httpx.get(f"{live.url}/api/v1/alarms", params={"state": "active"}, headers=VIEWER).json()
    assert [a["kind"] for a in alarms] == ["saturation"] and set(alarms[0]["affected_sus"]) == {"low", "high"}
    r = learn(live, duration_s=30)
    assert r.status_code == 409 and "overlaps alarm(s)" in r.json()["detail"]
