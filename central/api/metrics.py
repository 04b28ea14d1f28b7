"""Counters of the API and their Prometheus text rendering (``GET /api/v1/metrics``)."""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Sequence

from central.store import Store, now_ns

# Upper bounds (s) of the ingest-age histogram: ms resolution where a healthy loopback node lands
# (a few ms), coarser out to a minute (a node replaying its spool after an outage).
AGE_BUCKETS_S = (0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009, 0.010, 0.012, 0.014, 0.016,
                 0.018, 0.020, 0.025, 0.030, 0.040, 0.050, 0.075, 0.100, 0.150, 0.250, 0.500, 1.0, 2.5, 5.0,
                 10.0, 30.0, 60.0)  # fmt: skip


class Metrics:
    """Counters for ``/metrics``. Incremented under one lock, once per request (a batch's age buckets are
    found before the lock is taken)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records = 0
        self.duplicates = 0
        self.batches = 0
        self.context_reports = 0
        self.rejected: dict[tuple[str, str], int] = {}
        self.started_ns = now_ns()
        self.age_counts = [0] * (len(AGE_BUCKETS_S) + 1)  # per bucket, the last one +Inf (not cumulative)
        self.age_sum_s = 0.0

    def ingested(self, records: int, duplicates: int, committed_ns: int | None = None,
                 t_ns: Sequence[int] = ()) -> None:  # fmt: skip
        """One acknowledged batch. With ``committed_ns`` (taken once the store's commit returned: the
        records are durable) and the records' ``t_ns``, each record's age at its durable commit goes
        into ``rftwin_ingest_age_seconds``: how stale the twin's inputs are, end to end (the node's
        DSP, spool and upload, and the store's write lock and fsync). A batch with resends is left
        out: its records were stored by an earlier batch, and their age now says nothing."""
        ages = [(committed_ns - t) / 1e9 for t in t_ns] if committed_ns is not None and not duplicates else []
        buckets = Counter(bisect.bisect_left(AGE_BUCKETS_S, a) for a in ages)
        with self._lock:
            self.batches += 1
            self.records += records - duplicates
            self.duplicates += duplicates
            for i, n in buckets.items():
                self.age_counts[i] += n
            self.age_sum_s += sum(ages)

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
            age_counts, age_sum_s = list(self.age_counts), self.age_sum_s
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
        out.append("# HELP rftwin_ingest_age_seconds Age of each stored reading at its durable commit (commit time "
                   "minus the reading's t_ns).")
        out.append("# TYPE rftwin_ingest_age_seconds histogram")
        cumulative = 0
        for le, n in zip((*map(repr, AGE_BUCKETS_S), "+Inf"), age_counts):
            cumulative += n
            out.append(f'rftwin_ingest_age_seconds_bucket{{le="{le}"}} {cumulative}')
        out.append(f"rftwin_ingest_age_seconds_sum {_num(age_sum_s)}")
        out.append(f"rftwin_ingest_age_seconds_count {cumulative}")
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
