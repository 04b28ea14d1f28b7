"""Node DSP benchmark: band-power throughput on one core, and accuracy over a 60 dB range.

Usage: python bench/node_dsp.py
Last line: one JSON object with msps_2e16 and msps_2e20 (mega-samples per second through
measure_band_power for buffers of 2^16 and 2^20 samples, median of repeats; goal >= 60, real time at
Pluto's maximum rate) and power_err_db_max (worst |measured - true| over band-limited noise from -75
to -15 dBFS). agent_cpu_pct_10hz comes with the agent (issue #3).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as on a node
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from node.dsp import Band, BandPowerConfig, measure_band_power  # noqa: E402

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
    print(json.dumps(out))


if __name__ == "__main__":
    main()
