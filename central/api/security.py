"""Authentication as FastAPI dependencies, one per kind of access:

======================  ==========================================================================
``node_credential``     ingest, as that node only: a node token
``integration_credential``  POST /context: an integration token
``operator_credential`` acknowledging, learning, campaigns: an operator token, or an operator's
                        dashboard session with its CSRF token (:mod:`central.api.sessions`)
``reader_credential``   every read of the API and the event stream: a viewer or operator token, or
                        a dashboard session
``los_credential``      POST /los: a reader, or an integration (the RAN scheduler asks it)
``scraper_credential``  GET /metrics: a scraper token (Prometheus gets no other access)
======================  ==========================================================================

Only ``/health`` (and the login page with its assets) is open.

``Authorization: Bearer <token>``; the token is hashed and compared in constant time against every
stored SHA-256 of each kind the route accepts (:mod:`central.auth`); 401 with ``WWW-Authenticate:
Bearer`` otherwise. Each kind is a security scheme of the OpenAPI document (``NodeToken``, …,
``DashboardSession``), listed as alternatives per operation.

Two rate limits (:class:`~central.api.ratelimit.RateLimiter`), both 429 with ``Retry-After``:

- per credential, taken once the request is authenticated (``[limits] requests_per_s``);
- per client address, for *failed* authentications (``[limits] failed_auth_per_s``). Once a
  client's bucket is empty, every request from it that needs a credential is refused *before* its
  token is looked at, so guessing tokens cannot go faster than the limit whatever the answers say.

The dependencies are sync, so FastAPI runs them (and their store reads) in the threadpool, and
before the body is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from central.api.problems import ApiError, unauthorized
from central.api.ratelimit import RateLimiter
from central.api.sessions import COOKIE_NAME, CSRF_HEADER, SAFE_METHODS, Session, SessionStore, csrf_ok
from central.api.state import AppState, app_state
from central.auth import bearer_token, match_token

NODE_BEARER = HTTPBearer(scheme_name="NodeToken", bearerFormat="rtn_…", auto_error=False,
                         description="A node's token (`rftwin-central node add`): ingest, as that node only.")  # fmt: skip
INTEGRATION_BEARER = HTTPBearer(scheme_name="IntegrationToken", bearerFormat="rti_…", auto_error=False,
                                description="An integration's token (the context feed): POST /context, /los.")  # fmt: skip
OPERATOR_BEARER = HTTPBearer(scheme_name="OperatorToken", bearerFormat="rto_…", auto_error=False,
                             description="An operator's token: every read; acknowledging alarms, learning, "
                                         "calibration campaigns.")  # fmt: skip
VIEWER_BEARER = HTTPBearer(scheme_name="ViewerToken", bearerFormat="rtv_…", auto_error=False,
                           description="A viewer's token (`rftwin-central viewer add`): every read, nothing else.")  # fmt: skip
SCRAPER_BEARER = HTTPBearer(scheme_name="ScraperToken", bearerFormat="rts_…", auto_error=False,
                            description="A metrics scraper's token (`rftwin-central scraper add`): GET /metrics only.")  # fmt: skip
SESSION_COOKIE = APIKeyCookie(name=COOKIE_NAME, scheme_name="DashboardSession", auto_error=False,
                              description="The dashboard's session cookie (POST /session with a viewer or operator "
                                          "token); requests that change something also need the session's "
                                          f"CSRF token in {CSRF_HEADER}.")  # fmt: skip


@dataclass(frozen=True)
class Principal:
    """Who is asking: the credential's kind (``viewer``, ``operator``, ``integration``, …) and name."""

    kind: str
    name: str


def session_store(request: Request) -> SessionStore:
    return request.app.state.sessions


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def refuse_flooding_client(request: Request) -> None:
    """429 when this address has used up its failed authentications (checked before any token)."""
    limiter = request.app.state.auth_failure_limiter
    wait = limiter.wait_s(client_address(request))
    if wait > 0:
        raise _too_many(f"too many failed authentications from {client_address(request)} (at most "
                        f"{limiter.rate:g}/s, bursts of {limiter.burst})", wait)  # fmt: skip


def failed_authentication(request: Request, detail: str) -> ApiError:
    """A 401, counted against the client's address."""
    request.app.state.auth_failure_limiter.acquire(client_address(request))
    return unauthorized(detail)


def _too_many(what: str, wait_s: float) -> ApiError:
    return ApiError(429, f"{what}: retry in {wait_s:.2f} s", "rate_limited",
                    {"Retry-After": str(max(1, math.ceil(wait_s)))})  # fmt: skip


def _entries(state: AppState, kind: str) -> list[tuple[str, Any]]:
    """(token_sha256, value) of every credential of ``kind``: enrolled, and from the config file."""
    if kind == "node":
        return state.store.node_credentials()  # value: (node_id, revoked)
    return state.store.credentials(kind) + [(e.token_sha256, e.name) for e in state.config.configured(kind)]


def _take_rate(request: Request, principal: Principal) -> None:
    limiter = request.app.state.rate_limiter
    wait = limiter.acquire(f"{principal.kind}:{principal.name}")
    if wait > 0:
        raise _too_many(f"{principal.kind} {principal.name!r} exceeds the rate limit of {limiter.rate:g} "
                        f"requests/s (bursts of {limiter.burst})", wait)  # fmt: skip


def token_principal(state: AppState, token: str, kinds: tuple[str, ...]) -> tuple[Principal, Any] | None:
    """The first of ``kinds`` whose stored hashes hold ``token``, with its stored value."""
    for kind in kinds:
        found = match_token(token, _entries(state, kind))
        if found is not None:
            return Principal(kind, found[0] if kind == "node" else found), found
    return None


def authenticate(request: Request, state: AppState, kinds: tuple[str, ...], session_roles: tuple[str, ...] = ()
                 ) -> tuple[Principal, Any]:  # fmt: skip
    """The principal of a request's bearer token of one of ``kinds``, or of its dashboard session
    when its role is one of ``session_roles`` (and, for a request that changes something, with the
    session's CSRF token). 401 naming what was expected otherwise; 429 for a flooding client or a
    credential over its rate."""
    refuse_flooding_client(request)
    wanted = " or ".join(kinds)
    header = request.headers.get("authorization")
    token = bearer_token(header)
    if token is not None:
        found = token_principal(state, token, kinds)
        if found is None:
            raise failed_authentication(request, f"unknown or wrong {wanted} token")
    elif header is None and session_roles and (session := cookie_session(request, state, session_roles)) is not None:
        found = Principal(session.role, session.name), session
    else:
        via = " (or a dashboard session: POST /api/v1/session)" if session_roles else ""
        raise failed_authentication(request, f"missing or malformed 'Authorization: Bearer <{wanted} token>' "
                                    f"header{via}")  # fmt: skip
    _take_rate(request, found[0])
    return found


def cookie_session(request: Request, state: AppState, roles: tuple[str, ...]) -> Session | None:
    """The request's live session of one of ``roles``; a cookie that is not one is refused (401), as
    is a session whose token has since been rotated or removed (revocation reaches browsers at once)."""
    cookie = request.cookies.get(COOKIE_NAME)
    if cookie is None:
        return None
    session = session_store(request).get(cookie)
    if session is None:
        raise failed_authentication(request, "the dashboard session has ended or expired: log in again")
    if all(stored != session.token_sha256 for stored, _ in _entries(state, session.role)):
        session_store(request).end(cookie)
        raise failed_authentication(request, f"the token of {session.role} {session.name!r} was rotated or "
                                    "removed: log in again")  # fmt: skip
    if session.role not in roles:
        raise ApiError(403, f"a {session.role} session does not allow this (it needs {' or '.join(roles)})",
                       "forbidden")  # fmt: skip
    if request.method not in SAFE_METHODS and not csrf_ok(session, request.headers.get(CSRF_HEADER)):
        raise ApiError(403, f"a request that changes something needs the session's CSRF token in {CSRF_HEADER} "
                       "(GET /api/v1/session has it)", "forbidden")  # fmt: skip
    return session


def install_security(app, limits) -> None:
    """What these dependencies keep on ``app.state``: the per-credential and per-address rate limits
    (``[limits]``, :class:`~central.config.LimitsConfig`) and the dashboard's sessions."""
    app.state.rate_limiter = RateLimiter(limits.requests_per_s, limits.request_burst)
    app.state.auth_failure_limiter = RateLimiter(limits.failed_auth_per_s, limits.failed_auth_burst)
    app.state.sessions = SessionStore()


# ------------------------------------------------------------------------------ dependencies


def node_credential(request: Request, state: AppState = Depends(app_state),
                    _: HTTPAuthorizationCredentials | None = Security(NODE_BEARER)) -> str:  # fmt: skip
    """The node id of a node token (not revoked)."""
    principal, (node_id, revoked) = authenticate(request, state, ("node",))
    if revoked:
        raise unauthorized(f"the token of node {node_id!r} has been revoked")
    return principal.name


def integration_credential(request: Request, state: AppState = Depends(app_state),
                           _: HTTPAuthorizationCredentials | None = Security(INTEGRATION_BEARER)) -> str:  # fmt: skip
    """The integration's name, from an integration token (enrolled, or in the config file)."""
    return authenticate(request, state, ("integration",))[0].name


def operator_credential(request: Request, state: AppState = Depends(app_state),
                        _: HTTPAuthorizationCredentials | None = Security(OPERATOR_BEARER),
                        __: str | None = Security(SESSION_COOKIE)) -> str:  # fmt: skip
    """The operator's name, from an operator token or an operator's dashboard session."""
    return authenticate(request, state, ("operator",), session_roles=("operator",))[0].name


def reader_credential(request: Request, state: AppState = Depends(app_state),
                      _: HTTPAuthorizationCredentials | None = Security(VIEWER_BEARER),
                      __: HTTPAuthorizationCredentials | None = Security(OPERATOR_BEARER),
                      ___: str | None = Security(SESSION_COOKIE)) -> Principal:  # fmt: skip
    """A viewer or an operator, by token or dashboard session: every read."""
    return authenticate(request, state, ("viewer", "operator"), session_roles=("viewer", "operator"))[0]


def los_credential(request: Request, state: AppState = Depends(app_state),
                   _: HTTPAuthorizationCredentials | None = Security(VIEWER_BEARER),
                   __: HTTPAuthorizationCredentials | None = Security(OPERATOR_BEARER),
                   ___: HTTPAuthorizationCredentials | None = Security(INTEGRATION_BEARER),
                   ____: str | None = Security(SESSION_COOKIE)) -> Principal:  # fmt: skip
    """A reader, or an integration (a scheduler asking for LoS probabilities)."""
    return authenticate(request, state, ("viewer", "operator", "integration"),
                        session_roles=("viewer", "operator"))[0]  # fmt: skip


def band_plan_credential(request: Request, state: AppState = Depends(app_state),
                         _: HTTPAuthorizationCredentials | None = Security(NODE_BEARER),
                         __: HTTPAuthorizationCredentials | None = Security(VIEWER_BEARER),
                         ___: HTTPAuthorizationCredentials | None = Security(OPERATOR_BEARER),
                         ____: HTTPAuthorizationCredentials | None = Security(INTEGRATION_BEARER),
                         _____: str | None = Security(SESSION_COOKIE)) -> Principal:  # fmt: skip
    """A reader, an integration (the scheduler allocates in the plan's sub-bands) or a node (``rftwin-node
    check`` compares its [band] with the site's); a revoked node is refused."""
    principal, found = authenticate(request, state, ("node", "viewer", "operator", "integration"),
                                    session_roles=("viewer", "operator"))  # fmt: skip
    if principal.kind == "node" and found[1]:
        raise unauthorized(f"the token of node {principal.name!r} has been revoked")
    return principal


def scraper_credential(request: Request, state: AppState = Depends(app_state),
                       _: HTTPAuthorizationCredentials | None = Security(SCRAPER_BEARER)) -> str:  # fmt: skip
    """A metrics scraper's name: GET /metrics."""
    return authenticate(request, state, ("scraper",))[0].name


READ = [Depends(reader_credential)]  # ``dependencies=READ`` on a read route
