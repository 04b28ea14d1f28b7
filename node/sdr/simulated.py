"""A simulated SDR that synthesises IQ samples, so the whole DSP chain runs in CI.

It models what a real receiver does to the air: each emitter's waveform at its received power,
thermal noise at the receiver's noise figure over the sampled span, the RX gain, then the ADC's
quantisation and clipping at full scale. The input power that reaches 0 dBFS at 0 dB gain
(``full_scale_dbm_at_0db``) ties dBm at the antenna to dBFS, like a real front end's gain table.

The emitters' received powers are inputs: the simulated *world* (propagation from positions) is a
separate piece and feeds this backend; the backend never shortcuts the DSP under test.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from node.calibration_table import CalibrationTable
from node.sdr.base import IQBuffer

Waveform = Literal["ofdm", "noise", "tone", "sweep"]
THERMAL_DBM_PER_HZ = -174.0  # kT at 290 K


@dataclass(frozen=True)
class Emitter:
    """An emitter as seen at this node: received power (dBm, while on) and where it sits in baseband."""

    power_dbm: float
    offset_hz: float = 0.0
    bandwidth_hz: float = 10e6
    waveform: Waveform = "ofdm"
    duty_cycle: float = 1.0  # fraction of each period the emitter is on
    period_s: float = 1e-3

    def __post_init__(self):
        if self.waveform not in ("ofdm", "noise", "tone", "sweep"):
            raise ValueError(f"unknown waveform {self.waveform!r}")
        if not 0 < self.duty_cycle <= 1:
            raise ValueError(f"duty_cycle must be in (0, 1], got {self.duty_cycle}")
        if not math.isfinite(self.power_dbm):
            raise ValueError(f"power_dbm must be finite, got {self.power_dbm}")


@dataclass(frozen=True)
class ReceiverModel:
    noise_figure_db: float = 5.0
    full_scale_dbm_at_0db: float = -10.0
    adc_bits: int = 12
    gain_range_db: tuple[float, float] = (0.0, 71.0)  # AD9363

    def dbm_to_dbfs_offset_db(self, gain_db: float) -> float:
        """dBFS = dBm + this."""
        return gain_db - self.full_scale_dbm_at_0db

    def nominal_calibration(self) -> CalibrationTable:
        """The table a bench calibration of this (ideal, frequency-flat) receiver would produce."""
        gains = self.gain_range_db
        row = tuple(-self.dbm_to_dbfs_offset_db(g) for g in gains)
        return CalibrationTable((1e6, 1e11), gains, (row, row))


class SimulatedSdr:
    """``emitters_center_hz``: the RF frequency the emitters' offsets are relative to, so that a retune
    moves them in baseband as on air (and those outside the sampled span are filtered away), which a
    sweeping node needs; None: the offsets are relative to wherever the radio is tuned (as a fixed
    test signal)."""

    def __init__(self, emitters: list[Emitter] | None = None, receiver: ReceiverModel = ReceiverModel(),
                 seed: int | None = None, emitters_center_hz: float | None = None):  # fmt: skip
        self.emitters = list(emitters or [])
        self.emitters_center_hz = emitters_center_hz
        self.receiver = receiver
        self._rng = np.random.default_rng(seed)
        self.center_hz = 3.7e9
        self.sample_rate_hz = 30.72e6
        self.gain_db = 40.0
        self._t_s = 0.0  # simulated time of the next sample, for duty cycles and sweeps
        self._closed = False

    def tune(self, center_hz: float, sample_rate_hz: float) -> None:
        if not (center_hz > 0 and sample_rate_hz > 0):
            raise ValueError("center_hz and sample_rate_hz must be > 0")
        self.center_hz, self.sample_rate_hz = float(center_hz), float(sample_rate_hz)

    def set_gain(self, gain_db: float) -> None:
        lo, hi = self.receiver.gain_range_db
        if not lo <= gain_db <= hi:
            raise ValueError(f"gain {gain_db} dB outside the receiver's range {lo}..{hi} dB")
        self.gain_db = float(gain_db)

    def read(self, n: int) -> IQBuffer:
        if self._closed:
            raise RuntimeError("simulated SDR is closed")
        t_ns = time.time_ns()
        fs = self.sample_rate_hz
        t = self._t_s + np.arange(n) / fs
        offset_db = self.receiver.dbm_to_dbfs_offset_db(self.gain_db)
        noise_dbm = THERMAL_DBM_PER_HZ + self.receiver.noise_figure_db + 10 * math.log10(fs)
        x = _complex_gaussian(self._rng, n) * math.sqrt(10 ** ((noise_dbm + offset_db) / 10))
        for e in self._in_baseband():
            x += self._waveform(e, t) * math.sqrt(10 ** ((e.power_dbm + offset_db) / 10))
        self._t_s += n / fs
        return IQBuffer(_adc(x, self.receiver.adc_bits), t_ns, self.center_hz, fs, self.gain_db)

    def close(self) -> None:
        self._closed = True

    def _in_baseband(self) -> list[Emitter]:
        if self.emitters_center_hz is None:
            return self.emitters
        shift_hz, out = self.emitters_center_hz - self.center_hz, []
        for e in self.emitters:
            offset_hz = e.offset_hz + shift_hz
            half_hz = 0.0 if e.waveform == "tone" else e.bandwidth_hz / 2
            if abs(offset_hz) + half_hz <= self.sample_rate_hz / 2:  # wholly inside: partly inside is cut below
                out.append(e if offset_hz == e.offset_hz else Emitter(e.power_dbm, offset_hz, e.bandwidth_hz, e.waveform,
                                                                      e.duty_cycle, e.period_s))  # fmt: skip
            elif abs(offset_hz) - half_hz < self.sample_rate_hz / 2:  # the part inside the span, at its share of the power
                lo, hi = max(offset_hz - half_hz, -self.sample_rate_hz / 2), min(offset_hz + half_hz, self.sample_rate_hz / 2)
                share_db = 10 * math.log10((hi - lo) / e.bandwidth_hz)
                out.append(Emitter(e.power_dbm + share_db, (lo + hi) / 2, hi - lo, e.waveform, e.duty_cycle, e.period_s))
        return out

    def _waveform(self, e: Emitter, t: np.ndarray) -> np.ndarray:
        """Unit mean power while on (so duty cycle scales the average power, as on air)."""
        n, fs = t.size, self.sample_rate_hz
        if e.waveform == "tone":
            x = np.exp(2j * np.pi * e.offset_hz * t + 1j * self._rng.uniform(0, 2 * np.pi))
        elif e.waveform == "sweep":
            span = e.bandwidth_hz
            phase_t = np.mod(t, e.period_s)
            inst = e.offset_hz - span / 2 + span * phase_t / e.period_s
            x = np.exp(2j * np.pi * np.cumsum(inst) / fs)
        else:
            x = _band_limited(self._rng, n, fs, e.offset_hz, e.bandwidth_hz, flat_magnitude=e.waveform == "ofdm")
        if e.duty_cycle < 1.0:
            x = x * (np.mod(t, e.period_s) < e.duty_cycle * e.period_s)
        return x


def _complex_gaussian(rng: np.random.Generator, n: int) -> np.ndarray:
    return (rng.standard_normal(n) + 1j * rng.standard_normal(n)) / math.sqrt(2)


def _band_limited(rng, n: int, fs: float, offset_hz: float, bandwidth_hz: float, flat_magnitude: bool) -> np.ndarray:
    """Unit-power signal occupying offset ± bw/2: random phases on every bin in the band.

    Flat magnitude with random phases is an OFDM symbol spanning the buffer; Rayleigh magnitudes
    make band-limited Gaussian noise (a wideband noise jammer).
    """
    f = np.fft.fftfreq(n, 1 / fs)
    inband = np.abs(f - offset_hz) < bandwidth_hz / 2
    k = int(inband.sum())
    if k == 0:
        raise ValueError(f"emitter band {offset_hz:g} ± {bandwidth_hz / 2:g} Hz has no FFT bin at {fs:g} S/s, n={n}")
    mag = 1.0 if flat_magnitude else np.abs(_complex_gaussian(rng, k))
    spec = np.zeros(n, complex)
    spec[inband] = mag * np.exp(1j * rng.uniform(0, 2 * np.pi, k))
    x = np.fft.ifft(spec)
    return x / math.sqrt(np.mean(np.abs(x) ** 2))


def _adc(x: np.ndarray, bits: int) -> np.ndarray:
    """Quantise I and Q to ``bits`` (two's complement codes) and clip at full scale."""
    scale = 2 ** (bits - 1)
    codes = np.empty((x.size, 2))
    codes[:, 0], codes[:, 1] = x.real, x.imag
    np.clip(np.rint(codes * scale), -scale, scale - 1, out=codes)
    return (codes[:, 0] + 1j * codes[:, 1]).astype(np.complex64) / np.float32(scale)
