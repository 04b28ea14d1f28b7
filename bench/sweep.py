"""Full-band sweep rate of a node whose radio is narrower than the band plan (node.sweep).

Usage: python bench/sweep.py [--repeats 7] [--sweeps 5] [--no-audio] [--out docs/results]

Two radios, each through the node's own path (node.measure.Measurer: retune, discard the settling
buffers, read one buffer, Welch PSD, sub-band powers, dBm), one full sweep = every step once:

- **simulated**: node.sdr.simulated.SimulatedSdr with its emitters placed in RF (a retune moves them),
  the 100 MHz NR carrier at 3.7 GHz (273 PRBs, 16 sub-bands) at 25 MS/s, edge crop 0.1 (20 MHz usable,
  a stock ADALM-Pluto's span): 6 steps of 65536 samples, 2 buffers discarded after every retune (the
  Pluto's default). The simulated radio *synthesises* every buffer (FFT noise and OFDM, 12-bit ADC), so
  its rate is what this host synthesises plus the DSP, not what a Pluto delivers; ``sim_dsp_ms_per_step``
  is the DSP alone on one buffer, and ``pluto_air_ms_per_step`` the time a Pluto needs to deliver the
  three buffers of a step at 25 MS/s (a bound from the sample count; LO retune time not included, no
  hardware here).
- **SoapySDR audio**: the real SoapySDR audio driver (``driver=audio``, ``chan=stereo_iq``) on a
  PulseAudio null sink (tests/pulse_sink.py) with a tone playing. Its span is 48 kHz, so the band plan
  is *scaled* to it: 192 kHz as 16 sub-bands of 12 kHz (BandPlan(100 MHz, 200 kHz, scs 1 kHz, 16 PRBs)),
  which at 48 kHz with edge crop 0.1 (38.4 kHz usable) takes 6 steps of 3 or 2 sub-bands, like the
  100 MHz carrier on a Pluto. The audio device has no LO (setFrequency is accepted and read back, the
  audio stays the same), 4096 samples per step, and the Soapy backend discards 2 stream MTUs after every
  retune. Its rate is set by real-time sample delivery at 48 kHz, not by the host: the report gives the
  sample-delivery bound beside it.

Rates are the median over ``--repeats`` runs of ``--sweeps`` sweeps each (after one warm-up sweep).
Last line: one JSON object (``sim_sweeps_per_s``, ``sim_ms_per_step``, ``sim_steps``, ``sim_dsp_ms_per_step``,
``pluto_air_ms_per_step``, ``audio_sweeps_per_s``, ``audio_ms_per_step``, ``audio_steps``,
``audio_delivery_ms_per_step``, ``audio_mtu``, notes); with ``--out DIR`` also ``DIR/sweep.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as on a node
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from contracts.band_plan import BandPlan  # noqa: E402
from node.dsp import measure_band_power  # noqa: E402
from node.measure import Measurer  # noqa: E402
from node.sdr.base import DiscardAfterRetune  # noqa: E402
from node.sdr.simulated import Emitter, ReceiverModel, SimulatedSdr  # noqa: E402
from node.sweep import plan_sweep  # noqa: E402
from run_info import generated_line, run_info, say, write_results  # noqa: E402

NR100 = BandPlan(3.7e9)
SIM_RATE_HZ, SIM_SAMPLES, DISCARD = 25e6, 65536, 2
AUDIO_PLAN = BandPlan(100e6, 200e3, scs_hz=1e3, prbs=16, subbands=16)
AUDIO_SAMPLES, AUDIO_NPERSEG, TONE_HZ = 4096, 256, 3000.0


def timed_sweeps(m: Measurer, repeats: int, sweeps: int) -> tuple[float, float, list[float]]:
    """(sweeps per second, ms per step, per-repeat sweep times in s): medians over repeats."""
    list(m.sweep())  # warm-up: caches, first retune, stream start
    per_sweep = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(sweeps):
            n = sum(1 for _ in m.sweep())
            assert n == m.steps
        per_sweep.append((time.perf_counter() - t0) / sweeps)
    med = statistics.median(per_sweep)
    return 1.0 / med, 1e3 * med / m.steps, per_sweep


def simulated(repeats: int, sweeps: int) -> dict:
    sw = plan_sweep(NR100, SIM_RATE_HZ)
    rx = ReceiverModel()
    legit = [Emitter(-60.0, b.center_hz - NR100.center_hz, b.width_hz * 0.95, "ofdm") for b in NR100.grid[2:9]]
    sdr = DiscardAfterRetune(SimulatedSdr(legit + [Emitter(-70.0, 31e6, 5e6, "noise")], rx, seed=1,
                                          emitters_center_hz=NR100.center_hz), DISCARD)  # fmt: skip
    sdr.tune(sw.steps[0].center_hz, SIM_RATE_HZ)
    sdr.set_gain(30.0)
    m = Measurer("sim01", sdr, sw.steps[0].band, rx.nominal_calibration(), SIM_SAMPLES, sw)
    rate, ms_step, runs = timed_sweeps(m, repeats, sweeps)
    buf = sdr.read(SIM_SAMPLES)
    dsp = []
    for _ in range(max(repeats, 5)):
        t0 = time.perf_counter()
        measure_band_power(buf.samples, sw.steps[0].band)
        dsp.append(time.perf_counter() - t0)
    sdr.close()
    return {"sim_sweeps_per_s": round(rate, 2), "sim_ms_per_step": round(ms_step, 2), "sim_steps": len(sw.steps),
            "sim_dsp_ms_per_step": round(1e3 * statistics.median(dsp), 3),
            "pluto_air_ms_per_step": round(1e3 * (1 + DISCARD) * SIM_SAMPLES / SIM_RATE_HZ, 2),
            "sim_sweep_s_runs": [round(x, 4) for x in runs], "sim_steps_desc": sw.describe()}  # fmt: skip


def audio(repeats: int, sweeps: int) -> dict:
    try:
        import SoapySDR
    except ImportError as e:
        return {"audio_skipped": f"SoapySDR not importable: {e}"}
    from node.sdr.soapy import SoapySdr
    from tests.pulse_sink import LABEL, RATE_HZ, PulseNullSink, missing_tools

    if missing := missing_tools():
        return {"audio_skipped": f"not installed: {', '.join(missing)}"}
    sw = plan_sweep(AUDIO_PLAN, RATE_HZ, nperseg=AUDIO_NPERSEG)
    with tempfile.TemporaryDirectory() as tmp, PulseNullSink(Path(tmp)) as pa:
        os.environ["PULSE_SERVER"], os.environ["PULSE_COOKIE"] = pa.server, str(pa.cookie)
        dev = next(dict(d) for d in SoapySDR.Device.enumerate("driver=audio") if LABEL in dict(d).get("label", ""))
        t = np.arange(RATE_HZ) / RATE_HZ
        tone = np.stack([0.5 * np.cos(2 * np.pi * TONE_HZ * t), 0.5 * np.sin(2 * np.pi * TONE_HZ * t)], 1)
        with pa.play(tone):
            sdr = SoapySdr(dev, stream_args="chan=stereo_iq", read_timeout_s=1.0, discard_buffers_after_retune=DISCARD)
            try:
                sdr.tune(sw.steps[0].center_hz, RATE_HZ)
                sdr.read(int(0.3 * RATE_HZ))  # the feed reaches the monitor after ~100 ms
                m = Measurer("audio01", sdr, sw.steps[0].band, ReceiverModel().nominal_calibration(), AUDIO_SAMPLES, sw)
                rate, ms_step, runs = timed_sweeps(m, repeats, sweeps)
                last = [r.measurement for r in m.sweep()]
                mtu, overflows = sdr._mtu, sdr.overflows
            finally:
                sdr.close()
    tone_db = [round(max(r.subband_powers_dbm) - sorted(r.subband_powers_dbm)[-2], 1) for r in last]
    return {"audio_sweeps_per_s": round(rate, 3), "audio_ms_per_step": round(ms_step, 1), "audio_steps": len(sw.steps),
            "audio_delivery_ms_per_step": round(1e3 * (AUDIO_SAMPLES + DISCARD * mtu) / RATE_HZ, 1),
            "audio_mtu": mtu, "audio_overflows": overflows, "audio_sweep_s_runs": [round(x, 4) for x in runs],
            "audio_tone_over_next_subband_db": tone_db, "audio_steps_desc": sw.describe()}  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--sweeps", type=int, default=5, help="sweeps per repeat (simulated)")
    ap.add_argument("--audio-sweeps", type=int, default=2, help="sweeps per repeat (audio: real time, slow)")
    ap.add_argument("--no-audio", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    say("simulated radio ...")
    fig = simulated(args.repeats, args.sweeps)
    say(f"  {fig['sim_sweeps_per_s']} sweeps/s, {fig['sim_ms_per_step']} ms/step")
    if not args.no_audio:
        say("SoapySDR audio on a PulseAudio null sink ...")
        fig.update(audio(args.repeats, args.audio_sweeps))
        say(f"  {fig.get('audio_sweeps_per_s')} sweeps/s, {fig.get('audio_ms_per_step')} ms/step")
    fig["notes"] = ("simulated: 100 MHz NR carrier (16 sub-bands) at 25 MS/s, 6 steps of 65536 samples, 2 settling "
                    "buffers per retune; the host synthesises the IQ, so this is not a Pluto's rate "
                    "(pluto_air_ms_per_step is the sample-delivery bound). audio: the plan scaled to the device's "
                    "48 kHz span (192 kHz, 16 sub-bands of 12 kHz, 6 steps of 4096 samples, 2 MTUs discarded per "
                    "retune); the audio device has no LO, and its rate is bound by real-time delivery at 48 kHz")  # fmt: skip
    info = run_info()
    if args.out:
        lines = [
            "# Sweep rate: a radio narrower than the band plan", "",
            generated_line(info), "",
            "One full sweep = every step once: retune, discard the settling buffers, read one buffer, measure the "
            "step's sub-bands (node.measure.Measurer, node.sweep). Median over "
            f"{args.repeats} repeats.", "",
            "| radio | plan | steps | sweeps/s | ms per step | bound per step |",
            "|---|---|---|---|---|---|",
            f"| simulated (SimulatedSdr, host-synthesised IQ) | 100 MHz NR at 3.7 GHz, 16 sub-bands, 25 MS/s | "
            f"{fig['sim_steps']} | {fig['sim_sweeps_per_s']} | {fig['sim_ms_per_step']} | DSP alone "
            f"{fig['sim_dsp_ms_per_step']} ms; a Pluto delivers the 3 × 65536 samples in {fig['pluto_air_ms_per_step']} ms |",
        ]  # fmt: skip
        if "audio_sweeps_per_s" in fig:
            lines.append(f"| SoapySDR audio driver, PulseAudio null sink (real device) | **scaled**: 192 kHz, 16 sub-bands "
                         f"of 12 kHz, 48 kHz span | {fig['audio_steps']} | {fig['audio_sweeps_per_s']} | "
                         f"{fig['audio_ms_per_step']} | real-time delivery of 4096 + 2 MTU ({fig['audio_mtu']}) samples "
                         f"at 48 kHz: {fig['audio_delivery_ms_per_step']} ms |")  # fmt: skip
        else:
            lines.append(f"| SoapySDR audio | skipped: {fig.get('audio_skipped', 'not run')} | | | | |")
        lines += ["", "Steps of the simulated radio (a stock ADALM-Pluto's 20 MHz usable span):", ""]
        lines += [f"- {s}" for s in fig["sim_steps_desc"]]
        if "audio_steps_desc" in fig:
            lines += ["", "Steps of the audio device (the scaled plan):", ""] + [f"- {s}" for s in fig["audio_steps_desc"]]
        lines += ["", "What the figures are: " + fig["notes"] + ". The audio device's tone stands "
                  f"{fig.get('audio_tone_over_next_subband_db')} dB over the next-loudest sub-band of each step.", ""]
        say(f"wrote {', '.join(map(str, write_results(Path(args.out), 'sweep', lines, {**fig, **info})))}")
    print(json.dumps({k: v for k, v in fig.items() if not k.endswith(("_desc", "_runs"))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
