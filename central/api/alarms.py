"""``/alarms``: the alarms (a reader) and their acknowledgement (an operator)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from central.api.problems import ApiError
from central.api.responses import AUTH, STORE, errors
from central.api.security import READ, operator_credential
from central.api.state import AppState, app_state
from central.schemas import AlarmOut
from central.store import StoreError

router = APIRouter(tags=["alarms"])


@router.get("/alarms", summary="Alarms (newest first)", response_model=list[AlarmOut], dependencies=READ,
            responses=errors(*AUTH, 422, *STORE))  # fmt: skip
def alarms(state_: str | None = Query(None, alias="state", pattern="^(active|cleared)$"),
           limit: int = Query(100, ge=1, le=10_000), state: AppState = Depends(app_state)) -> Any:  # fmt: skip
    return [a.to_dict() for a in state.store.alarms(state_, limit)]


@router.post("/alarms/{alarm_id}/ack", summary="Acknowledge an alarm (operator token)", response_model=AlarmOut,
             responses=errors(*AUTH, 422, *STORE, {404: "no such alarm"}))  # fmt: skip
def ack_alarm(alarm_id: int, who: str = Depends(operator_credential), state: AppState = Depends(app_state)) -> Any:
    """Record who acknowledged the alarm; the first acknowledgement is kept."""
    if not 0 <= alarm_id < 2**63:
        raise ApiError(404, f"no alarm {alarm_id}", "not_found")
    try:
        alarm = state.store.acknowledge_alarm(alarm_id, who)
    except StoreError as e:
        raise ApiError(404, str(e), "not_found") from None
    if alarm is None:
        raise ApiError(404, f"no alarm {alarm_id}", "not_found")
    state.bus.publish("alarm", alarm.to_dict())
    return alarm.to_dict()
