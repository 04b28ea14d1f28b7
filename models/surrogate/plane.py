"""The transmitter plane a surrogate covers: hall floor plan, plane height, and the valid cells.

A copy of what the twin's grid (``central.twin.grid.PlaneGrid``) says, kept with the model so that the
surrogate answers on its own (``models`` imports nothing of ``central``): position checks (inside the
hall), the "inside an obstacle" flag of a lookup, and the candidate emitter cells for localisation.
Cell (iy, ix) has its centre at ((ix + ½)·c, (iy + ½)·c, h) for cell size c (m) and plane height h (m).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PlaneSpec"]


@dataclass(frozen=True, eq=False)
class PlaneSpec:
    cell_size_m: float
    height_m: float
    hall_xy_m: tuple[float, float]
    valid: np.ndarray  # (ny, nx) bool: cell centre outside every obstacle that reaches the plane

    def __post_init__(self):
        v = np.asarray(self.valid, dtype=bool)
        if v.ndim != 2 or min(v.shape) < 1 or not self.cell_size_m > 0:
            raise ValueError(f"bad plane: valid {v.shape}, cell size {self.cell_size_m} m")
        object.__setattr__(self, "valid", v)
        object.__setattr__(self, "hall_xy_m", (float(self.hall_xy_m[0]), float(self.hall_xy_m[1])))

    # The attributes of PlaneGrid that the central unit reads (interface parity).
    @property
    def nx(self) -> int:
        return int(self.valid.shape[1])

    @property
    def ny(self) -> int:
        return int(self.valid.shape[0])

    @property
    def num_valid(self) -> int:
        return int(self.valid.sum())

    def cell_centres_m(self, only_valid: bool = False) -> np.ndarray:
        """Cell centres (ny·nx, 3) in row-major (iy, ix) order, or only the valid ones."""
        c = self.cell_size_m
        X, Y = np.meshgrid((np.arange(self.nx) + 0.5) * c, (np.arange(self.ny) + 0.5) * c)
        pts = np.stack([X.ravel(), Y.ravel(), np.full(X.size, self.height_m)], axis=1)
        return pts[self.valid.ravel()] if only_valid else pts

    def check_inside(self, xy: np.ndarray) -> None:
        """ValueError naming the offenders when a position (N, 2) is outside the hall or not finite."""
        inside = (xy >= 0.0) & (xy <= np.asarray(self.hall_xy_m))  # NaN fails both comparisons
        if not inside.all():
            bad = ~inside.all(axis=1)
            first = np.flatnonzero(bad)[:5]
            raise ValueError(
                f"{int(bad.sum())} transmitter position(s) outside the hall (0..{list(self.hall_xy_m)} m)"
                f" or not finite, e.g. at flat index {first.tolist()}: {xy[first].tolist()}"
            )

    def in_obstacle(self, xy: np.ndarray) -> np.ndarray:
        """(N,) True where the position's cell is invalid (inside an obstacle): the model extrapolates there."""
        i = np.clip((xy / self.cell_size_m).astype(np.intp), 0, [self.nx - 1, self.ny - 1])
        return ~self.valid[i[:, 1], i[:, 0]]
