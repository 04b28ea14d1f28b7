"""Request bodies: size-capped (413), ``application/json`` only (415), parsed once with NaN/Infinity
literals refused and depth/huge-number errors caught (422), then validated (422 naming the field).

:func:`json_body` makes a FastAPI dependency of a pydantic model (``body: M = Depends(json_body(M))``);
routes that validate with other code (ingest) use the pieces. :func:`body_schema` documents a body
read this way (FastAPI cannot see it) in the route's ``openapi_extra``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from central.api.problems import ApiError
from central.api.state import AppState, app_state
from node.protocol import Measurement, ProtocolError


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


def where_in_batch(doc: Any) -> str:
    """``records[i]: `` for the first record the protocol validator cannot even evaluate."""
    for i, r in enumerate(doc.get("records", []) if isinstance(doc, dict) else []):
        try:
            Measurement.from_dict(r)
        except ProtocolError:
            continue
        except (TypeError, ValueError, OverflowError):
            return f"records[{i}]: "
    return ""


def validation_detail(e: ValidationError, prefix: str = "") -> str:
    parts = []
    for err in e.errors(include_url=False)[:3]:
        loc = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        parts.append(f"{loc.lstrip('.') or 'body'}: {err['msg']}")
    more = len(e.errors()) - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def validate(model: type[BaseModel], doc: Any) -> Any:
    """``model`` from a parsed document; 422 naming the field when it does not fit."""
    try:
        return model.model_validate(doc)
    except ValidationError as e:
        raise ApiError(422, validation_detail(e), "invalid") from None


def json_body(model: type[BaseModel]) -> Callable[..., Coroutine[Any, Any, Any]]:
    """A dependency: the request's JSON body as ``model`` (415, 413, 422 with the field). List it
    after the credential dependency, so that a request is authenticated before its body is read."""

    async def body(request: Request, state: AppState = Depends(app_state)) -> Any:
        require_json(request)
        return validate(model, parse_json(await read_body(request, state.config.limits.max_body_bytes)))

    body.__name__ = f"{model.__name__}_body"
    return body


def body_schema(model: type[BaseModel], description: str) -> dict:
    """``openapi_extra`` documenting a JSON body of ``model`` (its schema is added to the components
    by :func:`central.api.openapi.install_openapi`)."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "description": description,
                            "content": {"application/json": {"schema": ref}}}}  # fmt: skip
