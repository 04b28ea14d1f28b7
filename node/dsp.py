"""Band power from complex IQ: clip fraction → DC removal → Welch PSD → integration over bands → dBFS.

Input samples are complex, normalised so that the ADC's full scale is 1.0 on each of I and Q (a
backend divides Pluto's 12-bit codes by 2048, for instance). 0 dBFS is the power of a full-scale
complex tone (|x| = 1). Clipping is measured first, on the raw samples, because once a sample has hit
the rails the band power is only a lower bound, and the node must say so.

Welch with a Hann window and 50 % overlap, density scaling: Σ PSD·Δf over all bins equals the
mean-square power, so integrating a band's bins gives that band's power for any waveform.
Frequencies are baseband offsets from the tuned centre, in Hz.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft
from scipy.signal import get_window


@dataclass(frozen=True)
class Band:
    """A band relative to the tuned centre frequency."""

    offset_hz: float
    bandwidth_hz: float

    @property
    def edges_hz(self) -> tuple[float, float]:
        return self.offset_hz - self.bandwidth_hz / 2, self.offset_hz + self.bandwidth_hz / 2


@dataclass(frozen=True)
class BandPowerConfig:
    sample_rate_hz: float
    band: Band
    subbands: tuple[Band, ...] = ()
    nperseg: int = 1024
    # Fraction of the sampled span lost at each edge to the anti-alias filter's roll-off: bands must
    # stay inside the central (1 − 2·edge_crop) of the span.
    edge_crop: float = 0.1
    # A sample is clipped when |I| or |Q| reaches this fraction of full scale.
    clip_level: float = 0.999
    # contracts.band_plan.BandPlan.fingerprint when ``band`` and ``subbands`` come from a band plan (a
    # node's [band] plan): the readings say so, and the central unit uses their sub-bands; "" otherwise.
    band_plan: str = ""
    # Saturated (reading is a lower bound) above this clipped fraction, or when the total power is
    # within this of full scale (ADC/LNA compression before the rails are hit).
    saturation_clip_fraction: float = 1e-4
    compression_dbfs: float = -1.0

    def __post_init__(self):
        if not self.sample_rate_hz > 0:
            raise ValueError(f"sample_rate_hz must be > 0, got {self.sample_rate_hz}")
        if self.nperseg < 16 or self.nperseg & (self.nperseg - 1):
            raise ValueError(f"nperseg must be a power of two >= 16, got {self.nperseg}")
        if not 0 <= self.edge_crop < 0.5:
            raise ValueError(f"edge_crop must be within [0, 0.5), got {self.edge_crop}")
        usable = self.sample_rate_hz / 2 * (1 - 2 * self.edge_crop)
        for name, b in [("band", self.band)] + [(f"subbands[{i}]", s) for i, s in enumerate(self.subbands)]:
            lo, hi = b.edges_hz
            if not b.bandwidth_hz > 0:
                raise ValueError(f"{name}: bandwidth_hz must be > 0, got {b.bandwidth_hz}")
            if lo < -usable or hi > usable:
                raise ValueError(
                    f"{name}: {lo / 1e6:.3f}..{hi / 1e6:.3f} MHz leaves the usable span ±{usable / 1e6:.3f} MHz "
                    f"(sample rate {self.sample_rate_hz / 1e6:g} MHz, edge crop {self.edge_crop:g})"
                )
            if b.bandwidth_hz < 2 * self.sample_rate_hz / self.nperseg:
                raise ValueError(f"{name}: narrower than two PSD bins; raise nperseg")


@dataclass(frozen=True)
class BandPower:
    power_dbfs: float
    subband_powers_dbfs: tuple[float, ...]
    clip_fraction: float
    peak_dbfs: float
    saturated: bool


def _rails(iq: np.ndarray) -> np.ndarray:
    """|I| and |Q| side by side, (n, 2), in one pass over the interleaved buffer."""
    iq = np.ascontiguousarray(iq)
    real = np.float32 if iq.dtype == np.complex64 else np.float64
    return np.abs(iq.view(real)).reshape(-1, 2)


def _clipped_fraction(rails: np.ndarray, level: float, peak: float | None = None) -> float:
    """Per-sample count; skipped when the peak shows no rail was reached (the common case, and the
    per-sample reduction over the (n, 2) array costs more than the whole PSD)."""
    if (rails.max() if peak is None else peak) < level:
        return 0.0
    return float(np.count_nonzero((rails >= level).any(axis=1))) / max(len(rails), 1)


def clip_fraction(iq: np.ndarray, level: float) -> float:
    """Fraction of samples whose I or Q reached ``level`` (of full scale)."""
    return _clipped_fraction(_rails(iq), level)


def welch_psd(x: np.ndarray, sample_rate_hz: float, nperseg: int) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Welch PSD (FS²/Hz), Hann, 50 % overlap, density scaling; frequencies in FFT order.

    The same estimate as ``scipy.signal.welch(..., return_onesided=False, detrend=False)`` (a test
    pins this), but on a strided view and in the input's precision: complex64 stays complex64,
    which is what makes real-time rates on one core possible.
    """
    step = nperseg // 2
    nseg = (x.size - nperseg) // step + 1
    segs = np.lib.stride_tricks.sliding_window_view(x, nperseg)[: nseg * step : step]
    win, win_energy = _hann(nperseg, x.real.dtype.str)
    spec = scipy.fft.fft(segs * win, axis=1, workers=1, overwrite_x=True)
    # Σ over segments of |X|², without materialising |X|² (einsum reduces re² and im² in place).
    power = np.einsum("ij,ij->j", spec.real, spec.real) + np.einsum("ij,ij->j", spec.imag, spec.imag)
    psd = power.astype(np.float64) / (nseg * sample_rate_hz * win_energy)
    return scipy.fft.fftfreq(nperseg, 1.0 / sample_rate_hz), psd


@lru_cache(maxsize=8)
def _hann(nperseg: int, dtype: str) -> tuple[np.ndarray, float]:
    """Periodic Hann window (as Welch uses) in the samples' precision, and its energy Σw²."""
    w = get_window("hann", nperseg)
    return w.astype(dtype), float(np.sum(w**2))


def _band_mask(freqs_hz: np.ndarray, band: Band) -> np.ndarray:
    lo, hi = band.edges_hz
    return (freqs_hz >= lo) & (freqs_hz < hi)


def to_db(power) -> float:
    return float(10.0 * np.log10(max(float(power), 1e-30)))


def measure_band_power(iq: np.ndarray, cfg: BandPowerConfig) -> BandPower:
    """Power in the configured band and sub-bands (dBFS), with clipping and saturation flags."""
    iq = np.asarray(iq)
    if iq.ndim != 1 or not np.iscomplexobj(iq):
        raise ValueError(f"expected a 1-D complex sample buffer, got {iq.dtype} {iq.shape}")
    if iq.size < cfg.nperseg:
        raise ValueError(f"buffer of {iq.size} samples is shorter than one Welch segment ({cfg.nperseg})")
    rails = _rails(iq)
    peak = float(rails.max())
    clipped = _clipped_fraction(rails, cfg.clip_level, peak)
    x = iq - iq.mean(dtype=np.complex128).astype(iq.dtype)
    freqs, psd = welch_psd(x, cfg.sample_rate_hz, cfg.nperseg)
    df = cfg.sample_rate_hz / cfg.nperseg

    def band_db(b: Band) -> float:
        return to_db(psd[_band_mask(freqs, b)].sum() * df)

    return BandPower(
        power_dbfs=band_db(cfg.band),
        subband_powers_dbfs=tuple(band_db(b) for b in cfg.subbands),
        clip_fraction=clipped,
        peak_dbfs=to_db(peak**2),
        saturated=clipped > cfg.saturation_clip_fraction or to_db(psd.sum() * df) >= cfg.compression_dbfs,
    )
