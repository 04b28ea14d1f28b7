"""The spool: written before upload, replayed in order, never reuses a seq, bounded, survives SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from node.protocol import MIN_T_NS, Measurement
from node.spool import DISK_FULL, UNDER_RESERVE, Spool, SpoolFull


def reading(power_dbm=-60.0, t_ns=0):
    return Measurement("su01", 0, MIN_T_NS + t_ns, 3.7e9, 20e6, power_dbm)  # from 2020: a node with a clock


def test_append_assigns_increasing_seqs_and_replays_in_order(tmp_path):
    sp = Spool(tmp_path / "s.db")
    stored = [sp.append(reading(-60.0 - i)) for i in range(5)]
    assert [m.seq for m in stored] == [0, 1, 2, 3, 4]
    assert [m.power_dbm for m in sp.pending()] == [-60, -61, -62, -63, -64]
    assert [m.seq for m in sp.pending(limit=2)] == [0, 1]


def test_a_stored_record_the_protocol_now_refuses_is_dropped_not_replayed_forever(tmp_path, caplog):
    """A spool written by an older version may hold a 1970 reading (a node without a clock): the
    central unit would answer it 422 for ever and nothing behind it would be sent."""
    sp = Spool(tmp_path / "s.db")
    for i in range(3):
        sp.append(reading(-60.0 - i))
    old = {**reading().to_dict(), "seq": 1, "t_ns": 1}
    sp.db.execute("UPDATE records SET payload = ? WHERE seq = 1", [json.dumps(old)])
    sp.db.conn.commit()
    with caplog.at_level("WARNING", logger="node.spool"):
        assert [m.seq for m in sp.pending()] == [0, 2]
    assert "spool record seq 1 can never be accepted" in caplog.text and "before 2020" in caplog.text
    assert len(sp) == 2 and sp.dropped == 1
    assert [m.seq for m in sp.pending()] == [0, 2]  # gone for good


def test_ack_removes_only_acknowledged_records(tmp_path):
    sp = Spool(tmp_path / "s.db")
    for _ in range(4):
        sp.append(reading())
    assert sp.ack([0, 2, 99]) == 2
    assert [m.seq for m in sp.pending()] == [1, 3]
    assert sp.ack([]) == 0


def test_restart_keeps_records_and_never_reuses_a_seq(tmp_path):
    sp = Spool(tmp_path / "s.db")
    for _ in range(3):
        sp.append(reading())
    sp.ack([0, 1, 2])
    sp.close()
    again = Spool(tmp_path / "s.db")
    assert len(again) == 0
    assert again.append(reading()).seq == 3


def test_drop_oldest_keeps_the_newest_and_counts_drops(tmp_path):
    sp = Spool(tmp_path / "s.db", max_records=3)
    for i in range(5):
        sp.append(reading(-50.0 - i))
    assert [m.seq for m in sp.pending()] == [2, 3, 4]
    assert sp.dropped == 2 and len(sp) == 3


def test_refuse_policy_raises_and_keeps_what_it_has(tmp_path):
    sp = Spool(tmp_path / "s.db", max_records=2, policy="refuse")
    sp.append(reading())
    sp.append(reading())
    with pytest.raises(SpoolFull, match="max 2"):
        sp.append(reading())
    assert [m.seq for m in sp.pending()] == [0, 1]
    assert len(sp) == 2


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown spool policy"):
        Spool(tmp_path / "s.db", policy="yolo")
    with pytest.raises(ValueError, match="max_records"):
        Spool(tmp_path / "t.db", max_records=0)


def quick_spool(path, **kw) -> Spool:
    """A spool without fsync: these tests are about what it keeps, not about power cuts (an fsync costs
    milliseconds per append on a CI disk)."""
    sp = Spool(path, **kw)
    sp.db.execute("PRAGMA synchronous=OFF")
    return sp


def page_count(sp: Spool) -> int:
    return sp.db.execute("PRAGMA page_count").fetchone()[0]


def fill(sp: Spool, first: int, n: int) -> list[str]:
    """Append n readings; the full_reason of each append."""
    reasons = []
    for i in range(first, first + n):
        sp.append(reading(t_ns=i))
        reasons.append(sp.full_reason)
    return reasons


def test_under_the_reserve_drop_oldest_is_a_ring_inside_the_pages_it_has(tmp_path):
    sp = quick_spool(tmp_path / "s.db", reserve_bytes=0)
    fill(sp, 0, 300)
    pages = page_count(sp)
    sp.reserve_bytes = 2**62  # as if the disk had filled up around the spool
    assert sp.room() == UNDER_RESERVE
    assert set(fill(sp, 300, 400)) == {UNDER_RESERVE}  # more than the spool held: the ring went round
    assert page_count(sp) == pages  # the file did not grow: each new record took an old one's pages
    assert sp.dropped >= 400  # at least one out per record in, every one counted
    assert [m.seq for m in sp.pending(10_000)] == list(range(sp.dropped, 700))  # the newest kept, in order
    sp.reserve_bytes = 0  # space is back: no more dropping
    dropped = sp.dropped
    assert fill(sp, 700, 10) == [""] * 10 and sp.dropped == dropped


def test_sqlite_full_uses_no_seq_and_drop_oldest_carries_on_within_the_file(tmp_path):
    """SQLite's max_page_count gives the very error a full disk does (SQLITE_FULL, 'database or disk is
    full'), deterministically: the failed insert is rolled back, the spool rings instead."""
    sp = quick_spool(tmp_path / "s.db", reserve_bytes=0)
    fill(sp, 0, 200)
    pages = page_count(sp)
    sp.db.execute(f"PRAGMA max_page_count = {pages}")
    reasons = fill(sp, 200, 300)
    assert DISK_FULL in reasons and page_count(sp) == pages
    assert [m.seq for m in sp.pending(10_000)] == list(range(sp.dropped, 500)) and sp.dropped > 0


def test_refuse_on_a_full_disk_raises_and_the_refused_record_uses_no_seq(tmp_path):
    sp = quick_spool(tmp_path / "s.db", policy="refuse", reserve_bytes=0)
    fill(sp, 0, 200)
    sp.db.execute(f"PRAGMA max_page_count = {page_count(sp)}")
    with pytest.raises(SpoolFull, match="disk full") as e:
        fill(sp, 200, 300)
    assert e.value.reason == DISK_FULL and sp.full_reason == DISK_FULL and sp.dropped == 0
    last = sp._state("last_seq")
    for _ in range(3):  # each failed append rolled back: nothing stored, no seq used
        with pytest.raises(SpoolFull):
            sp.append(reading())
    assert sp._state("last_seq") == last
    sp.db.execute("PRAGMA max_page_count = 1073741823")  # space is back
    assert sp.append(reading()).seq == last + 1 and sp.full_reason == ""
    assert [m.seq for m in sp.pending(10_000)] == list(range(last + 2))


def test_acks_make_room_on_a_disk_without_a_free_byte(tmp_path):
    """Deleted records' pages are reused before the file grows: they count as room."""
    sp = quick_spool(tmp_path / "s.db", policy="refuse", reserve_bytes=16 << 10)
    fill(sp, 0, 400)
    sp.free_bytes = lambda: 0  # the filesystem is full; only pages inside the file are left
    with pytest.raises(SpoolFull, match="under its reserve") as e:
        sp.append(reading())
    assert e.value.reason == UNDER_RESERVE
    sp.ack(list(range(20)))  # a page or so: not yet twice the reserve (hysteresis)
    assert sp.room() == UNDER_RESERVE
    sp.ack(list(range(20, 300)))
    assert sp.room() == "" and sp.append(reading()).seq == 400 and sp.full_reason == ""


WRITER = """
import sys, time
from node.protocol import Measurement
from node.spool import Spool
sp = Spool(sys.argv[1])
i = 0
while True:
    m = sp.append(Measurement("su01", 0, 1_577_836_800_000_000_000 + i, 3.7e9, 20e6, -60.0))
    print(m.seq, flush=True)
    i += 1
"""


def test_every_acknowledged_write_survives_sigkill(tmp_path):
    path = tmp_path / "s.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            cwd=os.getcwd())  # fmt: skip
    seen = []
    deadline = time.monotonic() + 30
    while len(seen) < 200 and time.monotonic() < deadline:
        seen.append(int(proc.stdout.readline()))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(seen) == 200
    sp = Spool(path)
    seqs = [m.seq for m in sp.pending(limit=100_000)]
    assert seqs[: len(seen)] == seen  # everything the writer reported as written is there, in order
    assert seqs == list(range(len(seqs)))  # and nothing half-written or duplicated
    assert sp.append(reading()).seq == len(seqs)
