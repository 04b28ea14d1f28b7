"""The central unit's HTTP API (FastAPI): ingest, context, nodes, snapshots, alarms, detector, campaigns,
LoS, site, health, metrics.

All paths live under ``/api/v1`` (:data:`node.protocol.INGEST_PATH` and ``HEALTH_PATH`` are two of
them); OpenAPI at ``/openapi.json``, docs at ``/docs``. ``create_app(state)`` builds the app around an
:class:`AppState`. One module per resource, each with its ``router`` (``ingest``, ``context``,
``nodes``, ``alarms``, ``detector``, ``campaigns``, ``los``, ``site``); the shared pieces beside them:
``state`` (AppState), ``problems`` (errors), ``bodies`` (request bodies), ``security``
(authentication dependencies), ``ratelimit``, ``metrics``, ``responses`` and ``openapi``.

Rules every endpoint keeps:

- **Never a 500 on bad input.** Request bodies are size-capped (413), required to be
  ``application/json`` (415), parsed once with NaN/Infinity literals refused and depth/huge-number
  errors caught (422), then validated strictly (422 with the field that is wrong). Every error
  answers ``application/problem+json`` (RFC 9457: ``type``, ``title``, ``status``, ``detail``, and
  ``reason``, the label the metrics count). A store that cannot write (disk full, locked) answers
  503, so a node keeps its records and retries.
- **Tokens:** ``Authorization: Bearer <token>``, checked by a dependency (:mod:`central.api.security`)
  before the body is read; hashed and compared in constant time against every stored SHA-256
  (:mod:`central.auth`). Nodes write only as themselves (403 otherwise); context needs an
  integration token; acknowledging an alarm, learning and changing calibration campaigns an
  operator token; every read a viewer or operator token or the dashboard's session cookie
  (``/session``, :mod:`central.api.sessions`); ``/metrics`` a scraper token. Only ``/health`` is
  open. The OpenAPI document says which, per operation.
- **Rate limit per credential:** a token bucket per credential (``[limits] requests_per_s`` on
  average, bursts of ``request_burst``); beyond it 429 with ``Retry-After`` and the reason. A node
  backs off and resends (nothing is lost: it is spooled). Failed authentications have a bucket per
  client address (``failed_auth_per_s``): once empty, that address gets 429 before any token is read.
- **No SQLite on the event loop.** Blocking work runs in the threadpool (sync endpoints and
  dependencies, or ``run_in_threadpool`` after the body is read); the store serialises writes itself.

The whole server process spends ≈ 12 µs of CPU per ingested record (``bench/central.py``: ~79 000
records/s on 2 cores, clients included).
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from central.api import alarms, campaigns, context, detector, ingest, los, nodes, session, site
from central.api.bodies import parse_json, read_body, require_json
from central.api.metrics import Metrics
from central.api.openapi import install_openapi
from central.api.problems import REASON_BY_STATUS, ApiError, install_error_handlers, problem, unauthorized
from central.api.ratelimit import RateLimiter
from central.api.security import install_security
from central.api.state import API_PREFIX, NODES_EVENT_PERIOD_S, AppState, OnContext, OnIngest, app_state
from central.schemas import (
    CampaignImport,
    CampaignStart,
    ContextUpdate,
    IngestBatchModel,
    LearnRequest,
    LoginRequest,
    LosRequest,
    PointRequest,
    TxContextIn,
)

__all__ = ["API_PREFIX", "NODES_EVENT_PERIOD_S", "REASON_BY_STATUS", "ApiError", "AppState", "Metrics", "OnContext",
           "OnIngest", "RateLimiter", "app_state", "create_app", "parse_json", "problem", "read_body", "require_json",
           "unauthorized"]  # fmt: skip

ROUTERS = (ingest.router, context.router, site.router, nodes.router, alarms.router, detector.router,
           campaigns.router, los.router, session.router)  # fmt: skip
BODY_MODELS = [IngestBatchModel, ContextUpdate, TxContextIn, CampaignStart, PointRequest, CampaignImport,
               LearnRequest, LosRequest, LoginRequest]  # fmt: skip


def create_app(state: AppState) -> FastAPI:
    app = FastAPI(
        title="rftwin central unit",
        version="1",
        description="Ingest of sensing-unit measurements, context of the legitimate transmitters, live "
        "snapshots and jammer alarms, calibration campaigns and LoS answers. Every error answers "
        "application/problem+json (RFC 9457) with a `detail` in words and a machine-readable `reason`. "
        "Every operation but /health needs a credential of the kind it names: a bearer token, or for "
        "the dashboard its session cookie (POST /session).",
    )
    app.state.rftwin = state
    install_security(app, state.config.limits)
    install_error_handlers(app)
    api = APIRouter(prefix=API_PREFIX)
    for router in ROUTERS:
        api.include_router(router)
    app.include_router(api)
    install_openapi(app, BODY_MODELS, state.site)
    return app
