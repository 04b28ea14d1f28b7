"""``GET /site`` (the hall, its obstacles and sensing units), ``/health`` (liveness) and ``/metrics``
(Prometheus, a scraper token). ``/site`` is a read (a viewer or an operator); ``/health`` is the one
open operation. The live event stream, ``GET /events``, is the dashboard's
(:mod:`central.dashboard.routes`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse

from central.api.problems import PROBLEM_MEDIA_TYPE
from central.api.responses import AUTH, STORE, errors
from central.api.security import READ, Principal, band_plan_credential, scraper_credential
from central.api.state import API_PREFIX, AppState, app_state
from central.schemas import BandPlanOut, Health, SiteOut
from node.protocol import BAND_PLAN_PATH, HEALTH_PATH

router = APIRouter(tags=["site and service"])


@router.get("/site", summary="The hall, its obstacles and the sensing units", response_model=SiteOut,
            dependencies=READ, responses=errors(*AUTH))  # fmt: skip
def site(state: AppState = Depends(app_state)) -> Any:
    s = state.site
    return {
        "name": s.name, "description": s.description, "frequency_hz": s.frequency_hz,
        "noise_floor_dbm": s.noise_floor_dbm, "hall_size_m": list(s.hall_size_m), "hall_material": s.hall_material,
        "tx_plane_height_m": s.tx_plane.height_m,
        "obstacles": [{"name": b.name, "material": b.material, "min_m": list(b.min_m), "size_m": list(b.size_m)}
                      for b in s.obstacles],
        "sensing_units": [{"id": u.id, "position_m": list(u.position_m)} for u in s.sensing_units],
        "band_plan": band_plan_body(s.band_plan),
    }  # fmt: skip


@router.get(BAND_PLAN_PATH.removeprefix(API_PREFIX), summary="The monitored band and its sub-band grid",
            response_model=BandPlanOut, responses=errors(*AUTH))  # fmt: skip
def band_plan(_: Principal = Depends(band_plan_credential), state: AppState = Depends(app_state)) -> Any:
    """The site's band plan (as in ``GET /site``), also for node tokens (``rftwin-node check``) and
    integrations (the scheduler's allocations use its sub-band ids)."""
    return band_plan_body(state.site.band_plan)


def band_plan_body(plan) -> dict:
    """A :class:`contracts.band_plan.BandPlan` as :class:`central.schemas.BandPlanOut`."""
    return {**plan.to_dict(), "fingerprint": plan.fingerprint, "grid": [dataclasses.asdict(b) for b in plan.grid]}


@router.get(HEALTH_PATH.removeprefix(API_PREFIX), summary="Liveness and the store's health", response_model=Health,
            response_model_exclude_none=True,
            responses=errors({503: "failing: the database failed its integrity check (reason database_corrupt); "
                              "writes, ingest included, are refused until it is restored. The problem has the "
                              "members health (\"failing\") and checks (as in the 200 body)"}))  # fmt: skip
async def health(state: AppState = Depends(app_state)) -> Any:
    """``{"status": "ok"}`` while every check passes; ``degraded`` (200) with the checks that are not
    ok, each with a reason; ``failing``: a 503 problem that lists them too
    (:meth:`central.store.Store.health_problems`). ``rftwin-node check`` and load balancers read 200."""
    checks = state.store.health_problems()
    if not checks:
        return {"status": "ok"}
    failing = {name: c for name, c in checks.items() if c["status"] == "failing"}
    if not failing:
        return Health(status="degraded", checks=checks)
    body = {"type": "about:blank", "title": "Service Unavailable", "status": 503,
            "detail": "; ".join(f"{name}: {c['detail']}" for name, c in failing.items()),
            "reason": next(iter(failing.values()))["reason"], "health": "failing", "checks": checks}  # fmt: skip
    return JSONResponse(body, 503, headers={"Retry-After": "60"}, media_type=PROBLEM_MEDIA_TYPE)


@router.get("/metrics", summary="Prometheus metrics (text format 0.0.4; a scraper token)",
            response_class=PlainTextResponse, responses=errors(*AUTH, *STORE))  # fmt: skip
def metrics(_: str = Depends(scraper_credential), state: AppState = Depends(app_state)) -> PlainTextResponse:
    return PlainTextResponse(state.metrics.render(state.store, state.config.detection.stale_s),
                             media_type="text/plain; version=0.0.4; charset=utf-8")  # fmt: skip
