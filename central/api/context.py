"""``/context``: where the legitimate transmitters are (an integration reports them; anyone reads them)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from central.api.bodies import body_schema, parse_json, read_body, require_json, validate
from central.api.problems import ApiError
from central.api.responses import AUTH, BODY, STORE, errors
from central.api.security import READ, integration_credential
from central.api.state import AppState, app_state
from central.live import TxContext
from central.schemas import ContextStored, ContextUpdate, TxContextOut
from central.store import now_ns

log = logging.getLogger(__name__)
router = APIRouter(tags=["context"])


@router.post(
    "/context",
    summary="Report legitimate transmitters (integration token)",
    response_model=ContextStored,
    responses=errors(*AUTH, *BODY, *STORE, {
        422: "malformed JSON or invalid content (the detail names the transmitter and field): also a t_ns more "
             "than [limits] max_future_skew_s ahead, a position outside the hall, bandwidth_hz above f_center_hz",
    }),
    openapi_extra=body_schema(ContextUpdate, "ContextUpdate, or a bare list of TxContextIn"),
)  # fmt: skip
async def post_context(request: Request, _: str = Depends(integration_credential),
                       state: AppState = Depends(app_state)) -> Any:  # fmt: skip
    """Where the legitimate transmitters are (estimated), their power and band. A repeated
    (tx_id, t_ns) replaces the earlier report. Positions must be inside the hall."""
    require_json(request)
    raw = await read_body(request, state.config.limits.max_body_bytes)
    return await run_in_threadpool(store_context, state, raw)


def store_context(state: AppState, raw: bytes) -> dict:
    """Validate and store a context report (blocking: run it in the threadpool)."""
    limits = state.config.limits
    doc = parse_json(raw)
    if isinstance(doc, list):
        doc = {"transmitters": doc}
    update = validate(ContextUpdate, doc)
    horizon = now_ns() + limits.max_future_skew_ns
    size = state.site.hall_size_m
    txs = []
    for i, t in enumerate(update.transmitters):
        where = f"transmitters[{i}] ({t.tx_id})"
        if t.t_ns > horizon:
            raise ApiError(422, f"{where}: t_ns is more than {limits.max_future_skew_s:g} s in the future",
                           "future_timestamp")  # fmt: skip
        if not all(0.0 <= p <= s for p, s in zip(t.position_m, size)):
            raise ApiError(422, f"{where}: position_m {t.position_m} is outside the hall "
                           f"[0..{size[0]:g}] x [0..{size[1]:g}] x [0..{size[2]:g}] m", "invalid")  # fmt: skip
        if t.f_center_hz and t.bandwidth_hz > t.f_center_hz:
            raise ApiError(422, f"{where}: bandwidth_hz exceeds f_center_hz", "invalid")
        txs.append(TxContext(t.tx_id, t.t_ns, tuple(t.position_m), t.power_dbm, t.f_center_hz, t.bandwidth_hz))  # type: ignore[arg-type]
    state.store.add_context(txs)
    state.metrics.context(len(txs))
    if state.on_context is not None:
        try:
            state.on_context(txs)
        except Exception:
            log.exception("on_context callback failed (the context is stored)")
    return {"stored": len(txs)}


@router.get("/context", summary="Latest report of every transmitter", response_model=list[TxContextOut],
            dependencies=READ, responses=errors(*AUTH, *STORE))  # fmt: skip
def get_context(state: AppState = Depends(app_state)) -> Any:
    return [tx_dict(t) for t in state.store.latest_context()]


def tx_dict(t: TxContext) -> dict:
    return {"tx_id": t.tx_id, "t_ns": t.t_ns, "position_m": list(t.position_m), "power_dbm": t.power_dbm,
            "f_center_hz": t.f_center_hz, "bandwidth_hz": t.bandwidth_hz}  # fmt: skip
