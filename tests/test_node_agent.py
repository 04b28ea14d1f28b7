"""The node agent end to end: simulated radio → DSP → spool → HTTP uplink → a real ingest endpoint.

What must hold whatever happens: every reading reaches the central unit exactly once, in a gap-free
sequence, whether the central unit is down for a while, answers with errors, loses acknowledgements,
or the agent itself is killed mid-upload; radio failures are counted and survived.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from node.agent import EXIT_WATCHDOG, Agent
from node.config import load_config
from node.sdr.open import open_backend
from node.sigmf import read_capture
from tests.polling import wait_for
from tests.sigmf_check import assert_valid_sigmf
from node.spool import Spool
from tests.ingest_server import IngestServer, IngestStore
from tests.node_configs import simulated_node_toml, write_config

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def last_seq(cfg) -> int:
    spool = Spool(cfg.spool.path)
    try:
        return spool._state("last_seq")
    finally:
        spool.close()


def assert_delivered_exactly_once(store: IngestStore, cfg) -> int:
    """Every seq the node ever allocated is stored once at the central unit, and none is pending."""
    n = last_seq(cfg) + 1
    assert n > 0
    assert store.seqs(cfg.node_id) == list(range(n))  # primary key: at most once; list: all of them
    spool = Spool(cfg.spool.path)
    assert len(spool) == 0 and spool.dropped == 0
    spool.close()
    return n


@pytest.fixture
def server(tmp_path):
    srv = IngestServer(tmp_path / "central.db", {"su01": "secret-su01"}).start()
    yield srv
    srv.stop()


def run_agent(cfg, seconds: float, **kw) -> Agent:
    agent = Agent(cfg, **kw)
    assert agent.run(duration_s=seconds) == 0
    return agent


def test_readings_reach_the_central_unit_in_order_and_the_spool_empties(tmp_path, server):
    cfg = load_config(write_config(tmp_path, simulated_node_toml(url=server.url)))
    agent = run_agent(cfg, 1.0)
    n = assert_delivered_exactly_once(server.store, cfg)
    assert agent.status.readings == n >= 10 and agent.status.read_errors == 0
    stored = server.store.record("su01", 0)
    assert stored["power_dbm"] == pytest.approx(-60.0, abs=0.3)  # the emitter dominates thermal noise
    assert len(stored["subband_powers_dbm"]) == 1 and stored["gain_db"] == 30.0
    status = json.loads(cfg.status_path.read_text())
    assert status["uploaded"] == n and status["pending"] >= 0


def test_central_down_for_a_while_then_back_loses_and_duplicates_nothing(tmp_path):
    port = free_port()
    cfg = load_config(write_config(tmp_path, simulated_node_toml(url=f"http://127.0.0.1:{port}")))
    agent = Agent(cfg)
    t = threading.Thread(target=agent.run, kwargs={"duration_s": 2.5})
    t.start()
    time.sleep(1.0)  # nothing listens: connection refused, the node spools
    assert agent.status.uploaded == 0 and agent.status.upload_failures > 0
    srv = IngestServer(tmp_path / "central.db", {"su01": "secret-su01"}, port=port).start()
    try:
        t.join()
        assert agent.status.uploaded > 0 and agent.status.last_upload_error == ""
        assert_delivered_exactly_once(srv.store, cfg)
    finally:
        srv.stop()


def test_errors_and_lost_acknowledgements_cause_resends_that_are_harmless(tmp_path, server):
    cfg = load_config(write_config(tmp_path, simulated_node_toml(url=server.url, timeout_s=0.3)))
    server.fail_with = 503
    agent = Agent(cfg)
    t = threading.Thread(target=agent.run, kwargs={"duration_s": 2.5})
    t.start()
    time.sleep(0.6)
    assert "503" in agent.status.last_upload_error
    server.fail_with = None
    server.delay_s = 0.5  # stored, but the ack arrives after the node gave up: the node resends
    time.sleep(1.0)
    server.delay_s = 0.0
    t.join()
    assert_delivered_exactly_once(server.store, cfg)
    assert server.store.duplicates() > 0  # the resends really happened, and were absorbed


def test_a_wrong_token_keeps_everything_spooled_and_says_why(tmp_path, server):
    cfg = load_config(write_config(tmp_path, simulated_node_toml(url=server.url, token="stolen")))
    agent = run_agent(cfg, 0.6)
    assert agent.status.uploaded == 0 and "401" in agent.status.last_upload_error
    assert server.store.seqs("su01") == []
    spool = Spool(cfg.spool.path)
    assert len(spool) == agent.status.readings > 0  # nothing lost: it waits for a valid token
    spool.close()


class FlakyRadio:
    """Fails to open once, then fails every third read, like a radio on a loose USB cable."""

    def __init__(self):
        self.opens = 0
        self.reads = 0

    def __call__(self, cfg):
        self.opens += 1
        if self.opens == 1:
            raise OSError("No such device (simulated unplug)")
        radio = open_backend(cfg)
        real_read = radio.read

        def read(n):
            self.reads += 1
            if self.reads % 3 == 0:
                raise RuntimeError("Timeout reading samples")
            return real_read(n)

        radio.read = read
        return radio


def test_radio_errors_are_counted_retried_and_survived(tmp_path, server):
    cfg = load_config(write_config(tmp_path, simulated_node_toml(url=server.url)))
    flaky = FlakyRadio()
    agent = run_agent(cfg, 1.5, open_radio=flaky)
    st = agent.status
    assert st.read_errors >= 3 and "Timeout reading samples" in st.last_read_error
    assert flaky.opens >= 3  # reopened after each failure
    assert st.readings >= 5
    assert assert_delivered_exactly_once(server.store, cfg) == st.readings


def test_saturated_readings_are_flagged_and_their_iq_captured_to_sigmf(tmp_path, server):
    text = simulated_node_toml(url=server.url, emitter_dbm=-5.0, extra="\n[sigmf]\nmax_captures = 2\nmin_interval_s = 0.0\n")
    cfg = load_config(write_config(tmp_path, text))
    agent = run_agent(cfg, 0.6)
    assert agent.status.saturated_readings == agent.status.readings > 2
    metas = sorted(cfg.sigmf.directory.glob("*.sigmf-meta"))
    assert len(metas) == 2  # pruned to max_captures
    meta, samples = read_capture(metas[-1])
    assert meta["global"]["core:datatype"] == "cf32_le" and meta["global"]["core:sample_rate"] == 30.72e6
    assert meta["captures"][0]["core:frequency"] == 3.7e9
    assert samples.size == cfg.radio.samples_per_reading == meta["annotations"][0]["core:sample_count"]
    assert meta["annotations"][0]["rftwin:measurement"]["saturated"] is True
    assert (samples.real.min(), samples.real.max()) == (-1.0, 2047 / 2048)  # the ADC's rails are in the file
    seqs = [assert_valid_sigmf(m).get_annotations()[0]["rftwin:measurement"]["seq"] for m in metas]
    assert len(set(seqs)) == 2 and set(seqs) <= set(server.store.seqs(cfg.node_id)), seqs  # the spooled records


def _agent_process(config: Path, *args: str, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "node.cli", "run", "--config", str(config), *args], cwd=ROOT,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip


def test_agent_killed_mid_upload_restarts_and_completes(tmp_path):
    port = free_port()
    srv = subprocess.Popen([sys.executable, "-m", "tests.ingest_server", "--db", str(tmp_path / "central.db"),
                            "--port", str(port), "--token", "su01=secret-su01", "--delay-s", "0.4"],
                           cwd=ROOT, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert int(srv.stdout.readline()) == port
        cfg_path = write_config(tmp_path, simulated_node_toml(url=f"http://127.0.0.1:{port}"))
        cfg = load_config(cfg_path)
        agent = _agent_process(cfg_path)
        store = IngestStore(tmp_path / "central.db")
        wait_for(lambda: store.seqs("su01"), 20, "a first stored batch", step_s=0.05)
        time.sleep(0.2)  # a batch is stored and its (delayed) ack is in flight: kill now
        agent.kill()
        agent.wait()
        pending_after_kill = len(Spool(cfg.spool.path))
        assert pending_after_kill > 0  # the kill really landed before everything was acknowledged
        rerun = _agent_process(cfg_path, "--duration", "1.5")
        out, _ = rerun.communicate(timeout=30)
        assert rerun.returncode == 0, out
        assert_delivered_exactly_once(store, cfg)
        assert store.duplicates() > 0  # the batch whose ack the kill cut off was sent again, harmlessly
    finally:
        srv.kill()
        srv.wait()


def test_a_hung_measurement_loop_stops_the_watchdog_pings_and_exits_nonzero(tmp_path):
    """systemd's notify socket is real here: READY=1 and WATCHDOG=1 arrive, then the pings stop and the
    process exits with EXIT_WATCHDOG when the radio read hangs."""
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.1)
    cfg_path = write_config(tmp_path, simulated_node_toml(url="http://127.0.0.1:9", interval_s=0.05))
    script = f"""
import time
from node.agent import Agent
from node.config import load_config
from node.sdr.open import open_backend
reads = [0]
def radio(cfg):
    r = open_backend(cfg)
    real = r.read
    def read(n):
        reads[0] += 1
        if reads[0] > 20:
            time.sleep(3600)  # a libiio read that never returns
        return real(n)
    r.read = read
    return r
Agent(load_config({str(cfg_path)!r}), open_radio=radio).run()
"""
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1000000"})  # fmt: skip
    messages = []
    while proc.poll() is None and time.monotonic() - t0 < 20:
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
    rc = proc.wait(timeout=5)
    _, err = proc.communicate()
    sock.close()
    assert rc == EXIT_WATCHDOG, err
    assert "measurement loop stuck" in err
    assert any("READY=1" in m for m in messages) and any(m == "WATCHDOG=1" for m in messages)
    assert any(m.startswith("STATUS=") and "readings" in m for m in messages)


def test_refuse_at_max_records_pauses_the_radio_and_acks_resume_it_without_a_restart(tmp_path):
    """A full spool (here: max_records, so no disk has to fill) under policy refuse: the radio is left
    alone, every interval without a reading is counted, the status says why; acks make room and the
    agent measures again by itself; the batches carry the spool state to the central unit."""
    port = free_port()
    text = simulated_node_toml(url=f"http://127.0.0.1:{port}", interval_s=0.02, samples=2048,
                               extra='\n[spool]\nmax_records = 5\npolicy = "refuse"\n')  # fmt: skip
    cfg = load_config(write_config(tmp_path, text))
    agent = Agent(cfg)
    st = agent.status
    t = threading.Thread(target=agent.run, kwargs={"duration_s": 120.0})
    t.start()
    srv, headers = None, []
    try:
        wait_for(lambda: st.measuring_paused and st.refused >= 50, 60, "the radio paused by a full spool")
        assert st.readings == 5 and st.spool_full and "(max 5)" in st.spool_full_reason
        assert st.summary().startswith("SPOOL FULL, not measuring")
        wait_for(lambda: json.loads(cfg.status_path.read_text())["measuring_paused"], 60, "status.json to say so")
        assert json.loads(cfg.status_path.read_text())["spool_full"]
        # the central unit is back (listening only from now: a bound socket would queue earlier POSTs)
        srv = IngestServer(tmp_path / "central.db", {"su01": "secret-su01"}, port=port)
        store_batch = srv.store.store
        srv.store.store = lambda batch: headers.append(batch.spool) or store_batch(batch)
        srv.start()
        wait_for(lambda: st.readings >= 50 and not st.measuring_paused, 60, "measuring to resume")  # acks made room
    finally:
        agent.stop()
        t.join()
        if srv is not None:
            srv.stop()
    assert_delivered_exactly_once(srv.store, cfg)  # refuse loses nothing it stored, and sends nothing twice
    assert srv.store.duplicates() == 0
    assert headers and headers[0].full and headers[0].refused >= 50 and headers[0].dropped == 0
