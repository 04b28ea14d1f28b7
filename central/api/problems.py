"""Refusals: :class:`ApiError`, and one body for every error answer, RFC 9457 problem details
(``application/problem+json``: ``type``, ``title``, ``status``, ``detail`` and ``reason``, the
machine-readable label the metrics count). :func:`install_error_handlers` makes every error of the
app (ours, FastAPI's request validation, Starlette's 404/405, a store that cannot write) answer so."""

from __future__ import annotations

import logging
import sqlite3
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from central.campaign import CampaignConflict, CampaignNotFound
from central.store.integrity import StoreCorrupt

log = logging.getLogger("central.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"
REASON_BY_STATUS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                    405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
                    422: "invalid", 429: "rate_limited", 503: "unavailable"}  # fmt: skip


class ApiError(StarletteHTTPException):
    """A refused request: status, a reason for the client, and a short label for the metrics."""

    def __init__(self, status: int, detail: str, reason: str, headers: dict[str, str] | None = None):
        super().__init__(status, detail, headers)
        self.reason = reason


def unauthorized(detail: str) -> ApiError:
    return ApiError(401, detail, "unauthorized", {"WWW-Authenticate": "Bearer"})


def problem(status: int, detail: str, reason: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    """The problem-details answer (RFC 9457) for ``status``."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail,
            "reason": reason or REASON_BY_STATUS.get(status, str(status))}  # fmt: skip
    return JSONResponse(body, status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def endpoint_of(request: Request) -> str:
    """The route's path below /api/v1 (the metrics label), or ``unmatched``."""
    from central.api.state import API_PREFIX

    route = request.scope.get("route")
    path = getattr(route, "path", None) or "unmatched"
    return path.removeprefix(API_PREFIX) or "/"


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app serves at this request's path (for a 405's ``Allow``:
    Starlette lists only those of the first route that matched the path, e.g. POST but not GET).
    Found by asking the app's routes whether each method would fully match (included routers too)."""
    routes = request.app.router.routes
    return [m for m in HTTP_METHODS
            if any(r.matches({**request.scope, "method": m})[0] == Match.FULL for r in routes)]  # fmt: skip


def _reject(request: Request, reason: str) -> None:
    state = getattr(request.app.state, "rftwin", None)
    if state is not None:
        state.metrics.reject(endpoint_of(request), reason)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = getattr(exc, "reason", None) or REASON_BY_STATUS.get(exc.status_code, str(exc.status_code))
        _reject(request, reason)
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request)) or headers.get("Allow", "")
        return problem(exc.status_code, str(exc.detail), reason, headers or None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:3]:
            parts.append(".".join(str(p) for p in err.get("loc", ())) + ": " + str(err.get("msg", "invalid")))
        _reject(request, "invalid")
        return problem(422, "; ".join(parts) or "invalid request", "invalid")

    @app.exception_handler(sqlite3.Error)
    async def store_error(request: Request, exc: sqlite3.Error) -> JSONResponse:
        log.error("store error on %s: %s", request.url.path, exc)
        _reject(request, "unavailable")
        return problem(503, f"store unavailable: {exc}; retry later", "unavailable", {"Retry-After": "1"})

    @app.exception_handler(StoreCorrupt)  # before sqlite3.Error's: the more specific class wins
    async def store_corrupt(request: Request, exc: StoreCorrupt) -> JSONResponse:
        _reject(request, StoreCorrupt.reason)
        return problem(503, f"{exc}; nothing is stored or acknowledged: keep the records and retry later",
                       StoreCorrupt.reason, {"Retry-After": "60"})  # fmt: skip

    @app.exception_handler(CampaignNotFound)
    async def campaign_not_found(request: Request, exc: CampaignNotFound) -> JSONResponse:
        _reject(request, "not_found")
        return problem(404, str(exc), "not_found")

    @app.exception_handler(CampaignConflict)
    async def campaign_conflict(request: Request, exc: CampaignConflict) -> JSONResponse:
        _reject(request, "conflict")
        return problem(409, str(exc), "conflict")
