"""The central unit's HTTP API (FastAPI): ingest, context, nodes, snapshots, alarms, site, health, metrics.

All paths live under ``/api/v1`` (:data:`node.protocol.INGEST_PATH` and ``HEALTH_PATH`` are two of
them); OpenAPI docs at ``/docs``. ``create_app(state)`` builds the app around an :class:`AppState`.

Rules every endpoint keeps:

- **Never a 500 on bad input.** Request bodies are read here, size-capped (413), required to be
  ``application/json`` (415), parsed once with NaN/Infinity literals refused and depth/huge-number
  errors caught (422), then validated (422 with the field that is wrong). Every error is
  ``{"detail": "<reason>"}``. A store that cannot write (disk full, locked) answers 503, so a node
  keeps its records and retries.
- **Tokens:** ``Authorization: Bearer <token>``; hashed and compared in constant time against every
  stored SHA-256 (:mod:`central.auth`). Nodes write only as themselves (403 otherwise); context needs
  an integration token; acknowledging an alarm, learning and changing calibration campaigns an
  operator token. Reads are open (the dashboard).
- **Rate limit per credential:** a token bucket per node / integration / operator
  (``[limits] requests_per_s`` on average, bursts of ``request_burst``); beyond it 429 with
  ``Retry-After`` and the reason. A node backs off and resends (nothing is lost: it is spooled).
- **No SQLite on the event loop.** Blocking work runs in the threadpool (sync endpoints, or
  ``run_in_threadpool`` after the body is read); the store serialises writes itself.

Ingest path (measured, one 1000-record batch of ~255 kB): JSON parse ≈ 1.6 ms, protocol validation
≈ 4.7 ms, row building ≈ 0.7 ms, insert + durable commit ≈ 2.5 ms; the whole server process spends
≈ 12 µs of CPU per record (``bench/central.py``: ~79 000 records/s on 2 cores, clients included).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from central.auth import bearer_token, match_token
from central.campaign import (
    MAX_DWELL_S,
    CampaignConflict,
    CampaignNotFound,
    NewPoint,
    SuReading,
    aggregate,
    check_position,
    rejection_reason,
    wait_for_window,
)
from central.config import CentralConfig
from central.events import EventBus
from central.live import TxContext
from central.schemas import (
    AlarmOut,
    CampaignDetail,
    CampaignImport,
    CampaignOut,
    CampaignStart,
    ContextStored,
    ContextUpdate,
    Health,
    ImportOut,
    IngestAckModel,
    IngestBatchModel,
    LearnOut,
    LearnRequest,
    LosOut,
    LosRequest,
    ModelOut,
    NodeHealthOut,
    PointOut,
    PointRequest,
    Problem,
    SiteOut,
    SnapshotOut,
    TxContextIn,
    TxContextOut,
)
from central.store import Store, StoreError, now_ns
from central.twin.site import Site
from node.protocol import HEALTH_PATH, INGEST_PATH, IngestBatch, Measurement, ProtocolError

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
assert INGEST_PATH == API_PREFIX + "/ingest" and HEALTH_PATH == API_PREFIX + "/health"
NODES_EVENT_PERIOD_S = 1.0

OnIngest = Callable[[str, Sequence[Measurement]], None]
OnContext = Callable[[Sequence[TxContext]], None]


class ApiError(StarletteHTTPException):
    """A refused request: status, a reason for the client, and a short label for the metrics."""

    def __init__(self, status: int, detail: str, reason: str, headers: dict[str, str] | None = None):
        super().__init__(status, detail, headers)
        self.reason = reason


def unauthorized(detail: str) -> ApiError:
    return ApiError(401, detail, "unauthorized", {"WWW-Authenticate": "Bearer"})


REASON_BY_STATUS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                    405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
                    422: "invalid", 429: "rate_limited", 503: "unavailable"}  # fmt: skip


class RateLimiter:
    """Token buckets, one per key (a credential): ``rate`` requests per second on average, up to
    ``burst`` at once. ``rate <= 0`` disables the limit. Thread-safe (endpoints run in the threadpool);
    the buckets are bounded by the number of credentials, since only authenticated keys get one."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = rate, max(1, burst), clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def acquire(self, key: str) -> float:
        """0.0 when the request may go ahead (it takes a token), else the seconds until one is free."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self.clock()
            tokens, when = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + max(0.0, now - when) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


# ------------------------------------------------------------------------------------------ metrics


class Metrics:
    """Counters for ``/metrics``. Incremented under one lock (cheap: once per request, not per record)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records = 0
        self.duplicates = 0
        self.batches = 0
        self.context_reports = 0
        self.rejected: dict[tuple[str, str], int] = {}
        self.started_ns = now_ns()

    def ingested(self, records: int, duplicates: int) -> None:
        with self._lock:
            self.batches += 1
            self.records += records - duplicates
            self.duplicates += duplicates

    def reject(self, endpoint: str, reason: str) -> None:
        with self._lock:
            key = (endpoint, reason)
            self.rejected[key] = self.rejected.get(key, 0) + 1

    def render(self, store: Store, stale_s: float) -> str:
        with self._lock:
            records, dups, batches, ctx = self.records, self.duplicates, self.batches, self.context_reports
            rejected = sorted(self.rejected.items())
        out: list[str] = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                lab = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
                out.append(f"{name}{{{lab}}} {_num(value)}" if lab else f"{name} {_num(value)}")

        metric("rftwin_ingest_records_total", "counter", "Measurement records stored (new ones).", [({}, records)])
        metric("rftwin_ingest_duplicates_total", "counter", "Records received again and ignored (idempotent resends).",
               [({}, dups)])  # fmt: skip
        metric("rftwin_ingest_batches_total", "counter", "Ingest batches acknowledged.", [({}, batches)])
        metric("rftwin_context_reports_total", "counter", "Transmitter context reports stored.", [({}, ctx)])
        metric("rftwin_rejected_requests_total", "counter", "Requests refused, by endpoint and reason.",
               [({"endpoint": e, "reason": r}, n) for (e, r), n in rejected])  # fmt: skip
        metric("rftwin_alarms_active", "gauge", "Alarms currently active.", [({}, store.count_active_alarms())])
        health = store.node_health(stale_s)
        metric("rftwin_node_last_seen_timestamp_seconds", "gauge", "Receive time of each node's latest batch (Unix s).",
               [({"node": h.node_id}, h.last_seen_ns / 1e9) for h in health if h.last_seen_ns is not None])  # fmt: skip
        metric("rftwin_node_records_total", "counter", "Records stored per node.",
               [({"node": h.node_id}, h.records) for h in health])  # fmt: skip
        metric("rftwin_node_healthy", "gauge", "1 if the node was seen within stale_s and is not saturated.",
               [({"node": h.node_id}, int(h.healthy)) for h in health])  # fmt: skip
        metric("rftwin_uptime_seconds", "gauge", "Seconds since the API started.", [({}, (now_ns() - self.started_ns) / 1e9)])
        return "\n".join(out) + "\n"


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


# -------------------------------------------------------------------------------------------- state


@dataclass
class AppState:
    """What the API serves from. ``on_ingest(node_id, measurements)`` and ``on_context(contexts)`` are
    called (in a worker thread) after the data is durably stored: the live detection engine plugs in
    there. They should be quick (hand the data to the engine's own thread); an exception in them is
    logged and does not fail the request (the data is stored either way)."""

    config: CentralConfig
    store: Store
    bus: EventBus
    site: Site
    on_ingest: OnIngest | None = None
    on_context: OnContext | None = None
    # learn(since_ns, until_ns, detector, target_far, contamination) -> LearnResult; raises ValueError
    # (e.g. LearnError) when refused. Set by the live detection engine.
    learn: Callable[..., Any] | None = None
    metrics: Metrics = field(default_factory=Metrics)
    _last_nodes_event: float = 0.0

    def publish_nodes(self, force: bool = False) -> None:
        """Node health to the event bus, at most once per NODES_EVENT_PERIOD_S (unless forced)."""
        now = time.monotonic()
        if not force and now - self._last_nodes_event < NODES_EVENT_PERIOD_S:
            return
        self._last_nodes_event = now
        health = self.store.node_health(self.config.detection.stale_s)
        self.bus.publish("nodes", {"nodes": [h.to_dict() for h in health]})


# ---------------------------------------------------------------------------------- request bodies


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON (numbers must be finite)")


def parse_json(raw: bytes) -> Any:
    """Parse a request body; every way it can be broken becomes a 422 with the reason."""
    if not raw:
        raise ApiError(422, "empty body: expected a JSON document", "invalid")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise ApiError(422, "malformed JSON: nested too deeply", "invalid") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, too many digits, NaN/Infinity
        raise ApiError(422, f"malformed JSON: {e}", "invalid") from None


def require_json(request: Request) -> None:
    ctype = request.headers.get("content-type", "")
    if ctype.split(";", 1)[0].strip().lower() != "application/json":
        raise ApiError(415, f"Content-Type must be application/json, got {ctype or 'none'!r}", "unsupported_media_type")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise ApiError(400, f"invalid Content-Length {declared!r}", "bad_request") from None
        if n > limit:
            raise ApiError(413, f"body of {n} bytes exceeds the limit of {limit} bytes", "too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body exceeds the limit of {limit} bytes", "too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _where(doc: Any) -> str:
    """``records[i]: `` for the first record the protocol validator cannot even evaluate."""
    for i, r in enumerate(doc.get("records", []) if isinstance(doc, dict) else []):
        try:
            Measurement.from_dict(r)
        except ProtocolError:
            continue
        except (TypeError, ValueError, OverflowError):
            return f"records[{i}]: "
    return ""


def _validation_detail(e: ValidationError, prefix: str = "") -> str:
    parts = []
    for err in e.errors(include_url=False)[:3]:
        loc = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        parts.append(f"{loc.lstrip('.') or 'body'}: {err['msg']}")
    more = len(e.errors()) - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _body_schema(model: type[BaseModel], description: str) -> dict:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "description": description,
                            "content": {"application/json": {"schema": ref}}}}  # fmt: skip


ERRORS = {
    401: {"model": Problem, "description": "missing, unknown, wrong or revoked token"},
    413: {"model": Problem, "description": "body or batch too large"},
    415: {"model": Problem, "description": "Content-Type is not application/json"},
    422: {"model": Problem, "description": "malformed JSON or invalid content (the reason names the field)"},
    429: {"model": Problem, "description": "this credential's request rate limit is exceeded; see Retry-After"},
}


# ---------------------------------------------------------------------------------------------- app


def create_app(state: AppState) -> FastAPI:
    app = FastAPI(
        title="rftwin central unit",
        version="1",
        description="Ingest of sensing-unit measurements, context of the legitimate transmitters, live "
        "snapshots and jammer alarms. Every error answers {\"detail\": reason}.",
    )
    app.state.rftwin = state
    cfg = state.config
    limits = cfg.limits
    store = state.store
    router = APIRouter(prefix=API_PREFIX)
    limiter = RateLimiter(limits.requests_per_s, limits.request_burst)
    app.state.rate_limiter = limiter

    # ---------------------------------------------------------------------------- error handling
    def endpoint_of(request: Request) -> str:
        route = request.scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        return path.removeprefix(API_PREFIX) or "/"

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = getattr(exc, "reason", None) or REASON_BY_STATUS.get(exc.status_code, str(exc.status_code))
        state.metrics.reject(endpoint_of(request), reason)
        return JSONResponse({"detail": str(exc.detail)}, exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:3]:
            parts.append(".".join(str(p) for p in err.get("loc", ())) + ": " + str(err.get("msg", "invalid")))
        state.metrics.reject(endpoint_of(request), "invalid")
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, 422)

    @app.exception_handler(sqlite3.Error)
    async def store_error(request: Request, exc: sqlite3.Error) -> JSONResponse:
        log.error("store error on %s: %s", request.url.path, exc)
        state.metrics.reject(endpoint_of(request), "unavailable")
        return JSONResponse({"detail": f"store unavailable: {exc}; retry later"}, 503, headers={"Retry-After": "1"})

    @app.exception_handler(CampaignNotFound)
    async def campaign_not_found(request: Request, exc: CampaignNotFound) -> JSONResponse:
        state.metrics.reject(endpoint_of(request), "not_found")
        return JSONResponse({"detail": str(exc)}, 404)

    @app.exception_handler(CampaignConflict)
    async def campaign_conflict(request: Request, exc: CampaignConflict) -> JSONResponse:
        state.metrics.reject(endpoint_of(request), "conflict")
        return JSONResponse({"detail": str(exc)}, 409)

    def credential(request: Request, kind: str, entries: list[tuple[str, Any]]) -> Any:
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            raise unauthorized(f"missing or malformed 'Authorization: Bearer <{kind} token>' header")
        found = match_token(token, entries)
        if found is None:
            raise unauthorized(f"unknown or wrong {kind} token")
        name = found if isinstance(found, str) else found[0]  # a node's entry is (node_id, revoked)
        wait = limiter.acquire(f"{kind}:{name}")
        if wait > 0:
            raise ApiError(429, f"{kind} {name!r} exceeds the rate limit of {limiter.rate:g} requests/s (bursts of "
                           f"{limiter.burst}): retry in {wait:.2f} s", "rate_limited",
                           {"Retry-After": str(max(1, math.ceil(wait)))})  # fmt: skip
        return found

    def operator(request: Request) -> str:
        """The operator's name, from an operator token (enrolled, or in the config file)."""
        return credential(request, "operator", store.operator_credentials()
                          + [(e.token_sha256, e.name) for e in cfg.operators])  # fmt: skip

    async def body_of(request: Request, model: type[BaseModel]) -> Any:
        """A JSON body, size-capped and validated like the context body (415, 413, 422 with the field)."""
        require_json(request)
        doc = parse_json(await read_body(request, limits.max_body_bytes))
        try:
            return model.model_validate(doc)
        except ValidationError as e:
            raise ApiError(422, _validation_detail(e), "invalid") from None

    # ------------------------------------------------------------------------------------ ingest
    def ingest_sync(request: Request, raw: bytes) -> bytes:
        node_id, revoked = credential(request, "node", store.node_credentials())
        if revoked:
            raise unauthorized(f"the token of node {node_id!r} has been revoked")
        doc = parse_json(raw)
        if isinstance(doc, dict):
            claimed = doc.get("node_id")
            if isinstance(claimed, str) and claimed != node_id:
                raise ApiError(403, f"this token belongs to node {node_id!r}, not {claimed[:80]!r}: "
                               "a node can only write as itself", "forbidden")  # fmt: skip
            recs = doc.get("records")
            if isinstance(recs, list) and len(recs) > limits.max_batch_records:
                raise ApiError(413, f"batch of {len(recs)} records exceeds the limit of "
                               f"{limits.max_batch_records}", "too_large")  # fmt: skip
        try:
            batch = IngestBatch.from_dict(doc)
        except ProtocolError as e:
            raise ApiError(422, str(e), "invalid") from None
        except (TypeError, ValueError, OverflowError) as e:  # e.g. an integer no float can hold
            raise ApiError(422, f"{_where(doc)}invalid number: {e}", "invalid") from None
        if batch.node_id != node_id:  # a non-string node_id claim got here only if it validated
            raise ApiError(403, f"this token belongs to node {node_id!r}", "forbidden")
        horizon = now_ns() + limits.max_future_skew_ns
        for i, m in enumerate(batch.records):
            if m.t_ns > horizon:
                ahead = (m.t_ns - horizon) / 1e9 + limits.max_future_skew_s
                raise ApiError(422, f"records[{i}]: t_ns is {ahead:.1f} s in the future (limit "
                               f"{limits.max_future_skew_s:g} s): check the node's clock", "future_timestamp")  # fmt: skip
        ack = store.ingest(batch)
        state.metrics.ingested(len(batch.records), ack.duplicates)
        if state.on_ingest is not None:
            try:
                state.on_ingest(node_id, batch.records)
            except Exception:
                log.exception("on_ingest callback failed (the batch is stored)")
        try:
            state.publish_nodes()
        except Exception:
            log.exception("publishing node health failed")
        return json.dumps(ack.to_dict(), separators=(",", ":")).encode()

    @router.post(
        "/ingest",
        summary="Upload a batch of measurements (node token)",
        response_model=IngestAckModel,
        responses={**ERRORS, 403: {"model": Problem, "description": "the token belongs to another node"},
                   503: {"model": Problem, "description": "store unavailable; retry"}},  # fmt: skip
        openapi_extra=_body_schema(IngestBatchModel, "node.protocol.IngestBatch; idempotent on (node_id, seq)"),
    )
    async def ingest(request: Request) -> Response:
        """Store a batch of one node's records, idempotent on (node_id, seq). The answer acknowledges
        every seq of the batch once it is durably stored (new or already there, counted in
        ``duplicates``); the node may then delete them from its spool."""
        if bearer_token(request.headers.get("authorization")) is None:
            raise unauthorized("missing or malformed 'Authorization: Bearer <node token>' header")
        require_json(request)
        raw = await read_body(request, limits.max_body_bytes)
        body = await run_in_threadpool(ingest_sync, request, raw)
        return Response(body, media_type="application/json")

    # ----------------------------------------------------------------------------------- context
    def context_sync(request: Request, raw: bytes) -> dict:
        credential(request, "integration", store.integration_credentials()
                   + [(e.token_sha256, e.name) for e in cfg.integrations])  # fmt: skip
        doc = parse_json(raw)
        if isinstance(doc, list):
            doc = {"transmitters": doc}
        try:
            update = ContextUpdate.model_validate(doc)
        except ValidationError as e:
            raise ApiError(422, _validation_detail(e), "invalid") from None
        horizon = now_ns() + limits.max_future_skew_ns
        size = state.site.hall_size_m
        txs = []
        for i, t in enumerate(update.transmitters):
            where = f"transmitters[{i}] ({t.tx_id})"
            if t.t_ns > horizon:
                raise ApiError(422, f"{where}: t_ns is more than {limits.max_future_skew_s:g} s in the future",
                               "future_timestamp")  # fmt: skip
            if not all(0.0 <= p <= s for p, s in zip(t.position_m, size)):
                raise ApiError(422, f"{where}: position_m {t.position_m} is outside the hall "
                               f"[0..{size[0]:g}] x [0..{size[1]:g}] x [0..{size[2]:g}] m", "invalid")  # fmt: skip
            if t.f_center_hz and t.bandwidth_hz > t.f_center_hz:
                raise ApiError(422, f"{where}: bandwidth_hz exceeds f_center_hz", "invalid")
            txs.append(TxContext(t.tx_id, t.t_ns, tuple(t.position_m), t.power_dbm, t.f_center_hz, t.bandwidth_hz))  # type: ignore[arg-type]
        store.add_context(txs)
        with state.metrics._lock:
            state.metrics.context_reports += len(txs)
        if state.on_context is not None:
            try:
                state.on_context(txs)
            except Exception:
                log.exception("on_context callback failed (the context is stored)")
        return {"stored": len(txs)}

    @router.post(
        "/context",
        summary="Report legitimate transmitters (integration token)",
        response_model=ContextStored,
        responses=ERRORS,
        openapi_extra=_body_schema(ContextUpdate, "ContextUpdate, or a bare list of TxContextIn"),
    )
    async def post_context(request: Request) -> Any:
        """Where the legitimate transmitters are (estimated), their power and band. A repeated
        (tx_id, t_ns) replaces the earlier report. Positions must be inside the hall."""
        if bearer_token(request.headers.get("authorization")) is None:
            raise unauthorized("missing or malformed 'Authorization: Bearer <integration token>' header")
        require_json(request)
        raw = await read_body(request, limits.max_body_bytes)
        return await run_in_threadpool(context_sync, request, raw)

    @router.get("/context", summary="Latest report of every transmitter", response_model=list[TxContextOut])
    def get_context() -> Any:
        return [_asdict_tx(t) for t in store.latest_context()]

    # ------------------------------------------------------------------------------ reads, health
    @router.get(HEALTH_PATH.removeprefix(API_PREFIX), summary="Liveness", response_model=Health)
    def health() -> Any:
        return {"status": "ok"}

    @router.get("/metrics", summary="Prometheus metrics (text format 0.0.4)", response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(state.metrics.render(store, cfg.detection.stale_s),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")  # fmt: skip

    @router.get("/nodes", summary="Enrolled nodes and their health", response_model=list[NodeHealthOut])
    def nodes() -> Any:
        return [h.to_dict() for h in store.node_health(cfg.detection.stale_s)]

    @router.get("/snapshots", summary="Recent snapshots (oldest first)", response_model=list[SnapshotOut])
    def snapshots(limit: int = Query(100, ge=1, le=10_000), since_ns: int | None = Query(None, ge=0, lt=2**63)) -> Any:
        """The newest ``limit`` snapshots with ``t_ns > since_ns``, returned in time order."""
        return [s.to_dict() for s in store.snapshots(limit, since_ns)]

    @router.get("/alarms", summary="Alarms (newest first)", response_model=list[AlarmOut])
    def alarms(state_: str | None = Query(None, alias="state", pattern="^(active|cleared)$"),
               limit: int = Query(100, ge=1, le=10_000)) -> Any:  # fmt: skip
        return [a.to_dict() for a in store.alarms(state_, limit)]

    @router.post(
        "/alarms/{alarm_id}/ack",
        summary="Acknowledge an alarm (operator token)",
        response_model=AlarmOut,
        responses={401: ERRORS[401], 404: {"model": Problem, "description": "no such alarm"}, 429: ERRORS[429]},
    )
    def ack_alarm(alarm_id: int, request: Request) -> Any:
        """Record who acknowledged the alarm; the first acknowledgement is kept."""
        if not 0 <= alarm_id < 2**63:
            raise ApiError(404, f"no alarm {alarm_id}", "not_found")
        who = operator(request)
        try:
            alarm = store.acknowledge_alarm(alarm_id, who)
        except StoreError as e:
            raise ApiError(404, str(e), "not_found") from None
        if alarm is None:
            raise ApiError(404, f"no alarm {alarm_id}", "not_found")
        state.bus.publish("alarm", alarm.to_dict())
        return alarm.to_dict()

    @router.post(
        "/detector/learn",
        summary="Learn normal residual statistics from a normal period (operator token)",
        response_model=LearnOut,
        responses={401: ERRORS[401], 409: {"model": Problem, "description": "refused: too little data or alarms"},
                   413: ERRORS[413], 415: ERRORS[415], 422: ERRORS[422], 429: ERRORS[429],
                   503: {"model": Problem, "description": "no live detection engine"}},
        openapi_extra=_body_schema(LearnRequest, "the normal period: duration_s, or since_ns/until_ns"),
    )
    async def learn(request: Request) -> Any:
        """Fit the configured detector on the residuals of [since_ns, until_ns] (or the last
        ``duration_s``), set its threshold for the target false-alarm rate, save it as a model with its
        provenance and make it active at once (no restart)."""
        await run_in_threadpool(operator, request)
        body = await body_of(request, LearnRequest)  # size-capped, JSON only, like every body here
        return await run_in_threadpool(learn_sync, body)

    def learn_sync(body: LearnRequest) -> Any:
        if state.learn is None:
            raise ApiError(503, "no live detection engine in this central unit", "unavailable")
        until = body.until_ns if body.until_ns is not None else now_ns()
        since = body.since_ns if body.since_ns is not None else until - int((body.duration_s or 60.0) * 1e9)
        try:
            result = state.learn(since, until, body.detector, body.target_far, body.contamination)
        except ValueError as e:
            raise ApiError(409, str(e), "refused") from None
        return dataclasses.asdict(result)

    @router.get("/models/{model_id}", summary="A fitted model and its provenance", response_model=ModelOut,
                responses={404: {"model": Problem, "description": "no such model"}})  # fmt: skip
    def model(model_id: int) -> Any:
        m = store.model(model_id) if 0 <= model_id < 2**63 else None
        if m is None:
            raise ApiError(404, f"no model {model_id}", "not_found")
        return m.to_dict()

    _install_campaign_routes(router, state, operator, body_of)
    _install_los_routes(router, state, body_of)

    @router.get("/site", summary="The hall, its obstacles and the sensing units", response_model=SiteOut)
    def site() -> Any:
        s = state.site
        return {
            "name": s.name, "description": s.description, "frequency_hz": s.frequency_hz,
            "noise_floor_dbm": s.noise_floor_dbm, "hall_size_m": list(s.hall_size_m), "hall_material": s.hall_material,
            "tx_plane_height_m": s.tx_plane.height_m,
            "obstacles": [{"name": b.name, "material": b.material, "min_m": list(b.min_m), "size_m": list(b.size_m)}
                          for b in s.obstacles],
            "sensing_units": [{"id": u.id, "position_m": list(u.position_m)} for u in s.sensing_units],
        }  # fmt: skip

    app.include_router(router)
    _install_openapi(app, [IngestBatchModel, ContextUpdate, TxContextIn, CampaignStart, PointRequest,
                           CampaignImport, LearnRequest, LosRequest])  # fmt: skip
    return app


# ---------------------------------------------------------------------------------------- campaigns

CAMPAIGN_ERRORS = {**ERRORS, 404: {"model": Problem, "description": "no such campaign"},
                   409: {"model": Problem, "description": "name taken, another one open, or closed"}}  # fmt: skip


def _install_los_routes(router: APIRouter, state: AppState, body_of: Callable[..., Any]) -> None:
    """``POST /los``: LoS probability of a UE (:mod:`central.los`). Open like the other reads: it
    changes nothing."""
    from central.los import LosInputError, LosService, LosUnavailable

    service = LosService(state.site, state.config.models_dir)

    @router.post("/los", summary="LoS probability from a channel estimate (ONNX model) or a UE position (geometry)",
                 response_model=LosOut, openapi_extra=_body_schema(LosRequest, "channel or position_m"),
                 responses={422: ERRORS[422],
                            503: {"model": Problem, "description": "no LoS model installed"}})  # fmt: skip
    async def los(request: Request) -> Any:
        body = await body_of(request, LosRequest)
        if (body.channel is None) == (body.position_m is None):
            raise ApiError(422, "give exactly one of channel or position_m", "invalid")
        try:
            if body.channel is not None:
                answer = await run_in_threadpool(service.from_channel, body.channel.shape, body.channel.data_b64)
            else:
                answer = service.from_position(body.position_m, body.gnb_position_m)
        except LosUnavailable as e:
            raise ApiError(503, str(e), "unavailable") from None
        except LosInputError as e:
            raise ApiError(422, str(e), "invalid") from None
        return answer.to_dict()


def _install_campaign_routes(router: APIRouter, state: AppState, operator: Callable[[Request], str],
                             body_of: Callable[..., Any]) -> None:  # fmt: skip
    """Calibration campaigns (:mod:`central.campaign`): start, points (live or imported), status, close.

    Changes need an operator token; reads are open like every read of this API. Points travel as
    JSON; the CSV file format lives with the calibration tools (``rftwin-calibrate campaign export``
    and ``import``), which the central unit does not import (dependency direction).
    """
    store, site, limits = state.store, state.site, state.config.limits

    @router.post("/campaigns", summary="Start a calibration campaign (operator token)", status_code=201,
                 response_model=CampaignOut, responses=CAMPAIGN_ERRORS,
                 openapi_extra=_body_schema(CampaignStart, "name (never reused) and description"))  # fmt: skip
    async def start_campaign(request: Request) -> Any:
        """Open a campaign over the site's sensing units. 409 when the name was used before or another
        campaign is still open."""
        who = await run_in_threadpool(operator, request)
        body = await body_of(request, CampaignStart)
        camp = await run_in_threadpool(store.create_campaign, body.name, site.su_ids, who, body.description)
        log.info("campaign %s started by %s", camp.name, who)
        return camp.to_dict()

    @router.get("/campaigns", summary="Calibration campaigns (oldest first)", response_model=list[CampaignOut])
    def campaigns(state_: str | None = Query(None, alias="state", pattern="^(open|closed)$")) -> Any:
        return [c.to_dict() for c in store.campaigns(state_)]

    @router.get("/campaigns/{name}", summary="A campaign with its points", response_model=CampaignDetail,
                responses={404: CAMPAIGN_ERRORS[404]})  # fmt: skip
    def campaign(name: str) -> Any:
        """Status: the campaign, and every point with its per-SU readings and, if rejected, why."""
        camp = store.campaign(name)
        return {**camp.to_dict(), "points": [p.to_dict() for p in store.campaign_points(name)]}

    @router.post("/campaigns/{name}/close", summary="Close a campaign (operator token)", response_model=CampaignOut,
                 responses=CAMPAIGN_ERRORS)  # fmt: skip
    def close_campaign(name: str, request: Request) -> Any:
        operator(request)
        return store.close_campaign(name).to_dict()

    @router.post("/campaigns/{name}/points", summary="Measure a reference-transmitter point (operator token)",
                 response_model=PointOut, status_code=201, responses=CAMPAIGN_ERRORS,
                 openapi_extra=_body_schema(PointRequest, "reference position and power, dwell or window"))  # fmt: skip
    async def add_point(name: str, request: Request) -> Any:
        """Gather every SU's readings over the window and store the point: per SU the mean power (dBm,
        averaged in mW), its spread (dB) and the count. The point is stored **rejected**, with the
        reason, when an SU was saturated or had no readings during the window.

        The request blocks until the window has ended (``dwell_s``: [now, now + dwell_s] on this
        unit's clock, the one that also bounds the nodes' timestamps) and the nodes' uploads have
        caught up, at most ``settle_s`` later. The server keeps the window, not the client, so a
        laptop with a wrong clock or a slow network does not shift it; a scheduled slot (a robot, a
        simulation) gives ``since_ns``/``until_ns`` instead. A client that disconnects during the
        wait cancels the point.
        """
        await run_in_threadpool(operator, request)
        body = await body_of(request, PointRequest)
        camp = await run_in_threadpool(store.campaign, name)
        if camp.state != "open":
            raise CampaignConflict(f"campaign {name!r} is closed: no more points (start a new campaign)")
        where = check_position(site, body.position_m)
        if where:
            raise ApiError(422, where, "invalid")
        since, until = _window(body)
        nodes = {n for n, su in (await run_in_threadpool(store.node_su_map)).items() if su in camp.su_ids}

        async def caught_up() -> bool:
            last = await run_in_threadpool(store.nodes_last_t_ns)
            return all((last.get(n) or 0) >= until for n in nodes)

        if not await wait_for_window(until, caught_up, body.settle_s, cancelled=request.is_disconnected):
            log.info("campaign %s: client left during the dwell; point not stored", name)
            raise ApiError(400, "the client disconnected during the dwell: point not stored", "bad_request")
        rows = await run_in_threadpool(store.window_readings, since, until, limits.max_future_skew_ns)
        node_su = await run_in_threadpool(store.node_su_map)
        by_su: dict[str, list[tuple[float, bool]]] = {}
        for node_id, power, saturated in rows:
            if node_id in node_su:
                by_su.setdefault(node_su[node_id], []).append((power, saturated))
        readings, rejected = aggregate(camp.su_ids, by_su, body.min_count)
        pos = (body.position_m[0], body.position_m[1], body.position_m[2])
        new = NewPoint(pos, body.power_dbm, readings, rejected, since, until, "live")
        (point,) = await run_in_threadpool(store.add_campaign_points, name, [new])
        log.info("campaign %s: point %d %s", name, point.index, rejected and f"rejected ({rejected})" or "accepted")
        return point.to_dict()

    @router.post("/campaigns/{name}/import", summary="Add points measured elsewhere (operator token)",
                 response_model=ImportOut, responses=CAMPAIGN_ERRORS,
                 openapi_extra=_body_schema(CampaignImport, "points with per-SU readings (all or nothing)"))  # fmt: skip
    async def import_points(name: str, request: Request) -> Any:
        """Points whose readings were gathered elsewhere (a robot or total station logged the
        positions). All are checked before any is stored: positions in the hall and out of
        obstacles, sensing units of this campaign, counts consistent with the means. A point that
        lacks an SU's reading, or reports saturated readings, is stored rejected, as a live one
        would be (unless the file gives its own reason)."""
        await run_in_threadpool(operator, request)
        body = await body_of(request, CampaignImport)
        camp = await run_in_threadpool(store.campaign, name)
        if camp.state != "open":
            raise CampaignConflict(f"campaign {name!r} is closed: no more points (start a new campaign)")
        new = [_imported(camp.su_ids, site, i, p) for i, p in enumerate(body.points)]
        points = await run_in_threadpool(store.add_campaign_points, name, new)
        accepted = sum(p.usable for p in points)
        log.info("campaign %s: imported %d points (%d usable)", name, len(points), accepted)
        return {"imported": len(points), "accepted": accepted, "rejected": len(points) - accepted,
                "points": [p.to_dict() for p in points]}  # fmt: skip


def _window(body: PointRequest) -> tuple[int, int]:
    """[since_ns, until_ns) of a point request; 422 with the reason when it is not a usable window."""
    now = now_ns()
    if body.dwell_s is not None:
        if body.since_ns is not None or body.until_ns is not None:
            raise ApiError(422, "give either dwell_s or since_ns and until_ns, not both", "invalid")
        return now, now + int(body.dwell_s * 1e9)
    if body.since_ns is None or body.until_ns is None:
        raise ApiError(422, "give dwell_s (s), or both since_ns and until_ns (UTC ns)", "invalid")
    if body.until_ns <= body.since_ns:
        raise ApiError(422, "until_ns must be after since_ns", "invalid")
    if body.until_ns - body.since_ns > MAX_DWELL_S * 1e9:
        raise ApiError(422, f"the window is longer than {MAX_DWELL_S:g} s", "invalid")
    if body.until_ns > now + MAX_DWELL_S * 1e9:
        raise ApiError(422, f"the window ends more than {MAX_DWELL_S:g} s from now", "invalid")
    return body.since_ns, body.until_ns


def _imported(su_ids: Sequence[str], site: Site, i: int, p: Any) -> NewPoint:
    """An imported point checked against the campaign and the site (422 naming ``points[i]``), with
    every campaign SU present (an SU the file lacks has no reading) and its rejection reason."""
    where = check_position(site, p.position_m)
    if where:
        raise ApiError(422, f"points[{i}]: {where}", "invalid")
    given: dict[str, Any] = {}
    for j, r in enumerate(p.readings):
        at = f"points[{i}].readings[{j}]"
        if r.su_id not in su_ids:
            raise ApiError(422, f"{at}: {r.su_id!r} is not a sensing unit of this campaign ({', '.join(su_ids)})",
                           "invalid")  # fmt: skip
        if r.su_id in given:
            raise ApiError(422, f"{at}: {r.su_id!r} appears twice in this point", "invalid")
        if r.mean_dbm is None and r.count > 0:
            raise ApiError(422, f"{at}: count is {r.count} but there is no mean_dbm", "invalid")
        if r.saturated > r.count:
            raise ApiError(422, f"{at}: saturated exceeds count", "invalid")
        given[r.su_id] = r
    readings = tuple(SuReading(s, given[s].mean_dbm, given[s].std_db, given[s].count, given[s].saturated)
                     if s in given else SuReading(s, None, None, 0, 0) for s in su_ids)  # fmt: skip
    rejected = p.rejected or rejection_reason(readings, min_count=0)
    return NewPoint(tuple(p.position_m), p.power_dbm, readings, rejected, None, None, "import")


def _asdict_tx(t: TxContext) -> dict:
    return {"tx_id": t.tx_id, "t_ns": t.t_ns, "position_m": list(t.position_m), "power_dbm": t.power_dbm,
            "f_center_hz": t.f_center_hz, "bandwidth_hz": t.bandwidth_hz}  # fmt: skip


def _install_openapi(app: FastAPI, body_models: list[type[BaseModel]]) -> None:
    """The default OpenAPI document, plus the request-body models of the endpoints that parse their
    body themselves (so /docs shows them with their constraints)."""

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        comps = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in body_models:
            js = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in js.pop("$defs", {}).items():
                comps.setdefault(name, sub)
            comps.setdefault(model.__name__, js)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
