"""Calibration campaigns (:mod:`central.campaign`): start, points (live or imported), status, close.

Changes need an operator token; reads are open like every read of this API. Points travel as
JSON; the CSV file format lives with the calibration tools (``rftwin-calibrate campaign export``
and ``import``), which the central unit does not import (dependency direction).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool

from central.api.bodies import body_schema, json_body
from central.api.problems import ApiError
from central.api.responses import AUTH, BODY, STORE, errors
from central.api.security import READ, operator_credential
from central.api.state import AppState, app_state
from central.campaign import (
    MAX_DWELL_S,
    CampaignConflict,
    NewPoint,
    SuReading,
    aggregate,
    check_position,
    rejection_reason,
    wait_for_window,
)
from central.schemas import (
    CampaignDetail,
    CampaignImport,
    CampaignOut,
    CampaignStart,
    ImportOut,
    PointOut,
    PointRequest,
)
from central.store import now_ns
from central.twin.site import Site

log = logging.getLogger(__name__)
router = APIRouter(tags=["campaigns"])
start_body, point_body, import_body = json_body(CampaignStart), json_body(PointRequest), json_body(CampaignImport)
NOT_FOUND = {404: "no such campaign"}
CONFLICT = {409: "name taken, another campaign open, or this one closed"}


@router.post("/campaigns", summary="Start a calibration campaign (operator token)", status_code=201,
             response_model=CampaignOut, responses=errors(*AUTH, *BODY, *STORE, CONFLICT),
             openapi_extra=body_schema(CampaignStart, "name (never reused) and description"))  # fmt: skip
async def start_campaign(who: str = Depends(operator_credential), body: CampaignStart = Depends(start_body),
                         state: AppState = Depends(app_state)) -> Any:  # fmt: skip
    """Open a campaign over the site's sensing units. 409 when the name was used before or another
    campaign is still open."""
    camp = await run_in_threadpool(state.store.create_campaign, body.name, state.site.su_ids, who, body.description)
    log.info("campaign %s started by %s", camp.name, who)
    return camp.to_dict()


@router.get("/campaigns", summary="Calibration campaigns (oldest first)", response_model=list[CampaignOut],
            dependencies=READ, responses=errors(*AUTH, 422, *STORE))  # fmt: skip
def campaigns(state_: str | None = Query(None, alias="state", pattern="^(open|closed)$"),
              state: AppState = Depends(app_state)) -> Any:  # fmt: skip
    return [c.to_dict() for c in state.store.campaigns(state_)]


@router.get("/campaigns/{name}", summary="A campaign with its points", response_model=CampaignDetail,
            dependencies=READ, responses=errors(*AUTH, *STORE, NOT_FOUND))  # fmt: skip
def campaign(name: str, state: AppState = Depends(app_state)) -> Any:
    """Status: the campaign, and every point with its per-SU readings and, if rejected, why."""
    camp = state.store.campaign(name)
    return {**camp.to_dict(), "points": [p.to_dict() for p in state.store.campaign_points(name)]}


@router.post("/campaigns/{name}/close", summary="Close a campaign (operator token)", response_model=CampaignOut,
             responses=errors(*AUTH, *STORE, NOT_FOUND, {409: "already closed"}))  # fmt: skip
def close_campaign(name: str, _: str = Depends(operator_credential), state: AppState = Depends(app_state)) -> Any:
    return state.store.close_campaign(name).to_dict()


@router.post("/campaigns/{name}/points", summary="Measure a reference-transmitter point (operator token)",
             response_model=PointOut, status_code=201,
             responses=errors(*AUTH, *BODY, *STORE, NOT_FOUND, {
                 400: "malformed request, or the client disconnected during the dwell (point not stored)",
                 409: "the campaign is closed",
                 422: "malformed JSON or invalid content: not exactly one of dwell_s or since_ns/until_ns, a window "
                      "that ends before it starts, lasts or ends more than 600 s from now, a position outside the "
                      "hall or inside an obstacle"}),
             openapi_extra=body_schema(PointRequest, "reference position and power, dwell or window"))  # fmt: skip
async def add_point(name: str, request: Request, _: str = Depends(operator_credential),
                    body: PointRequest = Depends(point_body), state: AppState = Depends(app_state)) -> Any:  # fmt: skip
    """Gather every SU's readings over the window and store the point: per SU the mean power (dBm,
    averaged in mW), its spread (dB) and the count. The point is stored **rejected**, with the
    reason, when an SU was saturated or had no readings during the window.

    The request blocks until the window has ended (``dwell_s``: [now, now + dwell_s] on this
    unit's clock, the one that also bounds the nodes' timestamps) and the nodes' uploads have
    caught up, at most ``settle_s`` later. The server keeps the window, not the client, so a
    laptop with a wrong clock or a slow network does not shift it; a scheduled slot (a robot, a
    simulation) gives ``since_ns``/``until_ns`` instead. A client that disconnects during the
    wait cancels the point.
    """
    store = state.store
    camp = await run_in_threadpool(store.campaign, name)
    if camp.state != "open":
        raise CampaignConflict(f"campaign {name!r} is closed: no more points (start a new campaign)")
    where = check_position(state.site, body.position_m)
    if where:
        raise ApiError(422, where, "invalid")
    since, until = window(body)
    nodes = {n for n, su in (await run_in_threadpool(store.node_su_map)).items() if su in camp.su_ids}

    async def caught_up() -> bool:
        last = await run_in_threadpool(store.nodes_last_t_ns)
        return all((last.get(n) or 0) >= until for n in nodes)

    if not await wait_for_window(until, caught_up, body.settle_s, cancelled=request.is_disconnected):
        log.info("campaign %s: client left during the dwell; point not stored", name)
        raise ApiError(400, "the client disconnected during the dwell: point not stored", "bad_request")
    rows = await run_in_threadpool(store.window_readings, since, until, state.config.limits.max_future_skew_ns)
    node_su = await run_in_threadpool(store.node_su_map)
    by_su: dict[str, list[tuple[float, bool]]] = {}
    for node_id, power, saturated in rows:
        if node_id in node_su:
            by_su.setdefault(node_su[node_id], []).append((power, saturated))
    readings, rejected = aggregate(camp.su_ids, by_su, body.min_count)
    pos = (body.position_m[0], body.position_m[1], body.position_m[2])
    new = NewPoint(pos, body.power_dbm, readings, rejected, since, until, "live")
    (point,) = await run_in_threadpool(store.add_campaign_points, name, [new])
    log.info("campaign %s: point %d %s", name, point.index, rejected and f"rejected ({rejected})" or "accepted")
    return point.to_dict()


@router.post("/campaigns/{name}/import", summary="Add points measured elsewhere (operator token)",
             response_model=ImportOut,
             responses=errors(*AUTH, *BODY, *STORE, NOT_FOUND, {
                 409: "the campaign is closed",
                 422: "malformed JSON or invalid content (the detail names points[i]): a position outside the hall "
                      "or inside an obstacle, a sensing unit not of the campaign or twice in a point, a count "
                      "without a mean_dbm, more saturated readings than readings"}),
             openapi_extra=body_schema(CampaignImport, "points with per-SU readings (all or nothing)"))  # fmt: skip
async def import_points(name: str, _: str = Depends(operator_credential), body: CampaignImport = Depends(import_body),
                        state: AppState = Depends(app_state)) -> Any:  # fmt: skip
    """Points whose readings were gathered elsewhere (a robot or total station logged the
    positions). All are checked before any is stored: positions in the hall and out of
    obstacles, sensing units of this campaign, counts consistent with the means. A point that
    lacks an SU's reading, or reports saturated readings, is stored rejected, as a live one
    would be (unless the file gives its own reason)."""
    camp = await run_in_threadpool(state.store.campaign, name)
    if camp.state != "open":
        raise CampaignConflict(f"campaign {name!r} is closed: no more points (start a new campaign)")
    new = [imported(camp.su_ids, state.site, i, p) for i, p in enumerate(body.points)]
    points = await run_in_threadpool(state.store.add_campaign_points, name, new)
    accepted = sum(p.usable for p in points)
    log.info("campaign %s: imported %d points (%d usable)", name, len(points), accepted)
    return {"imported": len(points), "accepted": accepted, "rejected": len(points) - accepted,
            "points": [p.to_dict() for p in points]}  # fmt: skip


def window(body: PointRequest) -> tuple[int, int]:
    """[since_ns, until_ns) of a point request; 422 with the reason when it is not a usable window."""
    now = now_ns()
    if body.dwell_s is not None:
        if body.since_ns is not None or body.until_ns is not None:
            raise ApiError(422, "give either dwell_s or since_ns and until_ns, not both", "invalid")
        return now, now + int(body.dwell_s * 1e9)
    if body.since_ns is None or body.until_ns is None:
        raise ApiError(422, "give dwell_s (s), or both since_ns and until_ns (UTC ns)", "invalid")
    if body.until_ns <= body.since_ns:
        raise ApiError(422, "until_ns must be after since_ns", "invalid")
    if body.until_ns - body.since_ns > MAX_DWELL_S * 1e9:
        raise ApiError(422, f"the window is longer than {MAX_DWELL_S:g} s", "invalid")
    if body.until_ns > now + MAX_DWELL_S * 1e9:
        raise ApiError(422, f"the window ends more than {MAX_DWELL_S:g} s from now", "invalid")
    return body.since_ns, body.until_ns


def imported(su_ids: Sequence[str], site: Site, i: int, p: Any) -> NewPoint:
    """An imported point checked against the campaign and the site (422 naming ``points[i]``), with
    every campaign SU present (an SU the file lacks has no reading) and its rejection reason."""
    where = check_position(site, p.position_m)
    if where:
        raise ApiError(422, f"points[{i}]: {where}", "invalid")
    given: dict[str, Any] = {}
    for j, r in enumerate(p.readings):
        at = f"points[{i}].readings[{j}]"
        if r.su_id not in su_ids:
            raise ApiError(422, f"{at}: {r.su_id!r} is not a sensing unit of this campaign ({', '.join(su_ids)})",
                           "invalid")  # fmt: skip
        if r.su_id in given:
            raise ApiError(422, f"{at}: {r.su_id!r} appears twice in this point", "invalid")
        if r.mean_dbm is None and r.count > 0:
            raise ApiError(422, f"{at}: count is {r.count} but there is no mean_dbm", "invalid")
        if r.saturated > r.count:
            raise ApiError(422, f"{at}: saturated exceeds count", "invalid")
        given[r.su_id] = r
    readings = tuple(SuReading(s, given[s].mean_dbm, given[s].std_db, given[s].count, given[s].saturated)
                     if s in given else SuReading(s, None, None, 0, 0) for s in su_ids)  # fmt: skip
    rejected = p.rejected or rejection_reason(readings, min_count=0)
    return NewPoint(tuple(p.position_m), p.power_dbm, readings, rejected, None, None, "import")
