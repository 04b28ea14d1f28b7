"""Calibration campaigns (issue 6, workflow): the central unit's campaign API over a real server on
loopback, fed through the real ingest API; ``rftwin-calibrate campaign …`` and ``learn`` against it;
the CSV round trip through :mod:`calibration.points`; and a simulated campaign on the tiny hall.

Powers: the tiny hall's two SUs ("low", "high") are its nodes; readings are posted with chosen
timestamps so that windows are exact.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time

import httpx
import numpy as np
import pytest

from calibration.cli import main as calibrate
from calibration.points import measurement_matrix, read_points_csv
from central.campaign import aggregate, check_position, mean_power_dbm, std_db
from central.service import CentralService
from tests.central_helpers import OPERATOR_TOKEN, VIEWER, VIEWER_TOKEN, central_config
from tests.conftest import DATA

OP = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
SECOND = 10**9


# ------------------------------------------------------------------------------------- the rules


def test_power_is_averaged_in_milliwatts_and_reported_in_dbm():
    assert mean_power_dbm([-60.0, -70.0]) == pytest.approx(
        10 * math.log10((1e-6 + 1e-7) / 2)
    )  # -62.60, not -65
    assert mean_power_dbm([-200.0, -200.0]) == pytest.approx(-200.0)  # no underflow
    assert std_db([-60.0]) == 0.0 and std_db([-60.0, -62.0]) == pytest.approx(math.sqrt(2))
    readings, why = aggregate(
        ["a", "b", "c"], {"a": [(-60.0, False)] * 3, "b": [(-30.0, True), (-31.0, False)]}
    )
    assert [(r.su_id, r.count, r.saturated) for r in readings] == [("a", 3, 0), ("b", 2, 1), ("c", 0, 0)]
    assert readings[2].mean_dbm is None
    assert why == "saturated during the dwell: b (1 of 2); no readings: c"
    assert aggregate(["a"], {"a": [(-60.0, False)]}, min_count=2)[1] == "fewer than 2 readings: a (1 reading)"
    readings, why = aggregate(["a", "b"], {"a": [(-200.0, False), (-95.0, False)], "b": [(-200.0, False)]})
    assert (readings[0].mean_dbm, readings[0].count, readings[1].mean_dbm) == (
        -95.0,
        1,
        None,
    )  # zeros: no power
    assert why == "no readings: b; below the receiver's range (digital zero): a (1 of 2), b (1 of 1)"


def test_reference_positions_must_be_in_the_hall_and_out_of_obstacles(tiny_site):
    assert check_position(tiny_site, (1.5, 1.5, 1.5)) == ""
    assert "outside the hall" in check_position(tiny_site, (9.0, 1.0, 1.5))
    assert "inside obstacle 'cabinet'" in check_position(tiny_site, (4.0, 3.0, 1.0))


# ------------------------------------------------------------------------------ a real central unit


@pytest.fixture
def unit(tmp_path):
    cfg = central_config(tmp_path, site=str(DATA / "tiny_hall.toml"))
    svc = CentralService(cfg, use_default_plugins=False, log_level="warning")
    svc.tokens = {
        su.id: svc.store.add_node(su.id, su.position_m, su_id=su.id) for su in svc.site.sensing_units
    }
    svc.seq = {nid: 0 for nid in svc.tokens}
    svc.t_next = time.time_ns() - 50 * SECOND
    svc.start()
    yield svc
    svc.stop()


def ingest(svc, node_id: str, times_ns, power_dbm: float = -60.0, saturated: bool = False) -> None:
    """Readings of one node at the given times, through the real ingest API with its node token."""
    recs = []
    for t in times_ns:
        recs.append({"node_id": node_id, "seq": svc.seq[node_id], "t_ns": int(t), "f_center_hz": 3.7e9,
                     "bandwidth_hz": 20e6, "power_dbm": power_dbm, "saturated": saturated})  # fmt: skip
        svc.seq[node_id] += 1
    r = httpx.post(f"{svc.url}/api/v1/ingest", json={"protocol": 1, "node_id": node_id, "records": recs},
                   headers={"Authorization": f"Bearer {svc.tokens[node_id]}"})  # fmt: skip
    assert r.status_code == 200, r.text


def window(svc, powers: dict[str, float], saturated: frozenset = frozenset(), n: int = 10) -> tuple[int, int]:
    """A past 1 s window (each call the next 3 s) with ``n`` readings per node in ``powers`` (nodes
    not in it stay silent), and one reading after it so that the point need not wait for uploads."""
    t0 = svc.t_next
    svc.t_next += 3 * SECOND
    for nid, p in powers.items():
        ingest(svc, nid, [t0 + i * SECOND // n for i in range(n)], p, saturated=nid in saturated)
    for nid in svc.tokens:
        ingest(svc, nid, [t0 + 2 * SECOND], -90.0)
    return t0, t0 + SECOND


def api(svc, method: str, path: str, headers=OP, **kw) -> httpx.Response:
    return httpx.request(method, f"{svc.url}/api/v1{path}", headers=headers, timeout=30, **kw)


def refused(r: httpx.Response, status: int, *fragments: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    detail = r.json()["detail"]
    for f in fragments:
        assert f in detail, (f, detail)
    return detail


def point(svc, t: tuple[int, int], position=(1.5, 1.5, 1.5), name: str = "c1", **kw) -> httpx.Response:
    body = {
        "position_m": list(position),
        "power_dbm": 20.0,
        "since_ns": t[0],
        "until_ns": t[1],
        "settle_s": 0,
        **kw,
    }
    return api(svc, "POST", f"/campaigns/{name}/points", json=body)


def test_api_round_trip_start_point_status_export_csv(unit, tmp_path):
    from calibration.campaign_client import CentralClient, to_points
    from calibration.points import write_points_csv

    r = api(unit, "POST", "/campaigns", json={"name": "c1", "description": "commissioning"})
    assert r.status_code == 201, r.text
    assert (
        r.json()["state"] == "open"
        and r.json()["su_ids"] == ["low", "high"]
        and r.json()["created_by"] == "shift-lead"
    )
    t = window(unit, {"low": -60.0, "high": -70.0})
    ingest(unit, "high", [t[0] + SECOND // 2], -67.0)  # high: nine at -70 and one... plus this one at -67
    r = point(unit, t)
    assert r.status_code == 201, r.text
    p = r.json()
    assert p["usable"] and p["rejected"] == "" and p["index"] == 0 and (p["since_ns"], p["until_ns"]) == t
    low, high = p["readings"]
    assert (low["su_id"], low["count"], low["mean_dbm"], low["std_db"]) == (
        "low",
        10,
        pytest.approx(-60.0),
        0.0,
    )
    assert high["count"] == 11
    assert high["mean_dbm"] == pytest.approx(mean_power_dbm([-70.0] * 10 + [-67.0]), abs=1e-3)

    assert api(unit, "GET", "/campaigns/c1", headers={}).status_code == 401  # every read needs a credential
    status = api(unit, "GET", "/campaigns/c1", headers=VIEWER).json()  # a viewer may read
    assert (status["n_points"], status["n_accepted"], status["n_rejected"]) == (1, 1, 0)
    points = to_points(CentralClient(unit.url, VIEWER_TOKEN).campaign("c1")["points"])
    back = read_points_csv(write_points_csv(points, tmp_path / "c1.csv"))
    assert back[0].position_m == (1.5, 1.5, 1.5) and back[0].su_ids == ["low", "high"]
    np.testing.assert_allclose(back[0].mean_dbm, [low["mean_dbm"], high["mean_dbm"]], atol=1e-3)
    assert list(back[0].count) == [10, 11]


def test_saturated_or_missing_sus_reject_the_point_with_the_reason(unit, tmp_path):
    assert api(unit, "POST", "/campaigns", json={"name": "c1"}).status_code == 201
    good = point(unit, window(unit, {"low": -60.0, "high": -70.0})).json()
    sat = point(unit, window(unit, {"low": -10.0, "high": -70.0}, saturated=frozenset({"low"}))).json()
    missing = point(unit, window(unit, {"high": -70.0}), position=(6.5, 4.5, 1.5)).json()
    assert good["usable"] and not sat["usable"] and not missing["usable"]
    assert sat["rejected"] == "saturated during the dwell: low (10 of 10)"
    assert missing["rejected"] == "no readings: low"
    assert missing["readings"][0] == {
        "su_id": "low",
        "mean_dbm": None,
        "std_db": None,
        "count": 0,
        "saturated": 0,
    }

    assert calibrate(["campaign", "export", "--url", unit.url, "--token", OPERATOR_TOKEN, "--out",
                      str(tmp_path / "c.csv")]) == 0  # fmt: skip
    points = read_points_csv(tmp_path / "c.csv")
    assert [p.rejected for p in points] == [
        "",
        sat["rejected"],
        missing["rejected"],
    ]  # stored, with the reason
    pos, power, meas = measurement_matrix(points, ["low", "high"])
    assert pos.tolist() == [[1.5, 1.5, 1.5]] and power.tolist() == [20.0]  # the fit sees the good one only
    np.testing.assert_allclose(meas, [[-60.0, -70.0]], atol=1e-3)


def test_one_open_campaign_names_never_reused_closed_takes_no_points(unit):
    assert api(unit, "POST", "/campaigns", json={"name": "c1"}).status_code == 201
    refused(api(unit, "POST", "/campaigns", json={"name": "c1"}), 409, "already exists", "never reused")
    refused(api(unit, "POST", "/campaigns", json={"name": "c2"}), 409, "'c1' is still open: close it first")
    assert api(unit, "POST", "/campaigns/c1/close").json()["state"] == "closed"
    refused(api(unit, "POST", "/campaigns/c1/close"), 409, "already closed")
    refused(point(unit, window(unit, {"low": -60.0, "high": -60.0})), 409, "closed")
    refused(api(unit, "POST", "/campaigns", json={"name": "c1"}), 409, "already exists (closed)")
    assert api(unit, "POST", "/campaigns", json={"name": "c2"}).status_code == 201
    refused(api(unit, "GET", "/campaigns/nope"), 404, "no campaign 'nope'")
    now = time.time_ns()
    refused(point(unit, (now - SECOND, now), name="nope"), 404, "no campaign 'nope'")
    assert [c["name"] for c in api(unit, "GET", "/campaigns", params={"state": "open"}).json()] == ["c2"]


def test_malformed_requests_get_4xx_with_the_reason(unit):
    refused(api(unit, "POST", "/campaigns", headers={}, json={"name": "c1"}), 401, "operator token")
    node = {"Authorization": f"Bearer {unit.tokens['low']}"}
    refused(
        api(unit, "POST", "/campaigns", headers=node, json={"name": "c1"}),
        401,
        "unknown or wrong operator token",
    )
    refused(api(unit, "POST", "/campaigns", json={"name": "bad name!"}), 422, "name")
    refused(api(unit, "POST", "/campaigns", json={"name": "c1", "colour": "red"}), 422, "colour")
    text, js = {**OP, "Content-Type": "text/plain"}, {**OP, "Content-Type": "application/json"}
    refused(api(unit, "POST", "/campaigns", content=b'{"name": "c1"}', headers=text), 415, "application/json")
    refused(api(unit, "POST", "/campaigns", content=b"{not json", headers=js), 422, "malformed JSON")
    assert api(unit, "POST", "/campaigns", json={"name": "c1"}).status_code == 201
    now = time.time_ns()
    refused(point(unit, (now - SECOND, now), position=(9.0, 1.0, 1.5)), 422, "outside the hall")
    refused(point(unit, (now - SECOND, now), position=(4.0, 3.0, 1.0)), 422, "inside obstacle 'cabinet'")
    refused(point(unit, (now - SECOND, now), position=(1.0, 1.0)), 422, "position_m")
    refused(point(unit, (now, now - SECOND)), 422, "until_ns must be after since_ns")
    refused(point(unit, (now - 700 * SECOND, now)), 422, "longer than 600 s")
    refused(point(unit, (now - SECOND, now), dwell_s=1.0), 422, "not both")
    no_window = {"position_m": [1.5, 1.5, 1.5], "power_dbm": 20.0}
    refused(api(unit, "POST", "/campaigns/c1/points", json=no_window), 422, "give dwell_s")
    refused(point(unit, (now - SECOND, now), power_dbm=500.0), 422, "power_dbm")
    body = b'{"position_m": [1.5, 1.5, NaN], "power_dbm": 20, "dwell_s": 1}'
    refused(api(unit, "POST", "/campaigns/c1/points", content=body, headers=js), 422, "NaN")
    assert api(unit, "GET", "/campaigns/c1").json()["n_points"] == 0


def test_import_checks_every_point_before_storing_any(unit):
    assert api(unit, "POST", "/campaigns", json={"name": "c1"}).status_code == 201

    def imp(*points) -> httpx.Response:
        return api(unit, "POST", "/campaigns/c1/import", json={"points": list(points)})

    def pt(readings, position=(1.5, 1.5, 1.5), **kw) -> dict:
        return {"position_m": list(position), "power_dbm": 20.0, "readings": readings, **kw}

    both = [
        {"su_id": "low", "mean_dbm": -60.0, "std_db": 0.5, "count": 20},
        {"su_id": "high", "mean_dbm": -70.0, "count": 0},
    ]  # fmt: skip  (a log without counts is fine)
    refused(imp(pt(both), pt([{"su_id": "nope", "mean_dbm": -60.0, "count": 1}])), 422,
            "points[1].readings[0]: 'nope' is not a sensing unit of this campaign (low, high)")  # fmt: skip
    refused(imp(pt(both, position=(4.0, 3.0, 1.0))), 422, "points[0]: position_m", "inside obstacle")
    refused(imp(pt([both[0], both[0]])), 422, "'low' appears twice")
    refused(imp(pt([{"su_id": "low", "count": 3}])), 422, "count is 3 but there is no mean_dbm")
    refused(imp(pt([{"su_id": "low", "mean": -60.0, "count": 1}])), 422, "mean")
    refused(api(unit, "POST", "/campaigns/c1/import", json={"points": []}), 422, "points")
    assert api(unit, "GET", "/campaigns/c1").json()["n_points"] == 0  # all or nothing

    r = imp(pt(both), pt(both[:1], position=(6.5, 4.5, 1.5)), pt(both, rejected="robot slipped"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["imported"], out["accepted"], out["rejected"]) == (3, 1, 2)
    assert [p["rejected"] for p in out["points"]] == ["", "no readings: high", "robot slipped"]
    assert all(p["source"] == "import" and p["since_ns"] is None for p in out["points"])


# --------------------------------------------------------------------------------------- the CLI


def test_cli_campaign_start_point_status_import_export_close(unit, tmp_path, capsys, monkeypatch):
    token_file = tmp_path / "operator.token"
    token_file.write_text(OPERATOR_TOKEN + "\n")
    conn = ["--url", unit.url, "--token-file", str(token_file)]
    assert calibrate(["campaign", "start", "c1", *conn]) == 0
    assert "campaign c1 started by shift-lead over 2 SUs: low, high" in capsys.readouterr().out

    stop = threading.Event()

    def nodes_streaming() -> None:  # both nodes report every 50 ms, on their (here: the test's) clock
        while not stop.is_set():
            for nid in unit.tokens:
                ingest(unit, nid, [time.time_ns()], -55.0 if nid == "low" else -65.0)
            time.sleep(0.05)

    feeder = threading.Thread(target=nodes_streaming, daemon=True)
    feeder.start()
    try:
        asked_ns = time.time_ns()
        rc = calibrate(
            ["campaign", "point", "--position", "2,5,1.5", "--power-dbm", "20", "--dwell", "1s", *conn]
        )
    finally:
        stop.set()
        feeder.join()
    out = capsys.readouterr().out
    assert rc == 0, out
    # The server measured over a 1 s dwell that began after the request and stored the point only once
    # the dwell had ended, from readings inside it (order of events, not wall-clock durations).
    stored = httpx.get(f"{unit.url}/api/v1/campaigns/c1", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    point = stored.json()["points"][0]
    assert point["until_ns"] - point["since_ns"] == SECOND and point["since_ns"] >= asked_ns
    assert point["created_ns"] >= point["until_ns"]
    assert all(r["count"] >= 2 for r in point["readings"]), point["readings"]
    assert "point 0 at (2.00, 5.00, 1.50) m, 20 dBm: accepted: 2 SUs" in out and "-55.00 dBm" in out

    csv_in = tmp_path / "robot.csv"  # a total station's log in the campaign CSV format
    csv_in.write_text("point,x_m,y_m,z_m,power_dbm,su_id,mean_dbm,std_db,count,rejected\n"
                      "0,1.0,1.0,1.5,20,low,-58.0,0.4,30,\n0,1.0,1.0,1.5,20,high,-66.0,0.6,30,\n"
                      "1,7.0,5.0,1.5,20,low,-61.0,0.4,30,\n")  # fmt: skip
    assert calibrate(["campaign", "import", str(csv_in), *conn]) == 0
    out = capsys.readouterr().out
    assert (
        "imported 2 points" in out
        and "1 accepted, 1 rejected" in out
        and "point 2: rejected: no readings: high" in out
    )

    assert calibrate(["campaign", "status", "--sus", *conn]) == 0
    out = capsys.readouterr().out
    assert (
        "campaign c1 (open" in out
        and "3 points, 2 accepted, 1 rejected" in out
        and "REJECTED: no readings: high" in out
    )

    assert calibrate(["campaign", "export", "--out", str(tmp_path / "out.csv"), *conn]) == 0
    points = read_points_csv(tmp_path / "out.csv")
    assert len(points) == 3 and [p.position_m for p in points][1:] == [(1.0, 1.0, 1.5), (7.0, 5.0, 1.5)]
    assert measurement_matrix(points, ["low", "high"])[2][1].tolist() == [-58.0, -66.0]

    assert calibrate(["campaign", "close", *conn]) == 0
    assert "campaign c1 closed: 3 points, 2 accepted" in capsys.readouterr().out
    assert calibrate(["campaign", "point", "--position", "2,5,1.5", "--power-dbm", "20", *conn]) == 1
    assert "no campaign is open" in capsys.readouterr().err

    monkeypatch.setenv("RFTWIN_OPERATOR_TOKEN", OPERATOR_TOKEN)  # the token from the environment
    monkeypatch.setenv("RFTWIN_CENTRAL_URL", unit.url)
    assert calibrate(["campaign", "start", "c1"]) == 1
    captured = capsys.readouterr()
    assert "409 Conflict: a campaign named 'c1' already exists (closed)" in captured.err
    assert OPERATOR_TOKEN not in captured.out + captured.err


def test_cli_errors_are_clear_and_never_show_the_token(unit, tmp_path, capsys):
    wrong = "rto_this-is-a-wrong-token"
    assert calibrate(["campaign", "start", "c1", "--url", unit.url, "--token", wrong]) == 1
    err = capsys.readouterr().err
    assert (
        "401 Unauthorized: unknown or wrong operator token" in err
        and "--token-file" in err
        and wrong not in err
    )

    bad = tmp_path / "bad.csv"
    bad.write_text("point,x,y,z,power,su,mean\n0,1,1,1.5,20,low,-60\n")
    assert calibrate(["campaign", "import", str(bad), "--url", unit.url, "--token", OPERATOR_TOKEN]) == 2
    err = capsys.readouterr().err
    assert "missing columns" in err and "x_m" in err and OPERATOR_TOKEN not in err

    assert calibrate(["campaign", "status", "--url", "http://127.0.0.1:9"]) == 1
    assert "cannot reach the central unit at http://127.0.0.1:9" in capsys.readouterr().err
    assert calibrate(["campaign", "status", "--url", unit.url]) == 1
    assert "401 Unauthorized" in (err := capsys.readouterr().err) and "give an operator token" in err
    assert calibrate(["campaign", "status", "--url", unit.url, "--token", OPERATOR_TOKEN]) == 1
    assert "there are no campaigns yet" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        calibrate(["campaign", "point", "--position", "1,2", "--power-dbm", "20"])
    assert "expected three finite numbers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        calibrate(["learn", "--duration", "soon"])
    assert "expected a duration like 10s" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ learning


@pytest.mark.raytracing
def test_cli_learn_refuses_too_little_data_then_learns_and_prints_the_provenance(tmp_path, tiny_twin, capsys):
    from central.detection.engine import EngineConfig
    from central.detection.live import LiveDetection

    cfg = central_config(tmp_path, site=str(DATA / "tiny_hall.toml"))
    svc = CentralService(cfg, engine_factory=lambda state: LiveDetection(state, tiny_twin, EngineConfig(window_s=0.05)),
                         use_default_plugins=False, log_level="warning")  # fmt: skip
    svc.tokens = {
        su.id: svc.store.add_node(su.id, su.position_m, su_id=su.id) for su in svc.site.sensing_units
    }
    svc.seq = {nid: 0 for nid in svc.tokens}
    svc.start()
    try:
        conn = ["--url", svc.url, "--token", OPERATOR_TOKEN]
        assert calibrate(["learn", "--duration", "30s", *conn]) == 1
        assert "409 Conflict: only 0 usable snapshots in the window" in capsys.readouterr().err
        for _ in range(60):  # 60 windows of 50 ms: one evaluation each
            for nid in svc.tokens:
                ingest(svc, nid, [time.time_ns()], -60.0)
            time.sleep(0.06)
        assert calibrate(["learn", "--duration", "30s", "--target-far", "0.01", *conn]) == 0
        out = capsys.readouterr().out
        model = svc.store.active_model("detector")
        assert f"model {model.id} is active" in out and "learned ed on" in out
        assert f"site_hash: {tiny_twin.site.content_hash()}" in out and "twin_key:" in out
        assert calibrate(["learn", "--detector", "no-such-detector", *conn]) == 1
        assert "409" in capsys.readouterr().err
    finally:
        svc.stop()


# ---------------------------------------------------------------------------------- simulation


@pytest.mark.raytracing
def test_simulated_campaign_on_the_tiny_hall(tmp_path, tiny_site, monkeypatch):
    from calibration.campaign_sim import SimSettings, simulate_campaign
    from central.twin.site import Material

    monkeypatch.setenv("RFTWIN_CACHE_DIR", str(tmp_path / "cache"))
    concrete = Material("concrete", relative_permittivity=7.0, conductivity_s_per_m=0.3, thickness_m=0.2)
    truth = dataclasses.replace(
        tiny_site, name="tiny-hall-truth", materials={**tiny_site.materials, "concrete": concrete}
    )
    lines: list[str] = []
    s = SimSettings(
        points=3, dwell_s=1.0, gap_s=0.3, guard_s=0.2, lead_in_s=10.0, seed=1, model_error_db=0.5, gain_db=0.0
    )  # full scale at -10 dBm: a 20 dBm reference a metre away does not clip; the lead-in covers the node
    # processes' start on a loaded two-core machine (while the central unit may still be tracing its twin)
    result = simulate_campaign(tmp_path / "sim", tiny_site, DATA / "tiny_hall.toml", truth, tmp_path / "sim.csv",
                               "sim", s, say=lines.append, env={"RFTWIN_CACHE_DIR": str(tmp_path / "cache")},
                               central_timeout_s=120)  # fmt: skip
    assert sum("/3] point" in line for line in lines) == 3, lines
    points = read_points_csv(result.csv_path)
    assert len(points) == 3 and result.accepted >= 2, lines  # the first may race the nodes' start
    pos, power, meas = measurement_matrix(points, ["low", "high"])
    assert np.isfinite(meas).all() and (power == 20.0).all()
    assert ((meas > -100) & (meas < 0)).all()  # a 20 dBm reference a few metres away, above the noise
    # every usable point has readings of every SU in its window (how many, in a 0.6 s window with a reading
    # every 0.2 s, depends on how busy the machine is: a loaded CI host delivered one)
    assert all(p.count.min() >= 1 for p in points if p.usable)
