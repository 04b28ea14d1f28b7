"""The store's connections and transactions: one writer, a read connection per thread, migrations.

Concurrency and durability are described in :mod:`central.store`. The query methods live in the
resource modules next to this one (nodes, measurements, alarms, campaigns), each a class built on
:class:`StoreBase`; :class:`central.store.Store` combines them.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from central.store.migrations import MIGRATIONS, SCHEMA_VERSION, create_version_table, schema_version

ALARM_STATES = ("active", "cleared")


class StoreError(ValueError):
    """A request the store refuses (duplicate id, unknown alarm, newer schema); the message says why."""


def now_ns() -> int:
    return time.time_ns()


class StoreBase:
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

    def __enter__(self):  # -> the Store itself
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
        return schema_version(self._w)

    def migrate(self, target: int = SCHEMA_VERSION) -> int:
        """Apply the missing migrations up to ``target``; returns the version reached."""
        with self._wlock:
            c = self._w
            create_version_table(c)
            current = schema_version(c)
            if current > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema version {current} is newer than this software's "
                                 f"({SCHEMA_VERSION}); upgrade rftwin")  # fmt: skip
            while True:
                with self._write() as w:  # re-read inside the lock: another process may have migrated
                    version = schema_version(w)
                    if version >= target:
                        return version
                    MIGRATIONS[version](w)
                    w.execute("INSERT INTO schema_version VALUES (?, ?)", [version + 1, now_ns()])
