"""A node agent on a full disk: the real ``rftwin-node run`` process, its state_dir on a real 256 kB tmpfs,
the central unit unreachable (a closed local port) until the test starts an ingest server there.

What must hold: the agent stays up (its loop keeps measuring or, policy ``refuse``, keeps its heartbeat
without reading the radio); it says so in status.json / ``rftwin-node status`` and once in its log (not
once per reading); it applies the spool policy; it resumes by itself when space comes back (a ballast
file deleted); and afterwards every allocated seq is either delivered once or counted as dropped.

Needs root (mount); skipped with the reason otherwise. The spool's reserve is set explicitly
(``[spool] reserve_bytes``) so that "full" does not depend on the automatic scaling.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.config import load_config
from node.spool import Spool
from node.uplink import drain_spool
from tests.ingest_server import IngestServer
from tests.node_configs import simulated_node_toml, write_config
from tests.polling import wait_for

ROOT = Path(__file__).resolve().parents[1]
DISK_BYTES = 256 << 10
RESERVE_BYTES = 32 << 10
ROOM_BYTES = RESERVE_BYTES + (24 << 10)  # what the ballast leaves: the spool fills it within seconds
DEADLINE_S = 60.0  # generous: conditions are waited for, never timed


@pytest.fixture
def small_disk(tmp_path):
    """A real 256 kB tmpfs at tmp_path/disk, unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) to mount a small tmpfs")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(disk)],
                       capture_output=True, text=True)  # fmt: skip
    if r.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {r.stderr.strip()}")
    yield disk
    if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """A real agent process with its state on the small disk and its log in a file off it."""

    def __init__(self, tmp_path: Path, disk: Path, policy: str):
        self.port = free_port()  # nothing listens: the central unit is unreachable
        text = simulated_node_toml(url=f"http://127.0.0.1:{self.port}", interval_s=0.02, samples=2048,
                                   extra=f'\n[spool]\npolicy = "{policy}"\nreserve_bytes = {RESERVE_BYTES}\n')  # fmt: skip
        text = text.replace('state_dir = "state-su01"', f'state_dir = "{disk / "state"}"')
        self.config_path = write_config(tmp_path, text)
        self.cfg = load_config(self.config_path)
        assert self.cfg.state_dir == disk / "state"
        self.disk = disk
        self.log_path = tmp_path / "agent.log"
        self._log = self.log_path.open("w")
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM", "WATCHDOG_USEC")}
        self.proc = subprocess.Popen([sys.executable, "-m", "node.cli", "run", "--config", str(self.config_path)],
                                     cwd=ROOT, env={**env, "RFTWIN_LOG_FORMAT": "plain"}, stdout=self._log,
                                     stderr=subprocess.STDOUT)  # fmt: skip

    def status(self) -> dict:
        try:
            return json.loads(self.cfg.status_path.read_text())
        except (OSError, ValueError):
            return {}

    def status_cli(self) -> dict:
        """``rftwin-node status --json``: what an operator sees."""
        out = subprocess.run([sys.executable, "-m", "node.cli", "status", "--config", str(self.config_path), "--json"],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def log(self) -> str:
        return self.log_path.read_text()

    def lines(self, fragment: str) -> list[str]:
        return [line for line in self.log().splitlines() if fragment in line]

    def wait_for(self, what: str, cond, deadline_s: float = DEADLINE_S) -> dict:
        """Poll ``cond(status)`` until it is true and return that status; the agent must stay alive meanwhile."""

        def met() -> dict | None:
            st = self.status()
            return st if st and cond(st) else None

        return wait_for(met, deadline_s, what, step_s=0.05, alive=lambda: self.assert_alive(what),
                        explain=lambda: f"{self.disk_usage()}; status {self.status()}\n{self.log()[-4000:]}")  # fmt: skip

    def assert_alive(self, what: str) -> None:
        assert self.proc.poll() is None, f"the agent exited ({self.proc.returncode}) waiting for {what}:\n{self.log()[-4000:]}"

    def disk_usage(self) -> str:
        """What takes the small disk, for a failure message (which file ate the reserve)."""
        files = {str(p.relative_to(self.disk)): p.stat().st_size for p in self.disk.rglob("*") if p.is_file()}
        st = os.statvfs(self.disk)
        return f"files {files}, {st.f_bavail * st.f_frsize} bytes free"

    def ballast(self, leave_bytes: int | None) -> Path:
        """A file that takes the disk's free space but ``leave_bytes`` (None: every last byte)."""
        path = self.disk / "ballast"
        block = b"\0" * 4096
        with path.open("wb", buffering=0) as f:
            if leave_bytes is None:
                try:
                    while True:
                        f.write(block)
                except OSError:
                    pass
            else:
                st = os.statvfs(self.disk)
                for _ in range(max(0, st.f_bavail * st.f_frsize - leave_bytes) // 4096):
                    f.write(block)
        return path

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=60)
        self._log.close()
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def spool_seqs(self) -> tuple[list[int], int, int]:
        """(pending seqs, dropped, last seq allocated) of the stopped agent's spool."""
        spool = Spool(self.cfg.spool.path)
        try:
            return [m.seq for m in spool.pending(100_000)], spool.dropped, spool._state("last_seq")
        finally:
            spool.close()


@pytest.fixture
def node_factory(tmp_path, small_disk):
    nodes: list[Node] = []

    def make(policy: str) -> Node:
        nodes.append(Node(tmp_path, small_disk, policy))
        return nodes[-1]

    yield make
    for n in nodes:  # before the disk is unmounted
        n.kill()


def test_drop_oldest_survives_a_full_disk_reports_it_resumes_and_accounts_for_every_seq(tmp_path, node_factory):
    node = node_factory("drop_oldest")
    node.wait_for("first readings", lambda st: st["readings"] >= 20)
    ballast = node.ballast(leave_bytes=ROOM_BYTES)

    full = node.wait_for("the spool to fill and drop", lambda st: st["spool_full"] and st["dropped"] > 0)
    assert "reserve" in full["spool_full_reason"] and not full["measuring_paused"]
    later = node.wait_for("many more intervals while full",
                          lambda st: st["readings"] >= full["readings"] + 100 and st["spool_full"])  # fmt: skip
    assert later["dropped"] > full["dropped"]  # each new reading took the place of the oldest
    cli = node.status_cli()
    assert cli["spool_full"] is True and cli["dropped"] > 0 and cli["spool_free_bytes"] < 2 * RESERVE_BYTES
    assert len(node.lines("spool full:")) == 1, node.log()  # once, not once per reading
    assert "policy drop_oldest" in node.lines("spool full:")[0]

    ballast.unlink()
    back = node.wait_for("room again", lambda st: not st["spool_full"])
    node.wait_for("readings to go on", lambda st: st["readings"] > back["readings"] + 20)
    assert len(node.lines("spool has room again")) == 1 and len(node.lines("spool full:")) == 1, node.log()
    assert node.proc.poll() is None

    headers = []
    srv = IngestServer(tmp_path / "central.db", {"su01": "secret-su01"}, port=node.port)
    store_batch = srv.store.store
    srv.store.store = lambda batch: headers.append(batch.spool) or store_batch(batch)
    srv.start()
    try:
        node.wait_for("the backlog delivered", lambda st: st["uploaded"] > 0 and st["pending"] < 50)
        assert node.stop() == 0
        pending, dropped, last_seq = node.spool_seqs()
        if pending:  # what the last moments measured, if the agent stopped before sending it
            drain_spool(node.cfg.spool.path, "su01", "secret-su01", srv.url)
            pending, dropped, last_seq = node.spool_seqs()
        received = srv.store.seqs("su01")
    finally:
        srv.stop()
    assert dropped >= later["dropped"] > 0 and pending == []
    assert srv.store.duplicates() == 0  # nothing acknowledged was sent again
    assert len(received) == len(set(received))
    # drop_oldest dropped the oldest: every seq ever allocated was delivered once or counted as dropped
    assert received == list(range(dropped, last_seq + 1)), (dropped, last_seq, received[:5])
    # the batch header told the central unit about the spool (protocol: node.protocol.SpoolState)
    agent_headers = [h for h in headers if h is not None]
    assert agent_headers and all(h.dropped == dropped and not h.full for h in agent_headers)
    assert all(h.free_bytes > 0 for h in agent_headers)


def test_refuse_stops_reading_the_radio_while_full_and_resumes_without_a_restart(tmp_path, node_factory):
    node = node_factory("refuse")
    node.wait_for("first readings", lambda st: st["readings"] >= 20)
    ballast = node.ballast(leave_bytes=ROOM_BYTES)

    paused = node.wait_for("the spool to fill and the radio to pause",
                           lambda st: st["spool_full"] and st["measuring_paused"])  # fmt: skip
    later = node.wait_for("many intervals without a reading", lambda st: st["refused"] >= paused["refused"] + 100)
    assert later["readings"] == paused["readings"]  # the radio is left alone while full
    assert later["spool_full"] and later["measuring_paused"] and later["dropped"] == 0
    assert node.status_cli()["measuring_paused"] is True
    assert len(node.lines("spool full:")) == 1 and "not measuring" in node.lines("spool full:")[0], node.log()

    ballast.unlink()
    node.wait_for("readings to resume", lambda st: not st["spool_full"] and st["readings"] > later["readings"] + 20)
    assert len(node.lines("spool has room again")) == 1, node.log()
    assert node.stop() == 0
    pending, dropped, last_seq = node.spool_seqs()
    assert dropped == 0 and pending == list(range(last_seq + 1))  # refuse loses nothing it stored, uses no seq twice


def test_a_disk_full_to_the_last_byte_is_survived_and_left_by_itself(tmp_path, node_factory):
    """Not even the status file can be written: the log says so once, the agent carries on, and both
    come back when the space does. This is SQLite's SQLITE_FULL, which used to end the process."""
    node = node_factory("drop_oldest")
    node.wait_for("first readings", lambda st: st["readings"] >= 20)
    ballast = node.ballast(leave_bytes=None)
    wait_for(lambda: node.lines("spool full:") and node.lines("cannot write status file"), DEADLINE_S,
             "the log to say the disk is full", step_s=0.05, alive=lambda: node.assert_alive("the log"))  # fmt: skip
    time.sleep(1.0)  # 50 more intervals on a full disk
    assert node.proc.poll() is None, node.log()
    assert len(node.lines("spool full:")) == 1 and len(node.lines("cannot write status file")) == 1, node.log()

    ballast.unlink()
    removed_unix_s = time.time()  # the status file from before the disk filled says "not full" too
    node.wait_for("room again", lambda st: st["written_unix_s"] > removed_unix_s and not st["spool_full"])
    assert len(node.lines("status file")) == 2 and len(node.lines("spool has room again")) == 1, node.log()
    assert node.stop() == 0
    pending, dropped, last_seq = node.spool_seqs()
    assert pending == list(range(dropped, last_seq + 1))  # only the oldest dropped, counted; no seq reused


def test_a_restart_on_a_disk_without_a_free_byte_waits_for_the_spool_instead_of_crash_looping(tmp_path, node_factory):
    """After a clean stop SQLite has removed its -wal and -shm files; a restart on a disk with no free
    byte cannot create them, so the spool cannot even be opened. Under systemd an exit here is a
    restart loop for as long as the disk stays full: the agent must stay up, say why once, and start
    measuring by itself when there is room."""
    first = node_factory("drop_oldest")
    first.wait_for("first readings", lambda st: st["readings"] >= 10)
    assert first.stop() == 0
    pending_before, _, last_seq_before = first.spool_seqs()
    ballast = first.ballast(leave_bytes=None)

    restarted_unix_s = time.time()
    node = node_factory("drop_oldest")
    wait_for(lambda: node.lines("cannot open the spool"), DEADLINE_S, "the log to say the spool cannot open",
             step_s=0.05, alive=lambda: node.assert_alive("the log"))  # fmt: skip
    time.sleep(2.5)  # a few more attempts (one a second) on the full disk
    assert node.proc.poll() is None, node.log()
    assert len(node.lines("cannot open the spool")) == 1, node.log()  # said once, not per attempt

    ballast.unlink()
    st = node.wait_for("readings after the restart",
                       lambda st: st["started_unix_s"] > restarted_unix_s and st["readings"] > 0)  # fmt: skip
    assert not st["spool_full"] and not st["measuring_paused"]
    assert len(node.lines("open after")) == 1, node.log()
    assert node.stop() == 0
    pending, dropped, last_seq = node.spool_seqs()
    assert pending[: len(pending_before)] == pending_before and last_seq > last_seq_before  # nothing lost, no seq reused
    assert dropped == 0
