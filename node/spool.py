"""The node's local spool: every measurement is on disk before it is sent, and leaves only when acked.

SQLite (sqlite-utils, WAL, synchronous=FULL: a committed record survives a crash or power cut).
Sequence numbers are allocated here, in the same transaction as the write, and the last one is
kept even when the spool is empty, so a restarted node never reuses a seq: the central unit's
idempotency on (node_id, seq) depends on it.

Bounded, by records and by disk space. The spool has *no room* for a new record when it holds
``max_records``, when its room (the filesystem's free space plus the free pages inside the file) is
under ``reserve_bytes``, or when SQLite says the disk is full (SQLITE_FULL,
``sqlite3.OperationalError("database or disk is full")``: on an insert, on the commit or when the WAL
must grow; the transaction is rolled back, so a failed write allocates no seq and drops nothing).
Then the policy decides. ``drop_oldest`` (default) keeps the newest readings, which is what live
detection needs after a long outage: each new record takes the place of the oldest, in the same
transaction, and the spool counts what it dropped. ``refuse`` raises :class:`SpoolFull` so the
caller can decide (the agent stops reading its radio). Which rows go, and in which transaction, is
decided here; what to do about a full spool (pause, report, retry) is the agent's business.

Why a reserve: status.json, SigMF captures and the WAL live on the same filesystem; a spool that
grows until the kernel says ENOSPC leaves none of them any room, and SQLite itself then cannot
checkpoint. The spool stops growing ``reserve_bytes`` short of full (by default 1/16 of the
filesystem, at least twice the WAL's bound, at most 64 MiB), so a full spool can still say so.
Once short of space it has room again only at twice the reserve (hysteresis: no flapping).

Why deleting rows makes room: the file does not shrink (no VACUUM: it needs twice the space), but
the deleted rows' pages go to SQLite's freelist and the next inserts reuse them; so acks make room
on a full disk too. While space is short, a record is added as a *ring step*: only if the file does
not grow. If the insert needed a new page, the transaction is rolled back and tried again with more
of the oldest records dropped (1, 2, 4, ... up to RING_MAX_DROP), so the spool turns into a ring
inside the pages it already has, and keeps working on a disk with no byte left. The WAL is bounded
too (``wal_autocheckpoint`` and ``journal_size_limit`` scaled to small filesystems: SQLite's default
4 MiB WAL alone would fill a small one; while space is short every ring step checkpoints, so the
WAL stays within the space it already holds instead of growing into the reserve), and on SQLITE_FULL the spool checkpoints (RESTART: the WAL's
next frames overwrite space the file already holds) and tries once more before it gives up on the
record. A spool whose WAL still holds pages that would grow the file when the disk fills completely
cannot write until some space returns: :class:`SpoolFull` (``DISK_FULL``) until then.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sqlite3
from pathlib import Path
from typing import Literal

import sqlite_utils

from node.protocol import Measurement, ProtocolError

log = logging.getLogger(__name__)

Policy = Literal["drop_oldest", "refuse"]
# Why the spool has no room (SpoolFull.reason, Spool.full_reason); "" when it has room.
AT_MAX_RECORDS, UNDER_RESERVE, DISK_FULL = "max_records", "reserve", "disk"
MAX_AUTO_RESERVE_BYTES = 64 << 20
MAX_WAL_PAGES = 1000  # SQLite's default wal_autocheckpoint: what a roomy filesystem gets
# A ring step drops at most this many records to keep the file from growing: a few pages' worth, so a
# disk where even that cannot be written costs a few small attempts per reading, not a mass delete.
RING_MAX_DROP = 256
ACK_CHUNK_RECORDS = 32  # an ack on a full disk deletes this many per transaction (a few pages of WAL)


class SpoolFull(RuntimeError):
    """No room for a record (policy ``refuse``; or ``drop_oldest`` when even a ring step could not be
    written). ``reason`` is :data:`AT_MAX_RECORDS`, :data:`UNDER_RESERVE` or :data:`DISK_FULL`."""

    def __init__(self, message: str, reason: str = AT_MAX_RECORDS):
        super().__init__(message)
        self.reason = reason


class _WouldGrow(Exception):
    """Raised inside a ring step's transaction to roll it back: the insert needed a new page."""


def is_disk_full(e: BaseException) -> bool:
    """SQLITE_FULL, whichever statement (insert, commit, checkpoint) reported it."""
    return isinstance(e, sqlite3.OperationalError) and (
        getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "database or disk is full" in str(e))


def filesystem_bytes(directory: Path) -> tuple[int, int]:
    """(size, free space for unprivileged writers) of the filesystem holding ``directory``."""
    st = os.statvfs(directory)
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


class Spool:
    def __init__(self, path: str | Path, max_records: int = 1_000_000, policy: Policy = "drop_oldest",
                 reserve_bytes: int | None = None):  # fmt: skip
        if max_records < 1:
            raise ValueError(f"max_records must be >= 1, got {max_records}")
        if policy not in ("drop_oldest", "refuse"):
            raise ValueError(f"unknown spool policy {policy!r}; use 'drop_oldest' or 'refuse'")
        if reserve_bytes is not None and reserve_bytes < 0:
            raise ValueError(f"reserve_bytes must be >= 0, got {reserve_bytes}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_records = max_records
        self.policy = policy
        self.full_reason = ""  # why the latest append found no room; "" when it had room
        self.db = sqlite_utils.Database(self.path)
        self.db.enable_wal()
        self.db.execute("PRAGMA synchronous=FULL")
        # A WAL of SQLite's default 1000 pages (4 MiB) would fill a small filesystem on its own before
        # the first checkpoint: checkpoint at 1/64 of the filesystem instead, and truncate the WAL back
        # after a checkpoint (journal_size_limit) so that one large transaction (an ack of a whole
        # batch) does not keep its space. The limit leaves the WAL its working size (a checkpoint's
        # worth of pages plus a transaction): on a full disk that is the space a ring step writes in.
        fs_bytes, _ = filesystem_bytes(self.path.parent)
        page_bytes = self.db.execute("PRAGMA page_size").fetchone()[0]
        wal_pages = max(4, min(MAX_WAL_PAGES, fs_bytes // 64 // page_bytes))
        self.db.execute(f"PRAGMA wal_autocheckpoint={wal_pages}")
        self.db.execute(f"PRAGMA journal_size_limit={4 * wal_pages * page_bytes}")
        auto = min(MAX_AUTO_RESERVE_BYTES, max(fs_bytes // 16, 2 * wal_pages * page_bytes))
        self.reserve_bytes = auto if reserve_bytes is None else reserve_bytes
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

    def free_bytes(self) -> int:
        """Free space on the spool's filesystem."""
        return filesystem_bytes(self.path.parent)[1]

    def room_bytes(self) -> int:
        """What records can still take without the files growing into the reserve: the filesystem's
        free space plus the pages SQLite holds free inside the file (deleted records' pages, which
        inserts reuse before the file grows: how acks make room on a full disk)."""
        free_pages, page_bytes = (self.db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("freelist_count", "page_size"))
        return self.free_bytes() + free_pages * page_bytes

    def room(self) -> str:
        """"" when one more record fits without dropping one, else why not (:data:`AT_MAX_RECORDS`,
        :data:`UNDER_RESERVE`). Cheap (a count, a statvfs, two pragmas); a disk that SQLite finds full
        is only known by writing. Once short of space, the spool has room again only at twice the
        reserve, so that the WAL breathing, or one page freed by a ring step, does not flap it
        between full and not full (and the journal with it)."""
        if len(self) >= self.max_records:
            return AT_MAX_RECORDS
        need_bytes = self.reserve_bytes * (2 if self.full_reason in (UNDER_RESERVE, DISK_FULL) else 1)
        if self.free_bytes() < need_bytes and self.room_bytes() < need_bytes:  # (no pragmas while roomy)
            return UNDER_RESERVE
        return ""

    def describe(self, reason: str) -> str:
        """``reason`` in words, for logs and the status."""
        if reason == AT_MAX_RECORDS:
            return f"spool {self.path} holds {len(self)} records (max {self.max_records})"
        if reason == UNDER_RESERVE:
            return (f"spool {self.path}: {self.room_bytes()} bytes of room (free space and free pages), under "
                    f"its reserve of {self.reserve_bytes} bytes")  # fmt: skip
        if reason == DISK_FULL:
            return f"spool {self.path}: disk full (SQLite: database or disk is full)"
        return ""

    def append(self, m: Measurement) -> Measurement:
        """Store ``m`` with the next sequence number (its own ``seq`` is ignored) and return it.

        The record is validated first (:class:`~node.protocol.ProtocolError` if it could never be
        accepted), so nothing that would block the replay queue forever ever enters it. Without room
        (see the module docstring) ``refuse`` raises :class:`SpoolFull`; ``drop_oldest`` drops the
        oldest records to make room, and raises :class:`SpoolFull` only when not even that could be
        written. Afterwards :attr:`full_reason` says whether this append found the spool full.
        """
        Measurement.from_dict(m.to_dict())
        self.full_reason = reason = self.room()
        if reason and self.policy == "refuse":
            raise SpoolFull(self.describe(reason), reason)
        try:
            return self._store(m, reason)
        except sqlite3.OperationalError as e:
            if not is_disk_full(e):
                raise
        # Rolled back: no seq used, nothing dropped. The disk is full: from here on this record may
        # only take an old one's place (drop_oldest), after the WAL is rewound into the space it holds.
        self.full_reason = DISK_FULL
        ring = DISK_FULL if self.policy == "drop_oldest" else reason
        return self._after_checkpoint(lambda: self._store(m, ring), "the record was not stored")

    def _after_checkpoint(self, write, what: str):
        """``write()`` again after SQLITE_FULL and a checkpoint; :class:`SpoolFull` if still full."""
        self.checkpoint()
        try:
            return write()
        except sqlite3.OperationalError as e:
            if not is_disk_full(e):
                raise
            raise SpoolFull(f"{self.describe(DISK_FULL)}; {what}", DISK_FULL) from None

    def _store(self, m: Measurement, reason: str) -> Measurement:
        """Insert ``m``, dropping the oldest as ``reason`` demands. While space is short, a *ring step*:
        drop more rather than grow the file (the insert needed a new page, ``_WouldGrow``, or SQLite
        could not allocate one, SQLITE_FULL: rolled back, tried again dropping twice as many), up to
        RING_MAX_DROP; past that, one plain try, whose SQLITE_FULL the caller handles.

        A ring step keeps the WAL from growing too: it checkpoints after its commit, so the next
        transaction's frames overwrite the WAL from its beginning. Without that, each commit made while
        the uplink's reader held an older snapshot (a checkpoint cannot reset the WAL under a reader)
        appended to the WAL, and on a small disk the WAL grew into the reserve until not even the
        status file could be written."""
        count = len(self)
        short_of_space = reason in (UNDER_RESERVE, DISK_FULL)
        drop = max(count - self.max_records + 1, 1 if short_of_space else 0)
        while True:
            hold_pages = short_of_space and drop < min(count, RING_MAX_DROP)
            try:
                stored = self._write(m, drop, hold_pages)
                if short_of_space:
                    self.checkpoint()
                return stored
            except (_WouldGrow, sqlite3.OperationalError) as e:
                if not hold_pages or not (isinstance(e, _WouldGrow) or is_disk_full(e)):
                    raise
                drop = min(2 * drop, count, RING_MAX_DROP)

    def _write(self, m: Measurement, drop: int, hold_pages: bool) -> Measurement:
        conn = self.db.conn
        with conn:  # one transaction: seq allocation, the drops and the write
            pages = conn.execute("PRAGMA page_count").fetchone()[0] if hold_pages else 0
            seq = self._state("last_seq") + 1
            stored = dataclasses.replace(m, seq=seq)
            dropped = 0
            if drop:
                dropped = conn.execute("DELETE FROM records WHERE seq IN (SELECT seq FROM records ORDER BY seq "
                                       "LIMIT ?)", [drop]).rowcount  # fmt: skip
            conn.execute("INSERT INTO records (seq, payload) VALUES (?, ?)", [seq, json.dumps(stored.to_dict())])
            if hold_pages and conn.execute("PRAGMA page_count").fetchone()[0] > pages:
                raise _WouldGrow
            conn.execute("UPDATE state SET value = ? WHERE key = 'last_seq'", [seq])
            if dropped:
                conn.execute("UPDATE state SET value = value + ? WHERE key = 'dropped'", [dropped])
        return stored

    def checkpoint(self) -> bool:
        """Copy the WAL into the database and make its next writer start over at the WAL's beginning
        (in space the file already holds); False when it could not (busy, or the database file
        could not grow: the disk is full). Best effort: the write that follows says what counts."""
        try:
            busy, _, _ = self.db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        except sqlite3.OperationalError:
            return False
        return busy == 0

    def pending(self, limit: int = 1000) -> list[Measurement]:
        """The oldest unacknowledged records, in sequence order (replay order).

        A stored record the protocol no longer accepts (spooled by an older version, e.g. a reading
        of a node without a clock, from 1970) would be refused by the central unit forever and block
        every record behind it: it is removed, counted in :attr:`dropped`, and said in the journal."""
        rows = self.db.execute("SELECT seq, payload FROM records ORDER BY seq LIMIT ?", [limit]).fetchall()
        out, unsendable = [], []
        for seq, payload in rows:
            try:
                out.append(Measurement.from_dict(json.loads(payload)))
            except (ProtocolError, ValueError) as e:
                log.warning("spool record seq %d can never be accepted (%s): dropped", seq, e)
                unsendable.append(seq)
        if unsendable:
            with self.db.conn as conn:
                conn.executemany("DELETE FROM records WHERE seq = ?", [(s,) for s in unsendable])
                conn.execute("UPDATE state SET value = value + ? WHERE key = 'dropped'", [len(unsendable)])
        return out

    def ack(self, seqs: list[int]) -> int:
        """Forget records the central unit has stored; returns how many were removed. Deleting is what
        makes room, so on a full disk this checkpoints and tries again; :class:`SpoolFull` if even
        that fails (the records stay: the caller tries again later rather than send them again)."""
        if not seqs:
            return 0
        try:
            return self._delete(seqs)
        except sqlite3.OperationalError as e:
            if not is_disk_full(e):
                raise
        # Deleting a whole batch rewrites all its pages, more WAL than a full disk may have: in small
        # transactions instead (each ack is idempotent, so a partial one is just a smaller one).
        chunks = [seqs[i : i + ACK_CHUNK_RECORDS] for i in range(0, len(seqs), ACK_CHUNK_RECORDS)]
        return sum(self._after_checkpoint(lambda c=c: self._delete(c), "acknowledged records not removed yet")
                   for c in chunks)  # fmt: skip

    def _delete(self, seqs: list[int]) -> int:
        with self.db.conn as conn:
            cur = conn.executemany("DELETE FROM records WHERE seq = ?", [(int(s),) for s in seqs])
        return cur.rowcount

    def close(self) -> None:
        self.db.close()
