"""Measurements (idempotent ingest), transmitter context, snapshots and the retention purge."""

from __future__ import annotations

import json
from collections.abc import Sequence

from central.live import Snapshot, TxContext
from central.store.base import StoreBase, StoreError, now_ns
from central.store.records import _finite, _floats_json, allocation_tuple, snapshot_from_dict
from node.protocol import IngestAck, IngestBatch, Measurement


class DataQueries(StoreBase):
    # ------------------------------------------------------------------------------------ ingest
    def ingest(self, batch: IngestBatch, received_ns: int | None = None) -> IngestAck:
        """Store a validated batch, idempotent on (node_id, seq): one transaction, durably committed
        before this returns. The ack lists every seq of the batch (new or already stored)."""
        received_ns = now_ns() if received_ns is None else received_ns
        recs = batch.records
        rows = [(m.node_id, m.seq, m.t_ns, m.f_center_hz, m.bandwidth_hz, m.power_dbm,
                 _floats_json(m.subband_powers_dbm), m.saturated, m.clip_fraction,
                 m.gain_db, received_ns, m.band_plan, json.dumps(list(m.subband_ids))) for m in recs]  # fmt: skip
        newest = max(recs, key=lambda m: (m.t_ns, m.seq))
        with self._write() as c:
            before = c.total_changes
            # Only the (node_id, seq) conflict is ignored (INSERT OR IGNORE would also drop a row that
            # breaks NOT NULL, and the ack would then promise a record that is not there).
            c.executemany("INSERT INTO measurements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                          "ON CONFLICT (node_id, seq) DO NOTHING", rows)  # fmt: skip
            inserted = c.total_changes - before
            c.execute("UPDATE nodes SET records = records + ?, last_seen_ns = ? WHERE id = ?",
                      [inserted, received_ns, batch.node_id])  # fmt: skip
            latest = (newest.t_ns, newest.seq, newest.power_dbm, newest.saturated, newest.band_plan)
            if inserted < len(recs):  # resends: the node's latest reading is the *stored* one, not a resent copy
                latest = c.execute(f"SELECT t_ns, seq, power_dbm, saturated, band_plan FROM measurements WHERE node_id = ? AND seq "
                                   f"IN ({','.join('?' * len(recs))}) ORDER BY t_ns DESC, seq DESC LIMIT 1",
                                   [batch.node_id, *(m.seq for m in recs)]).fetchone()  # fmt: skip
            t_ns, seq, power, saturated, plan = latest
            c.execute("UPDATE nodes SET last_t_ns = ?, last_seq = ?, last_power_dbm = ?, last_saturated = ?, "
                      "last_band_plan = ? WHERE id = ? AND (last_t_ns IS NULL OR last_t_ns < ? OR (last_t_ns = ? AND last_seq < ?))",
                      [t_ns, seq, power, saturated, plan, batch.node_id, t_ns, t_ns, seq])  # fmt: skip
        return IngestAck(tuple(m.seq for m in recs), len(recs) - inserted)

    def measurements(self, node_id: str, since_ns: int | None = None, limit: int = 1000) -> list[Measurement]:
        """A node's records with t_ns > since_ns, oldest first (at most ``limit``)."""
        rows = self._r().execute(
            "SELECT node_id, seq, t_ns, f_center_hz, bandwidth_hz, power_dbm, subband_powers_dbm, saturated, "
            "clip_fraction, gain_db, band_plan, subband_ids FROM measurements WHERE node_id = ? AND t_ns > ? ORDER BY seq "
            "LIMIT ?",
            [node_id, -1 if since_ns is None else since_ns, limit],
        ).fetchall()
        return [Measurement(r[0], r[1], r[2], r[3], r[4], r[5], tuple(json.loads(r[6])), bool(r[7]), r[8], r[9], r[10],
                            tuple(json.loads(r[11]))) for r in rows]  # fmt: skip

    def seqs(self, node_id: str) -> list[int]:
        return [s for (s,) in self._r().execute("SELECT seq FROM measurements WHERE node_id = ? ORDER BY seq",
                                                [node_id]).fetchall()]  # fmt: skip

    def count(self, table: str) -> int:
        if table not in ("nodes", "measurements", "context", "snapshots", "alarms", "models", "campaigns",
                         "campaign_points", "campaign_readings"):
            raise StoreError(f"no table {table!r}")
        return self._r().execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    # ----------------------------------------------------------------------------------- context
    def add_context(self, txs: Sequence[TxContext], received_ns: int | None = None) -> int:
        """Store context reports; a repeated (tx_id, t_ns) replaces the earlier report."""
        received_ns = now_ns() if received_ns is None else received_ns
        rows = [(t.tx_id, t.t_ns, *map(float, t.position_m), t.power_dbm, t.f_center_hz, t.bandwidth_hz, received_ns,
                 None if t.allocation is None else json.dumps([list(a) for a in t.allocation])) for t in txs]  # fmt: skip
        with self._write() as c:
            c.executemany("INSERT OR REPLACE INTO context VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def latest_context(self, at_ns: int | None = None, max_age_s: float | None = None) -> list[TxContext]:
        """The latest report of every transmitter at time ``at_ns`` (default: the newest), optionally
        only those not older than ``max_age_s`` before ``at_ns`` (or now)."""
        at = (1 << 63) - 1 if at_ns is None else at_ns
        oldest = -1
        if max_age_s is not None:
            oldest = (now_ns() if at_ns is None else at_ns) - int(max_age_s * 1e9)
        rows = self._r().execute(
            "SELECT c.tx_id, c.t_ns, c.x, c.y, c.z, c.power_dbm, c.f_center_hz, c.bandwidth_hz, c.allocation FROM context c "
            "JOIN (SELECT tx_id, max(t_ns) AS t FROM context WHERE t_ns <= ? GROUP BY tx_id) l "
            "ON c.tx_id = l.tx_id AND c.t_ns = l.t WHERE c.t_ns >= ? ORDER BY c.tx_id",
            [at, oldest],
        ).fetchall()
        return [TxContext(r[0], r[1], (r[2], r[3], r[4]), r[5], r[6], r[7], allocation_tuple(None if r[8] is None else json.loads(r[8])))
                for r in rows]  # fmt: skip

    # --------------------------------------------------------------------------------- snapshots
    def add_snapshot(self, snap: Snapshot) -> int:
        blob = json.dumps(snap.to_dict(), separators=(",", ":"), allow_nan=False)
        with self._write() as c:
            cur = c.execute("INSERT INTO snapshots (t_ns, json, score, anomalous) VALUES (?, ?, ?, ?)",
                            [snap.t_ns, blob, _finite(snap.score), int(snap.anomalous)])  # fmt: skip
            return cur.lastrowid

    def snapshots(self, limit: int = 100, since_ns: int | None = None) -> list[Snapshot]:
        """The newest ``limit`` snapshots with t_ns > since_ns, returned oldest first."""
        rows = self._r().execute(
            "SELECT json FROM (SELECT id, t_ns, json FROM snapshots WHERE t_ns > ? ORDER BY t_ns DESC, id DESC "
            "LIMIT ?) ORDER BY t_ns, id",
            [-(1 << 63) if since_ns is None else since_ns, limit],
        ).fetchall()
        return [snapshot_from_dict(json.loads(r[0])) for r in rows]

    # --------------------------------------------------------------------------------- retention
    def purge(self, measurements_days: float, snapshots_days: float, now: int | None = None,
              chunk: int = 50_000) -> dict[str, int]:  # fmt: skip
        """Delete measurements and context received more than ``measurements_days`` ago and snapshots
        older than ``snapshots_days``, and delivered webhook events as old as the measurements. Alarms,
        nodes and models are kept. Deletes in chunks, each its
        own transaction, so ingest is never held up for long."""
        now = now_ns() if now is None else now
        m_cut = now - int(measurements_days * 86_400e9)
        s_cut = now - int(snapshots_days * 86_400e9)
        jobs = {
            "measurements": ("DELETE FROM measurements WHERE (node_id, seq) IN (SELECT node_id, seq FROM measurements "
                             "WHERE received_ns < ? LIMIT ?)", m_cut),
            "context": ("DELETE FROM context WHERE rowid IN (SELECT rowid FROM context WHERE received_ns < ? LIMIT ?)",
                        m_cut),
            "snapshots": ("DELETE FROM snapshots WHERE id IN (SELECT id FROM snapshots WHERE t_ns < ? LIMIT ?)", s_cut),
            # delivered webhook events, as old as the measurements purged; undelivered ones are kept
            "webhook_outbox": ("DELETE FROM webhook_outbox WHERE id IN (SELECT id FROM webhook_outbox WHERE delivered_ns "
                               "IS NOT NULL AND created_ns < ? LIMIT ?)", m_cut),
        }  # fmt: skip
        out = {}
        for name, (sql, cut) in jobs.items():
            total = 0
            while True:
                with self._write() as c:
                    n = c.execute(sql, [cut, chunk]).rowcount
                total += n
                if n < chunk:
                    break
            out[name] = total
        return out
