"""The dashboard's HTTP side without a browser: SSE stream (replay, order, heartbeat, disconnect),
floor plan JSON, page and static assets. A real uvicorn server on loopback, httpx streaming."""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import httpx
from fastapi import APIRouter
import numpy as np
import pytest

from central.dashboard import DashboardRecorder, mount, site_json
from central.events import Event, EventBus
from central.twin.site import resolve_site
from tests.central_helpers import VIEWER
from tests.dashboard_server import DashboardServer, alarm, login, nodes, secured_app, snapshot, sse_events
from tests.polling import wait_for

pytestmark = pytest.mark.timeout(60)
TIMEOUT = httpx.Timeout(5.0)  # a stream that goes silent fails the test instead of hanging it


@pytest.fixture(scope="module")
def site():
    return resolve_site("factory-hall-a")


def wire(d: dict) -> dict:
    """What a dict looks like after JSON (tuples become lists)."""
    return json.loads(json.dumps(d))


def test_site_json_is_the_floor_plan(site):
    plan = site_json(site)
    assert plan["hall_size_m"] == [40.0, 40.0, 5.0]
    assert len(plan["obstacles"]) == 6 and len(plan["sensing_units"]) == 12
    line1 = plan["obstacles"][0]
    assert line1 == {
        "name": "line-1",
        "material": "metal",
        "min_m": [7.0, 22.0, 0.0],
        "size_m": [4.0, 14.0, 3.0],
    }
    assert plan["sensing_units"][0] == {"id": "su01", "position_m": [6.5, 29.5, 1.5]}


def test_events_replay_latest_state_then_arrive_in_order(site):
    rng = np.random.default_rng(1)
    bus = EventBus()
    recorder = DashboardRecorder()
    t0 = time.time_ns() - int(30e9)
    with DashboardServer(bus, site, recorder=recorder) as srv:
        assert bus.num_subscribers == 1, "the recorder did not subscribe at startup"
        for k in range(10):  # before any client: history for the recorder, latest state for the bus
            bus.publish("snapshot", snapshot(site, t0 + k * int(1e9), rng).to_dict())
        jam = snapshot(site, t0 + int(10e9), rng, jammer=True)
        bus.publish("snapshot", jam.to_dict())
        raised = alarm(7, jam, jam.t_ns)
        bus.publish("alarm", raised.to_dict())
        bus.publish("nodes", nodes(site, jam.t_ns))
        wait_for(lambda: len(recorder.state()["history"]) == 11 and recorder.state()["alarms"], 5, "11 snapshots and the alarm")

        with httpx.stream("GET", f"{srv.url}/api/v1/events", timeout=TIMEOUT, headers=VIEWER) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            assert resp.headers["cache-control"] == "no-cache"
            events = (e for e in sse_events(resp.iter_lines()) if "comment" not in e)

            hello = next(events)
            assert hello["event"] == "hello" and hello["retry"] == "2000"
            assert abs(hello["data"]["server_time_ns"] - time.time_ns()) < 5e9
            history = hello["data"]["history"]
            assert [h["t_ns"] for h in history] == [t0 + k * int(1e9) for k in range(11)]
            assert history[-1]["anomalous"] is True and history[-1]["residuals"]["su01"] is not None
            assert hello["data"]["alarms"] == [wire(raised.to_dict())]

            # the latest event of each kind, in publication order
            replay = [next(events) for _ in range(3)]
            assert [e["event"] for e in replay] == ["snapshot", "alarm", "nodes"]
            assert replay[0]["data"] == wire(jam.to_dict())
            assert replay[1]["data"]["affected_sus"] == list(raised.affected_sus)
            assert len(replay[2]["data"]["nodes"]) == 12
            ids = [int(e["id"]) for e in replay]
            assert ids == sorted(ids)

            # live events published from another thread arrive in order, none lost
            published: list[Event] = []

            def publisher():
                for k in range(20):
                    published.append(
                        bus.publish("snapshot", snapshot(site, jam.t_ns + (k + 1) * int(1e9), rng).to_dict())
                    )
                bus.publish("alarm", alarm(7, jam, jam.t_ns, "cleared", jam.t_ns + int(21e9)).to_dict())

            threading.Thread(target=publisher).start()
            live = [next(events) for _ in range(21)]
            assert [int(e["id"]) for e in live[:20]] == [ev.id for ev in published]
            assert [e["data"]["t_ns"] for e in live[:20]] == [ev.data["t_ns"] for ev in published]
            assert live[20]["event"] == "alarm" and live[20]["data"]["state"] == "cleared"
            assert bus.num_subscribers == 2

        # the client went away: its subscription ends (only the recorder's remains)
        wait_for(lambda: bus.num_subscribers == 1, 5, "the disconnected SSE subscription to be dropped")


def test_heartbeat_comment_when_idle(site):
    bus = EventBus()
    with DashboardServer(bus, site, heartbeat_s=0.3) as srv:
        with httpx.stream("GET", f"{srv.url}/api/v1/events", timeout=TIMEOUT, headers=VIEWER) as resp:
            stream = sse_events(resp.iter_lines())
            assert next(stream)["event"] == "hello"
            # Idle: the next thing on the wire is a keepalive comment, not an event (how often lives in bench/).
            assert next(stream) == {"comment": "keepalive"}
            bus.publish("nodes", nodes(site, time.time_ns()))
            assert next(e for e in stream if "comment" not in e)["event"] == "nodes"


def test_page_assets_and_site_endpoint(site):
    with DashboardServer(EventBus(), site) as srv, login(srv.url) as browser:
        page = browser.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for ref in ('id="map"', 'id="alarm-banner"', 'id="node-table"', 'id="history"',
                    "static/dashboard.js", "static/dashboard.css"):  # fmt: skip
            assert ref in page.text
        js = httpx.get(f"{srv.url}/static/dashboard.js", timeout=TIMEOUT)
        assert js.status_code == 200 and "javascript" in js.headers["content-type"]
        css = httpx.get(f"{srv.url}/static/dashboard.css", timeout=TIMEOUT)
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert "http://" not in page.text + css.text and "https://" not in page.text + css.text  # no CDN
        for bad in ("nope.js", "..%2Froutes.py", "%2E%2E%2F__init__.py"):
            assert httpx.get(f"{srv.url}/static/{bad}", timeout=TIMEOUT).status_code == 404
        plan = httpx.get(f"{srv.url}/api/v1/site", timeout=TIMEOUT, headers=VIEWER).json()
        assert plan == site_json(site)


def test_recorder_keeps_a_bounded_window_and_all_active_alarms(site):
    rng = np.random.default_rng(2)
    rec = DashboardRecorder(horizon_s=10, keep_cleared=1)
    for k in range(30):
        rec.add(Event(k + 1, "snapshot", snapshot(site, k * int(1e9), rng).to_dict()))
    rec.add(Event(99, "snapshot", snapshot(site, 5 * int(1e9), rng).to_dict()))  # late duplicate: ignored
    ts = [h["t_ns"] for h in rec.state()["history"]]
    assert ts == [k * int(1e9) for k in range(19, 30)]
    jam = snapshot(site, 0, rng, jammer=True)
    for i, st in [(1, "cleared"), (2, "active"), (3, "cleared"), (4, "active")]:
        rec.add(Event(100 + i, "alarm", alarm(i, jam, i * int(1e9), st).to_dict()))
    assert [(a["id"], a["state"]) for a in rec.state()["alarms"]] == [
        (2, "active"),
        (3, "cleared"),
        (4, "active"),
    ]
    rec.add(Event(200, "alarm", {"alarms": [alarm(9, jam, 0).to_dict()]}))  # a full set replaces
    assert [a["id"] for a in rec.state()["alarms"]] == [9]


def test_mount_adds_the_page_and_leaves_existing_api_routes_alone(site):
    bus = EventBus()
    app = secured_app(bus, site)

    api = APIRouter(prefix="/api/v1")  # as central/api.py does it

    @api.get("/site")
    def theirs() -> dict:
        return {"theirs": True}

    app.include_router(api)

    added = mount(app, SimpleNamespace(bus=bus, site=site))
    assert "/" in added and "/static/{name}" in added and "/api/v1/events" in added
    assert "/api/v1/site" not in added
    assert bus.num_subscribers == 1  # its recorder
    with DashboardServer(bus, site, app=app) as srv:
        assert httpx.get(f"{srv.url}/api/v1/site", timeout=TIMEOUT, headers=VIEWER).json() == {"theirs": True}
        with login(srv.url) as browser:
            assert browser.get("/").text.startswith("<!doctype html>")
    assert bus.num_subscribers == 0  # the recorder stopped with the server
