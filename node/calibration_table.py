"""dBFS → dBm for one node: an offset table over tuned frequency × RX gain, from a bench calibration.

P_dBm = P_dBFS + offset_db(f, gain). The offset absorbs the front end's gain, cable and antenna loss
at that tuning and gain setting; it is measured with a signal generator of known power. Between table
points the offset is bilinear; outside the table the node refuses to guess (an uncalibrated reading
would be silently wrong by tens of dB).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CalibrationTable:
    frequencies_hz: tuple[float, ...]  # ascending
    gains_db: tuple[float, ...]  # ascending
    offsets_db: tuple[tuple[float, ...], ...]  # [frequency][gain]

    def __post_init__(self):
        f, g = np.asarray(self.frequencies_hz, float), np.asarray(self.gains_db, float)
        o = np.asarray(self.offsets_db, float)
        if f.ndim != 1 or g.ndim != 1 or f.size == 0 or g.size == 0:
            raise ValueError("calibration: frequencies_hz and gains_db must be non-empty lists")
        if (np.diff(f) <= 0).any() or (np.diff(g) <= 0).any():
            raise ValueError("calibration: frequencies_hz and gains_db must be strictly ascending")
        if o.shape != (f.size, g.size):
            raise ValueError(f"calibration: offsets_db must be {f.size} rows of {g.size} values, got shape {o.shape}")
        if not np.isfinite(o).all():
            raise ValueError("calibration: offsets_db must be finite")

    @classmethod
    def constant(cls, offset_db: float, frequency_hz: float, gain_db: float) -> "CalibrationTable":
        """A single-point table: valid only at exactly that tuning and gain."""
        return cls((frequency_hz,), (gain_db,), ((offset_db,),))

    def offset_db(self, frequency_hz: float, gain_db: float) -> float:
        return float(_interp2(self.frequencies_hz, self.gains_db, np.asarray(self.offsets_db, float),
                              frequency_hz, gain_db))  # fmt: skip

    def dbfs_to_dbm(self, power_dbfs: float, frequency_hz: float, gain_db: float) -> float:
        return power_dbfs + self.offset_db(frequency_hz, gain_db)


def _axis(points: tuple[float, ...], x: float, name: str) -> tuple[int, int, float]:
    """Neighbouring indices and weight of the upper one along one table axis."""
    p = np.asarray(points, float)
    if not p[0] - 1e-9 * max(1.0, abs(p[0])) <= x <= p[-1] + 1e-9 * max(1.0, abs(p[-1])):
        raise ValueError(f"calibration: {name} {x:g} outside the calibrated range {p[0]:g}..{p[-1]:g}")
    if p.size == 1:
        return 0, 0, 0.0
    i = int(np.clip(np.searchsorted(p, x) - 1, 0, p.size - 2))
    return i, i + 1, float(np.clip((x - p[i]) / (p[i + 1] - p[i]), 0.0, 1.0))


def _interp2(fs, gs, table: np.ndarray, f: float, g: float) -> float:
    i0, i1, tf = _axis(fs, f, "frequency_hz")
    j0, j1, tg = _axis(gs, g, "gain_db")
    lo = (1 - tg) * table[i0, j0] + tg * table[i0, j1]
    hi = (1 - tg) * table[i1, j0] + tg * table[i1, j1]
    return (1 - tf) * lo + tf * hi
