"""``/session``: the dashboard's login (``POST``, a viewer or operator token for a session cookie),
who is logged in (``GET``, with the CSRF token the page needs) and logout (``DELETE``).

The token travels once, in a JSON body: a cross-site HTML form cannot send ``application/json``
without a CORS preflight (never granted here), so no other site can log a browser in under its own
token. Failed logins count against the client's address like every failed authentication
(:mod:`central.api.security`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from central.api.bodies import body_schema, json_body
from central.api.problems import unauthorized
from central.api.responses import AUTH, BODY, STORE, errors
from central.api.security import (
    SESSION_COOKIE,
    cookie_session,
    failed_authentication,
    refuse_flooding_client,
    session_store,
    token_principal,
)
from central.api.sessions import COOKIE_NAME, Session
from central.api.state import AppState, app_state
from central.auth import hash_token
from central.schemas import LoginRequest, SessionOut

router = APIRouter(tags=["dashboard session"])
login_body = json_body(LoginRequest)
SESSION_ROLES = ("viewer", "operator")


def _out(session: Session, request: Request) -> dict[str, Any]:
    remaining = session.remaining_s(session_store(request).clock())
    return {"name": session.name, "role": session.role, "csrf_token": session.csrf_token, "expires_in_s": remaining}


@router.post("/session", summary="Log in: a viewer or operator token for the dashboard's session cookie",
             status_code=201, response_model=SessionOut, responses=errors(*AUTH, *BODY, *STORE),
             openapi_extra=body_schema(LoginRequest, "the token to log in with"))  # fmt: skip
def login(request: Request, response: Response, body: LoginRequest = Depends(login_body),
          state: AppState = Depends(app_state)) -> Any:  # fmt: skip
    """Sets ``rftwin_session`` (``HttpOnly; SameSite=Strict; Path=/``, ``Secure`` over https) for
    the session's lifetime; the answer carries the CSRF token."""
    refuse_flooding_client(request)
    found = token_principal(state, body.token, SESSION_ROLES)
    if found is None:
        raise failed_authentication(request, "unknown or wrong viewer or operator token")
    principal = found[0]
    store = session_store(request)
    session_id, session = store.create(principal.name, principal.kind, hash_token(body.token))
    response.set_cookie(COOKIE_NAME, session_id, max_age=int(store.ttl_s), path="/", httponly=True,
                        samesite="strict", secure=state.config.tls is not None)  # fmt: skip
    return _out(session, request)


@router.get("/session", summary="The dashboard session of this browser", response_model=SessionOut,
            responses=errors(401))  # fmt: skip
def current(request: Request, state: AppState = Depends(app_state), _: str | None = Depends(SESSION_COOKIE)) -> Any:
    """401 without a live session cookie (the page then shows the login)."""
    return _out(_live_session(request, state), request)


def _live_session(request: Request, state: AppState) -> Session:
    refuse_flooding_client(request)
    session = cookie_session(request, state, SESSION_ROLES)
    if session is None:  # no cookie at all: nothing was guessed, so nothing is counted
        raise unauthorized("no dashboard session: log in with POST /api/v1/session")
    return session


@router.delete("/session", summary="Log out (needs the session's CSRF token)", status_code=204,
               responses=errors(401, 403))  # fmt: skip
def logout(request: Request, state: AppState = Depends(app_state), _: str | None = Depends(SESSION_COOKIE)) -> Response:
    _live_session(request, state)  # and its CSRF token
    session_store(request).end(request.cookies.get(COOKIE_NAME))
    response = Response(status_code=204)
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict", secure=state.config.tls is not None)
    return response
