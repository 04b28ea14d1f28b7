"""Training data for the surrogate: ray-traced samples of the site, taken from the twin's gain maps.

The paper trained on 5000 ray-traced maps, one per random TX position. Our twin already holds the same
information by reciprocity: the value of SU j's map at a valid cell centre is the PathSolver's (SU in
the TX plane) or RadioMapSolver's (SU above it) path gain between that point and SU j. So every valid
cell centre is one ray-traced training sample (x, y → 12 gains): 5056 for the reference hall at 0.5 m
cells, about the paper's 5000. Nothing is interpolated: samples are exactly the traced values.

Held-out positions (:func:`holdout_mask`):

- ``"random"`` (default): a random fraction of the cells. Every held-out cell has traced neighbours
  0.5 m away in the training set, as the paper's random TX positions had: this measures how well the
  model interpolates between ray-traced samples, i.e. the accuracy it has in operation.
- ``"blocks"``: whole squares of ``block_m`` (default 4 m) held out, so a held-out position is up to
  ``block_m / 2`` from any training sample: a stricter test of generalisation to unseen areas.

Targets are clipped at :data:`TARGET_FLOOR_DB` (−160 dB): the maps' "no path" floor (−250 dB) is a
marker, not a gain, and a regressor averaging it with real gains would be wrong at both; anything
under −160 dB is 80 dB under the noise floor for a 20 dBm transmitter, i.e. irrelevant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.surrogate.features import tx_features
from models.surrogate.plane import PlaneSpec

TARGET_FLOOR_DB = -160.0
SPLITS = ("random", "blocks")

__all__ = ["SPLITS", "TARGET_FLOOR_DB", "SurrogateData", "holdout_mask"]


@dataclass(frozen=True, eq=False)
class SurrogateData:
    positions_m: np.ndarray  # (N, 3) valid cell centres on the TX plane
    gain_db: np.ndarray  # (N, n_su) ray-traced path gain (dB), the maps' values (floor −250 dB)
    su_ids: tuple[str, ...]
    su_positions_m: np.ndarray  # (n_su, 3)
    plane: PlaneSpec

    @classmethod
    def from_gain_maps(cls, maps, hall_xy_m: tuple[float, float] | None = None) -> SurrogateData:
        """From a twin's gain maps (``central.twin.GainMaps`` or anything with ``gain_db`` (n_su, ny, nx),
        ``grid.valid``, ``grid.cell_size_m``, ``grid.height_m``, ``su_ids``, ``su_positions_m``)."""
        grid = maps.grid
        valid = np.asarray(grid.valid, dtype=bool)
        gain = np.asarray(maps.gain_db, dtype=np.float64)
        if gain.ndim != 3 or gain.shape[1:] != valid.shape:
            raise ValueError(f"gain maps {gain.shape} do not match the grid {valid.shape}")
        c = float(grid.cell_size_m)
        hall = hall_xy_m or (valid.shape[1] * c, valid.shape[0] * c)
        plane = PlaneSpec(c, float(grid.height_m), hall, valid)
        y = gain[:, valid].T
        if not np.isfinite(y).all():
            raise ValueError("gain maps have non-finite values at valid cells")
        return cls(plane.cell_centres_m(only_valid=True), y, tuple(maps.su_ids),
                   np.asarray(maps.su_positions_m, dtype=np.float64), plane)  # fmt: skip

    @property
    def n(self) -> int:
        return int(self.positions_m.shape[0])

    @property
    def num_su(self) -> int:
        return len(self.su_ids)

    def features(self) -> np.ndarray:
        """(N, 2 + n_su) float32: [x, y, d_1 … d_n] (m)."""
        return tx_features(self.positions_m, self.su_positions_m, self.plane.height_m)

    def targets(self) -> np.ndarray:
        """(N, n_su) gain (dB) clipped at :data:`TARGET_FLOOR_DB`."""
        return np.maximum(self.gain_db, TARGET_FLOOR_DB)


def holdout_mask(data: SurrogateData, fraction: float = 0.2, split: str = "random", seed: int = 0,
                 block_m: float = 4.0) -> np.ndarray:  # fmt: skip
    """(N,) True for held-out samples, about ``fraction`` of them (see the module docstring)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"held-out fraction must be in (0, 1), got {fraction}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: one of {', '.join(SPLITS)}")
    rng = np.random.default_rng(seed)
    if split == "random":
        mask = np.zeros(data.n, dtype=bool)
        mask[rng.permutation(data.n)[: int(round(fraction * data.n))]] = True
        return mask
    if not block_m > 0:
        raise ValueError(f"block size must be > 0 m, got {block_m}")
    block = np.floor(data.positions_m[:, :2] / block_m).astype(np.int64)
    ids, inverse, counts = np.unique(block, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    chosen, total = [], 0
    for b in rng.permutation(len(ids)):
        if total >= fraction * data.n:
            break
        chosen.append(b)
        total += counts[b]
    return np.isin(inverse, chosen)
