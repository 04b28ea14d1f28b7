"""``POST /detector/learn`` (operator token): learn normal statistics; ``GET /models/{id}``: a fitted model."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool

from central.api.bodies import body_schema, json_body
from central.api.problems import ApiError
from central.api.responses import AUTH, BODY, STORE, errors
from central.api.security import READ, operator_credential
from central.api.state import AppState, app_state
from central.schemas import LearnOut, LearnRequest, ModelOut
from central.store import now_ns

router = APIRouter(tags=["detector"])
learn_body = json_body(LearnRequest)


@router.post(
    "/detector/learn",
    summary="Learn normal residual statistics from a normal period (operator token)",
    response_model=LearnOut,
    responses=errors(*AUTH, *BODY, *STORE, {409: "refused: too little data, or alarms in the window",
                                            503: "no live detection engine in this central unit"}),
    openapi_extra=body_schema(LearnRequest, "the normal period: duration_s, or since_ns/until_ns"),
)  # fmt: skip
async def learn(_: str = Depends(operator_credential), body: LearnRequest = Depends(learn_body),
                state: AppState = Depends(app_state)) -> Any:  # fmt: skip
    """Fit the configured detector on the residuals of [since_ns, until_ns] (or the last
    ``duration_s``), set its threshold for the target false-alarm rate, save it as a model with its
    provenance and make it active at once (no restart)."""
    return await run_in_threadpool(run_learn, state, body)


def run_learn(state: AppState, body: LearnRequest) -> Any:
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
            dependencies=READ, responses=errors(*AUTH, 422, *STORE, {404: "no such model"}))  # fmt: skip
def model(model_id: int, state: AppState = Depends(app_state)) -> Any:
    m = state.store.model(model_id) if 0 <= model_id < 2**63 else None
    if m is None:
        raise ApiError(404, f"no model {model_id}", "not_found")
    return m.to_dict()
