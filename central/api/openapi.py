"""The OpenAPI document: FastAPI's, plus what FastAPI cannot see or says otherwise.

- the request-body models of the routes that read their body themselves (so ``/docs`` shows them
  with their constraints);
- one error body everywhere: every 4xx/5xx answer documented as ``application/problem+json``
  :class:`~central.schemas.Problem`, FastAPI's own 422 ``HTTPValidationError`` included (the app
  answers request-validation errors with a problem too, :mod:`central.api.problems`);
- the bearer security schemes (from :mod:`central.api.security`'s dependencies) and, in each
  operation's description, which token it wants;
- this site's hall as the bounds of the positions a request gives (the document is the unit's,
  for its site); staying out of the obstacles is a rule JSON Schema cannot say (described).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from central.api.problems import PROBLEM_MEDIA_TYPE
from central.api.responses import DESCRIPTIONS
from central.twin.site import Site

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")
TOKEN_WORDS = {"NodeToken": "a node token (as that node)", "IntegrationToken": "an integration token",
               "OperatorToken": "an operator token", "ViewerToken": "a viewer token",
               "ScraperToken": "a scraper token", "DashboardSession": "the dashboard's session cookie"}  # fmt: skip
# Positions checked against the hall: (schema, property) -> whether the walls themselves are out
# (LoS: strictly inside; context and campaign points: [0, size], walls included).
HALL_POSITIONS = {("TxContextIn", "position_m"): False, ("PointRequest", "position_m"): False,
                  ("ImportedPoint", "position_m"): False, ("LosRequest", "position_m"): True,
                  ("LosRequest", "gnb_position_m"): True}  # fmt: skip


def install_openapi(app: FastAPI, body_models: list[type[BaseModel]], site: Site | None = None) -> None:
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
        for ops in schema.get("paths", {}).values():
            for op in ops.values():
                _problems(op)
                _security_words(op)
        for name in FASTAPI_VALIDATION:
            comps.pop(name, None)
        if site is not None:
            _hall_bounds(comps, site)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _problems(op: dict[str, Any]) -> None:
    for code, response in op.get("responses", {}).items():
        if code[0] not in "45":
            continue
        if code == "422" and response.get("description") == "Validation Error":  # FastAPI's default one
            response["description"] = DESCRIPTIONS[422]
        response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": dict(PROBLEM_REF)}}


def _security_words(op: dict[str, Any]) -> None:
    kinds = [name for requirement in op.get("security", ()) for name in requirement]
    if kinds:
        wants = " or ".join(TOKEN_WORDS.get(k, k) for k in kinds)
        op["description"] = (op.get("description", "") + f"\n\nAuthentication: {wants}; 401 without a valid "
                             "one, 429 past its rate limit or after too many failed attempts from the client's "
                             "address.").strip()  # fmt: skip


def _hall_bounds(comps: dict[str, Any], site: Site) -> None:
    for (model, prop), walls_out in HALL_POSITIONS.items():
        schema = comps.get(model, {}).get("properties", {}).get(prop)
        if schema is None:
            continue
        arrays = [s for s in schema.get("anyOf", [schema]) if s.get("type") == "array"]
        lo, hi = ("exclusiveMinimum", "exclusiveMaximum") if walls_out else ("minimum", "maximum")
        for array in arrays:
            array["prefixItems"] = [{"type": "number", lo: 0.0, hi: float(size)} for size in site.hall_size_m]
            array.pop("items", None)
        x, y, z = site.hall_size_m
        where = "strictly inside" if walls_out else "inside (walls included)"
        schema["description"] = (schema.get("description", "") + f"; {where} this site's hall, [0, {x:g}] x "
                                 f"[0, {y:g}] x [0, {z:g}] m").lstrip("; ")  # fmt: skip
