"""Received power at the SUs of several transmitters through per-SU path gains: the one formula both
the ray-traced maps (:class:`central.twin.predictor.Predictor`) and the path-loss surrogate
(:class:`models.surrogate.predictor.SurrogatePredictor`) predict with.

Wideband, incoherent: powers add in mW, plus the noise floor. A transmitter at −inf dBm is absent, so
snapshots with different numbers of transmitters fit in one padded batch (its position is replaced by
any valid point before the gain lookup: its weight is zero).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def received_power_dbm(
    gain_db: Callable[[np.ndarray], np.ndarray],
    tx_positions_m,
    tx_powers_dbm,
    noise_mw: float,
    any_valid_xy_m,
) -> np.ndarray:
    """``gain_db(positions (..., T, 2|3)) → (..., T, n_su)`` dB; positions (T, 2|3) or (B, T, 2|3) m,
    powers (T,) or (B, T) dBm → (n_su,) or (B, n_su) dBm."""
    pos = np.asarray(tx_positions_m, dtype=float)
    p = np.asarray(tx_powers_dbm, dtype=float)
    if pos.shape[:-1] != p.shape or pos.ndim < 2 or pos.shape[-1] not in (2, 3):
        raise ValueError(f"positions {pos.shape} and powers {p.shape} disagree: want (..., T, 2|3) and (..., T)")
    if not (p < np.inf).all():  # NaN fails the comparison too
        raise ValueError("transmit powers must be finite dBm (or -inf for an absent transmitter)")
    if p.min(initial=0.0) == -np.inf:
        absent = np.isneginf(p)
        pos = pos.copy()
        pos[absent, 0], pos[absent, 1] = np.asarray(any_valid_xy_m, dtype=float)[:2]
    rx_mw = np.power(10.0, (p[..., None] + gain_db(pos)) * 0.1).sum(axis=-2) + noise_mw
    return 10.0 * np.log10(rx_mw)
