"""What every sensing unit should receive, given where the legitimate transmitters are.

P̂_j = 10·log10( Σ_t 10^((P_t + G_j(x_t)) / 10) + 10^(N / 10) )   [dBm]

with P_t the transmit power (dBm), G_j(x) the SU-j gain map (dB) bilinearly interpolated at the
transmitter position x, and N the noise floor (dBm). Powers add in mW, never in dB.

Interpolation is in dB (gain falls roughly log-linearly with distance, so dB is the smoother
quantity), over the four surrounding cell centres, using only valid cells with renormalised weights.
A position whose four neighbours are all invalid (deep inside an obstacle, e.g. a context position
with a localisation error) takes the nearest valid cell: the twin answers, but the answer is
flagged in :meth:`Predictor.lookup`'s ``fallback`` mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt

from central.twin.gain_maps import GainMaps


@dataclass(frozen=True)
class CellGains:
    """Per-cell gain matrix for localisation: every valid cell is a candidate emitter position."""

    positions_m: np.ndarray  # (C, 3) cell centres
    gain_lin: np.ndarray  # (C, n_su) linear path gain
    gain_db: np.ndarray  # (C, n_su)


@dataclass(frozen=True)
class Lookup:
    gain_db: np.ndarray  # (..., n_su)
    fallback: np.ndarray  # (...,) bool: nearest valid cell used instead of interpolation


def dbm_to_mw(p_dbm):
    return np.power(10.0, np.asarray(p_dbm, dtype=float) / 10.0)


class Predictor:
    """Vectorised prediction over batches of snapshots from per-SU gain maps."""

    def __init__(self, maps: GainMaps, noise_floor_dbm: float, hall_size_m: tuple[float, float, float]):
        self.maps = maps
        self.noise_floor_dbm = float(noise_floor_dbm)
        self._noise_mw = float(dbm_to_mw(noise_floor_dbm))
        self._hall_xy = np.array(hall_size_m[:2], dtype=float)
        grid = maps.grid
        self._c = grid.cell_size_m
        self._n = np.array([grid.nx, grid.ny])
        valid = grid.valid
        # Corner tables, so a lookup is one gather: for the cell square whose lower-left centre is
        # (iy, ix), the four corners' validity (ny-1, nx-1, 4) and gains (ny-1, nx-1, 4, n_su), in the
        # order (0,0), (0,+x), (+y,0), (+y,+x). Invalid cells are zeroed: their weight is zero anyway.
        g = np.moveaxis(np.nan_to_num(maps.gain_db.astype(np.float64), nan=0.0), 0, -1)
        v = valid.astype(np.float64)
        self._corner_g = np.ascontiguousarray(np.stack([g[:-1, :-1], g[:-1, 1:], g[1:, :-1], g[1:, 1:]], axis=2))
        self._corner_v = np.ascontiguousarray(np.stack([v[:-1, :-1], v[:-1, 1:], v[1:, :-1], v[1:, 1:]], axis=2))
        self._g = g
        # For the nearest-valid fallback: index of the nearest valid cell for every cell.
        _, (iy, ix) = distance_transform_edt(~valid, return_indices=True)
        self._nearest = (iy, ix)

    @property
    def num_su(self) -> int:
        return self.maps.num_su

    def lookup(self, positions_m) -> Lookup:
        """Gain (dB) from positions (..., 2 or 3; z ignored: the plane is fixed) to every SU."""
        pos = np.asarray(positions_m, dtype=float)
        shape = pos.shape[:-1]
        xy = pos.reshape(-1, pos.shape[-1])[:, :2]
        inside = (xy >= 0.0) & (xy <= self._hall_xy)  # NaN fails both comparisons
        if not inside.all():
            bad = ~inside.all(axis=1)
            first = np.flatnonzero(bad)[:5]
            raise ValueError(
                f"{int(bad.sum())} transmitter position(s) outside the hall (0..{self._hall_xy.tolist()} m)"
                f" or not finite, e.g. at flat index {first.tolist()}: {xy[first].tolist()}"
            )
        f = xy * (1.0 / self._c) - 0.5  # fractional cell index (x, y) ...
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

    def predict(self, tx_positions_m, tx_powers_dbm) -> np.ndarray:
        """Expected received power (dBm) at every SU.

        ``tx_positions_m``: (T, 2|3) for one snapshot or (B, T, 2|3) for a batch; ``tx_powers_dbm``:
        (T,) or (B, T). A transmitter with power −inf dBm is absent (its position is ignored), so
        snapshots with different numbers of transmitters fit in one padded batch.
        Returns (n_su,) or (B, n_su).
        """
        pos = np.asarray(tx_positions_m, dtype=float)
        p = np.asarray(tx_powers_dbm, dtype=float)
        if pos.shape[:-1] != p.shape or pos.shape[-1] not in (2, 3):
            raise ValueError(f"positions {pos.shape} and powers {p.shape} disagree: want (..., T, 2|3) and (..., T)")
        if not (p < np.inf).all():  # NaN fails the comparison too
            raise ValueError("transmit powers must be finite dBm (or -inf for an absent transmitter)")
        if p.min(initial=0.0) == -np.inf:
            absent = np.isneginf(p)
            pos = pos.copy()
            pos[absent, 0], pos[absent, 1] = self._hall_xy / 2.0  # any valid point: weight is zero
        g_db = self.lookup(pos).gain_db  # (..., T, n_su)
        rx_mw = np.power(10.0, (p[..., None] + g_db) * 0.1).sum(axis=-2) + self._noise_mw
        return 10.0 * np.log10(rx_mw)

    def cell_gains(self) -> CellGains:
        """Gain matrix (valid cells × SUs), for localisation over candidate emitter positions."""
        grid = self.maps.grid
        valid = grid.valid.ravel()
        g_db = self.maps.gain_db.reshape(self.num_su, -1).T[valid].astype(np.float64)
        return CellGains(grid.cell_centres_m(only_valid=True), dbm_to_mw(g_db), g_db)
