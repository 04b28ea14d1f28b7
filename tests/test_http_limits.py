"""Slow and greedy clients against the real central service on a loopback socket
(:mod:`central.http_limits`): request heads that trickle in (slowloris) or never come are closed after
``[limits] header_timeout_s`` while normal clients are served; a body that trickles gets 408;
connections beyond ``max_connections`` get 503 and are closed; and neither an idle keep-alive
connection nor the SSE event stream is cut by the header timeout. Every wait has a deadline; the
assertions are on what the sockets saw. Run over the protocol uvicorn picks (httptools here) and h11."""

from __future__ import annotations

import contextlib
import functools
import json
import socket
import threading
import time

import httpx
import pytest

from central.service import CentralService
from tests.central_helpers import VIEWER, central_config
from tests.conftest import DATA
from tests.dashboard_server import sse_events
from tests.polling import wait_for

pytestmark = pytest.mark.timeout(120)
TINY_3SU = DATA / "tiny_hall_3su.toml"
HEADER_TIMEOUT_S = 1.0
TIMEOUT = httpx.Timeout(5.0)


@pytest.fixture(params=["auto", "h11"])
def protocol(request, monkeypatch):
    """Which uvicorn HTTP protocol the guard is mixed into: the one uvicorn picks, or h11."""
    if request.param == "h11":
        import uvicorn.protocols.http.auto as auto
        from uvicorn.protocols.http.h11_impl import H11Protocol

        monkeypatch.setattr(auto, "AutoHTTPProtocol", H11Protocol)
    return request.param


@pytest.fixture
def serve(tmp_path, protocol):
    """``serve(**limits)``: a started CentralService (tiny site, dashboard mounted, no live engine:
    nothing is ray-traced) with these ``[limits]``; stopped after the test."""
    started: list[CentralService] = []

    def start(**limits) -> CentralService:
        cfg = central_config(tmp_path / f"svc{len(started)}", site=str(TINY_3SU), limits=limits)
        svc = CentralService(cfg, engine_factory=lambda state: None, log_level="warning")
        su = svc.site.sensing_units[0]
        svc.node_token = svc.store.add_node("su01", su.position_m, su_id="su01")  # type: ignore[attr-defined]
        started.append(svc.start())
        return svc

    yield start
    for svc in started:
        svc.stop()


def address(svc: CentralService) -> tuple[str, int]:
    return "127.0.0.1", svc.port


def server_connections(svc: CentralService) -> int:
    return len(svc._uvicorn.server_state.connections)


def connect(svc: CentralService) -> socket.socket:
    s = socket.create_connection(address(svc), timeout=5)
    s.setblocking(False)
    return s


def closed_by_server(s: socket.socket) -> bool:
    """Whether the server has closed this (non-blocking) socket: EOF or a reset. Data would mean it
    answered a request head that was never complete: a failure."""
    try:
        data = s.recv(65536)
    except BlockingIOError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True
    assert data == b"", f"the server answered an incomplete request head: {data[:200]!r}"
    return True


def read_response(s: socket.socket, timeout_s: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a content-length, read from a blocking socket."""
    s.settimeout(timeout_s)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, f"connection closed before a response head: {buf!r}"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = s.recv(65536)
        assert chunk, "connection closed mid-body"
        rest += chunk
    return int(status_line.split()[1]), headers, rest[:n]


def eof_or_reset(s: socket.socket, timeout_s: float = 10.0) -> bool:
    s.settimeout(timeout_s)
    try:
        return s.recv(65536) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


# A request head that cannot be complete within the test at a byte per half second (it never ends).
SLOW_HEAD = b"GET /api/v1/health HTTP/1.1\r\nHost: central\r\nX-Filler: " + b"a" * 400 + b"\r\n\r\n"


def test_trickling_and_silent_request_heads_are_closed_while_a_normal_client_is_served(serve):
    svc = serve(header_timeout_s=HEADER_TIMEOUT_S)
    trickling = [connect(svc) for _ in range(100)]
    silent = [connect(svc) for _ in range(10)]  # connect and never send a byte
    open_ = {id(s): s for s in trickling + silent}
    sent = dict.fromkeys(map(id, trickling), 0)
    health = []
    deadline = time.monotonic() + 10 * HEADER_TIMEOUT_S + 10.0
    with httpx.Client(base_url=svc.url, timeout=TIMEOUT) as client:
        while open_ and time.monotonic() < deadline:
            for s in trickling:  # one byte each, every half second
                if id(s) in open_:
                    try:
                        s.send(SLOW_HEAD[sent[id(s)] : sent[id(s)] + 1])
                        sent[id(s)] += 1
                    except OSError:  # EPIPE / ECONNRESET: the server has closed it
                        open_.pop(id(s))
            for key, s in list(open_.items()):
                if closed_by_server(s):
                    open_.pop(key)
            health.append(client.get("/api/v1/health").status_code)  # served meanwhile
            time.sleep(0.5)
    assert not open_, f"{len(open_)} of {len(trickling) + len(silent)} slow connections still open"
    assert max(sent.values()) < len(SLOW_HEAD)  # no head was ever complete
    assert health and set(health) == {200}, health
    for s in trickling + silent:
        s.close()
    wait_for(lambda: server_connections(svc) == 0, 15, "the server to close every connection")


def test_a_trickling_body_gets_408_problem_and_the_connection_is_closed(serve):
    svc = serve(header_timeout_s=HEADER_TIMEOUT_S, body_timeout_s=1.0)
    s = socket.create_connection(address(svc), timeout=5)
    s.sendall(b"POST /api/v1/ingest HTTP/1.1\r\nHost: central\r\nContent-Type: application/json\r\n"
              b"Authorization: Bearer " + svc.node_token.encode() + b"\r\nContent-Length: 5000\r\n\r\n")  # fmt: skip
    stop = threading.Event()

    def trickle() -> None:
        with contextlib.suppress(OSError):
            while not stop.wait(0.3):
                s.send(b" ")

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        status, headers, body = read_response(s, timeout_s=15.0)
    finally:
        stop.set()
        t.join(5)
    assert status == 408, (status, body)
    assert headers["content-type"] == "application/problem+json" and headers["connection"] == "close"
    problem = json.loads(body)
    assert problem["status"] == 408 and problem["reason"] == "timeout" and "request body" in problem["detail"]
    assert eof_or_reset(s)
    s.close()
    assert svc.store.count("measurements") == 0
    assert svc.state.metrics.rejected.get(("/ingest", "timeout")) == 1
    # a body that arrives in time is still fine, and the server took no harm
    ok = httpx.post(svc.url + "/api/v1/ingest", headers={"Authorization": f"Bearer {svc.node_token}"},
                    json={"protocol": 1, "node_id": "su01", "records": [{
                        "node_id": "su01", "seq": 0, "t_ns": time.time_ns(), "f_center_hz": 3.7e9,
                        "bandwidth_hz": 20e6, "power_dbm": -60.0}]}, timeout=TIMEOUT)  # fmt: skip
    assert ok.status_code == 200, ok.text


def test_connections_beyond_the_cap_get_503_and_are_closed(serve):
    svc = serve(header_timeout_s=60.0, max_connections=20)
    held = [connect(svc) for _ in range(20)]
    for s in held:
        s.send(b"GET /api/v1/he")  # a head in progress holds its connection (until the header timeout)
    wait_for(lambda: server_connections(svc) == 20, 15, "20 connections open at the server")
    extra = socket.create_connection(address(svc), timeout=5)
    status, headers, body = read_response(extra)
    assert status == 503 and headers["content-type"] == "application/problem+json", (status, body)
    assert headers["retry-after"] == "1" and json.loads(body)["reason"] == "unavailable"
    assert "too many open connections (at most 20)" in json.loads(body)["detail"]
    assert eof_or_reset(extra)
    extra.close()
    try:  # an HTTP client at the cap: the 503, or a reset if its request was still arriving at the close
        assert httpx.get(svc.url + "/api/v1/health", timeout=TIMEOUT).status_code == 503
    except httpx.TransportError:
        pass
    assert not any(closed_by_server(s) for s in held)  # the ones inside the cap are untouched
    for s in held:
        s.close()
    wait_for(lambda: server_connections(svc) == 0, 15, "the server to close every connection")
    assert httpx.get(svc.url + "/api/v1/health", timeout=TIMEOUT).status_code == 200


def test_an_idle_keep_alive_connection_is_not_cut_by_the_header_timeout(serve):
    svc = serve(header_timeout_s=HEADER_TIMEOUT_S)
    s = socket.create_connection(address(svc), timeout=5)
    request = b"GET /api/v1/health HTTP/1.1\r\nHost: central\r\n\r\n"
    for _ in range(2):
        s.sendall(request)
        status, _, body = read_response(s)
        assert status == 200 and json.loads(body) == {"status": "ok"}
        time.sleep(2 * HEADER_TIMEOUT_S)  # idle past the header timeout (uvicorn's keep-alive is 5 s)
    # the next request, sent slowly but within the header timeout, is answered on the same connection
    s.sendall(request[:10])
    time.sleep(HEADER_TIMEOUT_S / 10)
    s.sendall(request[10:])
    status, _, _ = read_response(s)
    assert status == 200
    s.close()


def test_the_event_stream_is_not_cut_by_the_header_timeout(serve, monkeypatch):
    import central.dashboard.routes as routes

    monkeypatch.setattr(routes, "dashboard_router", functools.partial(routes.dashboard_router, heartbeat_s=0.25))
    svc = serve(header_timeout_s=HEADER_TIMEOUT_S)
    assert svc.dashboard
    with httpx.stream("GET", svc.url + "/api/v1/events", headers=VIEWER, timeout=TIMEOUT) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        events = sse_events(resp.iter_lines())
        assert next(events)["event"] == "hello"
        t_hello = time.monotonic()
        keepalives = 0
        for e in events:  # keepalives every 0.25 s (and any event), for three times the header timeout
            keepalives += e.get("comment") == "keepalive"
            if time.monotonic() - t_hello > 3 * HEADER_TIMEOUT_S:
                break
        assert keepalives >= 4
        svc.bus.publish("nodes", {"nodes": [], "probe": "still streaming"})
        got = next(e for e in events if isinstance(e.get("data"), dict) and "probe" in e["data"])
        assert got["event"] == "nodes" and got["data"]["probe"] == "still streaming"
