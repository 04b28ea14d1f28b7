"""The spool: written before upload, replayed in order, never reuses a seq, bounded, survives SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from node.protocol import Measurement
from node.spool import Spool, SpoolFull


def reading(power_dbm=-60.0, t_ns=1):
    return Measurement("su01", 0, t_ns, 3.7e9, 20e6, power_dbm)


def test_append_assigns_increasing_seqs_and_replays_in_order(tmp_path):
    sp = Spool(tmp_path / "s.db")
    stored = [sp.append(reading(-60.0 - i)) for i in range(5)]
    assert [m.seq for m in stored] == [0, 1, 2, 3, 4]
    assert [m.power_dbm for m in sp.pending()] == [-60, -61, -62, -63, -64]
    assert [m.seq for m in sp.pending(limit=2)] == [0, 1]


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


WRITER = """
import sys, time
from node.protocol import Measurement
from node.spool import Spool
sp = Spool(sys.argv[1])
i = 0
while True:
    m = sp.append(Measurement("su01", 0, i + 1, 3.7e9, 20e6, -60.0))
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
