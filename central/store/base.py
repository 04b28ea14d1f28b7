"""The store's connections and transactions: one writer, a read connection per thread, migrations.

Concurrency and durability are described in :mod:`central.store`. The query methods live in the
resource modules next to this one (nodes, measurements, alarms, campaigns), each a class built on
:class:`StoreBase`; :class:`central.store.Store` combines them.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from central.store.integrity import (
    SQLITE_CORRUPT,
    SQLITE_FULL,
    SQLITE_IOERR,
    SQLITE_NOTADB,
    IntegrityResult,
    StoreCorrupt,
    create_private,
    error_code,
    quick_check,
)
from central.store.migrations import MIGRATIONS, SCHEMA_VERSION, create_version_table, schema_version

log = logging.getLogger("rftwin.central.store")

ALARM_STATES = ("active", "cleared")


class StoreError(ValueError):
    """A request the store refuses (duplicate id, unknown alarm, newer schema); the message says why."""


def now_ns() -> int:
    return time.time_ns()


class StoreBase:
    def __init__(self, path: str | Path, *, busy_timeout_s: float = 10.0, migrate: bool = True):
        self.path = Path(path)
        create_private(self.path)  # 0600 (and so its -wal and -shm): token hashes, node positions
        self._busy_timeout_s = busy_timeout_s
        self._wlock = threading.RLock()
        self._init_health()
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
        self._closed = True  # first: a running integrity check stops (it holds no lock)
        for c in list(self._checking):
            c.interrupt()
        with self._wlock:
            if self._w is None:
                return
            with self._readers_lock:
                for r in self._readers:
                    r.close()
                self._readers.clear()
            self._w.close()
            self._w = None

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
            if self._corrupt is not None:
                raise StoreCorrupt(f"{self.path}: writes are refused: {self._corrupt} (docs/operations.md)")
            c = self._w
            try:
                c.execute("BEGIN IMMEDIATE")
                try:
                    yield c
                    c.execute("COMMIT")
                except BaseException:
                    if c.in_transaction:
                        c.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                self._write_failed(e)
                raise
            if self._write_error is not None:
                log.warning("store writes succeed again (after: %s)", self._write_error[1])
                self._write_error = None

    # ---------------------------------------------------------------------------------- health
    def _init_health(self) -> None:
        self._corrupt: str | None = None  # why writes are refused (a failed check, a corrupt page met)
        self._write_error: tuple[str, str, int] | None = None  # (reason, detail, t_ns) of the last write
        self._last_check: IntegrityResult | None = None
        self._checking: set[sqlite3.Connection] = set()
        self._health_lock = threading.Lock()

    def _write_failed(self, e: sqlite3.Error) -> None:
        code = error_code(e)
        if code in (SQLITE_CORRUPT, SQLITE_NOTADB):
            self._mark_corrupt(f"a write met a corrupt page: {e}")
        elif code in (SQLITE_FULL, SQLITE_IOERR):
            reason = "disk_full" if code == SQLITE_FULL else "disk_io_error"
            if self._write_error is None or self._write_error[0] != reason:
                log.error("store write failed (%s): %s; nothing is acknowledged until a write succeeds", reason, e)
            self._write_error = (reason, f"the last write failed: {e}", now_ns())

    def _mark_corrupt(self, why: str) -> None:
        with self._health_lock:
            first = self._corrupt is None
            self._corrupt = why
        if first:
            log.critical("%s: DATABASE CORRUPT: %s; writes (ingest included) are refused with 503 from now on, "
                         "nodes keep their spools: stop the service, restore the last backup or recover the "
                         "database (docs/operations.md), start it again", self.path, why)  # fmt: skip

    def check_integrity(self, budget_s: float | None = None) -> IntegrityResult:
        """``PRAGMA quick_check`` on a connection of its own (reads go on; with WAL so do writes), at
        most ``budget_s`` s (None: to the end). ``failed`` makes every later write raise
        :class:`StoreCorrupt` (logged critical once); a later ``ok`` lifts that; ``not_finished``
        changes nothing."""
        try:
            c = self._connect()
        except sqlite3.Error as e:
            result = IntegrityResult("error", (str(e),), now_ns(), 0.0, budget_s)
        else:
            self._checking.add(c)
            try:
                c.execute("PRAGMA query_only=ON")
                result = quick_check(c, budget_s, stop=lambda: self._closed)
            finally:
                self._checking.discard(c)
                c.close()
        self._last_check = result
        if result.failed:
            self._mark_corrupt(result.summary())
        elif result.status == "ok" and self._corrupt is not None:
            with self._health_lock:
                self._corrupt = None
            log.warning("%s: quick_check passes again; writes are accepted", self.path)
        elif result.status == "error":
            log.error("%s: integrity check could not run: %s", self.path, result.summary())
        return result

    @property
    def last_integrity_check(self) -> IntegrityResult | None:
        return self._last_check

    @property
    def corrupt(self) -> str | None:
        """Why writes are refused (the database failed its check), or None."""
        return self._corrupt

    def health_problems(self) -> dict[str, dict[str, str]]:
        """The store's checks that are not ok, for ``GET /health``: ``{name: {status, reason, detail}}``
        with status ``failing`` (a corrupt database: nothing is acknowledged) or ``degraded`` (the last
        write failed for a full disk or an I/O error; the next one may succeed)."""
        out: dict[str, dict[str, str]] = {}
        if self._corrupt is not None:
            out["database"] = {"status": "failing", "reason": "database_corrupt",
                               "detail": f"{self._corrupt}; writes are refused (docs/operations.md)"}  # fmt: skip
        elif self._last_check is not None and self._last_check.status == "error":
            out["database"] = {"status": "degraded", "reason": "integrity_check_error", "detail": self._last_check.summary()}
        if self._write_error is not None:
            reason, detail, _ = self._write_error
            out["store_write"] = {"status": "degraded", "reason": reason, "detail": detail}
        return out

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
