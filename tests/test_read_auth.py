"""Who may read: every read of the API, the event stream and the dashboard needs a credential (a
viewer or operator token, or the dashboard's session cookie), /metrics a scraper token, and only
/health is open. Failed authentications are rate-limited per client address. All over real HTTP,
a real uvicorn server on loopback with the dashboard mounted."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from central.config import parse_config
from central.dashboard import mount
from central.service import CentralService
from tests.central_helpers import (
    INTEGRATION_TOKEN,
    OPERATOR_TOKEN,
    SCRAPER_TOKEN,
    VIEWER_TOKEN,
    bearer,
    central_config,
)

TINY_HALL = Path(__file__).parent / "data" / "tiny_hall.toml"
NODE_TOKEN = "rtn_read-auth-node"
OPEN = {"/api/v1/health"}
# a scraper's; the login's; the band plan, which nodes and the scheduler read as well (test below)
NOT_READS = {"/api/v1/metrics", "/api/v1/session", "/api/v1/band-plan"}


def start(tmp_path, **limits) -> CentralService:
    cfg = central_config(tmp_path, site=str(TINY_HALL), limits={"requests_per_s": 0.0, **limits})
    svc = CentralService(cfg, use_default_plugins=False, log_level="warning")
    svc.store.add_node("su01", (1.3, 4.6, 1.5), su_id="low", token=NODE_TOKEN)
    svc.store.add_model("energy", tmp_path / "energy.json", {"site": "tiny-hall"})
    svc.store.open_alarm("residual", 1000, 5.0, ["low"], (4.0, 3.0))
    mount(svc.app, svc.state)
    return svc.start()


@pytest.fixture
def unit(tmp_path):
    svc = start(tmp_path, failed_auth_per_s=0.0)  # these tests fail on purpose, often
    yield svc
    svc.app.state.dashboard_recorder.stop()
    svc.stop()


def read_paths(url: str) -> list[str]:
    """Every GET of the unit's own OpenAPI document that is a read, path parameters filled in."""
    doc = httpx.get(url + "/openapi.json").json()
    paths = [p for p, ops in doc["paths"].items() if "get" in ops and p not in OPEN | NOT_READS]
    return [p.replace("{model_id}", "1").replace("{name}", "nope") for p in paths]


def get(url: str, path: str, headers: dict | None = None) -> httpx.Response:
    """A GET that reads only the head of an endless stream (the events)."""
    with httpx.stream("GET", url + path, headers=headers or {}, timeout=10) as r:
        if r.headers.get("content-type", "").startswith("application/"):
            r.read()
        return r


def test_every_read_needs_a_viewer_or_operator_credential(unit):
    paths = read_paths(unit.url)
    assert {"/api/v1/nodes", "/api/v1/site", "/api/v1/snapshots", "/api/v1/alarms", "/api/v1/context",
            "/api/v1/campaigns", "/api/v1/models/1", "/api/v1/events"} <= set(paths)  # fmt: skip
    for path in paths:
        for headers, why in [(None, "missing or malformed"), (bearer("rtv_guess"), "unknown or wrong viewer or operator"),
                             (bearer(NODE_TOKEN), "unknown or wrong"), (bearer(INTEGRATION_TOKEN), "unknown or wrong"),
                             (bearer(SCRAPER_TOKEN), "unknown or wrong")]:  # fmt: skip
            r = get(unit.url, path, headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (path, headers, r.status_code)
            assert why in r.json()["detail"], (path, r.json())
        for token in (VIEWER_TOKEN, OPERATOR_TOKEN):
            r = get(unit.url, path, bearer(token))
            assert r.status_code == (404 if path.endswith("/nope") else 200), (path, token, r.status_code)
    assert httpx.get(unit.url + "/api/v1/health").status_code == 200  # the one open operation


def test_metrics_want_a_scraper_token_and_nothing_else_does(unit):
    for token in (None, VIEWER_TOKEN, OPERATOR_TOKEN, NODE_TOKEN):
        r = httpx.get(unit.url + "/api/v1/metrics", headers=bearer(token) if token else {})
        assert r.status_code == 401 and "scraper token" in r.json()["detail"], (token, r.text)
    r = httpx.get(unit.url + "/api/v1/metrics", headers=bearer(SCRAPER_TOKEN))
    assert r.status_code == 200 and "rftwin_ingest_records_total" in r.text
    assert httpx.get(unit.url + "/api/v1/nodes", headers=bearer(SCRAPER_TOKEN)).status_code == 401


def test_the_band_plan_is_for_readers_nodes_and_integrations_only(unit):
    assert httpx.get(unit.url + "/api/v1/band-plan").status_code == 401
    assert httpx.get(unit.url + "/api/v1/band-plan", headers=bearer(SCRAPER_TOKEN)).status_code == 401
    for token in (VIEWER_TOKEN, OPERATOR_TOKEN, NODE_TOKEN, INTEGRATION_TOKEN):
        r = httpx.get(unit.url + "/api/v1/band-plan", headers=bearer(token))
        assert r.status_code == 200 and len(r.json()["grid"]) == 16, (token, r.text)


def test_los_is_a_read_and_an_integration_may_ask_too(unit):
    body = {"position_m": [2.0, 2.0, 1.5]}
    assert httpx.post(unit.url + "/api/v1/los", json=body).status_code == 401
    assert httpx.post(unit.url + "/api/v1/los", json=body, headers=bearer(NODE_TOKEN)).status_code == 401
    for token in (VIEWER_TOKEN, OPERATOR_TOKEN, INTEGRATION_TOKEN):
        assert httpx.post(unit.url + "/api/v1/los", json=body, headers=bearer(token)).status_code == 200, token


def login(client: httpx.Client, token: str) -> dict:
    r = client.post("/api/v1/session", json={"token": token})
    assert r.status_code == 201, r.text
    return r.json()


def test_the_dashboard_needs_a_login_and_its_cookie_is_httponly_and_samesite_strict(unit):
    with httpx.Client(base_url=unit.url, timeout=10) as browser:
        page = browser.get("/")
        assert page.status_code == 303 and page.headers["location"] == "login"  # no session: the login page
        assert browser.get("/login").text.startswith("<!doctype html>")
        assert browser.get("/static/login.js").status_code == 200  # the login page's assets are open
        assert browser.get("/api/v1/session").status_code == 401
        refused = browser.post("/api/v1/session", json={"token": "rtv_wrong"})
        assert refused.status_code == 401 and "set-cookie" not in refused.headers
        assert browser.post("/api/v1/session", json={"token": NODE_TOKEN}).status_code == 401  # not a login
        form = browser.post("/api/v1/session", content=f"token={VIEWER_TOKEN}",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert form.status_code == 415  # a cross-site HTML form cannot log a browser in

        r = browser.post("/api/v1/session", json={"token": VIEWER_TOKEN})
        assert r.status_code == 201
        cookie = r.headers["set-cookie"]
        attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
        assert cookie.startswith("rftwin_session=") and {"httponly", "path", "max-age", "samesite"} <= attributes
        assert "samesite=strict" in cookie.lower() and "secure" not in attributes  # plain http: no Secure
        assert VIEWER_TOKEN not in cookie  # the cookie is a session id, not the token
        me = r.json()
        assert me["name"] == "control-room" and me["role"] == "viewer" and me["expires_in_s"] > 3600
        assert browser.get("/").text.startswith("<!doctype html>")
        assert browser.get("/api/v1/nodes").status_code == 200  # the cookie reads like a viewer token
        assert browser.get("/api/v1/session").json()["csrf_token"] == me["csrf_token"]
        assert browser.get("/api/v1/metrics").status_code == 401  # not a scraper


def test_acknowledging_by_cookie_needs_an_operator_session_and_its_csrf_token(unit):
    alarm_id = unit.store.alarms(None, 10)[0].id
    ack = f"/api/v1/alarms/{alarm_id}/ack"
    with httpx.Client(base_url=unit.url, timeout=10) as viewer:
        me = login(viewer, VIEWER_TOKEN)
        r = viewer.post(ack, headers={"X-CSRF-Token": me["csrf_token"]})
        assert r.status_code == 403 and "viewer session does not allow this" in r.json()["detail"]
    with httpx.Client(base_url=unit.url, timeout=10) as operator:
        me = login(operator, OPERATOR_TOKEN)
        for headers in ({}, {"X-CSRF-Token": "forged"}):  # what a cross-site request could send
            r = operator.post(ack, headers=headers)
            assert r.status_code == 403 and "CSRF token" in r.json()["detail"], headers
        assert unit.store.alarms(None, 10)[0].acknowledged_by is None
        r = operator.post(ack, headers={"X-CSRF-Token": me["csrf_token"]})
        assert r.status_code == 200 and r.json()["acknowledged_by"] == "shift-lead", r.text

        session_id = operator.cookies["rftwin_session"]
        assert operator.delete("/api/v1/session").status_code == 403  # logging out needs it too
        assert operator.delete("/api/v1/session", headers={"X-CSRF-Token": me["csrf_token"]}).status_code == 204
    gone = httpx.get(unit.url + "/api/v1/nodes", cookies={"rftwin_session": session_id})
    assert gone.status_code == 401 and "ended or expired" in gone.json()["detail"]  # the old cookie is dead


def test_a_logged_out_or_rotated_credential_ends_its_sessions(unit):
    token = unit.store.add_credential("viewer", "night-shift")
    with httpx.Client(base_url=unit.url, timeout=10) as browser:
        login(browser, token)
        session_id = browser.cookies["rftwin_session"]
        assert browser.get("/api/v1/alarms").status_code == 200
        unit.store.rotate_credential("viewers", "night-shift")
        r = httpx.get(unit.url + "/api/v1/alarms", cookies={"rftwin_session": session_id})
        assert r.status_code == 401 and "rotated or removed" in r.json()["detail"]
        r = httpx.get(unit.url + "/api/v1/alarms", cookies={"rftwin_session": session_id})
        assert r.status_code == 401 and "ended or expired" in r.json()["detail"]  # and it stays ended


def test_failed_authentications_are_limited_per_client_address(tmp_path):
    # one guess refilled every 50 s: the burst is all the attacker gets within this test, however slow the machine
    svc = start(tmp_path, failed_auth_per_s=0.02, failed_auth_burst=20)
    try:
        with httpx.Client(base_url=svc.url, timeout=10) as attacker:
            t0 = time.monotonic()
            answers = [attacker.get("/api/v1/alarms", headers=bearer(f"rtv_guess-{i}")) for i in range(200)]
            refilled = int((time.monotonic() - t0) * 0.02) + 1  # what may have come back meanwhile
            codes = [r.status_code for r in answers]
            first_429 = codes.index(429)
            assert 20 <= first_429 <= 20 + refilled and set(codes[:first_429]) == {401}, codes[:30]
            assert codes.count(401) <= 20 + refilled, codes.count(401)  # the burst, plus what refilled meanwhile
            limited = answers[-1]
            assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
            assert "too many failed authentications from 127.0.0.1" in limited.json()["detail"]
            # from that address even a right token is refused now: guessing cannot learn faster than the limit
            assert attacker.get("/api/v1/alarms", headers=bearer(VIEWER_TOKEN)).status_code == 429
            assert attacker.post("/api/v1/session", json={"token": VIEWER_TOKEN}).status_code == 429
            assert attacker.get("/api/v1/health").status_code == 200  # liveness stays open
        # another address is not held back by this one (all of 127/8 is loopback)
        other = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(base_url=svc.url, timeout=10, transport=other) as operator:
            assert operator.get("/api/v1/alarms", headers=bearer(VIEWER_TOKEN)).status_code == 200
            assert operator.get("/api/v1/alarms", headers=bearer("rtv_typo")).status_code == 401
    finally:
        svc.app.state.dashboard_recorder.stop()
        svc.stop()


def test_the_unit_listens_on_loopback_unless_told_otherwise(tmp_path):
    cfg = parse_config({"site": str(TINY_HALL), "data_dir": str(tmp_path)}, "<test>", tmp_path)
    assert cfg.listen.host == "127.0.0.1"
    example = (Path(__file__).parents[1] / "systemd" / "central.toml.example").read_text()
    assert '\nhost = "0.0.0.0"' in example  # the installed config serves the plant network, on purpose


def test_over_https_the_session_cookie_is_secure(tmp_path):
    from tests.pki import make_site_pki

    (tmp_path / "pki").mkdir()
    pki = make_site_pki(tmp_path / "pki")
    cfg = central_config(tmp_path, site=str(TINY_HALL), tls={"cert": str(pki / "server.pem"),
                                                              "key": str(pki / "server.key")})  # fmt: skip
    svc = CentralService(cfg, use_default_plugins=False, log_level="warning").start()
    try:
        r = httpx.post(svc.url + "/api/v1/session", json={"token": VIEWER_TOKEN}, verify=str(pki / "ca.pem"))
        assert r.status_code == 201
        assert "secure" in {a.strip().lower() for a in r.headers["set-cookie"].split(";")}
    finally:
        svc.stop()


def test_viewer_and_scraper_tokens_are_enrolled_from_the_command_line(tmp_path):
    config = tmp_path / "central.toml"
    config.write_text(f'site = "{TINY_HALL}"\ndata_dir = "data"\nadvertise = false\n')

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "central.cli", *args, "--config", str(config)],
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    viewer = cli("viewer", "add", "control-room")
    assert viewer.returncode == 0 and viewer.stdout.strip().startswith("rtv_"), viewer.stderr
    scraper = cli("scraper", "add", "prometheus")
    assert scraper.returncode == 0 and scraper.stdout.strip().startswith("rts_"), scraper.stderr
    assert cli("viewer", "list").stdout.split() == ["control-room"]
    again = cli("viewer", "add", "control-room")
    assert again.returncode != 0 and "already exists" in again.stderr
    cfg = parse_config({"site": str(TINY_HALL), "data_dir": str(tmp_path / "data"), "advertise": False,
                        "listen": {"port": 0}}, "<test>", tmp_path)  # fmt: skip
    svc = CentralService(cfg, use_default_plugins=False, log_level="warning").start()
    try:
        assert httpx.get(svc.url + "/api/v1/nodes", headers=bearer(viewer.stdout.strip())).status_code == 200
        assert httpx.get(svc.url + "/api/v1/metrics", headers=bearer(scraper.stdout.strip())).status_code == 200
        assert httpx.get(svc.url + "/api/v1/nodes", headers=bearer(scraper.stdout.strip())).status_code == 401
        assert cli("viewer", "remove", "control-room").returncode == 0
        assert httpx.get(svc.url + "/api/v1/nodes", headers=bearer(viewer.stdout.strip())).status_code == 401
    finally:
        svc.stop()
