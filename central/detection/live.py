"""The detection engine inside the running service: fed by ingest, persisted in the store, published live.

:class:`DetectionEngine` computes; this module decides *when* it runs and *where its results go*:

- every ingested batch updates the engine and triggers an evaluation if one window has passed
  since the last (event-driven: an alarm is computed within a window of the data that causes it);
  a timer thread evaluates too, so that a silent node turns stale and alarms clear when data stops;
- raised alarms are inserted in the store when they are raised (the engine's ``new_alarm_id``
  callback), updates and clears are written through, every transition is published on the bus;
- every snapshot is published (the dashboard is live at the evaluation rate); the store keeps one
  snapshot per ``STORE_PERIOD_S`` plus every anomalous one (10 Hz for 30 days would be ~26 M rows);
- the residuals of the last ``LEARN_BUFFER`` evaluations stay in memory, so that learning normal
  statistics (:meth:`LiveDetection.learn`) uses the full rate, not the stored subsample.

The fitted detector is a model in the store (kind ``detector``) with its files under the models
directory; the active one is loaded at start, and :meth:`learn` activates a new one without restart.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from central.detection.alarms import AlarmTransition
from central.detection.engine import REALLOCATING, DetectionEngine, EngineConfig
from central.detection.sequential import CusumSettings
from central.live import Alarm, Snapshot
from central.store import StoreCorrupt
from central.twin import Twin
from central.twin.solvers import TWIN_FIDELITY
from models.detectors import DetectorError

log = logging.getLogger("rftwin.central.detection")
STORE_PERIOD_S = 1.0
LEARN_BUFFER = 36_000  # one hour at 10 evaluations per second
MIN_LEARN_SNAPSHOTS = 50
MODEL_KIND = "detector"


class LearnError(ValueError):
    """Learning refused: too little data, alarms in the window, or no usable residuals."""


@dataclass(frozen=True)
class LearnResult:
    model_id: int
    detector: str
    threshold: float
    n_snapshots: int
    since_ns: int
    until_ns: int
    # the spectral test, fitted on the same window when enough snapshots had sub-band readings
    spectral_threshold: float | None = None
    spectral_snapshots: int = 0


class LiveDetection:
    def __init__(self, state, twin: Twin, config: EngineConfig):
        self.state = state
        self.store = state.store
        self.twin = twin
        self.engine = DetectionEngine.from_twin(twin, config, new_alarm_id=self._insert_alarm,
                                                node_to_su=self.store.node_su_map())  # fmt: skip
        self.engine.adopt_alarms(self.store.alarms("active"))
        active = self.store.active_model(MODEL_KIND)
        if active is not None:
            try:
                det = self.engine.load_detectors(active.path)
                log.info("detector %s (model %d, threshold %.3g) loaded from %s", det.name, active.id, det.threshold,
                         active.path)  # fmt: skip
            except (OSError, DetectorError, ValueError) as e:
                log.error("active detector model %d at %s cannot be used (%s): only saturation alarms until "
                          "normal statistics are learned again", active.id, active.path, e)  # fmt: skip
        else:
            log.warning("no detector learned yet: only saturation alarms until `learn` has run")
        # (t_ns, residuals dB, the twin's prediction dBm: the point-source detectors learn from both, anomalous,
        # per-sub-band measured and expected dBm (n_su, K) or None: what the spectral test learns from)
        self._recent: collections.deque[tuple] = collections.deque(maxlen=LEARN_BUFFER)
        self._last_stored_ns = 0
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self._record_lock = threading.Lock()

    # ------------------------------------------------------------------ service hooks

    def on_ingest(self, node_id: str, measurements) -> None:
        if not self.engine.assembler.knows_node(node_id):  # enrolled after start
            self.engine.assembler.set_node_map(self.store.node_su_map())
        self.engine.on_measurements(measurements)
        self._evaluate_if_due()

    def on_context(self, contexts) -> None:
        self.engine.on_context(contexts)

    def start(self) -> None:
        self._timer = threading.Thread(target=self._timer_loop, name="detection-timer", daemon=True)
        self._timer.start()

    def stop(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.join(timeout=5)

    # ------------------------------------------------------------------ evaluation

    def _timer_loop(self) -> None:
        period_s = self.engine.config.window_s
        while not self._stop.wait(period_s):
            try:
                self._evaluate_if_due()
                self.state.publish_nodes()
            except StoreCorrupt:  # the store said so once (critical) and /health says so all along
                log.debug("evaluation not recorded: the store refuses writes", exc_info=True)
            except Exception:  # the timer must survive anything one evaluation does
                log.exception("periodic evaluation failed")

    def _evaluate_if_due(self) -> None:
        result = self.engine.maybe_evaluate(time.time_ns())
        if result is not None:
            self._record(*result)

    def _record(self, snap: Snapshot, transitions: list[AlarmTransition]) -> None:
        with self._record_lock:
            r, sr = self.engine.last_residuals, self.engine.last_spectral
            if r is not None and snap.reason != REALLOCATING:  # readings of other allocations: not normal data
                spec = None
                if sr is not None and sr.t_ns == r.t_ns:
                    meas = np.where(sr.usable[:, None], sr.measured_dbm, np.nan)
                    spec = (meas.astype(np.float32), sr.predicted_dbm.astype(np.float32),
                            self.engine.allocation_groups(r.txs).astype(np.int8))  # fmt: skip
                self._recent.append((snap.t_ns, np.array(r.residual_db, dtype=np.float32),
                                     np.array(r.predicted_dbm, dtype=np.float32), snap.anomalous, spec))  # fmt: skip
            if snap.anomalous or transitions or snap.t_ns - self._last_stored_ns >= STORE_PERIOD_S * 1e9:
                self.store.add_snapshot(snap)
                self._last_stored_ns = snap.t_ns
            for t in transitions:
                alarm = t.alarm if t.event == "raised" else self.store.put_alarm(t.alarm)
                self.state.bus.publish("alarm", alarm.to_dict())
                log.warning("alarm %d %s: %s, SUs %s, suspected position %s, peak score %s", alarm.id, t.event,
                            alarm.kind, ",".join(alarm.affected_sus), alarm.suspected_position_m,
                            alarm.peak_score)  # fmt: skip
            self.state.bus.publish("snapshot", snap.to_dict())

    def _insert_alarm(self, alarm: Alarm) -> int:
        stored = self.store.open_alarm(alarm.kind, alarm.start_ns, alarm.peak_score, alarm.affected_sus,
                                       alarm.suspected_position_m, alarm.interference)  # fmt: skip
        return stored.id

    # ------------------------------------------------------------------ learning normal statistics

    def learn(self, since_ns: int, until_ns: int, detector: str | None = None, target_far: float | None = None,
              contamination: float = 0.0) -> LearnResult:  # fmt: skip
        """Fit the detector on the residuals evaluated in [since_ns, until_ns] and make it active.

        Refused (:class:`LearnError`) when the window holds fewer than MIN_LEARN_SNAPSHOTS usable
        snapshots, or overlaps an alarm: normal statistics must come from a normal period.
        """
        if until_ns <= since_ns:
            raise LearnError("the learning window is empty (until <= since)")
        overlapping = [a for a in self.store.alarms(limit=10_000)
                       if a.start_ns <= until_ns and (a.end_ns is None or a.end_ns >= since_ns)]  # fmt: skip
        if overlapping:
            ids = ", ".join(str(a.id) for a in overlapping[:5])
            raise LearnError(f"the window overlaps alarm(s) {ids}: learn from a period without alarms")
        with self._record_lock:
            rows = [row for row in self._recent if since_ns <= row[0] <= until_ns]
        window = [(row[1], row[2]) for row in rows]
        spectral = [row[4] for row in rows if row[4] is not None]
        if len(self._recent) == self._recent.maxlen and self._recent[0][0] > since_ns:
            log.warning("learning window starts before the in-memory buffer: using what it holds")
        n_su = len(self.engine.su_ids)
        x = np.array([w[0] for w in window], dtype=np.float64).reshape(-1, n_su)
        pred = np.array([w[1] for w in window], dtype=np.float64).reshape(-1, n_su)
        usable = np.isfinite(x).sum(axis=1) >= self.engine.min_usable_sus
        x, pred = x[usable], pred[usable]
        if len(x) < MIN_LEARN_SNAPSHOTS:
            raise LearnError(f"only {len(x)} usable snapshots in the window (need {MIN_LEARN_SNAPSHOTS}): "
                             "run the nodes longer, or check that the context feed and nodes are live")  # fmt: skip
        prov = {"since_ns": since_ns, "until_ns": until_ns, "site_hash": self.twin.site.content_hash(),
                "twin_key": self.twin.maps.key, "learned_ns": time.time_ns()}  # fmt: skip
        try:
            det = self.engine.learn(x, kind=detector, target_far=target_far, contamination=contamination,
                                    predicted_dbm=pred, provenance=prov)  # fmt: skip
        except DetectorError as e:
            raise LearnError(str(e)) from None
        spec_threshold = None
        if len(spectral) >= MIN_LEARN_SNAPSHOTS and self.engine.spectral is not None:
            try:
                sd = self.engine.learn_spectral(np.array([m for m, _, _ in spectral], dtype=np.float64),
                                                np.array([p for _, p, _ in spectral], dtype=np.float64),
                                                np.array([g for _, _, g in spectral], dtype=np.int64),
                                                target_far=target_far, provenance=prov)  # fmt: skip
                spec_threshold = float(sd.threshold)
            except DetectorError as e:
                log.warning("spectral test not learned: %s", e)
        elif self.engine.spectral is not None:
            log.warning("spectral test not learned: only %d snapshots with sub-band readings of the site's band plan "
                        "in the window (need %d)", len(spectral), MIN_LEARN_SNAPSHOTS)  # fmt: skip
        directory = self.state.config.models_dir / f"detector-{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**6}"
        self.engine.save_detectors(directory)
        model = self.store.add_model(MODEL_KIND, directory, {**prov, "detector": det.name, "threshold": det.threshold,
                                                              "n_snapshots": int(len(x)), "spectral_threshold": spec_threshold,
                                                              "spectral_snapshots": len(spectral)})  # fmt: skip
        log.info("learned %s on %d snapshots: threshold %.3g (model %d); spectral test: %s", det.name, len(x),
                 det.threshold, model.id, "none" if spec_threshold is None else f"threshold {spec_threshold:.3g} on "
                 f"{len(spectral)} snapshots")  # fmt: skip
        return LearnResult(model.id, det.name, float(det.threshold), int(len(x)), since_ns, until_ns, spec_threshold,
                           len(spectral) if spec_threshold is not None else 0)  # fmt: skip


def engine_config(cfg) -> EngineConfig:
    """The ``[detection]`` section of the central config as the engine's settings."""
    d = cfg.detection
    return EngineConfig(window_s=d.window_s, stale_s=d.stale_s, raise_k=d.raise_after, raise_n=d.of_last,
                        clear_m=d.clear_after, detector=d.detector, integration=d.integration,
                        cusum=CusumSettings(d.cusum_drift, d.cusum_threshold))  # fmt: skip


def create_engine(state) -> LiveDetection:
    """The service's engine factory: load (or trace, first time) the site's twin, then the engine.
    With ``[twin] predictor = "surrogate"`` the twin's predictor is the surrogate model instead."""
    t0 = time.perf_counter()
    tc = getattr(state.config, "twin", None)
    if tc is not None and tc.predictor == "surrogate":
        from central.twin.surrogate import surrogate_twin

        twin = surrogate_twin(state.site, tc.surrogate_dir)
        how = f"{twin.predictor.kind} surrogate from {tc.surrogate_dir}"
    else:
        from central.twin.progress import tracing_progress_log

        settings = tc.solver_settings() if tc is not None else TWIN_FIDELITY
        # a trace (minutes) shows in the journal
        twin = Twin.load(state.site, settings, progress=tracing_progress_log(log))
        how = "from cache" if twin.from_cache else "ray-traced"
    log.info("twin of %s loaded (%s, %.1f s)", state.site.name, how, time.perf_counter() - t0)
    return LiveDetection(state, twin, engine_config(state.config))
