"""The transmitter-plane grid: cell centres over the hall floor plan, and which cells are usable.

Cell (iy, ix) has its centre at ((ix + ½)·c, (iy + ½)·c, h) for cell size c and plane height h, so
the grid covers the hall exactly. A cell whose centre lies inside an obstacle that reaches the plane
is invalid: no transmitter can stand there, and the ray tracer's value there is meaningless.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from central.twin.site import Site


@dataclass(frozen=True)
class PlaneGrid:
    cell_size_m: float
    nx: int
    ny: int
    height_m: float
    valid: np.ndarray  # (ny, nx) bool

    @classmethod
    def for_site(cls, site: Site) -> PlaneGrid:
        c = site.tx_plane.cell_size_m
        nx = int(round(site.hall_size_m[0] / c))
        ny = int(round(site.hall_size_m[1] / c))
        xs = (np.arange(nx) + 0.5) * c
        ys = (np.arange(ny) + 0.5) * c
        h = site.tx_plane.height_m
        valid = np.ones((ny, nx), dtype=bool)
        for ob in site.obstacles:
            (x0, y0, z0), (x1, y1, z1) = ob.min_m, ob.max_m
            if not z0 <= h <= z1:
                continue
            inside_x = (xs >= x0) & (xs <= x1)
            inside_y = (ys >= y0) & (ys <= y1)
            valid[np.ix_(inside_y, inside_x)] = False
        return cls(c, nx, ny, h, valid)

    @property
    def x_centres_m(self) -> np.ndarray:
        return (np.arange(self.nx) + 0.5) * self.cell_size_m

    @property
    def y_centres_m(self) -> np.ndarray:
        return (np.arange(self.ny) + 0.5) * self.cell_size_m

    def cell_centres_m(self, only_valid: bool = False) -> np.ndarray:
        """Cell centres (ny·nx, 3) in row-major (iy, ix) order, or only the valid ones."""
        X, Y = np.meshgrid(self.x_centres_m, self.y_centres_m)
        pts = np.stack([X.ravel(), Y.ravel(), np.full(X.size, self.height_m)], axis=1)
        return pts[self.valid.ravel()] if only_valid else pts

    @property
    def num_valid(self) -> int:
        return int(self.valid.sum())
