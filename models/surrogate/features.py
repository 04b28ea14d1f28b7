"""The surrogate's input features: the paper's [x, y, d_1 … d_n] for a transmitter position.

x, y (m) locate the transmitter on the TX plane; d_j (m) is its 3-D distance to sensing unit j, the
transmitter taken at the plane height (the plane is fixed, as for the gain maps: a position's z is
ignored). Distances give a tree or a network the free-space trend directly, x and y the shadowing
pattern. Features are float32: scikit-learn's trees compare in float32 and so does the ONNX graph,
so training, export and inference see bit-identical inputs.
"""

from __future__ import annotations

import numpy as np

__all__ = ["feature_names", "tx_features"]


def feature_names(num_su: int) -> list[str]:
    return ["x_m", "y_m", *(f"d{j + 1}_m" for j in range(num_su))]


def tx_features(positions_m, su_positions_m, plane_height_m: float) -> np.ndarray:
    """(N, 2 + n_su) float32 features for positions (N, 2|3) in m (z ignored: the plane height is used)."""
    pos = np.asarray(positions_m, dtype=np.float64)
    su = np.asarray(su_positions_m, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] not in (2, 3):
        raise ValueError(f"positions must be (N, 2|3), got {pos.shape}")
    if su.ndim != 2 or su.shape[1] != 3:
        raise ValueError(f"SU positions must be (n_su, 3), got {su.shape}")
    dx = pos[:, None, 0] - su[None, :, 0]
    dy = pos[:, None, 1] - su[None, :, 1]
    dz = float(plane_height_m) - su[None, :, 2]
    d = np.sqrt(dx * dx + dy * dy + dz * dz)
    return np.concatenate([pos[:, :2], d], axis=1).astype(np.float32)
