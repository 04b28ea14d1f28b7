"""Counters of the API and their Prometheus text rendering (``GET /api/v1/metrics``)."""

from __future__ import annotations

import threading

from central.store import Store, now_ns


class Metrics:
    """Counters for ``/metrics``. Incremented under one lock (cheap: once per request, not per record)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records = 0
        self.duplicates = 0
        self.batches = 0
        self.context_reports = 0
        self.rejected: dict[tuple[str, str], int] = {}
        self.started_ns = now_ns()

    def ingested(self, records: int, duplicates: int) -> None:
        with self._lock:
            self.batches += 1
            self.records += records - duplicates
            self.duplicates += duplicates

    def context(self, reports: int) -> None:
        with self._lock:
            self.context_reports += reports

    def reject(self, endpoint: str, reason: str) -> None:
        with self._lock:
            key = (endpoint, reason)
            self.rejected[key] = self.rejected.get(key, 0) + 1

    def render(self, store: Store, stale_s: float) -> str:
        with self._lock:
            records, dups, batches, ctx = self.records, self.duplicates, self.batches, self.context_reports
            rejected = sorted(self.rejected.items())
        out: list[str] = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                lab = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
                out.append(f"{name}{{{lab}}} {_num(value)}" if lab else f"{name} {_num(value)}")

        metric("rftwin_ingest_records_total", "counter", "Measurement records stored (new ones).", [({}, records)])
        metric("rftwin_ingest_duplicates_total", "counter", "Records received again and ignored (idempotent resends).",
               [({}, dups)])  # fmt: skip
        metric("rftwin_ingest_batches_total", "counter", "Ingest batches acknowledged.", [({}, batches)])
        metric("rftwin_context_reports_total", "counter", "Transmitter context reports stored.", [({}, ctx)])
        metric("rftwin_rejected_requests_total", "counter", "Requests refused, by endpoint and reason.",
               [({"endpoint": e, "reason": r}, n) for (e, r), n in rejected])  # fmt: skip
        metric("rftwin_alarms_active", "gauge", "Alarms currently active.", [({}, store.count_active_alarms())])
        health = store.node_health(stale_s)
        metric("rftwin_node_last_seen_timestamp_seconds", "gauge", "Receive time of each node's latest batch (Unix s).",
               [({"node": h.node_id}, h.last_seen_ns / 1e9) for h in health if h.last_seen_ns is not None])  # fmt: skip
        metric("rftwin_node_records_total", "counter", "Records stored per node.",
               [({"node": h.node_id}, h.records) for h in health])  # fmt: skip
        metric("rftwin_node_healthy", "gauge", "1 if the node was seen within stale_s and is not saturated.",
               [({"node": h.node_id}, int(h.healthy)) for h in health])  # fmt: skip
        metric("rftwin_uptime_seconds", "gauge", "Seconds since the API started.", [({}, (now_ns() - self.started_ns) / 1e9)])
        return "\n".join(out) + "\n"


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))
