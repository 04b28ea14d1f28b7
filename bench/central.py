"""Central unit benchmark: ingest throughput through the real HTTP API and store.

Usage: python bench/central.py [--clients 4] [--batches 40] [--repeats 3]
Last line: one JSON object with

- ``ingest_records_per_s``: records durably stored per second (goal >= 50 000 on 2 cores). A real
  ``rftwin-central run`` process (uvicorn, one process, SQLite WAL with synchronous=FULL) on
  loopback; ``--clients`` client processes, each enrolled as its own node, POST 1000-record batches
  (bodies built before the clock starts, fresh seqs every run, so nothing is a duplicate) over a
  keep-alive connection. Rate = records of the run / (last response - first request); median of
  ``--repeats`` runs. Every record is checked to be stored once at the end.

- ``alarm_latency_p50_ms`` / ``alarm_latency_p99_ms`` (goal p99 <= 250 ms): twelve nodes report
  every 100 ms, each reading sent as soon as it is taken (as the agent's uplink does), with the
  twin's prediction for three fixed transmitters + N(0, 0.5 dB) measurement noise; the context
  feed reports the transmitters; 15 s of normal operation, then normal statistics are learned over
  the API. Then ``--trials`` times: a 20 dBm jammer appears at a random valid position (its power,
  through the twin's gains, added in mW to every SU's reading), and the latency is from the
  ``t_ns`` of the first jammed reading to the moment ``GET /alarms?state=active`` returns the alarm
  (polled every 5 ms); the jammer then goes off and the alarm clears before the next trial. A
  trial without an alarm within 10 s is a miss, and a miss counts as an infinitely late alarm in
  the percentiles (``null`` when a percentile falls on misses): a jammer that is not found must not
  make the latency look better. ``alarm_pd`` (alarms / trials) stands beside them.

More figures are added as more functions in ``BENCHES`` (each returns a dict merged into the last line).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import multiprocessing as mp
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH = 1000
T0_NS = time.time_ns() - 3600 * 10**9  # measurement times in the past hour: never "in the future"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CentralProcess:
    """``rftwin-central run`` in a temporary data dir, with ``nodes`` enrolled (ids su01..)."""

    def __init__(self, workdir: Path, nodes: int, extra_toml: str = ""):
        from central.config import load_config
        from central.enrolment import enrol_node
        from central.store import Store
        from central.twin.site import resolve_site

        self.port = free_port()
        self.config = workdir / "central.toml"
        self.config.write_text(f'site = "factory-hall-a"\ndata_dir = "data"\nadvertise = false\n'
                               f'[listen]\nhost = "127.0.0.1"\nport = {self.port}\n{extra_toml}')  # fmt: skip
        self.db = workdir / "data" / "central.db"
        site = resolve_site(load_config(self.config).site)
        self.tokens: dict[str, str] = {}
        with Store(self.db) as store:
            for su in site.sensing_units[:nodes]:
                self.tokens[su.id] = enrol_node(store, site, su.id, su.position_m)[0]
        self.log = open(workdir / "central.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "central.cli", "run", "--config", str(self.config),
                                      "--log-level", "warning"], cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.request("GET", "/api/v1/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"central unit did not start: {(workdir / 'central.log').read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)
        self.log.close()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_bodies(node_id: str, first_seq: int, batches: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    bodies = []
    seq = first_seq
    for _ in range(batches):
        recs = []
        for _ in range(BATCH):
            recs.append({"node_id": node_id, "seq": seq, "t_ns": T0_NS + seq * 1_000_000, "f_center_hz": 3.7e9,
                         "bandwidth_hz": 2e7, "power_dbm": -60.0 + rng.gauss(0, 1),
                         "subband_powers_dbm": [-64.0 + rng.gauss(0, 1)], "saturated": False,
                         "clip_fraction": 0.0, "gain_db": 30.0})  # fmt: skip
            seq += 1
        bodies.append(json.dumps({"protocol": 1, "node_id": node_id, "records": recs}).encode())
    return bodies


def client(port: int, token: str, bodies: list[bytes], barrier, out) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn.request("GET", "/api/v1/health")  # connect before the clock starts
    conn.getresponse().read()
    barrier.wait()
    start = time.monotonic()
    for body in bodies:
        conn.request("POST", "/api/v1/ingest", body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200 or json.loads(data)["duplicates"]:
            out.put(("error", f"{resp.status}: {data[:200]!r}"))
            return
    out.put((start, time.monotonic()))
    conn.close()


def bench_ingest(args) -> dict:
    ctx = mp.get_context("fork")
    with tempfile.TemporaryDirectory(prefix="rftwin-bench-central-") as tmp:
        central = CentralProcess(Path(tmp), args.clients)
        try:
            rates, cpu = [], []
            for run in range(args.repeats):
                first = run * args.batches * BATCH
                work = {nid: make_bodies(nid, first, args.batches, run) for nid in central.tokens}
                barrier, out = ctx.Barrier(len(work)), ctx.Queue()
                procs = [ctx.Process(target=client, args=(central.port, central.tokens[nid], bodies, barrier, out))
                         for nid, bodies in work.items()]  # fmt: skip
                cpu0 = cpu_s(central.proc.pid)
                for p in procs:
                    p.start()
                results = [out.get(timeout=600) for _ in procs]
                for p in procs:
                    p.join()
                cpu.append(cpu_s(central.proc.pid) - cpu0)
                errors = [r[1] for r in results if r[0] == "error"]
                if errors:
                    raise RuntimeError(f"ingest failed: {errors[0]}")
                elapsed = max(e for _, e in results) - min(s for s, _ in results)
                n = len(work) * args.batches * BATCH
                rates.append(n / elapsed)
                print(f"run {run}: {n} records in {elapsed:.2f} s = {n / elapsed:,.0f} records/s; server CPU "
                      f"{cpu[-1]:.2f} s ({cpu[-1] / n * 1e6:.1f} µs per record)", file=sys.stderr)  # fmt: skip
        finally:
            central.stop()
        with sqlite3.connect(central.db) as db:
            stored = db.execute("SELECT count(*) FROM measurements").fetchone()[0]
    expected = args.clients * args.batches * BATCH * args.repeats
    if stored != expected:
        raise RuntimeError(f"stored {stored} records, expected {expected}")
    return {"ingest_records_per_s": round(statistics.median(rates)), "ingest_runs_records_per_s": [round(r) for r in rates],
            "ingest_clients": args.clients, "ingest_batch_records": BATCH, "ingest_records_stored": stored,
            "ingest_server_cpu_us_per_record": round(statistics.median(cpu) / (args.clients * args.batches * BATCH) * 1e6, 2),
            "cpu_count": os.cpu_count()}  # fmt: skip


class LiveNodes:
    """Twelve nodes' readings at 10 Hz from the twin's prediction, with an optional jammer."""

    def __init__(self, central: CentralProcess, rng):
        import numpy as np

        from central.twin import Twin

        self.np, self.rng = np, rng
        self.twin = Twin.load("factory-hall-a")
        self.central = central
        self.conns = {nid: http.client.HTTPConnection("127.0.0.1", central.port, timeout=10) for nid in central.tokens}
        self.seq = dict.fromkeys(central.tokens, 0)
        self.tx_pos = np.array([[5.0, 20.0, 1.5], [25.5, 30.0, 1.5], [35.0, 3.0, 1.5]])
        self.base_mw = 10 ** (self.twin.predictor.predict(self.tx_pos, np.full(3, 20.0)) / 10)
        self.jammer_mw = None
        self.first_jammed_ns: int | None = None  # t_ns of the first reading taken with the jammer on

    def post_context(self, token: str) -> None:
        body = json.dumps({"transmitters": [{"tx_id": f"tx{i}", "t_ns": time.time_ns(), "position_m": list(p),
                                             "power_dbm": 20.0} for i, p in enumerate(self.tx_pos)]})  # fmt: skip
        c = http.client.HTTPConnection("127.0.0.1", self.central.port, timeout=10)
        c.request("POST", "/api/v1/context", body=body, headers={"Authorization": f"Bearer {token}",
                                                                 "Content-Type": "application/json"})  # fmt: skip
        r = c.getresponse()
        if r.status != 200:
            raise RuntimeError(f"context refused: {r.status} {r.read()[:200]!r}")
        c.close()

    def tick(self) -> int:
        """One reading per node, each POSTed at once; returns the t_ns of the first."""
        np = self.np
        jammer = self.jammer_mw
        mw = self.base_mw + (jammer if jammer is not None else 0.0)
        dbm = 10 * np.log10(mw) + self.rng.normal(0.0, 0.5, mw.size)
        first = None
        for j, (nid, conn) in enumerate(self.conns.items()):
            t_ns = time.time_ns()
            first = first or t_ns
            if jammer is not None and self.first_jammed_ns is None:
                self.first_jammed_ns = t_ns
            rec = {"node_id": nid, "seq": self.seq[nid], "t_ns": t_ns, "f_center_hz": 3.7e9, "bandwidth_hz": 20e6,
                   "power_dbm": float(dbm[j])}  # fmt: skip
            self.seq[nid] += 1
            conn.request("POST", "/api/v1/ingest", body=json.dumps({"protocol": 1, "node_id": nid, "records": [rec]}),
                         headers={"Authorization": f"Bearer {self.central.tokens[nid]}",
                                  "Content-Type": "application/json"})  # fmt: skip
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"ingest refused: {resp.status}")
        return first


def _get_json(port: int, path: str, token: str):
    """A read of the API, with a viewer or operator token (every read needs one)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    data = json.loads(c.getresponse().read())
    c.close()
    return data


def bench_alarm_latency(args) -> dict:
    import threading

    import numpy as np

    from central.auth import hash_token

    integ, oper = "rti_bench-context", "rto_bench-operator"
    extra = (f'[detection]\nwindow_s = 0.1\nstale_s = 1.0\n[[integrations]]\nname = "bench"\n'
             f'token_sha256 = "{hash_token(integ)}"\n[[operators]]\nname = "bench"\n'
             f'token_sha256 = "{hash_token(oper)}"\n')  # fmt: skip
    rng = np.random.default_rng(2026)
    with tempfile.TemporaryDirectory(prefix="rftwin-bench-latency-") as tmp:
        central = CentralProcess(Path(tmp), 12, extra)
        try:
            nodes = LiveNodes(central, rng)
            stop = threading.Event()
            errors: list[BaseException] = []

            def drive():
                try:
                    next_t = time.monotonic()
                    while not stop.is_set():
                        if int(next_t * 10) % 10 == 0:
                            nodes.post_context(integ)
                        nodes.tick()
                        next_t += 0.1
                        time.sleep(max(0.0, next_t - time.monotonic()))
                except BaseException as e:  # noqa: BLE001 - reported by the main thread
                    errors.append(e)

            driver = threading.Thread(target=drive, daemon=True)
            driver.start()
            time.sleep(15.0)
            c = http.client.HTTPConnection("127.0.0.1", central.port, timeout=30)
            c.request("POST", "/api/v1/detector/learn", body=json.dumps({"duration_s": 12.0, "target_far": 0.001}),
                      headers={"Authorization": f"Bearer {oper}", "Content-Type": "application/json"})  # fmt: skip
            learned = json.loads(c.getresponse().read())
            print(f"learned: {learned}", file=sys.stderr)
            cells = nodes.twin.predictor.cell_gains()
            latencies = []
            for trial in range(args.trials):
                if errors:
                    raise errors[0]
                k = rng.integers(len(cells.positions_m))
                jam_mw = 10 ** ((20.0 + cells.gain_db[k]) / 10)
                before = {a["id"] for a in _get_json(central.port, "/api/v1/alarms?limit=1000", oper)}
                nodes.first_jammed_ns = None
                nodes.jammer_mw = jam_mw
                deadline = time.monotonic() + 10
                found = None
                while found is None and time.monotonic() < deadline:
                    active = [a for a in _get_json(central.port, "/api/v1/alarms?state=active", oper)
                              if a["id"] not in before]  # fmt: skip
                    if active:
                        found = time.time_ns()
                    else:
                        time.sleep(0.005)
                nodes.jammer_mw = None
                t_on = nodes.first_jammed_ns
                if found is None or t_on is None:
                    print(f"trial {trial}: no alarm (jammer at {cells.positions_m[k][:2]})", file=sys.stderr)
                    latencies.append(math.inf)  # a miss: in the percentiles, as the latest alarm of all
                    continue
                latencies.append((found - t_on) / 1e6)
                print(f"trial {trial}: alarm {latencies[-1]:.0f} ms after the first jammed reading", file=sys.stderr)
                while _get_json(central.port, "/api/v1/alarms?state=active", oper) and time.monotonic() < deadline + 10:
                    time.sleep(0.05)
            stop.set()
            driver.join(5)
        finally:
            central.stop()
    detected = sum(math.isfinite(x) for x in latencies)
    return {"alarm_latency_p50_ms": percentile_counting_misses(latencies, 50),
            "alarm_latency_p99_ms": percentile_counting_misses(latencies, 99),
            "alarm_trials": len(latencies), "alarm_detected": detected,
            "alarm_pd": round(detected / len(latencies), 3) if latencies else None}  # fmt: skip


def percentile_counting_misses(latencies_ms: list[float], q: float) -> float | None:
    """The q-th percentile over *all* trials, a miss (``inf``) sorting last; ``None`` when it falls on
    a miss. No interpolation (``inverted_cdf``): the figure is the latency of an actual trial."""
    if not latencies_ms:
        return None
    import numpy as np

    v = float(np.percentile(np.asarray(latencies_ms, dtype=np.float64), q, method="inverted_cdf"))
    return round(v, 1) if math.isfinite(v) else None


# Each benchmark takes the parsed arguments and returns figures for the last line.
BENCHES: list[Callable[[argparse.Namespace], dict]] = [bench_ingest, bench_alarm_latency]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=4, help="concurrent client processes (one node each)")
    p.add_argument("--batches", type=int, default=40, help="1000-record batches per client per run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--trials", type=int, default=30, help="jammer appearances for the alarm latency")
    args = p.parse_args()
    figures: dict = {}
    for bench in BENCHES:
        figures.update(bench(args))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
