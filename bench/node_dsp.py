"""Node DSP benchmark: band-power throughput on one core, and accuracy over a 60 dB range.

Usage: python bench/node_dsp.py
Last line: one JSON object with msps_2e16 and msps_2e20 (mega-samples per second through
measure_band_power for buffers of 2^16 and 2^20 samples, median of repeats; goal >= 60, real time at
Pluto's maximum rate) and power_err_db_max (worst |measured - true| over band-limited noise from -75
to -15 dBFS), and agent_cpu_pct_10hz: the whole agent (radio read, DSP, spool, HTTP upload) at 10
readings/s of 2^16 samples, as percent of one core, measured as the process's CPU time over wall
time for AGENT_SECONDS. The radio replays buffers synthesised beforehand (a real SDR's DMA costs the
host next to nothing; synthesis would), and the central unit is a separate process, not counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as on a node
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from node.dsp import Band, BandPowerConfig, measure_band_power  # noqa: E402
from node.sdr.base import IQBuffer  # noqa: E402

AGENT_SECONDS = 20.0
ROOT = Path(__file__).resolve().parents[1]

FS = 30.72e6
CFG = BandPowerConfig(sample_rate_hz=FS, band=Band(0.0, 20e6), subbands=(Band(-5e6, 10e6), Band(5e6, 10e6)))


def band_noise(rng, power_dbfs, n):
    spec = np.fft.fft(rng.standard_normal(n) + 1j * rng.standard_normal(n))
    f = np.fft.fftfreq(n, 1 / FS)
    spec[np.abs(f - 1e6) > 4e6] = 0
    x = np.fft.ifft(spec).astype(np.complex64)
    return x * np.float32(np.sqrt(10 ** (power_dbfs / 10) / np.mean(np.abs(x) ** 2)))


def throughput_msps(n: int, repeats: int) -> float:
    x = band_noise(np.random.default_rng(n), -30, n)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        measure_band_power(x, CFG)
        times.append(time.perf_counter() - t)
    return n / float(np.median(times)) / 1e6


class ReplaySdr:
    """Cycles through pre-synthesised buffers, stamped with the time of the read."""

    def __init__(self, buffers: list[IQBuffer]):
        self._buffers, self._i = buffers, 0

    def tune(self, center_hz, sample_rate_hz): ...

    def set_gain(self, gain_db): ...

    def read(self, n: int) -> IQBuffer:
        b = self._buffers[self._i % len(self._buffers)]
        self._i += 1
        return IQBuffer(b.samples[:n].copy(), time.time_ns(), b.center_hz, b.sample_rate_hz, b.gain_db)

    def close(self): ...


def agent_cpu_pct(seconds: float) -> tuple[float, int, int]:
    from node.agent import Agent
    from node.config import parse_config
    from node.sdr.simulated import Emitter, SimulatedSdr

    sim = SimulatedSdr([Emitter(-60.0, 0.0, 18e6)], seed=1)
    sim.set_gain(30.0)
    buffers = [sim.read(2**16) for _ in range(8)]
    with tempfile.TemporaryDirectory() as d:
        server = subprocess.Popen([sys.executable, "-m", "tests.ingest_server", "--db", f"{d}/central.db",
                                   "--token", "su01=tok"], cwd=ROOT, stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            port = int(server.stdout.readline())
            cfg = parse_config({
                "node_id": "su01", "position_m": [6.5, 29.5, 1.5], "interval_s": 0.1, "state_dir": f"{d}/state",
                "radio": {"backend": "simulated", "center_hz": 3.7e9, "sample_rate_hz": FS, "gain_db": 30.0,
                          "samples_per_reading": 2**16},
                "band": {"bandwidth_hz": 20e6, "subbands": [{"offset_hz": -5e6, "bandwidth_hz": 10e6},
                                                            {"offset_hz": 5e6, "bandwidth_hz": 10e6}]},
                "central": {"url": f"http://127.0.0.1:{port}", "token": "tok"},
            })  # fmt: skip
            agent = Agent(cfg, open_radio=lambda c: ReplaySdr(buffers))
            wall0, cpu0 = time.perf_counter(), time.process_time()
            agent.run(duration_s=seconds)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            return 100.0 * cpu / wall, agent.status.readings, agent.status.uploaded
        finally:
            server.kill()
            server.wait()


def main() -> None:
    rng = np.random.default_rng(2026)
    errs = []
    for p in range(-75, -14, 5):
        x = band_noise(rng, p, 2**16)
        true = 10 * np.log10(np.mean(np.abs(x.astype(np.complex128)) ** 2))
        errs.append(abs(measure_band_power(x, CFG).power_dbfs - true))
    out = {
        "msps_2e16": round(throughput_msps(2**16, 51), 1),
        "msps_2e20": round(throughput_msps(2**20, 11), 1),
        "power_err_db_max": round(float(max(errs)), 4),
    }
    cpu_pct, readings, uploaded = agent_cpu_pct(AGENT_SECONDS)
    print(f"agent: {readings} readings in {AGENT_SECONDS:g} s, {uploaded} uploaded, {cpu_pct:.1f} % of one core")
    out["agent_cpu_pct_10hz"] = round(cpu_pct, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
