"""``GET /site`` (the hall, its obstacles and sensing units), ``/health`` (liveness) and ``/metrics``
(Prometheus). Open reads. The live event stream, ``GET /events``, is the dashboard's
(:mod:`central.dashboard.routes`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from central.api.responses import STORE, errors
from central.api.state import API_PREFIX, AppState, app_state
from central.schemas import Health, SiteOut
from node.protocol import HEALTH_PATH

router = APIRouter(tags=["site and service"])


@router.get("/site", summary="The hall, its obstacles and the sensing units", response_model=SiteOut)
def site(state: AppState = Depends(app_state)) -> Any:
    s = state.site
    return {
        "name": s.name, "description": s.description, "frequency_hz": s.frequency_hz,
        "noise_floor_dbm": s.noise_floor_dbm, "hall_size_m": list(s.hall_size_m), "hall_material": s.hall_material,
        "tx_plane_height_m": s.tx_plane.height_m,
        "obstacles": [{"name": b.name, "material": b.material, "min_m": list(b.min_m), "size_m": list(b.size_m)}
                      for b in s.obstacles],
        "sensing_units": [{"id": u.id, "position_m": list(u.position_m)} for u in s.sensing_units],
    }  # fmt: skip


@router.get(HEALTH_PATH.removeprefix(API_PREFIX), summary="Liveness", response_model=Health)
def health() -> Any:
    return {"status": "ok"}


@router.get("/metrics", summary="Prometheus metrics (text format 0.0.4)", response_class=PlainTextResponse,
            responses=errors(*STORE))  # fmt: skip
def metrics(state: AppState = Depends(app_state)) -> PlainTextResponse:
    return PlainTextResponse(state.metrics.render(state.store, state.config.detection.stale_s),
                             media_type="text/plain; version=0.0.4; charset=utf-8")  # fmt: skip
