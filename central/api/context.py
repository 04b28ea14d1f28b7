"""``/context``: where the legitimate transmitters are (an integration reports them; anyone reads them)."""

from __future__ import annotations

import logging
import math
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
from contracts.band_plan import BandPlan

log = logging.getLogger(__name__)
router = APIRouter(tags=["context"])


@router.post(
    "/context",
    summary="Report legitimate transmitters (integration token)",
    response_model=ContextStored,
    responses=errors(*AUTH, *BODY, *STORE, {
        422: "malformed JSON or invalid content (the detail names the transmitter and field): also a t_ns more "
             "than [limits] max_future_skew_s ahead, a position outside the hall, bandwidth_hz above f_center_hz, "
             "an allocation outside the band plan or whose powers do not sum to power_dbm, a band_plan that is "
             "not the site's (reason band_plan_mismatch)",
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
        txs.append(TxContext(t.tx_id, t.t_ns, tuple(t.position_m), t.power_dbm, t.f_center_hz, t.bandwidth_hz,  # type: ignore[arg-type]
                             checked_allocation(t, state.site.band_plan, where)))
    state.store.add_context(txs)
    state.metrics.context(len(txs))
    if state.on_context is not None:
        try:
            state.on_context(txs)
        except Exception:
            log.exception("on_context callback failed (the context is stored)")
    return {"stored": len(txs)}


ALLOCATION_POWER_TOLERANCE_DB = 0.5


def checked_allocation(t, plan: BandPlan, where: str) -> tuple[tuple[int, float], ...] | None:
    """A context report's allocation against the site's band plan (422 naming what is wrong)."""
    if t.band_plan is not None and t.band_plan != plan.fingerprint:
        raise ApiError(422, f"{where}: band_plan {t.band_plan} is not the site's ({plan.fingerprint}): GET "
                       "/api/v1/band-plan", "band_plan_mismatch")  # fmt: skip
    if t.allocation is None:
        return None
    ids = [a.subband for a in t.allocation]
    if bad := [i for i in ids if i >= plan.subbands]:
        raise ApiError(422, f"{where}: allocation: sub-band {bad[0]} is outside the band plan's 0..{plan.subbands - 1}",
                       "invalid")  # fmt: skip
    if len(set(ids)) < len(ids):
        raise ApiError(422, f"{where}: allocation: a sub-band appears twice", "invalid")
    if ids:
        total = 10 * math.log10(sum(10 ** (a.power_dbm / 10) for a in t.allocation))
        if abs(total - t.power_dbm) > ALLOCATION_POWER_TOLERANCE_DB:
            raise ApiError(422, f"{where}: power_dbm {t.power_dbm:g} is not the allocation's total {total:.2f} dBm "
                           f"(within {ALLOCATION_POWER_TOLERANCE_DB:g} dB)", "invalid")  # fmt: skip
    return tuple(sorted((a.subband, float(a.power_dbm)) for a in t.allocation))


@router.get("/context", summary="Latest report of every transmitter", response_model=list[TxContextOut],
            dependencies=READ, responses=errors(*AUTH, *STORE))  # fmt: skip
def get_context(state: AppState = Depends(app_state)) -> Any:
    return [tx_dict(t) for t in state.store.latest_context()]


def tx_dict(t: TxContext) -> dict:
    return {"tx_id": t.tx_id, "t_ns": t.t_ns, "position_m": list(t.position_m), "power_dbm": t.power_dbm,
            "f_center_hz": t.f_center_hz, "bandwidth_hz": t.bandwidth_hz,
            "allocation": None if t.allocation is None else [{"subband": b, "power_dbm": p} for b, p in t.allocation]}  # fmt: skip
