"""HTTP side of the dashboard: the page, its static assets, the SSE stream and the floor plan.

Routes (all GET):

- ``/``                 the page (``static/index.html``) for a browser with a dashboard session;
  without one, a redirect to the login page
- ``/login``            the login page (``static/login.html``): a viewer or operator token is
  exchanged for the session cookie by ``POST /api/v1/session`` (:mod:`central.api.session`)
- ``/static/{file}``    the pages' assets (only files shipped in ``static/``; no data, so open)
- ``/api/v1/site``      the floor plan and band plan as JSON (:func:`site_json`; the API's own route
  serves the same where it is mounted)
- ``/api/v1/events``    Server-Sent Events: first a ``hello`` event (server clock, recent snapshot
  history, known alarms), then the bus's latest event of each kind, then live events
  (``snapshot``, ``alarm``, ``nodes``, data = the ``to_dict`` of :mod:`central.live` records). A
  comment line (``: keepalive``) goes out after ``heartbeat_s`` of silence so proxies and the
  browser keep the connection open; ``retry:`` tells ``EventSource`` how fast to reconnect.

The floor plan and the stream are reads (:data:`central.api.security.READ`: a viewer or operator
token, or the session cookie, which ``EventSource`` sends by itself); the app must carry the API's
state and session store (:func:`central.api.create_app`), which is where the dashboard is mounted.

Event payloads the page understands: ``snapshot`` = ``Snapshot.to_dict()`` (its ``sus[*].subband_*``
and ``busy_subbands`` feed the spectrum strip); ``alarm`` = ``Alarm.to_dict()`` (one alarm that was
raised, updated, acknowledged or cleared; its ``interference`` fills the banner and the likelihood heat
map) or ``{"alarms": [...]}`` (the full set); ``nodes`` = ``{"nodes": [NodeHealth.to_dict(), ...]}`` (a
bare list or a dict keyed by node id are accepted as well).

The page also calls the API it is mounted with: ``GET /api/v1/session`` (who is logged in, the CSRF
token) and, for an operator's session, ``POST /api/v1/alarms/{id}/ack`` (the acknowledge button).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from starlette.routing import Match

from central.api.responses import AUTH, errors
from central.api.security import READ
from central.api.site import band_plan_body
from central.api.sessions import COOKIE_NAME
from central.events import Event, EventBus
from central.twin.site import Site

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"
_NO_CACHE = {"Cache-Control": "no-cache"}
# The stream's media type for the OpenAPI document; the schema is that of one event (OpenAPI 3.1 use,
# what 3.2 calls itemSchema), as an EventSource client sees it.
EVENTS_RESPONSES: dict = {200: {"description": "an endless text/event-stream: hello first, then snapshot, "
                                "alarm and nodes events (data: JSON), keepalive comments when idle",
                                "content": {"text/event-stream": {"schema": {
                                    "type": "object", "required": ["event", "data"], "properties": {
                                        "event": {"enum": ["hello", "snapshot", "alarm", "nodes"]},
                                        "data": {"type": "string", "contentMediaType": "application/json"},
                                        "id": {"type": "string"}, "retry": {"type": "integer", "minimum": 0}}}}}}}  # fmt: skip


def site_json(site: Site) -> dict:
    """The floor plan the dashboard draws: hall size, obstacles (boxes) and sensing units (metres), and
    the band plan its spectrum strip labels (as the API's ``GET /api/v1/site`` and ``/band-plan``)."""
    return {
        "name": site.name,
        "description": site.description,
        "frequency_hz": site.frequency_hz,
        "noise_floor_dbm": site.noise_floor_dbm,
        "hall_size_m": list(site.hall_size_m),
        "hall_material": site.hall_material,
        "tx_plane_height_m": site.tx_plane.height_m,
        "obstacles": [
            {"name": b.name, "material": b.material, "min_m": list(b.min_m), "size_m": list(b.size_m)}
            for b in site.obstacles
        ],
        "sensing_units": [{"id": su.id, "position_m": list(su.position_m)} for su in site.sensing_units],
        "band_plan": band_plan_body(site.band_plan),
    }


def _finite(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def snapshot_summary(snapshot: dict) -> dict:
    """The few numbers of a snapshot the history plot needs (the page computes the same from live ones)."""
    return {
        "t_ns": snapshot.get("t_ns"),
        "residuals": {su.get("su_id"): _finite(su.get("residual_db")) for su in snapshot.get("sus", ())},
        "score": _finite(snapshot.get("score")),
        "threshold": _finite(snapshot.get("threshold")),
        "anomalous": bool(snapshot.get("anomalous")),
    }


class DashboardRecorder:
    """Keeps what a freshly opened page needs beyond the bus's latest event per kind: the last
    ``horizon_s`` of snapshot summaries (for the history plot) and every alarm still active plus the
    most recent cleared ones (the bus replays only the latest alarm event)."""

    def __init__(self, horizon_s: float = 900.0, max_snapshots: int = 5000, keep_cleared: int = 20):
        self.horizon_ns = int(horizon_s * 1e9)
        self.keep_cleared = keep_cleared
        self._snapshots: deque[dict] = deque(maxlen=max_snapshots)
        self._alarms: dict[int, dict] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = lambda: None

    def add(self, event: Event) -> None:
        with self._lock:
            if event.kind == "snapshot" and isinstance(event.data.get("t_ns"), int):
                s = snapshot_summary(event.data)
                if self._snapshots and s["t_ns"] <= self._snapshots[-1]["t_ns"]:
                    return  # replayed or out of order
                self._snapshots.append(s)
                while self._snapshots and self._snapshots[0]["t_ns"] < s["t_ns"] - self.horizon_ns:
                    self._snapshots.popleft()
            elif event.kind == "alarm":
                alarms = event.data["alarms"] if isinstance(event.data.get("alarms"), list) else [event.data]
                if "alarms" in event.data:
                    self._alarms.clear()
                for a in alarms:
                    if isinstance(a, dict) and "id" in a:
                        self._alarms[a["id"]] = a
                cleared = sorted((a for a in self._alarms.values() if a.get("state") != "active"),
                                 key=lambda a: a.get("start_ns") or 0)  # fmt: skip
                for a in cleared[: max(0, len(cleared) - self.keep_cleared)]:
                    del self._alarms[a["id"]]

    def state(self) -> dict:
        with self._lock:
            return {
                "history": list(self._snapshots),
                "alarms": sorted(self._alarms.values(), key=lambda a: a.get("start_ns") or 0),
            }

    async def run(self, bus: EventBus) -> None:
        async for event in bus.subscribe():
            self.add(event)

    def start(self, bus: EventBus) -> None:
        """Record ``bus`` from a daemon thread with its own event loop (idempotent). A thread, not an
        app lifespan task, because the central service runs uvicorn with ``lifespan="off"``. Returns
        once subscribed: every event published afterwards is recorded."""
        with self._lock:
            if self._thread is not None:
                return
            subscribed = threading.Event()
            self._thread = threading.Thread(target=self._main, args=(bus, subscribed), name="dashboard-recorder",
                                            daemon=True)  # fmt: skip
            self._thread.start()
        subscribed.wait(5)

    def _main(self, bus: EventBus, subscribed: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        task = loop.create_task(self.run(bus))
        loop.call_soon(subscribed.set)  # after the task's first step, which subscribes
        self._stop = lambda: loop.call_soon_threadsafe(task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)
        loop.close()

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._stop()
            thread.join(5)


async def _sse_stream(request: Request, bus: EventBus, recorder: DashboardRecorder, site: Site,
                      heartbeat_s: float, poll_s: float) -> AsyncIterator[str]:  # fmt: skip
    hello = {"server_time_ns": time.time_ns(), "site": site.name, **recorder.state()}
    yield f"retry: 2000\nevent: hello\ndata: {json.dumps(hello, separators=(',', ':'))}\n\n"
    # ASGI servers before spec 2.4 (uvicorn) report a disconnect by cancelling this generator;
    # with 2.4 the stream notices it here (or when the next write fails).
    spec = tuple(int(p) for p in request.scope.get("asgi", {}).get("spec_version", "2.0").split("."))
    subscription = bus.subscribe()
    pending: asyncio.Future | None = None
    last_write = time.monotonic()
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(subscription.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=poll_s)
            if done:
                event, pending = pending.result(), None
                yield event.sse()
                last_write = time.monotonic()
                continue
            if spec >= (2, 4) and await request.is_disconnected():
                break
            if time.monotonic() - last_write >= heartbeat_s:
                yield ": keepalive\n\n"
                last_write = time.monotonic()
    except StopAsyncIteration:
        pass
    finally:
        if pending is not None:
            pending.cancel()  # ends the subscription (its queue.get is cancelled; it unsubscribes)
            with contextlib.suppress(BaseException):
                await pending
        with contextlib.suppress(BaseException):
            await subscription.aclose()


def dashboard_router(bus: EventBus, site: Site, heartbeat_s: float = 15.0,
                     recorder: DashboardRecorder | None = None) -> APIRouter:  # fmt: skip
    """The dashboard's routes. Starts a :class:`DashboardRecorder` on the bus (unless given one
    already running) so that a page opened mid-incident gets recent history and all alarms."""
    recorder = recorder or DashboardRecorder()
    recorder.start(bus)
    plan = site_json(site)
    static_files = {p.name: p for p in STATIC_DIR.iterdir() if p.is_file()}
    router = APIRouter(tags=["dashboard"])

    @router.get("/", include_in_schema=False)
    async def index(request: Request) -> Response:
        if request.app.state.sessions.get(request.cookies.get(COOKIE_NAME)) is None:
            return RedirectResponse("login", status_code=303, headers=_NO_CACHE)
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=_NO_CACHE)

    @router.get("/login", include_in_schema=False)
    async def login_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "login.html", media_type="text/html", headers=_NO_CACHE)

    @router.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> FileResponse:
        path = static_files.get(name)
        if path is None:
            raise HTTPException(404, f"no static file {name!r}")
        return FileResponse(path, headers=_NO_CACHE)

    @router.get("/api/v1/site", summary="Floor plan: hall size, obstacles, sensing units (metres)", dependencies=READ,
                responses=errors(*AUTH))  # fmt: skip
    async def get_site() -> dict:
        return plan

    @router.get("/api/v1/events", summary="Live snapshots, alarms and node health (Server-Sent Events)",
                response_class=StreamingResponse, responses={**EVENTS_RESPONSES, **errors(*AUTH)},
                dependencies=READ)  # fmt: skip
    async def events(request: Request) -> StreamingResponse:
        return StreamingResponse(
            _sse_stream(request, bus, recorder, site, heartbeat_s, poll_s=min(1.0, heartbeat_s)),
            media_type="text/event-stream",
            headers={**_NO_CACHE, "X-Accel-Buffering": "no"},
        )

    return router


def mount(app: FastAPI, state) -> list[str]:
    """The central service's plug-in point (``central.service``): add the dashboard to ``app`` using
    ``state.bus`` and ``state.site``. Routes the app already serves (e.g. the API's own
    ``/api/v1/site`` and ``/api/v1/events``) are left to it, never shadowed; the page works with
    either stream (without the ``hello`` event it starts with an empty history). Returns the paths added."""
    recorder = app.state.dashboard_recorder = DashboardRecorder()  # stop() it to end its thread
    router = dashboard_router(state.bus, state.site, recorder=recorder)
    router.routes = [r for r in router.routes if not (isinstance(r, APIRoute) and _served(app, r))]
    app.include_router(router)
    added = [r.path for r in router.routes if isinstance(r, APIRoute)]
    log.info("dashboard routes: %s", ", ".join(added))
    return added


def _served(app: FastAPI, route: APIRoute) -> bool:
    """Whether ``app`` already answers ``route``'s method and path (seen through included routers)."""
    path = route.path.replace("{name}", "dashboard.js")
    for method in route.methods or ():
        scope = {
            "type": "http",
            "path": path,
            "method": method,
            "root_path": "",
            "headers": [],
            "query_string": b"",
        }
        if any(r.matches(scope)[0] == Match.FULL for r in app.router.routes):
            return True
    return False
