"""The central unit's store: one SQLite database (sqlite-utils, WAL) for everything the station keeps.

Tables: ``nodes`` (enrolled sensing-unit agents, token hashes, per-node ingest statistics),
``integrations`` and ``operators`` (token hashes), ``measurements`` (every record a node sent, primary
key (node_id, seq)), ``context`` (legitimate transmitters as the context feed reported them),
``snapshots`` (one per detection window, as JSON), ``alarms``, ``models`` (fitted detectors and their
provenance), ``campaigns``, ``campaign_points`` and ``campaign_readings`` (calibration campaigns,
:mod:`central.campaign`), and ``schema_version``.

Concurrency: **one writer**. All writes go through one connection guarded by a lock, each in one
``BEGIN IMMEDIATE … COMMIT`` transaction; every other thread reads through its own connection
(thread-local, ``query_only``), which WAL lets run concurrently with the writer. Other processes (the
CLI enrolling a node while the service runs) take SQLite's file lock and wait up to ``busy_timeout``.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL``: the WAL is fsynced at every commit, so a
transaction that returned from COMMIT survives a power cut. That is the promise an :class:`IngestAck`
makes (the node deletes acked records from its spool). ``NORMAL`` would be consistent but could lose
the last commits on power loss, i.e. acked records would vanish from both sides. The cost is one
fsync per batch (not per record): 0.2–0.6 ms per 1000-record batch on the development disk (insert and
commit together 2.2–2.7 ms with FULL, 2.1 ms with NORMAL).

Schema: versioned. ``MIGRATIONS`` is an ordered list; migration *i* brings the schema from version
*i* to *i + 1* and runs in the same transaction as the version bump. Opening a database applies the
missing ones; a database written by newer software (higher version) is refused, not guessed at.

Methods return the records of :mod:`central.live` (and :class:`~node.protocol.Measurement`).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from central.auth import hash_token, new_token
from central.campaign import Campaign, CampaignConflict, CampaignNotFound, CampaignPoint, NewPoint, SuReading
from central.live import Alarm, NodeHealth, Snapshot, SuState, TxContext
from node.protocol import IngestAck, IngestBatch, Measurement

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "ModelRecord", "NodeRecord", "Store", "StoreError",
           "snapshot_from_dict"]  # fmt: skip

ALARM_STATES = ("active", "cleared")


class StoreError(ValueError):
    """A request the store refuses (duplicate id, unknown alarm, newer schema); the message says why."""


def now_ns() -> int:
    return time.time_ns()


# ------------------------------------------------------------------------------------- migrations
# Never edit a migration that has shipped: add a new one. Each takes the connection, inside the
# transaction that also records the new version.


def _m1_initial(c: sqlite3.Connection) -> None:
    c.execute("""CREATE TABLE nodes (
        id TEXT PRIMARY KEY, x REAL NOT NULL, y REAL NOT NULL, z REAL NOT NULL,
        token_sha256 TEXT NOT NULL, enrolled_ns INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0)""")
    c.execute("CREATE TABLE integrations (name TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL, created_ns INTEGER)")
    # WITHOUT ROWID: the (node_id, seq) key *is* the table's B-tree, one structure to update per insert.
    c.execute("""CREATE TABLE measurements (
        node_id TEXT NOT NULL, seq INTEGER NOT NULL, t_ns INTEGER NOT NULL,
        f_center_hz REAL NOT NULL, bandwidth_hz REAL NOT NULL, power_dbm REAL NOT NULL,
        subband_powers_dbm TEXT NOT NULL, saturated INTEGER NOT NULL, clip_fraction REAL NOT NULL,
        gain_db REAL NOT NULL, received_ns INTEGER NOT NULL,
        PRIMARY KEY (node_id, seq)) WITHOUT ROWID""")
    c.execute("""CREATE TABLE context (
        tx_id TEXT NOT NULL, t_ns INTEGER NOT NULL, x REAL NOT NULL, y REAL NOT NULL, z REAL NOT NULL,
        power_dbm REAL NOT NULL, f_center_hz REAL NOT NULL, bandwidth_hz REAL NOT NULL,
        received_ns INTEGER NOT NULL, PRIMARY KEY (tx_id, t_ns))""")
    c.execute("""CREATE TABLE snapshots (
        id INTEGER PRIMARY KEY, t_ns INTEGER NOT NULL, json TEXT NOT NULL, score REAL,
        anomalous INTEGER NOT NULL)""")
    c.execute("""CREATE TABLE alarms (
        id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, state TEXT NOT NULL,
        start_ns INTEGER NOT NULL, end_ns INTEGER, peak_score REAL, affected_sus TEXT NOT NULL,
        suspected_x REAL, suspected_y REAL, acknowledged_by TEXT, acknowledged_ns INTEGER)""")
    c.execute("""CREATE TABLE models (
        id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, path TEXT NOT NULL,
        created_ns INTEGER NOT NULL, provenance TEXT NOT NULL, active INTEGER NOT NULL DEFAULT 0)""")


def _m2_node_stats_operators_retention(c: sqlite3.Connection) -> None:
    """Per-node ingest statistics kept with each batch (GET /nodes and /metrics without scanning the
    measurements), the SU each node serves, enrolled operators, and indexes for the retention purge."""
    for col, typ in (("su_id", "TEXT"), ("records", "INTEGER NOT NULL DEFAULT 0"), ("last_seen_ns", "INTEGER"),
                     ("last_t_ns", "INTEGER"), ("last_seq", "INTEGER"), ("last_power_dbm", "REAL"),
                     ("last_saturated", "INTEGER")):  # fmt: skip
        c.execute(f"ALTER TABLE nodes ADD COLUMN {col} {typ}")
    c.execute("""UPDATE nodes SET
        records = (SELECT count(*) FROM measurements m WHERE m.node_id = nodes.id),
        last_seen_ns = (SELECT max(received_ns) FROM measurements m WHERE m.node_id = nodes.id)""")
    c.execute("""UPDATE nodes SET (last_t_ns, last_seq, last_power_dbm, last_saturated) = (
        SELECT t_ns, seq, power_dbm, saturated FROM measurements m WHERE m.node_id = nodes.id
        ORDER BY t_ns DESC, seq DESC LIMIT 1)""")
    c.execute("CREATE TABLE operators (name TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL, created_ns INTEGER)")
    c.execute("CREATE INDEX idx_measurements_received ON measurements (received_ns)")
    c.execute("CREATE INDEX idx_context_received ON context (received_ns)")
    c.execute("CREATE INDEX idx_snapshots_t ON snapshots (t_ns)")
    c.execute("CREATE INDEX idx_alarms_state ON alarms (state)")


def _m3_campaigns(c: sqlite3.Connection) -> None:
    """Calibration campaigns (:mod:`central.campaign`): a campaign, its reference-transmitter points
    and the per-SU statistics of each point. At most one campaign is open (a partial unique index)."""
    c.execute("""CREATE TABLE campaigns (
        id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, state TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '', created_ns INTEGER NOT NULL, created_by TEXT NOT NULL,
        closed_ns INTEGER, su_ids TEXT NOT NULL)""")
    c.execute("""CREATE TABLE campaign_points (
        campaign_id INTEGER NOT NULL REFERENCES campaigns (id), idx INTEGER NOT NULL,
        x REAL NOT NULL, y REAL NOT NULL, z REAL NOT NULL, power_dbm REAL NOT NULL,
        since_ns INTEGER, until_ns INTEGER, source TEXT NOT NULL, rejected TEXT NOT NULL DEFAULT '',
        created_ns INTEGER NOT NULL, PRIMARY KEY (campaign_id, idx))""")
    c.execute("""CREATE TABLE campaign_readings (
        campaign_id INTEGER NOT NULL, idx INTEGER NOT NULL, su_id TEXT NOT NULL,
        mean_dbm REAL, std_db REAL, count INTEGER NOT NULL, saturated INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (campaign_id, idx, su_id),
        FOREIGN KEY (campaign_id, idx) REFERENCES campaign_points (campaign_id, idx))""")
    c.execute("CREATE UNIQUE INDEX idx_campaigns_one_open ON campaigns (state) WHERE state = 'open'")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_m1_initial, _m2_node_stats_operators_retention,
                                                          _m3_campaigns]  # fmt: skip
SCHEMA_VERSION = len(MIGRATIONS)


# ----------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class NodeRecord:
    id: str
    position_m: tuple[float, float, float]
    su_id: str | None
    token_sha256: str
    enrolled_ns: int
    revoked: bool


@dataclass(frozen=True)
class ModelRecord:
    id: int
    kind: str
    path: str
    created_ns: int
    provenance: dict
    active: bool

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "path": self.path, "created_ns": self.created_ns,
                "provenance": self.provenance, "active": self.active}  # fmt: skip


def _tuple_or_none(v) -> tuple | None:
    return None if v is None else tuple(float(x) for x in v)


def snapshot_from_dict(d: dict) -> Snapshot:
    """Inverse of :meth:`Snapshot.to_dict` (lists back to tuples)."""
    sus = tuple(SuState(**{**s, "position_m": tuple(s["position_m"])}) for s in d["sus"])
    txs = tuple(TxContext(**{**t, "position_m": tuple(t["position_m"])}) for t in d["txs"])
    return Snapshot(**{**d, "sus": sus, "txs": txs, "suspected_position_m": _tuple_or_none(d.get("suspected_position_m"))})


def _floats_json(values: Sequence[float]) -> str:
    """A JSON array of validated (finite) floats: their repr is valid JSON, at half the cost of
    json.dumps (~1 µs per record on the ingest path)."""
    try:
        return "[" + ",".join(map(float.__repr__, values)) + "]"
    except TypeError:  # ints, or other non-float numbers
        return json.dumps([float(v) for v in values])


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


# ------------------------------------------------------------------------------------------- store


class Store:
    def __init__(self, path: str | Path, *, busy_timeout_s: float = 10.0, migrate: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout_s = busy_timeout_s
        self._wlock = threading.RLock()
        self._w = self._connect()
        self.db = sqlite_utils.Database(self._w)
        self.db.enable_wal()
        self._w.execute("PRAGMA synchronous=FULL")  # see the module docstring: an ack promises durability
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        if migrate:
            self.migrate()

    def _connect(self) -> sqlite3.Connection:
        c = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False)
        c.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_s * 1000)}")
        return c

    def close(self) -> None:
        with self._wlock:
            if self._closed:
                return
            self._closed = True
            with self._readers_lock:
                for r in self._readers:
                    r.close()
                self._readers.clear()
            self._w.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ connections, transactions
    def _r(self) -> sqlite3.Connection:
        """This thread's read connection (WAL: reads never wait for the writer)."""
        c = getattr(self._local, "conn", None)
        if c is None:
            if self._closed:
                raise StoreError(f"{self.path}: store is closed")
            c = self._connect()
            c.execute("PRAGMA query_only=ON")
            self._local.conn = c
            with self._readers_lock:
                self._readers.append(c)
        return c

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the single writer connection; committed (durably) on exit."""
        with self._wlock:
            c = self._w
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise

    # -------------------------------------------------------------------------------- migrations
    @property
    def schema_version(self) -> int:
        return _version(self._w)

    def migrate(self, target: int = SCHEMA_VERSION) -> int:
        """Apply the missing migrations up to ``target``; returns the version reached."""
        with self._wlock:
            c = self._w
            c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_ns INTEGER NOT NULL)")
            current = _version(c)
            if current > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema version {current} is newer than this software's "
                                 f"({SCHEMA_VERSION}); upgrade rftwin")  # fmt: skip
            while True:
                with self._write() as w:  # re-read inside the lock: another process may have migrated
                    version = _version(w)
                    if version >= target:
                        return version
                    MIGRATIONS[version](w)
                    w.execute("INSERT INTO schema_version VALUES (?, ?)", [version + 1, now_ns()])

    # ------------------------------------------------------------------------------------- nodes
    def add_node(self, node_id: str, position_m: Sequence[float], *, su_id: str | None = None,
                 token: str | None = None) -> str:  # fmt: skip
        """Enrol a node; returns its token (only its hash is stored). A node id is never reused, even
        after revocation: its (node_id, seq) keys are taken, and a new board starts again at seq 0."""
        token = token or new_token("node")
        x, y, z = (float(v) for v in position_m)
        with self._write() as c:
            row = c.execute("SELECT revoked FROM nodes WHERE id = ?", [node_id]).fetchone()
            if row is not None:
                why = " (revoked; ids are never reused: enrol the new board under a new id)" if row[0] else ""
                raise StoreError(f"node {node_id!r} is already enrolled{why}")
            if su_id is not None:
                other = c.execute("SELECT id FROM nodes WHERE su_id = ? AND revoked = 0", [su_id]).fetchone()
                if other is not None:
                    raise StoreError(f"sensing unit {su_id!r} is already served by node {other[0]!r}; revoke it first")
            c.execute("INSERT INTO nodes (id, x, y, z, token_sha256, enrolled_ns, revoked, su_id) "
                      "VALUES (?, ?, ?, ?, ?, ?, 0, ?)", [node_id, x, y, z, hash_token(token), now_ns(), su_id])  # fmt: skip
        return token

    def set_node_su(self, node_id: str, su_id: str | None) -> None:
        with self._write() as c:
            c.execute("UPDATE nodes SET su_id = ? WHERE id = ?", [su_id, node_id])

    def revoke_node(self, node_id: str) -> bool:
        """Revoke a node's token at once; False if there is no such node or it was already revoked."""
        with self._write() as c:
            return c.execute("UPDATE nodes SET revoked = 1 WHERE id = ? AND revoked = 0", [node_id]).rowcount == 1

    def rotate_node_token(self, node_id: str, token: str | None = None) -> str:
        """A new token for an active node; the old one is refused from this commit on. The node keeps
        spooling (401s are retried) until its token file holds the new token, so nothing is lost."""
        token = token or new_token("node")
        with self._write() as c:
            row = c.execute("SELECT revoked FROM nodes WHERE id = ?", [node_id]).fetchone()
            if row is None:
                raise StoreError(f"no node {node_id!r} is enrolled")
            if row[0]:
                raise StoreError(f"node {node_id!r} is revoked; enrol the board under a new id")
            c.execute("UPDATE nodes SET token_sha256 = ? WHERE id = ?", [hash_token(token), node_id])
        return token

    def nodes(self) -> list[NodeRecord]:
        rows = self._r().execute("SELECT id, x, y, z, su_id, token_sha256, enrolled_ns, revoked FROM nodes ORDER BY id")
        return [NodeRecord(r[0], (r[1], r[2], r[3]), r[4], r[5], r[6], bool(r[7])) for r in rows.fetchall()]

    def node_su_map(self) -> dict[str, str]:
        """{node_id: su_id} of the active (not revoked) nodes that serve a sensing unit."""
        rows = self._r().execute("SELECT id, su_id FROM nodes WHERE revoked = 0 AND su_id IS NOT NULL").fetchall()
        return dict(rows)

    def node_credentials(self) -> list[tuple[str, tuple[str, bool]]]:
        """(token_sha256, (node_id, revoked)) for every node, for :func:`central.auth.match_token`."""
        rows = self._r().execute("SELECT token_sha256, id, revoked FROM nodes").fetchall()
        return [(h, (n, bool(rev))) for h, n, rev in rows]

    def node_health(self, stale_s: float, now: int | None = None) -> list[NodeHealth]:
        now = now_ns() if now is None else now
        rows = self._r().execute(
            "SELECT id, x, y, z, su_id, revoked, enrolled_ns, records, last_seen_ns, last_t_ns, last_seq, "
            "last_power_dbm, last_saturated FROM nodes ORDER BY id"
        ).fetchall()
        out = []
        for (nid, x, y, z, su, revoked, enrolled, records, seen, last_t, last_seq, power, sat) in rows:
            saturated = bool(sat)
            if revoked:
                healthy, detail = False, "revoked"
            elif seen is None:
                healthy, detail = False, "never seen"
            elif (now - seen) > stale_s * 1e9:
                healthy, detail = False, f"stale: last seen {(now - seen) / 1e9:.1f} s ago"
            elif saturated:
                healthy, detail = False, "saturated"
            else:
                healthy, detail = True, ""
            extra = {"su_id": su, "revoked": bool(revoked), "enrolled_ns": enrolled, "last_seq": last_seq}
            out.append(NodeHealth(nid, (x, y, z), seen, last_t, power, records, saturated, healthy, detail, extra))
        return out

    # ---------------------------------------------------------------- integrations and operators
    def _add_credential(self, table: str, kind: str, name: str, token: str | None) -> str:
        token = token or new_token(kind)
        with self._write() as c:
            if c.execute(f"SELECT 1 FROM {table} WHERE name = ?", [name]).fetchone():
                raise StoreError(f"{kind} {name!r} already exists")
            c.execute(f"INSERT INTO {table} VALUES (?, ?, ?)", [name, hash_token(token), now_ns()])
        return token

    def add_integration(self, name: str, token: str | None = None) -> str:
        return self._add_credential("integrations", "integration", name, token)

    def add_operator(self, name: str, token: str | None = None) -> str:
        return self._add_credential("operators", "operator", name, token)

    def rotate_credential(self, table: str, name: str, token: str | None = None) -> str:
        """A new token for an integration or operator; the old one is refused at once."""
        kind = self._credential_kind(table)
        token = token or new_token(kind)
        with self._write() as c:
            if c.execute(f"UPDATE {table} SET token_sha256 = ? WHERE name = ?", [hash_token(token), name]).rowcount != 1:
                raise StoreError(f"no {kind} {name!r} is enrolled")
        return token

    def remove_credential(self, table: str, name: str) -> None:
        """Remove an integration or operator: its token is refused at once."""
        kind = self._credential_kind(table)
        with self._write() as c:
            if c.execute(f"DELETE FROM {table} WHERE name = ?", [name]).rowcount != 1:
                raise StoreError(f"no {kind} {name!r} is enrolled")

    @staticmethod
    def _credential_kind(table: str) -> str:
        kinds = {"integrations": "integration", "operators": "operator"}
        if table not in kinds:
            raise StoreError(f"no credential table {table!r}")
        return kinds[table]

    def integration_credentials(self) -> list[tuple[str, str]]:
        """(token_sha256, name) of every enrolled integration."""
        return [(h, n) for n, h in self._r().execute("SELECT name, token_sha256 FROM integrations").fetchall()]

    def operator_credentials(self) -> list[tuple[str, str]]:
        return [(h, n) for n, h in self._r().execute("SELECT name, token_sha256 FROM operators").fetchall()]

    def credential_names(self, table: str) -> list[str]:
        self._credential_kind(table)
        return [n for (n,) in self._r().execute(f"SELECT name FROM {table} ORDER BY name").fetchall()]

    # ------------------------------------------------------------------------------------ ingest
    def ingest(self, batch: IngestBatch, received_ns: int | None = None) -> IngestAck:
        """Store a validated batch, idempotent on (node_id, seq): one transaction, durably committed
        before this returns. The ack lists every seq of the batch (new or already stored)."""
        received_ns = now_ns() if received_ns is None else received_ns
        recs = batch.records
        rows = [(m.node_id, m.seq, m.t_ns, m.f_center_hz, m.bandwidth_hz, m.power_dbm,
                 _floats_json(m.subband_powers_dbm), m.saturated, m.clip_fraction,
                 m.gain_db, received_ns) for m in recs]  # fmt: skip
        newest = max(recs, key=lambda m: (m.t_ns, m.seq))
        with self._write() as c:
            before = c.total_changes
            # Only the (node_id, seq) conflict is ignored (INSERT OR IGNORE would also drop a row that
            # breaks NOT NULL, and the ack would then promise a record that is not there).
            c.executemany("INSERT INTO measurements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                          "ON CONFLICT (node_id, seq) DO NOTHING", rows)  # fmt: skip
            inserted = c.total_changes - before
            c.execute("UPDATE nodes SET records = records + ?, last_seen_ns = ? WHERE id = ?",
                      [inserted, received_ns, batch.node_id])  # fmt: skip
            latest = (newest.t_ns, newest.seq, newest.power_dbm, newest.saturated)
            if inserted < len(recs):  # resends: the node's latest reading is the *stored* one, not a resent copy
                latest = c.execute(f"SELECT t_ns, seq, power_dbm, saturated FROM measurements WHERE node_id = ? AND seq "
                                   f"IN ({','.join('?' * len(recs))}) ORDER BY t_ns DESC, seq DESC LIMIT 1",
                                   [batch.node_id, *(m.seq for m in recs)]).fetchone()  # fmt: skip
            t_ns, seq, power, saturated = latest
            c.execute("UPDATE nodes SET last_t_ns = ?, last_seq = ?, last_power_dbm = ?, last_saturated = ? "
                      "WHERE id = ? AND (last_t_ns IS NULL OR last_t_ns < ? OR (last_t_ns = ? AND last_seq < ?))",
                      [t_ns, seq, power, saturated, batch.node_id, t_ns, t_ns, seq])
        return IngestAck(tuple(m.seq for m in recs), len(recs) - inserted)

    def measurements(self, node_id: str, since_ns: int | None = None, limit: int = 1000) -> list[Measurement]:
        """A node's records with t_ns > since_ns, oldest first (at most ``limit``)."""
        rows = self._r().execute(
            "SELECT node_id, seq, t_ns, f_center_hz, bandwidth_hz, power_dbm, subband_powers_dbm, saturated, "
            "clip_fraction, gain_db FROM measurements WHERE node_id = ? AND t_ns > ? ORDER BY seq LIMIT ?",
            [node_id, -1 if since_ns is None else since_ns, limit],
        ).fetchall()
        return [Measurement(r[0], r[1], r[2], r[3], r[4], r[5], tuple(json.loads(r[6])), bool(r[7]), r[8], r[9])
                for r in rows]  # fmt: skip

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
        rows = [(t.tx_id, t.t_ns, *map(float, t.position_m), t.power_dbm, t.f_center_hz, t.bandwidth_hz, received_ns)
                for t in txs]  # fmt: skip
        with self._write() as c:
            c.executemany("INSERT OR REPLACE INTO context VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def latest_context(self, at_ns: int | None = None, max_age_s: float | None = None) -> list[TxContext]:
        """The latest report of every transmitter at time ``at_ns`` (default: the newest), optionally
        only those not older than ``max_age_s`` before ``at_ns`` (or now)."""
        at = (1 << 63) - 1 if at_ns is None else at_ns
        oldest = -1
        if max_age_s is not None:
            oldest = (now_ns() if at_ns is None else at_ns) - int(max_age_s * 1e9)
        rows = self._r().execute(
            "SELECT c.tx_id, c.t_ns, c.x, c.y, c.z, c.power_dbm, c.f_center_hz, c.bandwidth_hz FROM context c "
            "JOIN (SELECT tx_id, max(t_ns) AS t FROM context WHERE t_ns <= ? GROUP BY tx_id) l "
            "ON c.tx_id = l.tx_id AND c.t_ns = l.t WHERE c.t_ns >= ? ORDER BY c.tx_id",
            [at, oldest],
        ).fetchall()
        return [TxContext(r[0], r[1], (r[2], r[3], r[4]), r[5], r[6], r[7]) for r in rows]

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

    # ------------------------------------------------------------------------------------ alarms
    _ALARM_COLS = ("id, kind, state, start_ns, end_ns, peak_score, affected_sus, suspected_x, suspected_y, "
                   "acknowledged_by, acknowledged_ns")  # fmt: skip

    @staticmethod
    def _alarm(r) -> Alarm:
        pos = None if r[7] is None else (r[7], r[8])
        return Alarm(r[0], r[1], r[2], r[3], r[4], r[5], tuple(json.loads(r[6])), pos, r[9], r[10])

    def _alarm_in(self, c: sqlite3.Connection, alarm_id: int) -> Alarm | None:
        r = c.execute(f"SELECT {self._ALARM_COLS} FROM alarms WHERE id = ?", [alarm_id]).fetchone()
        return None if r is None else self._alarm(r)

    def open_alarm(self, kind: str, start_ns: int, peak_score: float | None = None,
                   affected_sus: Sequence[str] = (), suspected_position_m: Sequence[float] | None = None) -> Alarm:  # fmt: skip
        pos = (None, None) if suspected_position_m is None else tuple(float(v) for v in suspected_position_m[:2])
        with self._write() as c:
            cur = c.execute(
                "INSERT INTO alarms (kind, state, start_ns, peak_score, affected_sus, suspected_x, suspected_y) "
                "VALUES (?, 'active', ?, ?, ?, ?, ?)",
                [kind, start_ns, _finite(peak_score), json.dumps(list(affected_sus)), *pos],
            )
            return self._alarm_in(c, cur.lastrowid)  # type: ignore[return-value]

    def update_alarm(self, alarm_id: int, *, peak_score: float | None = None, affected_sus: Sequence[str] | None = None,
                     suspected_position_m: Sequence[float] | None = None) -> Alarm:  # fmt: skip
        """Update an alarm while it lasts: the peak score only grows; SUs and position are replaced."""
        with self._write() as c:
            if self._alarm_in(c, alarm_id) is None:
                raise StoreError(f"no alarm {alarm_id}")
            if _finite(peak_score) is not None:
                c.execute("UPDATE alarms SET peak_score = max(coalesce(peak_score, ?), ?) WHERE id = ?",
                          [peak_score, peak_score, alarm_id])  # fmt: skip
            if affected_sus is not None:
                c.execute("UPDATE alarms SET affected_sus = ? WHERE id = ?", [json.dumps(list(affected_sus)), alarm_id])
            if suspected_position_m is not None:
                c.execute("UPDATE alarms SET suspected_x = ?, suspected_y = ? WHERE id = ?",
                          [float(suspected_position_m[0]), float(suspected_position_m[1]), alarm_id])  # fmt: skip
            return self._alarm_in(c, alarm_id)  # type: ignore[return-value]

    def clear_alarm(self, alarm_id: int, end_ns: int) -> Alarm:
        with self._write() as c:
            if c.execute("UPDATE alarms SET state = 'cleared', end_ns = ? WHERE id = ? AND state = 'active'",
                         [end_ns, alarm_id]).rowcount == 0 and self._alarm_in(c, alarm_id) is None:  # fmt: skip
                raise StoreError(f"no alarm {alarm_id}")
            return self._alarm_in(c, alarm_id)  # type: ignore[return-value]

    def put_alarm(self, alarm: Alarm) -> Alarm:
        """Write an alarm record as the live engine has it (raised, updated or cleared), by its id:
        inserted when new (id 0 or unknown: a new id is assigned), otherwise everything but the
        acknowledgement is replaced. Returns the stored record (with any acknowledgement)."""
        pos = (None, None) if alarm.suspected_position_m is None else tuple(float(v) for v in alarm.suspected_position_m[:2])
        values = [alarm.kind, alarm.state, alarm.start_ns, alarm.end_ns, _finite(alarm.peak_score),
                  json.dumps(list(alarm.affected_sus)), *pos]  # fmt: skip
        if alarm.state not in ALARM_STATES:
            raise StoreError(f"alarm state must be one of {', '.join(ALARM_STATES)}, got {alarm.state!r}")
        with self._write() as c:
            exists = alarm.id > 0 and c.execute("SELECT 1 FROM alarms WHERE id = ?", [alarm.id]).fetchone()
            if exists:
                c.execute("UPDATE alarms SET kind = ?, state = ?, start_ns = ?, end_ns = ?, peak_score = ?, "
                          "affected_sus = ?, suspected_x = ?, suspected_y = ? WHERE id = ?", [*values, alarm.id])  # fmt: skip
                alarm_id = alarm.id
            else:
                cur = c.execute("INSERT INTO alarms (id, kind, state, start_ns, end_ns, peak_score, affected_sus, "
                                "suspected_x, suspected_y) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                [alarm.id if alarm.id > 0 else None, *values])  # fmt: skip
                alarm_id = cur.lastrowid
            return self._alarm_in(c, alarm_id)  # type: ignore[return-value]

    def acknowledge_alarm(self, alarm_id: int, by: str, t_ns: int | None = None) -> Alarm | None:
        """Record who acknowledged the alarm (the first acknowledgement is kept); None if there is none."""
        with self._write() as c:
            c.execute("UPDATE alarms SET acknowledged_by = ?, acknowledged_ns = ? WHERE id = ? AND acknowledged_by IS NULL",
                      [by, now_ns() if t_ns is None else t_ns, alarm_id])  # fmt: skip
            return self._alarm_in(c, alarm_id)

    def alarm(self, alarm_id: int) -> Alarm | None:
        return self._alarm_in(self._r(), alarm_id)

    def alarms(self, state: str | None = None, limit: int = 100) -> list[Alarm]:
        """Newest first."""
        if state is not None and state not in ALARM_STATES:
            raise StoreError(f"alarm state must be one of {', '.join(ALARM_STATES)}, got {state!r}")
        where, args = ("WHERE state = ?", [state]) if state else ("", [])
        rows = self._r().execute(f"SELECT {self._ALARM_COLS} FROM alarms {where} ORDER BY id DESC LIMIT ?",
                                 [*args, limit]).fetchall()  # fmt: skip
        return [self._alarm(r) for r in rows]

    def count_active_alarms(self) -> int:
        return self._r().execute("SELECT count(*) FROM alarms WHERE state = 'active'").fetchone()[0]

    # ------------------------------------------------------------------------------------ models
    def add_model(self, kind: str, path: str | Path, provenance: dict, *, activate: bool = True,
                  created_ns: int | None = None) -> ModelRecord:  # fmt: skip
        blob = json.dumps(provenance, sort_keys=True, default=str)
        with self._write() as c:
            if activate:
                c.execute("UPDATE models SET active = 0 WHERE kind = ?", [kind])
            cur = c.execute("INSERT INTO models (kind, path, created_ns, provenance, active) VALUES (?, ?, ?, ?, ?)",
                            [kind, str(path), now_ns() if created_ns is None else created_ns, blob, int(activate)])  # fmt: skip
            model_id = cur.lastrowid
        return self.model(model_id)  # type: ignore[return-value]

    def activate_model(self, model_id: int) -> ModelRecord:
        with self._write() as c:
            row = c.execute("SELECT kind FROM models WHERE id = ?", [model_id]).fetchone()
            if row is None:
                raise StoreError(f"no model {model_id}")
            c.execute("UPDATE models SET active = (id = ?) WHERE kind = ?", [model_id, row[0]])
        return self.model(model_id)  # type: ignore[return-value]

    @staticmethod
    def _model(r) -> ModelRecord:
        return ModelRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), bool(r[5]))

    def model(self, model_id: int) -> ModelRecord | None:
        r = self._r().execute("SELECT id, kind, path, created_ns, provenance, active FROM models WHERE id = ?",
                              [model_id]).fetchone()  # fmt: skip
        return None if r is None else self._model(r)

    def models(self, kind: str | None = None) -> list[ModelRecord]:
        where, args = ("WHERE kind = ?", [kind]) if kind else ("", [])
        rows = self._r().execute(f"SELECT id, kind, path, created_ns, provenance, active FROM models {where} "
                                 "ORDER BY id", args).fetchall()  # fmt: skip
        return [self._model(r) for r in rows]

    def active_model(self, kind: str) -> ModelRecord | None:
        r = self._r().execute("SELECT id, kind, path, created_ns, provenance, active FROM models "
                              "WHERE kind = ? AND active = 1 ORDER BY id DESC LIMIT 1", [kind]).fetchone()  # fmt: skip
        return None if r is None else self._model(r)

    # --------------------------------------------------------------------------------- campaigns
    def window_readings(self, since_ns: int, until_ns: int, max_skew_ns: int) -> list[tuple[str, float, bool]]:
        """(node_id, power_dbm, saturated) of every record measured in [since_ns, until_ns).

        Found through the ``received_ns`` index: a record cannot have been received before it was
        measured, less the node's clock lead, which ingest bounds by ``max_skew_ns``
        (``limits.max_future_skew_s``); so no index on ``t_ns`` is needed on the ingest path."""
        rows = self._r().execute(
            "SELECT node_id, power_dbm, saturated FROM measurements "
            "WHERE received_ns >= ? AND t_ns >= ? AND t_ns < ?",
            [since_ns - max_skew_ns, since_ns, until_ns],
        ).fetchall()
        return [(n, p, bool(sat)) for n, p, sat in rows]

    def nodes_last_t_ns(self) -> dict[str, int | None]:
        """{node_id: measurement time of its newest record} of the active nodes."""
        return dict(self._r().execute("SELECT id, last_t_ns FROM nodes WHERE revoked = 0").fetchall())

    _CAMPAIGN_SELECT = (
        "SELECT c.id, c.name, c.state, c.description, c.created_ns, c.created_by, c.closed_ns, c.su_ids, "
        "(SELECT count(*) FROM campaign_points p WHERE p.campaign_id = c.id), "
        "(SELECT count(*) FROM campaign_points p WHERE p.campaign_id = c.id AND p.rejected = '') FROM campaigns c"
    )

    @staticmethod
    def _campaign(r) -> Campaign:
        return Campaign(r[0], r[1], r[2], r[3], r[4], r[5], r[6], tuple(json.loads(r[7])), r[8], r[9])

    def _campaign_in(self, c: sqlite3.Connection, name: str) -> Campaign:
        r = c.execute(self._CAMPAIGN_SELECT + " WHERE c.name = ?", [name]).fetchone()
        if r is None:
            raise CampaignNotFound(f"no campaign {name!r}")
        return self._campaign(r)

    def create_campaign(self, name: str, su_ids: Sequence[str], created_by: str, description: str = "",
                        created_ns: int | None = None) -> Campaign:  # fmt: skip
        """Start a campaign. Refused (:class:`CampaignConflict`) when the name was ever used or another
        campaign is still open: one reference transmitter, one campaign at a time."""
        with self._write() as c:
            row = c.execute("SELECT state FROM campaigns WHERE name = ?", [name]).fetchone()
            if row is not None:
                raise CampaignConflict(f"a campaign named {name!r} already exists ({row[0]}): campaign names "
                                       "are never reused, choose another")  # fmt: skip
            row = c.execute("SELECT name FROM campaigns WHERE state = 'open'").fetchone()
            if row is not None:
                raise CampaignConflict(f"campaign {row[0]!r} is still open: close it first")
            c.execute("INSERT INTO campaigns (name, state, description, created_ns, created_by, su_ids) "
                      "VALUES (?, 'open', ?, ?, ?, ?)",
                      [name, description, now_ns() if created_ns is None else created_ns, created_by,
                       json.dumps(list(su_ids))])  # fmt: skip
            return self._campaign_in(c, name)

    def campaign(self, name: str) -> Campaign:
        """The campaign called ``name``; :class:`CampaignNotFound` if there is none."""
        return self._campaign_in(self._r(), name)

    def campaigns(self, state: str | None = None) -> list[Campaign]:
        """Every campaign (or those in ``state``), oldest first."""
        where, args = (" WHERE c.state = ?", [state]) if state else ("", [])
        rows = self._r().execute(self._CAMPAIGN_SELECT + where + " ORDER BY c.id", args).fetchall()
        return [self._campaign(r) for r in rows]

    def close_campaign(self, name: str, closed_ns: int | None = None) -> Campaign:
        with self._write() as c:
            if self._campaign_in(c, name).state != "open":
                raise CampaignConflict(f"campaign {name!r} is already closed")
            c.execute("UPDATE campaigns SET state = 'closed', closed_ns = ? WHERE name = ?",
                      [now_ns() if closed_ns is None else closed_ns, name])  # fmt: skip
            return self._campaign_in(c, name)

    def add_campaign_points(self, name: str, points: Sequence[NewPoint],
                            created_ns: int | None = None) -> list[CampaignPoint]:  # fmt: skip
        """Append points to an open campaign, all in one transaction (an import is all or nothing);
        they get the next indices. :class:`CampaignConflict` if the campaign is closed."""
        created = now_ns() if created_ns is None else created_ns
        with self._write() as c:
            camp = self._campaign_in(c, name)
            if camp.state != "open":
                raise CampaignConflict(f"campaign {name!r} is closed: no more points (start a new campaign)")
            first = c.execute("SELECT coalesce(max(idx) + 1, 0) FROM campaign_points WHERE campaign_id = ?",
                              [camp.id]).fetchone()[0]  # fmt: skip
            for i, p in enumerate(points, start=first):
                c.execute("INSERT INTO campaign_points VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          [camp.id, i, *map(float, p.position_m), p.power_dbm, p.since_ns, p.until_ns, p.source,
                           p.rejected, created])  # fmt: skip
                c.executemany("INSERT INTO campaign_readings VALUES (?, ?, ?, ?, ?, ?, ?)",
                              [(camp.id, i, r.su_id, r.mean_dbm, r.std_db, r.count, r.saturated)
                               for r in p.readings])  # fmt: skip
            return self._campaign_points_in(c, camp, first)

    def campaign_points(self, name: str) -> list[CampaignPoint]:
        """The campaign's points in index order, each with its per-SU readings."""
        c = self._r()
        return self._campaign_points_in(c, self._campaign_in(c, name))

    def _campaign_points_in(self, c: sqlite3.Connection, camp: Campaign, first: int = 0) -> list[CampaignPoint]:
        readings: dict[int, list[SuReading]] = {}
        sql = ("SELECT idx, su_id, mean_dbm, std_db, count, saturated FROM campaign_readings "
               "WHERE campaign_id = ? AND idx >= ? ORDER BY idx, rowid")  # fmt: skip
        for idx, *r in c.execute(sql, [camp.id, first]):
            readings.setdefault(idx, []).append(SuReading(*r))
        rows = c.execute("SELECT idx, x, y, z, power_dbm, rejected, since_ns, until_ns, source, created_ns "
                         "FROM campaign_points WHERE campaign_id = ? AND idx >= ? ORDER BY idx",
                         [camp.id, first]).fetchall()  # fmt: skip
        return [CampaignPoint(camp.name, r[0], (r[1], r[2], r[3]), r[4], tuple(readings.get(r[0], ())), r[5], r[6],
                              r[7], r[8], r[9]) for r in rows]  # fmt: skip

    # --------------------------------------------------------------------------------- retention
    def purge(self, measurements_days: float, snapshots_days: float, now: int | None = None,
              chunk: int = 50_000) -> dict[str, int]:  # fmt: skip
        """Delete measurements and context received more than ``measurements_days`` ago and snapshots
        older than ``snapshots_days``. Alarms, nodes and models are kept. Deletes in chunks, each its
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


def _version(c: sqlite3.Connection) -> int:
    try:
        row = c.execute("SELECT max(version) FROM schema_version").fetchone()
    except sqlite3.OperationalError:
        return 0
    return row[0] or 0
