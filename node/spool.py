"""The node's local spool: every measurement is on disk before it is sent, and leaves only when acked.

SQLite (sqlite-utils, WAL, synchronous=FULL: a committed record survives a crash or power cut).
Sequence numbers are allocated here, in the same transaction as the write, and the last one is
kept even when the spool is empty, so a restarted node never reuses a seq: the central unit's
idempotency on (node_id, seq) depends on it.

Bounded: at ``max_records`` the policy decides. ``drop_oldest`` (default) keeps the newest
readings, which is what live detection needs after a long outage, and counts what it dropped;
``refuse`` raises :class:`SpoolFull` so the caller can decide.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Literal

import sqlite_utils

from node.protocol import Measurement

Policy = Literal["drop_oldest", "refuse"]


class SpoolFull(RuntimeError):
    pass


class Spool:
    def __init__(self, path: str | Path, max_records: int = 1_000_000, policy: Policy = "drop_oldest"):
        if max_records < 1:
            raise ValueError(f"max_records must be >= 1, got {max_records}")
        if policy not in ("drop_oldest", "refuse"):
            raise ValueError(f"unknown spool policy {policy!r}; use 'drop_oldest' or 'refuse'")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_records = max_records
        self.policy = policy
        self.db = sqlite_utils.Database(self.path)
        self.db.enable_wal()
        self.db.execute("PRAGMA synchronous=FULL")
        if "records" not in self.db.table_names():
            self.db["records"].create({"seq": int, "payload": str}, pk="seq")
            self.db["state"].create({"key": str, "value": int}, pk="key")
            self.db["state"].insert_all([{"key": "last_seq", "value": -1}, {"key": "dropped", "value": 0}])

    def _state(self, key: str) -> int:
        return self.db.execute("SELECT value FROM state WHERE key = ?", [key]).fetchone()[0]

    @property
    def dropped(self) -> int:
        """Records discarded by the drop_oldest policy since the spool was created."""
        return self._state("dropped")

    def __len__(self) -> int:
        return self.db.execute("SELECT count(*) FROM records").fetchone()[0]

    def append(self, m: Measurement) -> Measurement:
        """Store ``m`` with the next sequence number (its own ``seq`` is ignored) and return it.

        The record is validated first (:class:`~node.protocol.ProtocolError` if it could never be
        accepted), so nothing that would block the replay queue forever ever enters it.
        """
        Measurement.from_dict(m.to_dict())
        conn = self.db.conn
        with conn:  # one transaction: seq allocation, bound enforcement and the write
            seq = self._state("last_seq") + 1
            stored = dataclasses.replace(m, seq=seq)
            count = len(self)
            excess = count - self.max_records + 1
            if excess > 0:
                if self.policy == "refuse":
                    raise SpoolFull(f"spool {self.path} holds {count} records (max {self.max_records})")
                conn.execute("DELETE FROM records WHERE seq IN (SELECT seq FROM records ORDER BY seq LIMIT ?)", [excess])
                conn.execute("UPDATE state SET value = value + ? WHERE key = 'dropped'", [excess])
            conn.execute("INSERT INTO records (seq, payload) VALUES (?, ?)", [seq, json.dumps(stored.to_dict())])
            conn.execute("UPDATE state SET value = ? WHERE key = 'last_seq'", [seq])
        return stored

    def pending(self, limit: int = 1000) -> list[Measurement]:
        """The oldest unacknowledged records, in sequence order (replay order)."""
        rows = self.db.execute("SELECT payload FROM records ORDER BY seq LIMIT ?", [limit]).fetchall()
        return [Measurement.from_dict(json.loads(p)) for (p,) in rows]

    def ack(self, seqs: list[int]) -> int:
        """Forget records the central unit has stored; returns how many were removed."""
        if not seqs:
            return 0
        with self.db.conn as conn:
            cur = conn.executemany("DELETE FROM records WHERE seq = ?", [(int(s),) for s in seqs])
        return cur.rowcount

    def close(self) -> None:
        self.db.close()
