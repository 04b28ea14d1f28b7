"""``POST /los``: the LoS probability of a UE (:mod:`central.los`), from a channel estimate (the ONNX
model) or a UE position (the twin's geometry, no model needed). It changes nothing, so a reader may
ask, and so may an integration (the RAN scheduler that wants the answer)."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from central.api.bodies import body_schema, json_body
from central.api.problems import ApiError
from central.api.responses import AUTH, BODY, errors
from central.api.security import Principal, los_credential
from central.los import LosInputError, LosService, LosUnavailable
from central.schemas import LosOut, LosRequest

router = APIRouter(tags=["LoS"])
los_body = json_body(LosRequest)
_service_lock = threading.Lock()


def los_service(request: Request) -> LosService:
    """The app's :class:`LosService` (one per app: it caches the loaded model), made on first use."""
    app_state = request.app.state
    with _service_lock:
        service = getattr(app_state, "los_service", None)
        if service is None:
            state = app_state.rftwin
            service = app_state.los_service = LosService(state.site, state.config.models_dir)
    return service


@router.post(
    "/los",
    summary="LoS probability from a channel estimate (ONNX model) or a UE position (geometry)",
    response_model=LosOut,
    responses=errors(*AUTH, *BODY, {
        422: "malformed JSON or invalid content: not exactly one of channel or position_m, a position outside "
             "the hall or inside an obstacle, a channel estimate of another shape than the model's",
        503: "a channel estimate, and no LoS model installed",
    }),
    openapi_extra=body_schema(LosRequest, "exactly one of channel or position_m"),
)  # fmt: skip
async def los(_: Principal = Depends(los_credential), body: LosRequest = Depends(los_body),
              service: LosService = Depends(los_service)) -> Any:  # fmt: skip
    if (body.channel is None) == (body.position_m is None):
        raise ApiError(422, "give exactly one of channel or position_m", "invalid")
    try:
        if body.channel is not None:
            answer = await run_in_threadpool(service.from_channel, body.channel.shape, body.channel.data_b64)
        else:
            answer = await run_in_threadpool(service.from_position, body.position_m, body.gnb_position_m)
    except LosUnavailable as e:
        raise ApiError(503, str(e), "unavailable") from None
    except LosInputError as e:
        raise ApiError(422, str(e), "invalid") from None
    return answer.to_dict()
