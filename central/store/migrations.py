"""The store's schema, versioned: ``MIGRATIONS`` is an ordered list; migration *i* brings the schema
from version *i* to *i + 1* and runs in the same transaction as the version bump (see
:meth:`central.store.Store.migrate`). A database written by newer software is refused, not guessed at.

Never edit a migration that has shipped: add a new one. Each takes the connection, inside the
transaction that also records the new version.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "create_version_table", "schema_version"]


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


def _m4_viewers_scrapers(c: sqlite3.Connection) -> None:
    """Read-only credentials: viewers (the dashboard and the read API) and scrapers (``/metrics``),
    shaped like the operators: name, token hash, creation time."""
    for table in ("viewers", "scrapers"):
        c.execute(f"CREATE TABLE {table} (name TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL, created_ns INTEGER)")


def _m5_band_plans_allocations_webhooks(c: sqlite3.Connection) -> None:
    """The band plan each reading's sub-bands were measured against (node.protocol.Measurement.band_plan;
    '' for readings before band plans), and each node's latest, so that GET /nodes can flag a node
    whose plan is not the site's; each context report's scheduler allocation over the plan (JSON
    [[sub-band, dBm], …]; NULL: not reported); and the webhook outbox (central.store.webhooks)."""
    c.execute("ALTER TABLE measurements ADD COLUMN band_plan TEXT NOT NULL DEFAULT ''")
    c.execute("ALTER TABLE nodes ADD COLUMN last_band_plan TEXT")
    c.execute("ALTER TABLE context ADD COLUMN allocation TEXT")
    c.execute("""CREATE TABLE webhook_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT, url TEXT NOT NULL, event TEXT NOT NULL, body TEXT NOT NULL,
        created_ns INTEGER NOT NULL, attempts INTEGER NOT NULL, next_ns INTEGER NOT NULL,
        delivered_ns INTEGER, last_error TEXT)""")
    c.execute("CREATE INDEX idx_webhook_pending ON webhook_outbox (url, id) WHERE delivered_ns IS NULL")


def _m6_alarm_interference(c: sqlite3.Connection) -> None:
    """What a residual alarm's interference is (central.live.Interference as JSON; NULL: not characterised)."""
    c.execute("ALTER TABLE alarms ADD COLUMN interference TEXT")


def _m7_measurement_subband_ids(c: sqlite3.Connection) -> None:
    """Which of the band plan's sub-bands a reading's ``subband_powers_dbm`` are (node.protocol.Measurement
    .subband_ids, a sweeping node's step reading; JSON list of ids, '[]': all of the plan, in order, as
    every reading before sweeping)."""
    c.execute("ALTER TABLE measurements ADD COLUMN subband_ids TEXT NOT NULL DEFAULT '[]'")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_m1_initial, _m2_node_stats_operators_retention,
                                                          _m3_campaigns, _m4_viewers_scrapers,
                                                          _m5_band_plans_allocations_webhooks,
                                                          _m6_alarm_interference, _m7_measurement_subband_ids]  # fmt: skip
SCHEMA_VERSION = len(MIGRATIONS)


def create_version_table(c: sqlite3.Connection) -> None:
    c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_ns INTEGER NOT NULL)")


def schema_version(c: sqlite3.Connection) -> int:
    """The version a database is at (0: empty, or from before versioning)."""
    try:
        row = c.execute("SELECT max(version) FROM schema_version").fetchone()
    except sqlite3.OperationalError:
        return 0
    return row[0] or 0
