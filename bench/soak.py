"""Soak: twelve node agents at 10 Hz against the central unit on loopback, for a bounded time.

Usage: python bench/soak.py [--seconds 120] [--nodes 12] [--rate-hz 10] [--samples 16384]

Real processes: ``rftwin-central run`` (uvicorn, SQLite WAL, live detection, dashboard) and one
``rftwin-node run`` per node with the simulated radio (IQ synthesised, then the full DSP chain,
spool, HTTP uplink). Every second the central unit's resident memory (psutil, else
/proc/PID/status) and CPU time are sampled, with what it has stored (``/metrics``, with a scraper token: every read is authenticated) and the nodes'
backlogs (their status files). At the end the agents get SIGTERM (each drains its spool before it
exits) and the central database is compared with the nodes' spools: every sequence number a node
allocated must be stored exactly once.

Last line: one JSON object with

- ``records_sent`` (readings the nodes took: Σ last_seq + 1), ``records_stored``, ``lost`` (sent,
  not stored, not pending), ``pending`` (still spooled after the drain), ``duplicated`` (rows
  stored more than once: impossible by the primary key, checked anyway), ``gaps`` (nodes whose
  stored seqs are not 0..last_seq), ``resends_absorbed`` (duplicates the central unit acknowledged
  and ignored);
- ``achieved_rate_hz`` (readings per node per second, against ``rate_hz``: below it when the agents
  cannot keep up on this machine);
- ``rss_mb_start`` (first sample once every node has delivered), ``rss_mb_end``, ``rss_mb_max``,
  ``rss_growth_mb_per_min`` (least-squares slope over the second half of the run);
- ``latency_ms_p50/p99/p999``: from a reading's timestamp (the IQ buffer's) to its durable commit
  at the central unit: DSP, spool, upload and the store (write lock and fsync), end to end. The
  central unit stamps it once the commit has returned (``rftwin_ingest_age_seconds``, a histogram
  in /metrics; a batch of resends is left out); the quantiles are interpolated inside its buckets
  (1 ms wide up to 10 ms) as PromQL does. ``latency_readings``: how many readings that covers;
- ``cpu_pct_central`` (of one core, over the measured period), ``cpu_pct_agents`` (all agents
  together), ``cores``, ``loadavg_1m``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCRIPT = str(Path(sys.executable).with_name("rftwin-central"))

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is optional
    psutil = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    if psutil is not None:
        return psutil.Process(pid).memory_info().rss / 2**20
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) / 1024


def cpu_s(pid: int) -> float:
    if psutil is not None:
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(url: str, scraper_token: str) -> str:
    """The unit's /metrics, read as Prometheus does: with a scraper token."""
    import httpx

    r = httpx.get(url + "/api/v1/metrics", timeout=5, headers={"Authorization": f"Bearer {scraper_token}"})
    r.raise_for_status()
    return r.text


def metric(url: str, scraper_token: str, name: str) -> float:
    """One sample of the unit's /metrics."""
    return metric_value(scrape(url, scraper_token), name)


def metric_value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def histogram_quantile_ms(text: str, name: str, q: float) -> float:
    """The q-quantile (0..1) of a Prometheus histogram in ``text``, in ms, interpolated linearly
    inside its bucket as PromQL's ``histogram_quantile`` does (so at most one bucket's width off)."""
    buckets = []
    for line in text.splitlines():
        if m := re.match(rf'{name}_bucket\{{le="([^"]+)"\}} (\S+)$', line):
            buckets.append((float(m.group(1)), float(m.group(2))))
    total = buckets[-1][1]
    rank, lower, below = q * total, 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if upper == float("inf"):
                return lower * 1e3  # PromQL too answers the last finite bound here
            inside = cumulative - below
            return (lower + (upper - lower) * ((rank - below) / inside if inside else 1.0)) * 1e3
        lower, below = upper, cumulative
    return float("nan")


NODE_TOML = """node_id = "{nid}"
position_m = {pos}
interval_s = {interval}
state_dir = "state"

[radio]
backend = "simulated"
center_hz = 3.7e9
sample_rate_hz = 30.72e6
gain_db = 30.0
samples_per_reading = {samples}

[radio.args]
seed = {seed}
noise_figure_db = 5.0

[[radio.args.emitters]]
power_dbm = -60.0
bandwidth_hz = 18e6
waveform = "ofdm"

[band]
bandwidth_hz = 20e6

[central]
url = "{url}"
token = "{token}"
timeout_s = 5.0
backoff_initial_s = 0.2
backoff_max_s = 2.0
"""


def spool_state(path: Path) -> tuple[int, int, int]:
    """(last_seq, pending, dropped) of a node's spool."""
    with sqlite3.connect(path, timeout=10) as db:
        last = db.execute("SELECT value FROM state WHERE key = 'last_seq'").fetchone()[0]
        dropped = db.execute("SELECT value FROM state WHERE key = 'dropped'").fetchone()[0]
        pending = db.execute("SELECT count(*) FROM records").fetchone()[0]
    return last, pending, dropped


def drain(spools: dict[str, Path], tokens: dict[str, str], url: str) -> None:
    from node.uplink import drain_spool

    for nid, path in spools.items():
        drain_spool(path, nid, tokens[nid], url)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="measured duration (default 120)")
    ap.add_argument("--nodes", type=int, default=12, help="node agents (at most the site's 12 SUs)")
    ap.add_argument("--rate-hz", type=float, default=10.0, help="readings per second per node")
    ap.add_argument("--samples", type=int, default=16384, help="IQ samples per reading (the demo's 16384)")
    ap.add_argument("--workdir", type=Path, help="keep the run here (default: a temporary directory)")
    args = ap.parse_args()

    from central.config import load_config
    from central.store import Store

    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="rftwin-soak-")
        work = Path(tmp.name)
    else:
        work = args.workdir.resolve()
        work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cfg_path = work / "central.toml"
    cfg_path.write_text(f'site = "factory-hall-a"\ndata_dir = "data"\nadvertise = false\n'
                        f'[listen]\nhost = "127.0.0.1"\nport = {port}\n')  # fmt: skip
    cfg = load_config(cfg_path)
    site = cfg.load_site()
    sus = site.sensing_units[: args.nodes]
    store = Store(cfg.db_path)
    tokens = {u.id: store.add_node(u.id, u.position_m, su_id=u.id) for u in sus}
    scraper = store.add_credential("scraper", "soak")
    store.close()

    def say(msg: str) -> None:
        print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    central_log = open(work / "central.log", "w")
    central = subprocess.Popen([SCRIPT, "run", "--config", str(cfg_path), "--log-level", "warning"],
                               stdout=central_log, stderr=subprocess.STDOUT, cwd=work)  # fmt: skip
    agents: dict[str, subprocess.Popen] = {}
    try:
        import httpx

        deadline = time.monotonic() + 600
        while True:
            if central.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"central unit did not start:\n{(work / 'central.log').read_text()[-3000:]}")
            try:
                if httpx.get(url + "/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        say(f"central unit up at {url} (pid {central.pid}); starting {len(sus)} agents at {args.rate_hz:g} Hz")
        spools = {}
        for i, u in enumerate(sus):
            d = work / "nodes" / u.id
            d.mkdir(parents=True, exist_ok=True)
            (d / "node.toml").write_text(NODE_TOML.format(nid=u.id, pos=list(u.position_m), interval=1.0 / args.rate_hz,
                                                          samples=args.samples, seed=i + 1, url=url, token=tokens[u.id]))  # fmt: skip
            spools[u.id] = d / "state" / "spool.db"
            agents[u.id] = subprocess.Popen([sys.executable, "-m", "node.cli", "run", "--config", str(d / "node.toml")],
                                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(d / "agent.log", "w"),
                                            env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
        # Measure from the moment every node has delivered something (imports and radio start are not the soak).
        deadline = time.monotonic() + 120
        while True:
            with sqlite3.connect(cfg.db_path, timeout=10) as db:
                seen = db.execute("SELECT count(*) FROM nodes WHERE records > 0").fetchone()[0]
            if seen == len(sus):
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in agents.values()):
                raise SystemExit(f"only {seen} of {len(sus)} nodes delivered")
            time.sleep(0.2)
        with sqlite3.connect(cfg.db_path, timeout=10) as db:
            first_seq = dict(db.execute("SELECT id, last_seq FROM nodes").fetchall())
        say("every node delivers; soaking")
        t0 = time.monotonic()
        cpu0 = cpu_s(central.pid)
        agent_cpu0 = sum(cpu_s(p.pid) for p in agents.values())
        samples = []  # (t, rss_mb, stored, pending_total)
        next_t = t0
        while (now := time.monotonic()) - t0 < args.seconds:
            pending = 0
            for u in sus:
                try:
                    pending += json.loads((work / "nodes" / u.id / "state" / "status.json").read_text())["pending"]
                except (OSError, ValueError, KeyError):
                    pass
            samples.append((now - t0, rss_mb(central.pid), metric(url, scraper, "rftwin_ingest_records_total"), pending))
            if len(samples) % 15 == 1:
                t, r, n, p = samples[-1]
                say(f"t={t:5.0f} s  rss={r:6.1f} MB  stored={n:8.0f}  pending at nodes={p}")
            next_t += 1.0
            time.sleep(max(0.0, next_t - time.monotonic()))
        wall = time.monotonic() - t0
        cpu_central = (cpu_s(central.pid) - cpu0) / wall * 100
        cpu_agents = (sum(cpu_s(p.pid) for p in agents.values()) - agent_cpu0) / wall * 100
        load1 = os.getloadavg()[0]
        with sqlite3.connect(cfg.db_path, timeout=10) as db:
            last_seq_now = dict(db.execute("SELECT id, last_seq FROM nodes").fetchall())
        achieved = statistics.mean((last_seq_now[u.id] - first_seq[u.id]) / wall for u in sus)
        say(f"stopping the agents (they drain their spools); achieved {achieved:.2f} readings/s per node")
        for p in agents.values():
            p.send_signal(signal.SIGTERM)
        for nid, p in agents.items():
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        left = {u.id: spool_state(spools[u.id])[1] for u in sus}
        if any(left.values()):  # an agent in backoff when stopped keeps the rest for its next start: send it
            say(f"records left spooled after SIGTERM: {left}; replaying them as the next start would")
            drain(spools, tokens, url)
        rss_end = rss_mb(central.pid)
        resends = metric(url, scraper, "rftwin_ingest_duplicates_total")
        metrics_text = scrape(url, scraper)
    finally:
        for p in agents.values():
            if p.poll() is None:
                p.kill()
        central.send_signal(signal.SIGTERM)
        try:
            central.wait(timeout=30)
        except subprocess.TimeoutExpired:
            central.kill()
        central_log.close()

    sent = stored = lost = pending_total = dropped_total = gaps = 0
    left_after_sigterm = sum(left.values())
    with sqlite3.connect(cfg.db_path) as db:
        duplicated = db.execute("SELECT count(*) - (SELECT count(*) FROM (SELECT DISTINCT node_id, seq FROM "
                                "measurements)) FROM measurements").fetchone()[0]  # fmt: skip
        for u in sus:
            last, pending, dropped = spool_state(spools[u.id])
            seqs = [s for (s,) in db.execute("SELECT seq FROM measurements WHERE node_id = ? ORDER BY seq", [u.id])]
            sent += last + 1
            stored += len(seqs)
            pending_total += pending
            dropped_total += dropped
            lost += last + 1 - len(set(seqs)) - pending - dropped
            gaps += seqs != list(range(last + 1))

    t = np.array([s[0] for s in samples])
    rss = np.array([s[1] for s in samples])
    half = t >= t[-1] / 2
    slope = float(np.polyfit(t[half], rss[half], 1)[0] * 60) if half.sum() >= 3 else float("nan")
    result = {
        "duration_s": round(wall, 1), "nodes": len(sus), "rate_hz": args.rate_hz, "samples_per_reading": args.samples,
        "achieved_rate_hz": round(achieved, 2),
        "records_sent": sent, "records_stored": stored, "lost": lost, "pending": pending_total,
        "dropped": dropped_total, "left_after_sigterm": left_after_sigterm, "duplicated": duplicated, "gaps": gaps, "resends_absorbed": int(resends),
        "pending_max_during_run": int(max(s[3] for s in samples)),
        "rss_mb_start": round(float(rss[0]), 1), "rss_mb_end": round(float(rss_end), 1),
        "rss_mb_max": round(float(max(rss.max(), rss_end)), 1), "rss_growth_mb_per_min": round(slope, 3),
        **{f"latency_ms_{tag}": round(histogram_quantile_ms(metrics_text, "rftwin_ingest_age_seconds", q), 1)
           for tag, q in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999))},
        "latency_readings": int(metric_value(metrics_text, "rftwin_ingest_age_seconds_count")),
        "cpu_pct_central": round(cpu_central, 1), "cpu_pct_agents": round(cpu_agents, 1),
        "cores": os.cpu_count(), "loadavg_1m": round(load1, 2),
    }  # fmt: skip
    if tmp is not None:
        tmp.cleanup()
    print(json.dumps(result))
    return 0 if lost == 0 and duplicated == 0 and gaps == 0 and pending_total == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
