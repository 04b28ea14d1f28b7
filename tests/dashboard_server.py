"""A real uvicorn server with only the dashboard routes, and synthetic but well-formed live records.

The records are built from central/live.py's dataclasses (``to_dict``), as the detection loop would
publish them, so the page and the SSE stream are tested against the real wire format.
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

import numpy as np
import uvicorn
from fastapi import FastAPI

from central.dashboard import DashboardRecorder, dashboard_router
from central.events import EventBus
from central.live import Alarm, NodeHealth, Snapshot, SuState, TxContext
from central.twin.site import Site
from tests.central_helpers import VIEWER_TOKEN

JAMMER_XY = (25.0, 15.5)  # in the aisle between production lines 5 and 6
THRESHOLD = 3.0


def secured_app(bus: EventBus, site: Site) -> FastAPI:
    """A bare app with what the dashboard's routes rely on: the API's state (a real store in a
    temporary folder, the test config's viewer and operator tokens), its error answers, its security
    state, and the login (``/api/v1/session``)."""
    from central.api import AppState, problems, security, session
    from central.store import Store
    from tests.central_helpers import central_config

    cfg = central_config(Path(tempfile.mkdtemp(prefix="rftwin-dashboard-")))
    app = FastAPI()
    app.state.rftwin = AppState(cfg, Store(cfg.db_path), bus, site)
    problems.install_error_handlers(app)
    security.install_security(app, cfg.limits)
    app.include_router(session.router, prefix="/api/v1")
    return app


@contextlib.contextmanager
def login(url: str, token: str = VIEWER_TOKEN) -> Iterator[httpx.Client]:
    """``with login(url) as browser:`` a client logged in to the dashboard at ``url`` (it carries the
    session cookie, as a browser does)."""
    with httpx.Client(base_url=url, timeout=10) as client:
        r = client.post("/api/v1/session", json={"token": token})
        assert r.status_code == 201, r.text
        yield client


class DashboardServer:
    """``with DashboardServer(bus, site) as srv:`` serves the dashboard on ``srv.url`` (loopback)."""

    def __init__(self, bus: EventBus, site: Site, heartbeat_s: float = 15.0,
                 recorder: DashboardRecorder | None = None, app: FastAPI | None = None):  # fmt: skip
        """Serves ``app`` if given (its dashboard already mounted), else an app with only the dashboard
        (and what it needs: :func:`secured_app`)."""
        if app is None:
            self.recorder = recorder or DashboardRecorder()
            app = secured_app(bus, site)
            app.include_router(dashboard_router(bus, site, heartbeat_s=heartbeat_s, recorder=self.recorder))
        else:
            self.recorder = app.state.dashboard_recorder
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=1)  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="dashboard-uvicorn", daemon=True)
        self.url = ""

    def __enter__(self) -> DashboardServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.recorder.stop()


# --------------------------------------------------------------------------------------------------
# Synthetic records


def _dist(a, b) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def tx_contexts(t_ns: int) -> tuple[TxContext, ...]:
    """Three legitimate transmitters moving slowly along the aisles."""
    phase = (t_ns / 1e9) / 60.0
    paths = [((3.0, 5.0), (3.0, 35.0)), ((14.5, 20.0), (25.5, 20.0)), ((36.5, 35.0), (36.5, 5.0))]
    out = []
    for i, (a, b) in enumerate(paths):
        f = 0.5 + 0.5 * math.sin(2 * math.pi * phase + i)
        out.append(
            TxContext(f"tx{i + 1}", t_ns, (a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]), 1.5), 20.0)
        )
    return tuple(out)


def snapshot(site: Site, t_ns: int, rng: np.random.Generator, jammer: bool = False,
             stale: frozenset[str] = frozenset(), saturated: frozenset[str] = frozenset()) -> Snapshot:  # fmt: skip
    txs = tx_contexts(t_ns)
    sus = []
    for su in site.sensing_units:
        pos = su.position_m
        predicted = max(
            -95.0, 20.0 - 40.0 - 25.0 * math.log10(1 + min(_dist(pos, t.position_m) for t in txs))
        )
        residual = float(rng.normal(0.0, 1.5))
        if jammer:
            residual += max(0.0, 22.0 - 1.1 * _dist(pos, JAMMER_XY))
        if su.id in stale:
            sus.append(SuState(su.id, pos, None, predicted, None, True, False))
        elif su.id in saturated:
            sus.append(SuState(su.id, pos, -18.0, predicted, None, False, True))
        else:
            sus.append(SuState(su.id, pos, predicted + residual, predicted, residual, False, False))
    valid = [s.residual_db for s in sus if s.residual_db is not None]
    score = float(np.mean(sorted(valid, reverse=True)[:6])) if valid else None
    anomalous = bool(jammer and score is not None and score > THRESHOLD) or bool(saturated)
    reason = ("saturation" if saturated and not anomalous else "residual") if anomalous else ""
    return Snapshot(t_ns, tuple(sus), txs, score, THRESHOLD, anomalous, "energy-detector", reason,
                    JAMMER_XY if anomalous else None)  # fmt: skip


def affected(snap: Snapshot, min_db: float = 6.0) -> tuple[str, ...]:
    return tuple(
        s.su_id for s in snap.sus if s.saturated or (s.residual_db is not None and s.residual_db >= min_db)
    )


def nodes(site: Site, now_ns: int, stale: frozenset[str] = frozenset(), saturated: frozenset[str] = frozenset(),
          records: int = 1000, spool_full: frozenset[str] = frozenset()) -> dict:  # fmt: skip
    """The ``nodes`` event: every SU's health, with the spool state its batches report (``spool_full``:
    nodes whose disk is full and that drop their oldest readings)."""
    out = []
    for i, su in enumerate(site.sensing_units):
        seen = now_ns - (int(45e9) if su.id in stale else int(0.4e9))
        sat = su.id in saturated
        out.append(NodeHealth(su.id, su.position_m, seen, seen - int(0.05e9), -18.0 if sat else -62.0 - i,
                              records + 17 * i, sat, not sat and su.id not in stale,
                              "front end overloaded" if sat else "no record for 45 s" if su.id in stale else ""))  # fmt: skip
    spools = {su.id: {"full": su.id in spool_full, "dropped": 40 if su.id in spool_full else 0, "refused": 0,
                      "free_bytes": 0 if su.id in spool_full else 10**9} for su in site.sensing_units}  # fmt: skip
    return {"t_ns": now_ns, "nodes": [{**n.to_dict(), "spool": spools[n.node_id]} for n in out]}


def alarm(
    alarm_id: int, snap: Snapshot, start_ns: int, state: str = "active", end_ns: int | None = None
) -> Alarm:
    return Alarm(alarm_id, "residual", state, start_ns, end_ns, snap.score, affected(snap), JAMMER_XY)


# --------------------------------------------------------------------------------------------------
# A minimal SSE client


def sse_events(lines: Iterator[str]) -> Iterator[dict]:
    """Parse Server-Sent Events from text lines: yields {"id", "event", "data"} and {"comment"}."""
    event: dict = {}
    for line in lines:
        if line == "":
            if "data" in event:
                event["data"] = json.loads(event["data"])
                yield event
            event = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                event["data"] = event["data"] + "\n" + value if "data" in event else value
            elif name in ("id", "event", "retry"):
                event[name] = value
