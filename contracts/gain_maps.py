"""Per-SU gain maps as a lookup table: path gain (dB) from any transmitter-plane position to every SU.

Two sides read gain maps: the central twin's predictor (maps traced with the twin's materials), and
the simulated world that feeds the simulated SDR (maps traced with the "true" materials, :mod:`sim.world`).
The world runs in node processes, which must not import the twin (docs/architecture.md), so the lookup
math and the file format are a contract of their own, here, on numpy and scipy alone, once.

Interpolation is in dB (gain falls roughly log-linearly with distance, so dB is the smoother
quantity), over the four surrounding cell centres, using only valid cells with renormalised weights.
A position whose four neighbours are all invalid (deep inside an obstacle, e.g. a context position
with a localisation error) takes the nearest valid cell: the table answers, but the answer is
flagged in :meth:`GainLookup.lookup`'s ``fallback`` mask.

File format (``.npz``, format version :data:`GAIN_MAP_FORMAT`): ``meta`` (a JSON string with at least
``format``, ``su_ids``, ``cell_size_m``, ``height_m``; the twin adds its cache key, site name and
solver settings), ``gain_db`` (n_su, ny, nx) float32 NaN where invalid, ``valid`` (ny, nx) bool, and
``su_positions_m`` (n_su, 3). Cell (iy, ix) has its centre at ((ix + ½)·c, (iy + ½)·c, height_m).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import distance_transform_edt

GAIN_MAP_FORMAT = 1
# Gains at this floor are "no path found" (fully shadowed at the traced depth); a finite floor keeps
# interpolation in dB well defined. −250 dB is far below any noise floor at any transmit power.
GAIN_FLOOR_DB = -250.0


@dataclass(frozen=True)
class Lookup:
    gain_db: np.ndarray  # (..., n_su)
    fallback: np.ndarray  # (...,) bool: nearest valid cell used instead of interpolation


class GainLookup:
    """Bilinear lookup in dB over per-SU gain maps, vectorised over any batch of positions."""

    def __init__(self, gain_db: np.ndarray, valid: np.ndarray, cell_size_m: float, hall_xy_m: tuple[float, float]):
        gain_db = np.asarray(gain_db)
        valid = np.asarray(valid, dtype=bool)
        if gain_db.ndim != 3 or gain_db.shape[1:] != valid.shape or min(valid.shape) < 2:
            raise ValueError(f"gain_db {gain_db.shape} and valid {valid.shape} disagree: want (n_su, ny, nx), "
                             "(ny, nx), at least 2 x 2 cells")  # fmt: skip
        self.num_su = gain_db.shape[0]
        self.cell_size_m = float(cell_size_m)
        self.hall_xy_m = np.array(hall_xy_m[:2], dtype=float)
        self._n = np.array([valid.shape[1], valid.shape[0]])  # (nx, ny)
        # Corner tables, so a lookup is one gather: for the cell square whose lower-left centre is
        # (iy, ix), the four corners' validity (ny-1, nx-1, 4) and gains (ny-1, nx-1, 4, n_su), in the
        # order (0,0), (0,+x), (+y,0), (+y,+x). Invalid cells are zeroed: their weight is zero anyway.
        g = np.moveaxis(np.nan_to_num(gain_db.astype(np.float64), nan=0.0), 0, -1)
        v = valid.astype(np.float64)
        self._corner_g = np.ascontiguousarray(np.stack([g[:-1, :-1], g[:-1, 1:], g[1:, :-1], g[1:, 1:]], axis=2))
        self._corner_v = np.ascontiguousarray(np.stack([v[:-1, :-1], v[:-1, 1:], v[1:, :-1], v[1:, 1:]], axis=2))
        self._g = g
        # For the nearest-valid fallback: index of the nearest valid cell for every cell.
        _, (iy, ix) = distance_transform_edt(~valid, return_indices=True)
        self._nearest = (iy, ix)

    def lookup(self, positions_m) -> Lookup:
        """Gain (dB) from positions (..., 2 or 3; z ignored: the plane is fixed) to every SU."""
        pos = np.asarray(positions_m, dtype=float)
        shape = pos.shape[:-1]
        xy = pos.reshape(-1, pos.shape[-1])[:, :2]
        inside = (xy >= 0.0) & (xy <= self.hall_xy_m)  # NaN fails both comparisons
        if not inside.all():
            bad = ~inside.all(axis=1)
            first = np.flatnonzero(bad)[:5]
            raise ValueError(
                f"{int(bad.sum())} transmitter position(s) outside the hall (0..{self.hall_xy_m.tolist()} m)"
                f" or not finite, e.g. at flat index {first.tolist()}: {xy[first].tolist()}"
            )
        f = xy * (1.0 / self.cell_size_m) - 0.5  # fractional cell index (x, y) ...
        np.minimum(f, self._n - 1.0, out=f)
        np.maximum(f, 0.0, out=f)  # ... clamped to the outer cell centres
        i0 = f.astype(np.intp)
        np.minimum(i0, self._n - 2, out=i0)
        t = f - i0
        st = np.stack((1.0 - t, t), axis=2)  # (N, axis x|y, weight of lower|upper)
        w = (st[:, 1, :, None] * st[:, 0, None, :]).reshape(-1, 4)  # corner order as the tables
        ix, iy = i0[:, 0], i0[:, 1]
        w *= self._corner_v[iy, ix]
        wsum = w.sum(axis=1, keepdims=True)
        fallback = wsum[:, 0] <= 1e-12
        any_fallback = fallback.any()
        if any_fallback:
            wsum[fallback] = 1.0
        g = np.matmul(w[:, None, :], self._corner_g[iy, ix])[:, 0] / wsum
        if any_fallback:
            r = np.rint(f[fallback]).astype(np.intp)
            ny_, nx_ = self._nearest[0][r[:, 1], r[:, 0]], self._nearest[1][r[:, 1], r[:, 0]]
            g[fallback] = self._g[ny_, nx_]
        return Lookup(g.reshape(*shape, self.num_su), fallback.reshape(shape))


@dataclass(frozen=True, eq=False)
class GainMapFile:
    """The contents of one gain-map file: the twin's cache entry, or the simulated world's truth."""

    meta: dict  # JSON-able; see the module docstring for the keys every file has
    gain_db: np.ndarray  # (n_su, ny, nx) float32, NaN where invalid
    valid: np.ndarray  # (ny, nx) bool
    su_positions_m: np.ndarray  # (n_su, 3)

    @property
    def su_ids(self) -> list[str]:
        return list(self.meta["su_ids"])

    @property
    def cell_size_m(self) -> float:
        return float(self.meta["cell_size_m"])

    @property
    def height_m(self) -> float:
        """Height of the transmitter plane the maps cover."""
        return float(self.meta["height_m"])

    @property
    def extent_m(self) -> tuple[float, float]:
        """(x, y) size of the area the cells cover: the hall's floor plan, to the cell size."""
        ny, nx = self.valid.shape
        return nx * self.cell_size_m, ny * self.cell_size_m

    def gain_lookup(self, hall_xy_m: tuple[float, float] | None = None) -> GainLookup:
        """A lookup over these maps; positions are accepted over ``hall_xy_m`` (default: the cells' extent)."""
        return GainLookup(self.gain_db, self.valid, self.cell_size_m, hall_xy_m or self.extent_m)

    def save(self, path: Path) -> None:
        """Atomic write: a crash mid-save never leaves a truncated file behind."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez_compressed(
            tmp,
            meta=np.array(json.dumps({**self.meta, "format": GAIN_MAP_FORMAT})),
            gain_db=self.gain_db,
            valid=self.valid,
            su_positions_m=self.su_positions_m,
        )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> GainMapFile:
        """Read and check a gain-map file; ValueError names the file when it is not one."""
        with np.load(path) as z:
            try:
                meta = json.loads(str(z["meta"]))
                if meta.get("format") != GAIN_MAP_FORMAT:
                    raise ValueError(f"{path}: gain-map format {meta.get('format')}, expected {GAIN_MAP_FORMAT}")
                f = cls(meta, z["gain_db"], z["valid"], z["su_positions_m"])
                n_su = len(f.su_ids)
                if not (f.cell_size_m > 0 and np.isfinite(f.height_m)):
                    raise ValueError(f"{path}: bad cell_size_m {f.cell_size_m} or height_m {f.height_m}")
            except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
                raise ValueError(f"{path}: not a gain-map file ({type(e).__name__}: {e})") from None
        if f.gain_db.shape != (n_su, *f.valid.shape) or f.su_positions_m.shape != (n_su, 3):
            raise ValueError(f"{path}: inconsistent gain-map file: {n_su} SUs, gain_db {f.gain_db.shape}, "
                             f"valid {f.valid.shape}, su_positions_m {f.su_positions_m.shape}")  # fmt: skip
        return f
