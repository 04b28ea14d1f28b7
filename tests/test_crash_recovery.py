"""Crash recovery with real processes: ``rftwin-central run`` killed with SIGKILL under load and
restarted on the same database; node agents killed mid-upload.

What must hold: every record the central unit acknowledged before it died is in its database when it
comes back (an ack is a promise: WAL with synchronous=FULL, committed before the answer); nothing is
stored twice ((node_id, seq) is the primary key, and the counts match the senders' sequence ranges
with no gaps once they have replayed what was not acknowledged); a resent, already acknowledged batch
gets the same ack and adds no row.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from central.config import load_config
from central.store import Store
from tests.central_helpers import VIEWER, VIEWER_TOKEN, batch_dict
from tests.node_configs import simulated_node_toml, write_config
from tests.polling import wait_for

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(Path(sys.executable).with_name("rftwin-central"))
TINY_3SU = ROOT / "tests" / "data" / "tiny_hall_3su.toml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CentralProcess:
    """``rftwin-central run`` on a fixed loopback port (so that restarts keep the nodes' URL), with
    ``nodes`` enrolled (su01..) and its log in a file (a pipe nobody reads would block it)."""

    def __init__(self, workdir: Path, nodes: int):
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "central.toml"
        # the tiny hall with su01..su03: the service traces its site at start (seconds here, cold)
        self.config.write_text(f'site = "{TINY_3SU}"\ndata_dir = "data"\nadvertise = false\n'
                               f'[listen]\nhost = "127.0.0.1"\nport = {self.port}\n')  # fmt: skip
        cfg = load_config(self.config)
        self.db_path = cfg.db_path
        store = Store(cfg.db_path)
        site = cfg.load_site()
        self.tokens = {u.id: store.add_node(u.id, u.position_m, su_id=u.id) for u in site.sensing_units[:nodes]}
        store.add_credential("viewer", "control-room", VIEWER_TOKEN)  # reads need a credential
        store.close()
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout_s: float = 90.0) -> None:
        self.starts += 1
        log = open(self.workdir / f"central-{self.starts}.log", "w")
        self.proc = subprocess.Popen([SCRIPT, "run", "--config", str(self.config), "--log-level", "warning"],
                                     stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)  # fmt: skip
        log.close()
        def healthy() -> bool:
            try:
                return httpx.get(self.url + "/api/v1/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout_s, "the central unit to be healthy", step_s=0.05, alive=self.assert_alive,
                 explain=self.log)  # fmt: skip

    def assert_alive(self) -> None:
        assert self.proc.poll() is None, self.log()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.workdir.glob("central-*.log")))

    def stored(self) -> dict[str, list[int]]:
        """{node: seqs} read through a connection of our own (after a crash this also recovers the WAL)."""
        with sqlite3.connect(self.db_path, timeout=10) as db:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            out: dict[str, list[int]] = {}
            for node, seq in db.execute("SELECT node_id, seq FROM measurements ORDER BY node_id, seq"):
                out.setdefault(node, []).append(seq)
            return out


@pytest.fixture
def central(tmp_path):
    c = CentralProcess(tmp_path, nodes=3)
    c.start()
    yield c
    c.stop()


class Sender(threading.Thread):
    """A load generator that behaves like a node's uplink: numbered batches, each sent until it is
    acknowledged (connection refused, 429 and 503 are retried, as the agent's backoff does), the
    acknowledgements logged on the client side."""

    def __init__(self, url: str, node_id: str, token: str, batch: int = 50):
        super().__init__(daemon=True, name=f"sender-{node_id}")
        self.url, self.node_id, self.batch = url, node_id, batch
        self.client = httpx.Client(headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                                   timeout=5.0)  # fmt: skip
        self.lock = threading.Lock()
        self.acked: set[int] = set()
        self.duplicates = 0
        self.next_seq = 0  # seqs [0, next_seq) have been handed out
        self.running = threading.Event()  # cleared: finish the batch in hand, then wait
        self.running.set()
        self.produce = True  # False: only resend what is unacknowledged, then stop
        self.failures = 0
        self.unexpected: list[str] = []

    def run(self) -> None:
        pending: dict | None = None
        while True:
            self.running.wait()
            if pending is None:
                if not self.produce:
                    return
                pending = batch_dict(self.batch, self.node_id, first_seq=self.next_seq)
                self.next_seq += self.batch
            try:
                r = self.client.post(self.url + "/api/v1/ingest", content=json.dumps(pending))
            except httpx.HTTPError:
                self.failures += 1
                time.sleep(0.05)
                continue
            if r.status_code in (429, 503):
                time.sleep(0.05)
                continue
            if r.status_code != 200:
                self.unexpected.append(f"{r.status_code}: {r.text}")
                return
            ack = r.json()
            with self.lock:
                self.acked |= set(ack["acked"])
                self.duplicates += ack["duplicates"]
            pending = None

    def acked_now(self) -> set[int]:
        with self.lock:
            return set(self.acked)


def test_central_killed_under_load_keeps_every_acknowledged_record_and_stores_none_twice(central):
    senders = [Sender(central.url, nid, tok) for nid, tok in central.tokens.items()]
    for s in senders:
        s.start()
    for cycle in range(2):  # twice: the second crash hits a database that has already recovered once
        time.sleep(1.5)
        assert all(s.acked_now() for s in senders) and not any(s.unexpected for s in senders)
        central.kill()  # mid-stream: batches are in flight, some stored but not yet acknowledged
        for s in senders:
            s.running.clear()
        acked_before = {s.node_id: s.acked_now() for s in senders}  # the process is dead: no more acks
        stored = central.stored()
        for nid, acked in acked_before.items():
            missing = acked - set(stored.get(nid, ()))
            assert not missing, f"cycle {cycle}: {nid}: acknowledged but lost: {sorted(missing)[:10]}"
        central.start()
        for s in senders:
            s.running.set()
    time.sleep(1.0)
    for s in senders:
        s.produce = False  # drain: resend what is unacknowledged, then stop
    for s in senders:
        s.join(timeout=30)
        assert not s.is_alive() and not s.unexpected, s.unexpected
    stored = central.stored()
    for s in senders:
        assert s.failures > 0  # the kills really interrupted this sender
        assert stored[s.node_id] == list(range(s.next_seq)) == sorted(s.acked), s.node_id  # all, once, no gap
    nodes = {n["node_id"]: n for n in httpx.get(central.url + "/api/v1/nodes", headers=VIEWER).json()}
    assert all(nodes[s.node_id]["records"] == s.next_seq for s in senders)  # statistics survived the crashes

    # A replayed, already acknowledged batch: the same ack, nothing new.
    s = senders[0]
    with httpx.Client(headers={"Authorization": f"Bearer {central.tokens[s.node_id]}"}) as c:
        r = c.post(central.url + "/api/v1/ingest", json=batch_dict(50, s.node_id, first_seq=0))
        assert r.json() == {"acked": list(range(50)), "duplicates": 50}
        r = c.post(central.url + "/api/v1/ingest", json=batch_dict(50, senders[1].node_id, first_seq=0))
        assert r.status_code == 403  # and not as another node
    assert central.stored() == stored


# ---------------------------------------------------------------------------------- real agents


def _agent(config: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "node.cli", "run", "--config", str(config), *args], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def spool_state(spool_path: Path) -> tuple[int, set[int], int]:
    """(last_seq, pending seqs, dropped) of a node's spool, in one read transaction (the agent keeps
    writing). Every seq <= last_seq that is neither pending nor dropped was acknowledged."""
    db = sqlite3.connect(spool_path, timeout=10, isolation_level=None)
    try:
        db.execute("BEGIN")
        last = db.execute("SELECT value FROM state WHERE key = 'last_seq'").fetchone()[0]
        dropped = db.execute("SELECT value FROM state WHERE key = 'dropped'").fetchone()[0]
        pending = {s for (s,) in db.execute("SELECT seq FROM records")}
        db.execute("COMMIT")
        return last, pending, dropped
    finally:
        db.close()


def assert_acknowledged_are_stored(central: CentralProcess, spools: dict[str, Path], when: str) -> None:
    stored = central.stored()
    for nid, path in spools.items():
        last, pending, dropped = spool_state(path)
        assert dropped == 0
        acked = set(range(last + 1)) - pending
        missing = acked - set(stored.get(nid, ()))
        assert not missing, f"{when}: {nid}: acknowledged (gone from the spool) but not stored: {sorted(missing)[:10]}"


def drain(spool_path: Path, node_id: str, token: str, url: str) -> None:
    """Send what a stopped agent left spooled (:func:`node.uplink.drain_spool`). SIGTERM drains the spool
    only while uploads succeed at once: an agent that is in backoff when it is told to stop keeps the
    rest for its next start, by design."""
    from node.uplink import drain_spool

    drain_spool(spool_path, node_id, token, url)


def test_real_agents_replay_their_spools_after_a_central_crash_and_an_agent_crash(tmp_path, central):
    """Three node agents (simulated radios, 20 readings/s each) upload to the real central unit. The
    central unit is SIGKILLed and restarted; then one agent is SIGKILLed mid-upload and restarted.
    At each crash, what the agents' spools say was acknowledged is in the central database; in the
    end every reading of every node is stored exactly once."""
    configs, spools = {}, {}
    for nid, token in central.tokens.items():
        d = tmp_path / nid
        d.mkdir()
        configs[nid] = write_config(d, simulated_node_toml(nid, url=central.url, token=token, interval_s=0.05,
                                                           samples=4096, timeout_s=1.0))  # fmt: skip
        spools[nid] = d / f"state-{nid}" / "spool.db"
    agents = {nid: _agent(cfg) for nid, cfg in configs.items()}
    try:
        wait_for(lambda: len(central.stored()) == len(agents), 30, "a reading from every agent", step_s=0.2,
                 explain=central.log)  # fmt: skip
        time.sleep(1.0)
        central.kill()
        assert_acknowledged_are_stored(central, spools, "central killed")
        time.sleep(1.0)  # the agents keep measuring and spooling while the central unit is down
        assert all(len(spool_state(p)[1]) > 0 for p in spools.values())
        central.start()
        time.sleep(2.0)

        victim = "su02"
        agents[victim].send_signal(signal.SIGKILL)  # mid-upload: it uploads continuously
        agents[victim].wait(timeout=10)
        assert_acknowledged_are_stored(central, {victim: spools[victim]}, "agent killed")
        last_before_kill = spool_state(spools[victim])[0]
        agents[victim] = _agent(configs[victim])
        # the restarted agent is up (its signal handlers too) once it has delivered a reading of its own
        wait_for(lambda: max(central.stored().get(victim, [-1])) > last_before_kill, 60,
                 "a reading of the restarted agent", step_s=0.2)  # fmt: skip
    finally:
        for p in agents.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # the uplink drains the spool before the agent exits
        errors = {nid: p.communicate(timeout=30)[1] for nid, p in agents.items()}
    for nid, p in agents.items():
        assert p.returncode == 0, errors[nid][-2000:]
        drain(spools[nid], nid, central.tokens[nid], central.url)
    stored = central.stored()
    for nid, path in spools.items():
        last, pending, dropped = spool_state(path)
        assert not pending and dropped == 0, (nid, len(pending))
        assert stored[nid] == list(range(last + 1)), nid  # every reading, once, no gap
        assert last > 60, (nid, last)  # it really ran through both crashes


def test_an_agent_stopped_mid_reading_still_uploads_that_reading_before_it_exits(tmp_path):
    """SIGTERM (``Agent.stop``) lands while a reading is being taken: the reading is spooled after
    the stop, and the uplink must send it before the agent exits. Found by the crash test above: the
    uplink ended on "spool empty and stopping" even when the measurement loop spooled one more
    reading right after it looked, so that reading waited for the next start."""
    from node.agent import Agent
    from node.config import load_config
    from node.sdr.open import open_backend
    from node.spool import Spool
    from tests.ingest_server import IngestServer

    srv = IngestServer(tmp_path / "central.db", {"su01": "secret-su01"}).start()
    try:
        cfg = load_config(write_config(tmp_path, simulated_node_toml(url=srv.url, interval_s=0.05)))
        for run in range(3):
            holder: dict = {}

            def radio(cfg, holder=holder):
                r = open_backend(cfg)
                real, reads = r.read, [0]

                def read(n):
                    reads[0] += 1
                    if reads[0] == 6:
                        holder["agent"].stop()  # the signal arrives mid-reading ...
                        time.sleep(0.3)  # ... and the uplink has time to look at an empty spool
                    return real(n)

                r.read = read
                return r

            agent = holder["agent"] = Agent(cfg, open_radio=radio)
            assert agent.run(duration_s=10) == 0
            spool = Spool(cfg.spool.path)
            try:
                last, pending = spool._state("last_seq"), len(spool)
            finally:
                spool.close()
            assert pending == 0, f"run {run}: {pending} reading(s) left spooled after a clean stop"
            assert srv.store.seqs("su01") == list(range(last + 1))
    finally:
        srv.stop()
