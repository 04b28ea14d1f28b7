"""What the API serves from: :class:`AppState`, and :func:`app_state`, the dependency that hands it
to a route (``state: AppState = Depends(app_state)``; :func:`central.api.create_app` puts it on
``app.state.rftwin``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from central.api.metrics import Metrics
from central.config import CentralConfig
from central.events import EventBus
from central.live import TxContext
from central.store import Store
from central.twin.site import Site
from node.protocol import HEALTH_PATH, INGEST_PATH, Measurement

API_PREFIX = "/api/v1"
assert INGEST_PATH == API_PREFIX + "/ingest" and HEALTH_PATH == API_PREFIX + "/health"
NODES_EVENT_PERIOD_S = 1.0

OnIngest = Callable[[str, Sequence[Measurement]], None]
OnContext = Callable[[Sequence[TxContext]], None]


@dataclass
class AppState:
    """What the API serves from. ``on_ingest(node_id, measurements)`` and ``on_context(contexts)`` are
    called (in a worker thread) after the data is durably stored: the live detection engine plugs in
    there. They should be quick (hand the data to the engine's own thread); an exception in them is
    logged and does not fail the request (the data is stored either way)."""

    config: CentralConfig
    store: Store
    bus: EventBus
    site: Site
    on_ingest: OnIngest | None = None
    on_context: OnContext | None = None
    # learn(since_ns, until_ns, detector, target_far, contamination) -> LearnResult; raises ValueError
    # (e.g. LearnError) when refused. Set by the live detection engine.
    learn: Callable[..., Any] | None = None
    metrics: Metrics = field(default_factory=Metrics)
    # node_id -> the node.protocol.SpoolState dict of its latest stored batch that carried one (GET
    # /nodes shows it). In memory: a node sends it in every batch, so a restart forgets it for a batch.
    node_spool: dict[str, dict] = field(default_factory=dict)
    _last_nodes_event: float = 0.0

    def publish_nodes(self, force: bool = False) -> None:
        """Node health to the event bus, at most once per NODES_EVENT_PERIOD_S (unless forced)."""
        now = time.monotonic()
        if not force and now - self._last_nodes_event < NODES_EVENT_PERIOD_S:
            return
        self._last_nodes_event = now
        self.bus.publish("nodes", {"nodes": self.node_report()})

    def node_report(self) -> list[dict]:
        """Every node's health (``GET /nodes``, the dashboard's ``nodes`` event), with what its latest
        batch said about its spool (``spool``: None when nothing since this process started)."""
        health = self.store.node_health(self.config.detection.stale_s, band_plan=self.site.band_plan.fingerprint)
        return [{**h.to_dict(), "spool": self.node_spool.get(h.node_id)} for h in health]


async def app_state(request: Request) -> AppState:
    """The :class:`AppState` of the app serving ``request`` (a FastAPI dependency; async, so that
    resolving it costs no trip through the threadpool)."""
    return request.app.state.rftwin
