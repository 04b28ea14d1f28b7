"""The documented error answers of the routes, all :class:`~central.schemas.Problem` bodies
(``application/problem+json``, set by :func:`central.api.openapi.install_openapi`).

``errors(*AUTH, *BODY, {404: "no such alarm"})``: the given codes with their usual description, and
those of the dict with the description given.
"""

from __future__ import annotations

from typing import Any

from central.schemas import Problem

DESCRIPTIONS = {
    400: "malformed request (e.g. an invalid Content-Length)",
    401: "missing, unknown, wrong or revoked token, or an ended dashboard session",
    403: "the credential does not allow this (e.g. a viewer's session; a session without its CSRF token)",
    404: "no such resource",
    409: "conflict with the current state",
    413: "body or batch too large",
    415: "Content-Type is not application/json",
    422: "malformed JSON, or invalid parameters or content (the detail names the field)",
    429: "this credential's request rate limit is exceeded, or this address made too many failed "
         "authentications; see Retry-After",
    503: "store unavailable (disk full, locked); retry after Retry-After",
}
HEADERS = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "seconds until the credential's bucket has a token again",
                          "required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}},
}  # fmt: skip

BODY = (400, 413, 415, 422)  # any route that reads a JSON body
AUTH = (401, 403, 429)  # any route that wants a credential
STORE = (503,)  # any route that touches the store


def errors(*codes: int | dict[int, str]) -> dict[int | str, dict[str, Any]]:
    described: dict[int, str] = {}
    for c in codes:
        described.update(c if isinstance(c, dict) else {c: DESCRIPTIONS[c]})
    out: dict[int | str, dict[str, Any]] = {}
    for code in sorted(described):
        entry: dict[str, Any] = {"model": Problem, "description": described[code]}
        if code in HEADERS:
            entry["headers"] = HEADERS[code]
        out[code] = entry
    return out
