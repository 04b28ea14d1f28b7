"""Authentication as FastAPI dependencies: ``Depends(node_credential)``, ``Depends(integration_credential)``,
``Depends(operator_credential)``.

``Authorization: Bearer <token>``; the token is hashed and compared in constant time against every
stored SHA-256 of its kind (:mod:`central.auth`); 401 with ``WWW-Authenticate: Bearer`` otherwise.
Each kind is an HTTP bearer security scheme of the OpenAPI document (``NodeToken``,
``IntegrationToken``, ``OperatorToken``), so every operation says which token it wants. The
credential's rate limit (:class:`~central.api.ratelimit.RateLimiter` on ``app.state.rate_limiter``)
is taken here too: 429 with ``Retry-After``. The dependencies are sync, so FastAPI runs them (and
their store reads) in the threadpool, and before the body is read.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from central.api.problems import ApiError, unauthorized
from central.api.state import AppState, app_state
from central.auth import bearer_token, match_token

NODE_BEARER = HTTPBearer(scheme_name="NodeToken", bearerFormat="rtn_…", auto_error=False,
                         description="A node's token (`rftwin-central node add`): ingest, as that node only.")  # fmt: skip
INTEGRATION_BEARER = HTTPBearer(scheme_name="IntegrationToken", bearerFormat="rti_…", auto_error=False,
                                description="An integration's token (the context feed): POST /context.")  # fmt: skip
OPERATOR_BEARER = HTTPBearer(scheme_name="OperatorToken", bearerFormat="rto_…", auto_error=False,
                             description="An operator's token: acknowledging alarms, learning, calibration campaigns.")  # fmt: skip


def credential(request: Request, state: AppState, kind: str, entries: list[tuple[str, Any]]) -> Any:
    """The value of the stored entry matching the request's bearer token (401 if none), after taking
    a token from that credential's bucket (429 if empty)."""
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise unauthorized(f"missing or malformed 'Authorization: Bearer <{kind} token>' header")
    found = match_token(token, entries)
    if found is None:
        raise unauthorized(f"unknown or wrong {kind} token")
    name = found if isinstance(found, str) else found[0]  # a node's entry is (node_id, revoked)
    limiter = getattr(request.app.state, "rate_limiter", None)  # create_app sets one; a bare test app may not
    wait = 0.0 if limiter is None else limiter.acquire(f"{kind}:{name}")
    if wait > 0:
        raise ApiError(429, f"{kind} {name!r} exceeds the rate limit of {limiter.rate:g} requests/s (bursts of "
                       f"{limiter.burst}): retry in {wait:.2f} s", "rate_limited",
                       {"Retry-After": str(max(1, math.ceil(wait)))})  # fmt: skip
    return found


def node_credential(request: Request, state: AppState = Depends(app_state),
                    _: HTTPAuthorizationCredentials | None = Security(NODE_BEARER)) -> str:  # fmt: skip
    """The node id of a node token (not revoked)."""
    node_id, revoked = credential(request, state, "node", state.store.node_credentials())
    if revoked:
        raise unauthorized(f"the token of node {node_id!r} has been revoked")
    return node_id


def integration_credential(request: Request, state: AppState = Depends(app_state),
                           _: HTTPAuthorizationCredentials | None = Security(INTEGRATION_BEARER)) -> str:  # fmt: skip
    """The integration's name, from an integration token (enrolled, or in the config file)."""
    return credential(request, state, "integration", state.store.integration_credentials()
                      + [(e.token_sha256, e.name) for e in state.config.integrations])  # fmt: skip


def operator_credential(request: Request, state: AppState = Depends(app_state),
                        _: HTTPAuthorizationCredentials | None = Security(OPERATOR_BEARER)) -> str:  # fmt: skip
    """The operator's name, from an operator token (enrolled, or in the config file)."""
    return credential(request, state, "operator", state.store.operator_credentials()
                      + [(e.token_sha256, e.name) for e in state.config.operators])  # fmt: skip
