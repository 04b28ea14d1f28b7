"""Model error of kinds the detectors were not designed on (issue 15): the robustness checks of the
default-detector choice.

The paper's protocol adds i.i.d. Gaussian model error σ·z per SU. A real twin's error is not that
kind: it has heavy tails (a reflection the twin misses entirely), it is correlated between SUs that
see the hall alike (a missing shelf shadows its whole neighbourhood), and now and then an SU gives no
reading at all. Each :class:`Stress` replaces the paper's ε (same σ, same seed-derived draws) or hides
SUs at test time only, so a detector is judged on error it never trained for and whose form its
design did not assume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STRESSES = ("heavy_tails", "correlated", "dropped_su")
STUDENT_DOF = 3.0  # heavy tails: Student t with 3 degrees of freedom, scaled to unit variance
CORRELATION_LENGTH_M = 15.0  # correlated: exp(−d / this) between SUs d metres apart


@dataclass(frozen=True)
class Stress:
    """One robustness condition at model error ``sigma_db``: ``kind`` in :data:`STRESSES`."""

    kind: str
    sigma_db: float

    def __post_init__(self) -> None:
        if self.kind not in STRESSES:
            raise ValueError(f"stress kind must be one of {STRESSES}, got {self.kind!r}")

    @property
    def tag(self) -> str:
        return f"{self.kind}_sigma{self.sigma_db:g}"


def model_error_db(kind: str, sigma_db: float, unit_normal: np.ndarray, su_positions_m: np.ndarray,
                   seed: int) -> np.ndarray:  # fmt: skip
    """Model error ε (N, n_su) in dB of standard deviation ``sigma_db`` per SU, built from the dataset's
    own unit draws ``unit_normal`` (so a stress changes the error's form, not its realisation):

    - ``heavy_tails``: z / sqrt(w / ν) with w ~ χ²_ν per SU and snapshot, scaled to unit variance;
    - ``correlated``: z coloured by the Cholesky factor of exp(−d_ij / 15 m) over the SU positions;
    - ``dropped_su``: the paper's i.i.d. error (SUs are hidden by :func:`dropped_su_mask`).
    """
    z = np.asarray(unit_normal, dtype=np.float64)
    if kind == "heavy_tails":
        w = np.random.default_rng(seed).chisquare(STUDENT_DOF, size=z.shape)
        z = z / np.sqrt(w / STUDENT_DOF) * np.sqrt((STUDENT_DOF - 2.0) / STUDENT_DOF)
    elif kind == "correlated":
        xy = np.asarray(su_positions_m, dtype=np.float64)[:, :2]
        d = np.linalg.norm(xy[:, None, :] - xy[None, :, :], axis=-1)
        z = z @ np.linalg.cholesky(np.exp(-d / CORRELATION_LENGTH_M)).T
    elif kind != "dropped_su":
        raise ValueError(f"stress kind must be one of {STRESSES}, got {kind!r}")
    return float(sigma_db) * z


def dropped_su_mask(n: int, n_su: int, seed: int) -> np.ndarray:
    """(N, n_su) bool: one SU per snapshot, drawn uniformly, gives no reading at test time."""
    mask = np.zeros((n, n_su), dtype=bool)
    mask[np.arange(n), np.random.default_rng(seed).integers(0, n_su, n)] = True
    return mask


def stressed_residuals(dataset, stress: Stress, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(Δ (N, n_su) under the stress, test-time missing mask or None) for a
    :class:`evaluation.dataset.DetectionDataset`."""
    eps = model_error_db(stress.kind, stress.sigma_db, dataset.eps_unit, dataset.su_positions_m, seed)
    delta = dataset.delta_db(0.0) + eps  # the paper's Δ without its own error, plus the stressed one
    missing = dropped_su_mask(dataset.n, dataset.n_su, seed) if stress.kind == "dropped_su" else None
    return delta, missing
