"""Accuracy of a gain predictor against ray tracing, in dB, over the pairs that can matter.

Pairs whose ray-traced gain is below :data:`RELEVANT_GAIN_DB` (−150 dB) are left out: a 20 dBm transmitter
would arrive 30 dB under the −100 dBm noise floor there, so no error in them changes a prediction, and
deep-shadow gains (the −250 dB "no path" floor of the maps) would swamp any dB statistic. The same
threshold as :mod:`central.twin.verify` (bench/twin.py), so map and surrogate figures compare.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

RELEVANT_GAIN_DB = -150.0

__all__ = ["GainError", "RELEVANT_GAIN_DB", "gain_error"]


@dataclass(frozen=True)
class GainError:
    rmse_db: float
    median_abs_db: float
    p95_abs_db: float
    bias_db: float  # median of (predicted − reference)
    n: int  # (position, SU) pairs compared
    n_shadow: int  # pairs left out: reference below the relevance threshold

    def to_dict(self) -> dict:
        return asdict(self)


def gain_error(predicted_db, reference_db, min_reference_db: float = RELEVANT_GAIN_DB) -> GainError:
    """Error statistics of predicted vs reference gains (same shape, dB) over pairs with reference ≥ threshold."""
    pred = np.asarray(predicted_db, dtype=np.float64).ravel()
    ref = np.asarray(reference_db, dtype=np.float64).ravel()
    if pred.shape != ref.shape:
        raise ValueError(f"predicted {np.shape(predicted_db)} and reference {np.shape(reference_db)} differ")
    keep = ref >= min_reference_db
    if not keep.any():
        raise ValueError("no pair above the relevance threshold to compare")
    err = np.maximum(np.nan_to_num(pred[keep], nan=-400.0), -400.0) - ref[keep]
    a = np.abs(err)
    return GainError(float(np.sqrt(np.mean(err * err))), float(np.median(a)), float(np.percentile(a, 95)),
                     float(np.median(err)), int(a.size), int((~keep).sum()))  # fmt: skip
