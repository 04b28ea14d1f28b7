"""``GET /nodes`` (enrolled nodes and their health) and ``GET /snapshots`` (the live engine's output). Reads: a viewer or an operator."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from central.api.responses import AUTH, STORE, errors
from central.api.security import READ
from central.api.state import AppState, app_state
from central.schemas import NodeHealthOut, SnapshotOut

router = APIRouter(tags=["nodes and snapshots"])


@router.get("/nodes", summary="Enrolled nodes and their health", response_model=list[NodeHealthOut],
            dependencies=READ, responses=errors(*AUTH, *STORE))  # fmt: skip
def nodes(state: AppState = Depends(app_state)) -> Any:
    return state.node_report()


@router.get("/snapshots", summary="Recent snapshots (oldest first)", response_model=list[SnapshotOut],
            dependencies=READ, responses=errors(*AUTH, 422, *STORE))  # fmt: skip
def snapshots(limit: int = Query(100, ge=1, le=10_000), since_ns: int | None = Query(None, ge=0, lt=2**63),
              state: AppState = Depends(app_state)) -> Any:  # fmt: skip
    """The newest ``limit`` snapshots with ``t_ns > since_ns``, returned in time order."""
    return [s.to_dict() for s in state.store.snapshots(limit, since_ns)]
