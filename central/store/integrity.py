"""The database's health: ``PRAGMA quick_check`` bounded in time, what a failed write says about the
disk, what a database file that cannot be opened is (for ``rftwin-central run``: one line and an exit
status of its own), file modes, and an online backup.

- :func:`quick_check` runs on a connection of its own and can be bounded: a progress handler aborts it
  after ``budget_s`` (and a timer interrupts the connection then too, since one step of the check, the
  walk of a b-tree, can run long), the result is then ``not_finished``, not an answer. A corrupt page
  makes SQLite either list problems (rows other than ``ok``) or fail the check itself with
  SQLITE_CORRUPT; both are ``failed``.
- :class:`StoreCorrupt` is what every write raises while the last check failed (the API answers 503
  ``database_corrupt``; a node keeps its spooled records and retries); the store's ``_write`` raises it.
- :func:`preflight` looks at the data directory and the database file before SQLite opens them, so that
  a read-only directory, an unreadable or a truncated file, or one that is no database at all is one
  sentence naming the file (:class:`StoreFileError`, with a sysexits code), and :func:`open_error`
  says the same of an ``sqlite3.Error`` SQLite raised while opening.
- :func:`backup`: SQLite's online backup API, in steps of pages, inside one read transaction of the
  source (a consistent snapshot that the service's writes do not restart), to a temporary file
  (0600) that must pass ``quick_check`` before it is renamed into place.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("rftwin.central.store")

# sysexits.h: the exit status of each kind of start-up failure (central/cli.py lists them)
EX_DATAERR = 65  # the database file is not a database, is truncated, or corrupt beyond opening
EX_NOINPUT = 66  # the database file exists but cannot be read
EX_CANTCREAT = 73  # the data directory or the database cannot be created or written
EX_IOERR = 74  # a disk I/O error (or a full disk) while opening
EX_TEMPFAIL = 75  # locked by another process past the busy timeout; the port is taken (service.py)

SQLITE_MAGIC = b"SQLite format 3\x00"
DATA_DIR_MODE = 0o700  # new data directories; an existing one may keep group r-x (systemd's 0750)
DB_FILE_MODE = 0o600  # central.db, and so -wal and -shm (SQLite gives them the database file's mode)
MAX_ERRORS = 100  # quick_check(N): stop listing after N problems

# primary result codes (sqlite3.Error.sqlite_errorcode & 0xff)
SQLITE_PERM, SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY = 3, 5, 6, 8
SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_NOTADB = 10, 11, 13, 14, 26


class StoreFileError(ValueError):
    """The database or its directory cannot be used (or a backup cannot be written): ``path: why``, and
    the exit status a command ends with (``contracts.cli_args.run_command`` reads ``exit_code``)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class StoreCorrupt(sqlite3.DatabaseError):
    """A write refused because the database failed its integrity check (or a write met a corrupt page):
    nothing more is acknowledged into it. See docs/operations.md for the recovery."""

    reason = "database_corrupt"
    exit_code = EX_DATAERR


def error_code(e: BaseException) -> int | None:
    """SQLite's primary result code of an ``sqlite3.Error`` (None if it has none)."""
    code = getattr(e, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


@dataclass(frozen=True)
class IntegrityResult:
    """One run of ``PRAGMA quick_check``: ``ok``, ``failed`` (``errors`` lists what SQLite said),
    ``not_finished`` (the time budget ran out, or the store closed) or ``error`` (the check could not
    run, e.g. a disk I/O error; ``errors`` says why)."""

    status: str
    errors: tuple[str, ...] = ()
    started_ns: int = 0
    duration_s: float = 0.0
    budget_s: float | None = None

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def summary(self) -> str:
        first = f": {self.errors[0]}" if self.errors else ""
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        return {"ok": "quick_check ok", "failed": f"quick_check found {len(self.errors)} problem(s){first}{more}",
                "not_finished": f"quick_check not finished within {self.budget_s:g} s"
                if self.budget_s is not None else "quick_check interrupted",
                "error": f"quick_check could not run{first}"}[self.status]  # fmt: skip

    def to_dict(self) -> dict:
        return {"status": self.status, "errors": list(self.errors[:10]), "error_count": len(self.errors),
                "started_ns": self.started_ns, "duration_s": round(self.duration_s, 3), "budget_s": self.budget_s,
                "summary": self.summary()}  # fmt: skip


def quick_check(conn: sqlite3.Connection, budget_s: float | None = None,
                stop: Callable[[], bool] | None = None, max_errors: int = MAX_ERRORS) -> IntegrityResult:  # fmt: skip
    """``PRAGMA quick_check`` on ``conn`` (best a connection of its own: it is interrupted at the
    deadline), at most ``budget_s`` seconds (None: to the end) and until ``stop()`` says so."""
    started_ns = time.time_ns()
    t0 = time.monotonic()
    deadline = None if budget_s is None else t0 + budget_s

    def expired() -> bool:
        return (deadline is not None and time.monotonic() >= deadline) or (stop is not None and stop())

    conn.set_progress_handler(lambda: 1 if expired() else 0, 1000)
    timer = None
    if deadline is not None:
        timer = threading.Timer(max(0.0, budget_s), conn.interrupt)  # type: ignore[arg-type]
        timer.daemon = True
        timer.start()
    try:
        rows = conn.execute(f"PRAGMA quick_check({int(max_errors)})").fetchall()
    except sqlite3.DatabaseError as e:
        code = error_code(e)
        took = time.monotonic() - t0
        if code == 9 or "interrupt" in str(e):  # SQLITE_INTERRUPT
            return IntegrityResult("not_finished", (), started_ns, took, budget_s)
        if code in (SQLITE_CORRUPT, SQLITE_NOTADB) or code is None:
            return IntegrityResult("failed", (str(e),), started_ns, took, budget_s)
        return IntegrityResult("error", (f"{e} ({getattr(e, 'sqlite_errorname', code)})",), started_ns, took, budget_s)
    finally:
        if timer is not None:
            timer.cancel()
        conn.set_progress_handler(None, 0)
    took = time.monotonic() - t0
    messages = tuple(line for r in rows for line in str(r[0]).splitlines() if not line.startswith("*** in database"))
    if messages == ("ok",):
        return IntegrityResult("ok", (), started_ns, took, budget_s)
    return IntegrityResult("failed", messages, started_ns, took, budget_s)


# ------------------------------------------------------------------------- opening: the files


def _why(e: OSError) -> str:
    return e.strerror or str(e)


def preflight(db_path: Path) -> list[str]:
    """Check the data directory and the database file before SQLite opens them; raise
    :class:`StoreFileError` (``path: why``) for what would fail, and return warnings about modes that
    were too wide and have been narrowed (the database holds token hashes and node positions)."""
    data_dir = db_path.parent
    warnings: list[str] = []
    try:
        data_dir.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
    except OSError as e:
        raise StoreFileError(f"{data_dir}: cannot create the data directory: {_why(e)}", EX_CANTCREAT) from None
    if not data_dir.is_dir():
        raise StoreFileError(f"{data_dir}: the data directory is not a directory", EX_CANTCREAT)
    try:
        fd, probe = tempfile.mkstemp(dir=data_dir, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise StoreFileError(f"{data_dir}: the data directory is not writable: {_why(e)} (the service writes "
                             f"{db_path.name}, its -wal and -shm there)", EX_CANTCREAT) from None  # fmt: skip
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if mode & 0o027:  # group may list it (systemd's StateDirectoryMode=0750), nobody else
        narrowed = mode & 0o750
        _chmod(data_dir, narrowed, mode, warnings)
    if not db_path.exists():
        return warnings
    try:
        with open(db_path, "rb") as f:
            header = f.read(100)
    except IsADirectoryError:
        raise StoreFileError(f"{db_path}: is a directory, not a database", EX_DATAERR) from None
    except OSError as e:
        raise StoreFileError(f"{db_path}: cannot read the database: {_why(e)}", EX_NOINPUT) from None
    try:
        os.close(os.open(db_path, os.O_RDWR))
    except OSError as e:
        raise StoreFileError(f"{db_path}: the database is not writable: {_why(e)}", EX_CANTCREAT) from None
    size = db_path.stat().st_size
    if size:  # an empty file is a new database to SQLite
        if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
            what = f"only {size} bytes" if size < 100 else "no SQLite header"
            raise StoreFileError(f"{db_path}: not an SQLite database ({what}); restore a backup "
                                 "(docs/operations.md)", EX_DATAERR)  # fmt: skip
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        pages = int.from_bytes(header[28:32], "big")
        valid = header[24:28] == header[92:96]  # the in-header size is valid (SQLite >= 3.7.0 wrote it)
        wal = Path(f"{db_path}-wal")
        wal_empty = not wal.exists() or wal.stat().st_size == 0  # with a WAL the last checkpoint may be partial
        if valid and pages and wal_empty and (size < pages * page_size):
            raise StoreFileError(f"{db_path}: truncated: {size} bytes, its header says {pages} pages of "
                                 f"{page_size} bytes; restore a backup (docs/operations.md)", EX_DATAERR)  # fmt: skip
    for p in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
        try:
            mode = stat.S_IMODE(p.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            _chmod(p, DB_FILE_MODE, mode, warnings)
    return warnings


def _chmod(path: Path, new: int, old: int, warnings: list[str]) -> None:
    try:
        os.chmod(path, new)
    except OSError as e:
        warnings.append(f"{path}: mode {old:04o} is too wide and could not be narrowed to {new:04o}: {_why(e)}")
    else:
        warnings.append(f"{path}: mode was {old:04o}, narrowed to {new:04o} (it holds token hashes and positions)")


def create_private(db_path: Path) -> None:
    """Create an absent database file 0600 before SQLite does (SQLite gives -wal and -shm its mode)."""
    if db_path.exists():
        return
    db_path.parent.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
    try:
        os.close(os.open(db_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, DB_FILE_MODE))
    except FileExistsError:
        pass


def open_error(e: sqlite3.Error, path: Path) -> StoreFileError:
    """What an ``sqlite3.Error`` raised while opening the database means, as one line and an exit status."""
    code = error_code(e)
    if code in (SQLITE_NOTADB, SQLITE_CORRUPT):
        return StoreFileError(f"{path}: {e}; restore a backup or recover it (docs/operations.md)", EX_DATAERR)
    if code in (SQLITE_CANTOPEN, SQLITE_READONLY, SQLITE_PERM):
        return StoreFileError(f"{path}: cannot open the database for writing: {e}", EX_CANTCREAT)
    if code in (SQLITE_BUSY, SQLITE_LOCKED):
        return StoreFileError(f"{path}: locked by another process: {e}", EX_TEMPFAIL)
    return StoreFileError(f"{path}: {e}", EX_IOERR)


# ----------------------------------------------------------------------------------- backups


@dataclass
class BackupResult:
    path: Path
    pages: int
    bytes: int
    check: IntegrityResult
    counts: dict[str, int] = field(default_factory=dict)


def backup(db_path: Path, out: Path, *, force: bool = False, pages_per_step: int = 1024,
           progress: Callable[[int, int], None] | None = None, busy_timeout_s: float = 30.0) -> BackupResult:  # fmt: skip
    """A consistent copy of ``db_path`` at ``out`` while the service may be writing: SQLite's backup API
    in steps of ``pages_per_step`` pages inside one read transaction on the source (WAL: the writer
    goes on; the snapshot is the one that transaction began on, so a write does not restart the copy),
    into a temporary file (0600) beside ``out``, journal mode DELETE (one self-contained file), checked
    with ``quick_check``, fsynced, then renamed to ``out`` (an existing ``out`` only with ``force``).
    ``progress(done_pages, total_pages)`` after each step."""
    db_path, out = Path(db_path), Path(out)
    if not db_path.is_file():
        raise StoreFileError(f"{db_path}: no database (has the service ever run?)", EX_NOINPUT)
    if out.exists() and not force:
        raise StoreFileError(f"{out}: exists; --force replaces it", EX_CANTCREAT)
    if out.is_dir():
        raise StoreFileError(f"{out}: is a directory", EX_CANTCREAT)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")  # 0600
    except OSError as e:
        raise StoreFileError(f"{out.parent}: cannot write the backup there: {_why(e)}", EX_CANTCREAT) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        src = sqlite3.connect(db_path, timeout=busy_timeout_s, isolation_level=None)
        try:
            src.execute("PRAGMA query_only=ON")
            src.execute("BEGIN")
            src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the read transaction starts here
            counts = {}
            for table in ("nodes", "measurements", "alarms"):
                try:
                    counts[table] = src.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                except sqlite3.OperationalError:
                    pass
            dst = sqlite3.connect(tmp, isolation_level=None)
            try:
                total = [0]

                def step(status: int, remaining: int, pagecount: int) -> None:
                    total[0] = pagecount
                    if progress is not None:
                        progress(pagecount - remaining, pagecount)

                src.backup(dst, pages=pages_per_step, progress=step)
                dst.execute("PRAGMA journal_mode=DELETE")
                check = quick_check(dst)
            finally:
                dst.close()
            src.execute("COMMIT")
        finally:
            src.close()
        if check.status != "ok":
            raise StoreFileError(f"{out}: the copy fails its integrity check ({check.summary()}): the database "
                                 "itself is damaged; see docs/operations.md (sqlite3 .recover)", EX_DATAERR)  # fmt: skip
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        size = tmp.stat().st_size
        if force:
            os.replace(tmp, out)
        else:
            try:
                os.link(tmp, out)  # fails if out appeared meanwhile: never overwrite without --force
            except FileExistsError:
                raise StoreFileError(f"{out}: exists; --force replaces it", EX_CANTCREAT) from None
            tmp.unlink()
        dir_fd = os.open(out.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except sqlite3.Error as e:
        raise StoreFileError(f"{db_path}: backup failed: {e}", EX_IOERR) from None
    except OSError as e:
        raise StoreFileError(f"{out}: backup failed: {_why(e)}", EX_IOERR) from None
    finally:
        for p in (tmp, Path(f"{tmp}-journal")):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
    return BackupResult(out, total[0], size, check, counts)
