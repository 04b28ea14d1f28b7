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

Integrity: :meth:`Store.check_integrity` runs ``PRAGMA quick_check`` (bounded in time if asked); once
a check fails (or a write meets a corrupt page) every write raises :class:`StoreCorrupt`, until a
check passes again: nothing more is acknowledged into a damaged file (:mod:`~central.store.integrity`,
docs/operations.md). :meth:`Store.health_problems` is what ``GET /health`` reports, the last write's
full disk or I/O error included. The database file is created 0600 (its -wal and -shm follow).

The code: :mod:`~central.store.migrations` (the schema), :mod:`~central.store.base` (connections,
transactions, migrating) and one module of queries per resource (:mod:`~central.store.nodes`,
:mod:`~central.store.data`, :mod:`~central.store.alarms`, :mod:`~central.store.campaigns`), which
:class:`Store` combines. Methods return the records of :mod:`central.live` (and
:class:`~node.protocol.Measurement`).
"""

from __future__ import annotations

from central.store.alarms import AlarmQueries
from central.store.base import ALARM_STATES, StoreError, now_ns
from central.store.campaigns import CampaignQueries
from central.store.integrity import IntegrityResult, StoreCorrupt, StoreFileError
from central.store.data import DataQueries
from central.store.migrations import MIGRATIONS, SCHEMA_VERSION
from central.store.nodes import NodeQueries
from central.store.records import ModelRecord, NodeRecord, snapshot_from_dict

__all__ = ["ALARM_STATES", "MIGRATIONS", "SCHEMA_VERSION", "IntegrityResult", "ModelRecord", "NodeRecord", "Store",
           "StoreCorrupt", "StoreError", "StoreFileError", "now_ns", "snapshot_from_dict"]  # fmt: skip


class Store(NodeQueries, DataQueries, AlarmQueries, CampaignQueries):
    """The central unit's database: ``Store(path)`` opens (creating and migrating) it; ``close()``
    (or ``with``) closes every connection."""
