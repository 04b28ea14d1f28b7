"""A complete simulated monitoring station: the central unit and one node agent per SU as real
processes on loopback, a simulated context feed, and the simulated world they all share.

Used by ``make demo`` (the paper's hall) and by the end-to-end test (the tiny CI hall). Everything
goes through the real interfaces: the central unit is ``rftwin-central run`` with a config file and
enrolled node tokens; each node is ``rftwin-node run`` with a world-backed simulated radio; the
context feed posts to the context API with an integration token; learning and alarms go through
the HTTP API. Only the world itself (true maps + scenario + a shared start time) is simulated.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import httpx

from central.auth import hash_token
from central.config import DEFAULT_DETECTOR
from central.store import Store
from central.twin.site import Site
from contracts.band_plan import BandPlan
from sim.context_feed import ContextFeed, run_feed
from sim.world import World

log = logging.getLogger("rftwin.station")
INTEGRATION_TOKEN = "rti_simulated-context-feed"  # a simulation's own token, hashed into its config
OPERATOR_TOKEN = "rto_simulation-operator"
VIEWER_TOKEN = "rtv_simulation-viewer"  # the demo's dashboard login (a simulation's token, never a real one)


@dataclass(frozen=True)
class StationSettings:
    node_interval_s: float = 0.2
    node_samples: int = 16384
    bandwidth_hz: float = 20e6
    gain_db: float = 0.0  # full scale at -10 dBm: an AGV (20 dBm OFDM) passing 1 m from an SU does not clip
    detection_window_s: float = 0.2
    stale_s: float = 1.5
    context_period_s: float = 0.5
    localisation_error_m: float = 0.37
    detector: str = DEFAULT_DETECTOR  # the product's
    # Nodes measure the site's band plan ([band.plan]) instead of ``bandwidth_hz`` around the site
    # frequency: every reading then carries sub-band powers the central unit's spectral test reads.
    band_plan: BandPlan | None = None
    sample_rate_hz: float = 30.72e6  # a 100 MHz plan in one tuning needs more: 122.88e6
    edge_crop: float = 0.1


class SimulatedStation:
    def __init__(self, workdir: Path, site_file: Path, site: Site, world_maps: Path, scenario: Path,
                 settings: StationSettings = StationSettings(), env: dict | None = None):  # fmt: skip
        self.workdir = workdir.resolve()
        self.site_file, self.site = site_file.resolve(), site
        self.world = World.load(world_maps, scenario)
        self.world_maps, self.scenario = world_maps.resolve(), scenario.resolve()
        self.settings = settings
        self.env = {**os.environ, **(env or {})}
        self.config_path = self.workdir / "central.toml"
        self.url: str | None = None
        self.start_time_s: float | None = None
        self._central: subprocess.Popen | None = None
        self._nodes: dict[str, subprocess.Popen] = {}
        self._feed_stop = threading.Event()
        self._feed: threading.Thread | None = None

    # ------------------------------------------------------------------ setup

    def prepare(self) -> None:
        """Central config with a free port, enrolled nodes with their configs (idempotent per workdir)."""
        s = self.settings
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.config_path.write_text(f"""site = "{self.site_file}"
data_dir = "{self.workdir / 'central'}"
advertise = false
[listen]
host = "127.0.0.1"
port = {self.port}
[detection]
window_s = {s.detection_window_s}
stale_s = {s.stale_s}
detector = "{s.detector}"
[[integrations]]
name = "simulated-context-feed"
token_sha256 = "{hash_token(INTEGRATION_TOKEN)}"
[[operators]]
name = "simulation"
token_sha256 = "{hash_token(OPERATOR_TOKEN)}"
[[viewers]]
name = "demo-viewer"
token_sha256 = "{hash_token(VIEWER_TOKEN)}"
""")
        from central.config import load_config
        from central.enrolment import enrol_node

        cfg = load_config(self.config_path)
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.node_configs: dict[str, Path] = {}
        with Store(cfg.db_path) as store:
            enrolled = {n.id for n in store.nodes()}
            for su in self.site.sensing_units:
                token_file = self.workdir / "nodes" / su.id / "token"
                if su.id not in enrolled:
                    token, _ = enrol_node(store, self.site, su.id, su.position_m)
                    token_file.parent.mkdir(parents=True, exist_ok=True)
                    token_file.write_text(token + "\n")
                self.node_configs[su.id] = token_file.parent / "node.toml"

    def _write_node_configs(self) -> None:
        s = self.settings
        for su in self.site.sensing_units:
            path = self.node_configs[su.id]
            path.write_text(f"""node_id = "{su.id}"
position_m = {list(su.position_m)}
interval_s = {s.node_interval_s}
state_dir = "state"
[radio]
backend = "simulated"
center_hz = {self.site.frequency_hz}
sample_rate_hz = {s.sample_rate_hz!r}
gain_db = {s.gain_db}
samples_per_reading = {s.node_samples}
[radio.args]
world = "{self.world_maps}"
scenario = "{self.scenario}"
su_id = "{su.id}"
start_time_s = {self.start_time_s!r}
seed = {zlib.crc32(su.id.encode())}
{self._band_section()}
[central]
url = "{self.url}"
token_file = "token"
timeout_s = 2.0
backoff_initial_s = 0.2
backoff_max_s = 2.0
""")

    def _band_section(self) -> str:
        s = self.settings
        if s.band_plan is None:
            return f"[band]\nbandwidth_hz = {s.bandwidth_hz}\nedge_crop = {s.edge_crop}"
        plan = "\n".join(f"{k} = {v!r}" for k, v in s.band_plan.to_dict().items())
        return f"[band]\nedge_crop = {s.edge_crop}\n[band.plan]\n{plan}"

    # ------------------------------------------------------------------ running

    def start(self, central_timeout_s: float = 600.0) -> None:
        """Central unit first (it loads or traces the twin), then the nodes and the context feed."""
        self.url = f"http://127.0.0.1:{self.port}"
        log_path = self.workdir / "central.log"
        self._central = subprocess.Popen(
            [sys.executable, "-m", "central.cli", "run", "--config", str(self.config_path), "--log-level", "info"],
            stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, env=self.env,
        )  # fmt: skip
        _wait_healthy(self.url, self._central, central_timeout_s, log_path)
        self.start_time_s = time.time()
        self._write_node_configs()
        for su_id, cfg in self.node_configs.items():
            self._nodes[su_id] = subprocess.Popen(
                [sys.executable, "-m", "node.cli", "run", "--config", str(cfg)],
                stdout=open(cfg.parent / "node.log", "ab"), stderr=subprocess.STDOUT, env=self.env,
            )  # fmt: skip
        feed = ContextFeed(self.world, self.start_time_s, self.site.hall_size_m[:2],
                           self.settings.localisation_error_m)  # fmt: skip
        self._feed = threading.Thread(target=run_feed, args=(feed, self.url, INTEGRATION_TOKEN,
                                      self.settings.context_period_s, self._feed_stop.is_set),
                                      daemon=True)  # fmt: skip
        self._feed.start()

    def scenario_time_s(self) -> float:
        return time.time() - self.start_time_s

    def get(self, path: str, **params):
        r = httpx.get(f"{self.url}/api/v1{path}", params=params, timeout=10,
                      headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})  # fmt: skip
        r.raise_for_status()
        return r.json()

    def learn(self, duration_s: float, target_far: float | None = None) -> dict:
        body = {"duration_s": duration_s, **({"target_far": target_far} if target_far else {})}
        r = httpx.post(f"{self.url}/api/v1/detector/learn", json=body,
                       headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}, timeout=30)  # fmt: skip
        if r.status_code != 200:
            raise RuntimeError(f"learning refused: {r.status_code} {r.text}")
        return r.json()

    def alarms(self, state: str | None = None) -> list[dict]:
        return self.get("/alarms", **({"state": state} if state else {}))

    def check_processes(self) -> None:
        """Raise if the central unit or a node died (with the tail of its log)."""
        procs = {"central": (self._central, self.workdir / "central.log")}
        procs.update({su: (p, self.node_configs[su].parent / "node.log") for su, p in self._nodes.items()})
        for name, (p, log_path) in procs.items():
            if p is not None and p.poll() is not None:
                tail = log_path.read_text()[-3000:] if log_path.exists() else ""
                raise RuntimeError(f"{name} exited with {p.returncode}:\n{tail}")

    def stop(self) -> None:
        self._feed_stop.set()
        for p in list(self._nodes.values()) + [self._central]:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in list(self._nodes.values()) + [self._central]:
            if p is None:
                continue
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self._feed is not None:
            self._feed.join(timeout=5)


class SnapshotRecorder:
    """Every snapshot the central unit evaluates, from its live event stream (``GET /api/v1/events``),
    reduced to the detectors' scores and verdicts. Why not the stored ones: the store keeps one a second
    and every anomalous one, so a jammer's period would be counted with its anomalous snapshots over-
    represented. A dropped connection is re-opened (a snapshot sent again is kept once)."""

    KEYS = ("t_ns", "score", "threshold", "spectral_score", "spectral_threshold", "anomalous", "wideband_anomalous",
            "spectral_anomalous")  # fmt: skip

    def __init__(self, url: str, token: str = VIEWER_TOKEN):
        self.url, self.token = url, token
        self._snaps: dict[int, dict] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="snapshot-recorder", daemon=True)

    def start(self) -> SnapshotRecorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def between(self, lo_ns: float, hi_ns: float) -> list[dict]:
        """The snapshots with ``lo_ns`` ≤ t_ns < ``hi_ns``, oldest first."""
        with self._lock:
            return sorted((s for t, s in self._snaps.items() if lo_ns <= t < hi_ns), key=lambda s: s["t_ns"])

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        while not self._stop.is_set():
            try:
                with httpx.stream("GET", f"{self.url}/api/v1/events", headers=headers, timeout=httpx.Timeout(5.0, read=30.0)) as r:
                    kind = None
                    for line in r.iter_lines():
                        if self._stop.is_set():
                            return
                        if line.startswith("event: "):
                            kind = line[7:]
                        elif line.startswith("data: ") and kind == "snapshot":
                            d = json.loads(line[6:])
                            with self._lock:
                                self._snaps[d["t_ns"]] = {k: d.get(k) for k in self.KEYS}
            except (httpx.HTTPError, json.JSONDecodeError) as e:
                log.info("snapshot recorder: %s; reconnecting", e)
                self._stop.wait(0.5)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the central unit exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the central unit did not answer within {timeout_s:g} s; see {log_path}")


def summary(alarm: dict) -> str:
    pos = alarm.get("suspected_position_m")
    where = f"suspected at ({pos[0]:.1f}, {pos[1]:.1f}) m" if pos else "position unknown"
    peak = alarm.get("peak_score")
    score = "no score" if peak is None else f"peak score {peak:.2f}"  # the detector's score, ~0.01 resolution
    return (f"alarm {alarm['id']} [{alarm['kind']}, {alarm['state']}]: SUs {', '.join(alarm['affected_sus'])}; "
            f"{where}; {score}")  # fmt: skip


