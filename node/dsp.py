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

import numpy as np
from scipy.signal import welch


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


def clip_fraction(iq: np.ndarray, level: float) -> float:
    """Fraction of samples whose I or Q reached ``level`` (of full scale)."""
    hit = (np.abs(iq.real) >= level) | (np.abs(iq.imag) >= level)
    return float(np.count_nonzero(hit)) / max(iq.size, 1)


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
    clipped = clip_fraction(iq, cfg.clip_level)
    peak = float(np.max(np.maximum(np.abs(iq.real), np.abs(iq.imag))))
    x = iq - iq.mean()
    freqs, psd = welch(
        x, fs=cfg.sample_rate_hz, window="hann", nperseg=cfg.nperseg, noverlap=cfg.nperseg // 2,
        detrend=False, return_onesided=False, scaling="density",
    )  # fmt: skip
    df = cfg.sample_rate_hz / cfg.nperseg

    def band_db(b: Band) -> float:
        return to_db(psd[_band_mask(freqs, b)].sum() * df)

    return BandPower(
        power_dbfs=band_db(cfg.band),
        subband_powers_dbfs=tuple(band_db(b) for b in cfg.subbands),
        clip_fraction=clipped,
        peak_dbfs=to_db(peak**2),
        saturated=clipped > cfg.saturation_clip_fraction or to_db(np.mean(np.abs(x) ** 2)) >= cfg.compression_dbfs,
    )
