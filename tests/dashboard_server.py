"""A real uvicorn server with only the dashboard routes, and synthetic but well-formed live records.

The records are built from central/live.py's dataclasses (``to_dict``), as the detection loop would
publish them, so the page and the SSE stream are tested against the real wire format.
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

import numpy as np
import uvicorn
from fastapi import FastAPI

from central.dashboard import DashboardRecorder, dashboard_router
from central.events import EventBus
from central.live import Alarm, Interference, LikelihoodMap, NodeHealth, Snapshot, SuState, TxContext
from central.twin.site import Site
from tests.central_helpers import VIEWER_TOKEN

JAMMER_XY = (25.0, 15.5)  # in the aisle between production lines 5 and 6
THRESHOLD = 3.0
# The scheduler's (fixed) allocations of the three legitimate transmitters over the 16 sub-bands
ALLOCATIONS = {"tx1": (1, 2, 3), "tx2": (6, 7), "tx3": (11, 12, 13, 14)}


def secured_app(bus: EventBus, site: Site) -> FastAPI:
    """A bare app with what the dashboard's routes rely on: the API's state (a real store in a
    temporary folder, the test config's viewer and operator tokens), its error answers, its security
    state, the login (``/api/v1/session``) and the alarms (``/api/v1/alarms``, with the operator's
    acknowledgement)."""
    from central.api import AppState, alarms, problems, security, session
    from central.store import Store
    from tests.central_helpers import central_config

    cfg = central_config(Path(tempfile.mkdtemp(prefix="rftwin-dashboard-")))
    app = FastAPI()
    app.state.rftwin = AppState(cfg, Store(cfg.db_path), bus, site)
    problems.install_error_handlers(app)
    security.install_security(app, cfg.limits)
    app.include_router(session.router, prefix="/api/v1")
    app.include_router(alarms.router, prefix="/api/v1")
    return app


@contextlib.contextmanager
def login(url: str, token: str = VIEWER_TOKEN) -> Iterator[httpx.Client]:
    """``with login(url) as browser:`` a client logged in to the dashboard at ``url`` (it carries the
    session cookie, as a browser does)."""
    with httpx.Client(base_url=url, timeout=10) as client:
        r = client.post("/api/v1/session", json={"token": token})
        assert r.status_code == 201, r.text
        yield client


class DashboardServer:
    """``with DashboardServer(bus, site) as srv:`` serves the dashboard on ``srv.url`` (loopback)."""

    def __init__(self, bus: EventBus, site: Site, heartbeat_s: float = 15.0,
                 recorder: DashboardRecorder | None = None, app: FastAPI | None = None):  # fmt: skip
        """Serves ``app`` if given (its dashboard already mounted), else an app with only the dashboard
        (and what it needs: :func:`secured_app`)."""
        if app is None:
            self.recorder = recorder or DashboardRecorder()
            app = secured_app(bus, site)
            app.include_router(dashboard_router(bus, site, heartbeat_s=heartbeat_s, recorder=self.recorder))
        else:
            self.recorder = app.state.dashboard_recorder
        self.app = app
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=1)  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="dashboard-uvicorn", daemon=True)
        self.url = ""

    def __enter__(self) -> DashboardServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    @property
    def store(self):
        """The app's store (:class:`central.store.Store`): open alarms in it as the detection loop does."""
        return self.app.state.rftwin.store

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.recorder.stop()


# --------------------------------------------------------------------------------------------------
# Synthetic records


def _dist(a, b) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def tx_contexts(t_ns: int) -> tuple[TxContext, ...]:
    """Three legitimate transmitters moving slowly along the aisles."""
    phase = (t_ns / 1e9) / 60.0
    paths = [((3.0, 5.0), (3.0, 35.0)), ((14.5, 20.0), (25.5, 20.0)), ((36.5, 35.0), (36.5, 5.0))]
    out = []
    for i, (a, b) in enumerate(paths):
        f = 0.5 + 0.5 * math.sin(2 * math.pi * phase + i)
        tx_id = f"tx{i + 1}"
        per_subband = 20.0 - 10 * math.log10(len(ALLOCATIONS[tx_id]))  # 20 dBm in all, spread evenly
        out.append(TxContext(tx_id, t_ns, (a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]), 1.5), 20.0,
                             allocation=tuple((sb, per_subband) for sb in ALLOCATIONS[tx_id])))  # fmt: skip
    return tuple(out)


def _path_loss_db(a, b) -> float:
    return 40.0 + 25.0 * math.log10(1 + _dist(a, b))


def _dbm_sum(values) -> float:
    return 10 * math.log10(sum(10 ** (v / 10) for v in values))


def subband_powers(site: Site, su_pos, txs: tuple[TxContext, ...], t_ns: int, su_index: int,
                   jam_subbands: tuple[int, ...] = (), jam_eirp_dbm: float = 10.0) -> tuple[list[float], list[float]]:  # fmt: skip
    """(measured, predicted) dBm per sub-band at one SU: the twin's expectation from the allocations plus
    the noise in each sub-band's width; measured = that with 1 dB of noise, plus a narrowband jammer at
    JAMMER_XY in ``jam_subbands`` (``jam_eirp_dbm`` in all). Its own generator (seeded by time and
    SU), so the wideband numbers of :func:`snapshot` stay what they were."""
    plan = site.band_plan
    rng = np.random.default_rng([t_ns % 2**63, su_index])
    predicted = []
    for b, share in enumerate(plan.shares_db):
        parts = [site.noise_floor_dbm + share]
        parts += [
            p - _path_loss_db(su_pos, t.position_m) for t in txs for sb, p in t.allocation or () if sb == b
        ]
        predicted.append(_dbm_sum(parts))
    measured = [p + float(rng.normal(0.0, 1.0)) for p in predicted]
    for b in jam_subbands:
        jam = jam_eirp_dbm - 10 * math.log10(len(jam_subbands)) - _path_loss_db(su_pos, JAMMER_XY)
        measured[b] = _dbm_sum([measured[b], jam])
    return measured, predicted


def snapshot(site: Site, t_ns: int, rng: np.random.Generator, jammer: bool = False,
             stale: frozenset[str] = frozenset(), saturated: frozenset[str] = frozenset(),
             jam_subbands: tuple[int, ...] = ()) -> Snapshot:  # fmt: skip
    """A snapshot as the detection loop publishes it, wideband and per sub-band; ``jammer``: the wideband
    residuals rise near JAMMER_XY, and with ``jam_subbands`` a narrowband jammer there shows in those
    sub-bands (stale SUs measured nothing; saturated ones' sub-band readings are still shown)."""
    txs = tx_contexts(t_ns)
    sus = []
    for i, su in enumerate(site.sensing_units):
        pos = su.position_m
        sb_meas, sb_pred = subband_powers(site, pos, txs, t_ns, i, jam_subbands if jammer else ())
        spectral = {"subband_measured_dbm": tuple(None if su.id in stale else round(v, 2) for v in sb_meas),
                    "subband_predicted_dbm": tuple(round(v, 2) for v in sb_pred)}  # fmt: skip
        predicted = max(
            -95.0, 20.0 - 40.0 - 25.0 * math.log10(1 + min(_dist(pos, t.position_m) for t in txs))
        )
        residual = float(rng.normal(0.0, 1.5))
        if jammer:
            residual += max(0.0, 22.0 - 1.1 * _dist(pos, JAMMER_XY))
        if su.id in stale:
            sus.append(SuState(su.id, pos, None, predicted, None, True, False, **spectral))
        elif su.id in saturated:
            sus.append(SuState(su.id, pos, -18.0, predicted, None, False, True, **spectral))
        else:
            sus.append(
                SuState(su.id, pos, predicted + residual, predicted, residual, False, False, **spectral)
            )
    valid = [s.residual_db for s in sus if s.residual_db is not None]
    score = float(np.mean(sorted(valid, reverse=True)[:6])) if valid else None
    anomalous = bool(jammer and score is not None and score > THRESHOLD) or bool(saturated)
    reason = ("saturation" if saturated and not anomalous else "residual") if anomalous else ""
    busy = tuple(sorted({sb for t in txs for sb, _ in t.allocation or ()}))
    return Snapshot(t_ns, tuple(sus), txs, score, THRESHOLD, anomalous, "energy-detector", reason,
                    JAMMER_XY if anomalous else None, busy)  # fmt: skip


def affected(snap: Snapshot, min_db: float = 6.0) -> tuple[str, ...]:
    return tuple(
        s.su_id for s in snap.sus if s.saturated or (s.residual_db is not None and s.residual_db >= min_db)
    )


def nodes(site: Site, now_ns: int, stale: frozenset[str] = frozenset(), saturated: frozenset[str] = frozenset(),
          records: int = 1000, spool_full: frozenset[str] = frozenset()) -> dict:  # fmt: skip
    """The ``nodes`` event: every SU's health, with the spool state its batches report (``spool_full``:
    nodes whose disk is full and that drop their oldest readings)."""
    out = []
    for i, su in enumerate(site.sensing_units):
        seen = now_ns - (int(45e9) if su.id in stale else int(0.4e9))
        sat = su.id in saturated
        out.append(NodeHealth(su.id, su.position_m, seen, seen - int(0.05e9), -18.0 if sat else -62.0 - i,
                              records + 17 * i, sat, not sat and su.id not in stale,
                              "front end overloaded" if sat else "no record for 45 s" if su.id in stale else ""))  # fmt: skip
    spools = {su.id: {"full": su.id in spool_full, "dropped": 40 if su.id in spool_full else 0, "refused": 0,
                      "free_bytes": 0 if su.id in spool_full else 10**9} for su in site.sensing_units}  # fmt: skip
    return {"t_ns": now_ns, "nodes": [{**n.to_dict(), "spool": spools[n.node_id]} for n in out]}


def alarm(
    alarm_id: int, snap: Snapshot, start_ns: int, state: str = "active", end_ns: int | None = None
) -> Alarm:
    return Alarm(alarm_id, "residual", state, start_ns, end_ns, snap.score, affected(snap), JAMMER_XY)


def likelihood_map(site: Site, centre=JAMMER_XY, sigma_m: float = 2.0, cell_m: float = 1.0) -> LikelihoodMap:
    """A Gaussian likelihood around ``centre`` on ``cell_m`` cells over the hall (0 inside obstacles), 1 at
    its peak, as :class:`central.live.LikelihoodMap` carries it."""
    cols, rows = int(site.hall_size_m[0] / cell_m), int(site.hall_size_m[1] / cell_m)
    values = []
    for r in range(rows):
        for c in range(cols):
            x, y = (c + 0.5) * cell_m, (r + 0.5) * cell_m
            inside = any(o.min_m[0] <= x <= o.min_m[0] + o.size_m[0] and o.min_m[1] <= y <= o.min_m[1] + o.size_m[1]
                         for o in site.obstacles)  # fmt: skip
            values.append(0.0 if inside else math.exp(-(_dist((x, y), centre) ** 2) / (2 * sigma_m**2)))
    peak = max(values)
    return LikelihoodMap((0.0, 0.0), cell_m, (rows, cols), tuple(round(v / peak, 4) for v in values))


def region_90(lk: LikelihoodMap, mass: float = 0.9) -> tuple[tuple[float, float], ...]:
    """Centres of the fewest cells of ``lk`` that hold ``mass`` of its likelihood."""
    rows, cols = lk.shape
    order = sorted(range(rows * cols), key=lambda k: -lk.values[k])
    total, acc, out = sum(lk.values), 0.0, []
    for k in order:
        if acc >= mass * total:
            break
        acc += lk.values[k]
        r, c = divmod(k, cols)
        out.append((lk.origin_m[0] + (c + 0.5) * lk.cell_m, lk.origin_m[1] + (r + 0.5) * lk.cell_m))
    return tuple(out)


def interference(site: Site, subbands: tuple[int, ...] = (9,), interference_class: str = "narrowband",
                 eirp_dbm: float | None = 10.0, time_pattern: str = "continuous", duty: float | None = None,
                 mimics_tx: str | None = None, with_likelihood: bool = True) -> Interference:  # fmt: skip
    """What a characterised alarm says about a jammer at JAMMER_XY (as central.detection would fill it)."""
    lk = likelihood_map(site)
    text = site.band_plan.describe(subbands)
    x, y = JAMMER_XY
    if interference_class == "wideband":
        avoid, measure = (), f"wideband: move band; locate and remove near ({x:.0f}, {y:.0f}) m"
    elif interference_class == "deceptive":
        avoid, measure = (
            tuple(subbands),
            f"emitter mimicking TX {mimics_tx} in its sub-bands: locate near ({x:.0f}, {y:.0f}) m",
        )
    else:
        avoid, measure = (
            tuple(subbands),
            f"exclude {text} from scheduling; locate and remove near ({x:.0f}, {y:.0f}) m",
        )
    return Interference(interference_class, tuple(subbands), text, avoid, eirp_dbm, JAMMER_XY, region_90(lk),
                        lk.cell_m, time_pattern, duty, mimics_tx, measure, lk if with_likelihood else None)  # fmt: skip


# --------------------------------------------------------------------------------------------------
# A minimal SSE client


def sse_events(lines: Iterator[str]) -> Iterator[dict]:
    """Parse Server-Sent Events from text lines: yields {"id", "event", "data"} and {"comment"}."""
    event: dict = {}
    for line in lines:
        if line == "":
            if "data" in event:
                event["data"] = json.loads(event["data"])
                yield event
            event = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                event["data"] = event["data"] + "\n" + value if "data" in event else value
            elif name in ("id", "event", "retry"):
                event[name] = value
