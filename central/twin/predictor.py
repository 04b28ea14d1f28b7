"""What every sensing unit should receive, given where the legitimate transmitters are.

P̂_j = 10·log10( Σ_t 10^((P_t + G_j(x_t)) / 10) + 10^(N / 10) )   [dBm]

with P_t the transmit power (dBm), G_j(x) the SU-j gain map (dB) bilinearly interpolated at the
transmitter position x, and N the noise floor (dBm). Powers add in mW, never in dB.

The gain lookup (bilinear in dB over valid cells, nearest-valid fallback for positions deep inside
obstacles, flagged in :meth:`Predictor.lookup`'s ``fallback`` mask) is :class:`contracts.gain_maps.GainLookup`,
shared with the simulated world that reads the "true" maps in node processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from central.twin.gain_maps import GainMaps
from contracts.band_plan import SUBBAND_LEAKAGE_DB, neighbour_sum
from contracts.gain_maps import GainLookup, Lookup
from models.power_sum import received_power_dbm

__all__ = ["CellGains", "Lookup", "Predictor", "dbm_to_mw"]


@dataclass(frozen=True)
class CellGains:
    """Per-cell gain matrix for localisation: every valid cell is a candidate emitter position."""

    positions_m: np.ndarray  # (C, 3) cell centres
    gain_lin: np.ndarray  # (C, n_su) linear path gain
    gain_db: np.ndarray  # (C, n_su)


def dbm_to_mw(p_dbm):
    return np.power(10.0, np.asarray(p_dbm, dtype=float) / 10.0)


class Predictor:
    """Vectorised prediction over batches of snapshots from per-SU gain maps."""

    def __init__(self, maps: GainMaps, noise_floor_dbm: float, hall_size_m: tuple[float, float, float]):
        self.maps = maps
        self.noise_floor_dbm = float(noise_floor_dbm)
        self._noise_mw = float(dbm_to_mw(noise_floor_dbm))
        self._gains = GainLookup(maps.gain_db, maps.grid.valid, maps.grid.cell_size_m, hall_size_m[:2])

    @property
    def num_su(self) -> int:
        return self.maps.num_su

    def lookup(self, positions_m) -> Lookup:
        """Gain (dB) from positions (..., 2 or 3; z ignored: the plane is fixed) to every SU."""
        return self._gains.lookup(positions_m)

    def predict(self, tx_positions_m, tx_powers_dbm) -> np.ndarray:
        """Expected received power (dBm) at every SU.

        ``tx_positions_m``: (T, 2|3) for one snapshot or (B, T, 2|3) for a batch; ``tx_powers_dbm``:
        (T,) or (B, T). A transmitter with power −inf dBm is absent (its position is ignored), so
        snapshots with different numbers of transmitters fit in one padded batch.
        Returns (n_su,) or (B, n_su).
        """
        return received_power_dbm(lambda pos: self.lookup(pos).gain_db, tx_positions_m, tx_powers_dbm,
                                  self._noise_mw, self._gains.hall_xy_m / 2.0)  # fmt: skip

    def predict_subbands(self, tx_positions_m, tx_subband_powers_dbm, subband_widths_hz, band_width_hz: float,
                         leakage_db: float = SUBBAND_LEAKAGE_DB) -> np.ndarray:  # fmt: skip
        """Expected power per SU and sub-band (dBm), the spectral twin:

        P̂_jb = 10·log10( S_jb + λ·(S_j,b−1 + S_j,b+1) + N · W_b / W ),   S_jb = Σ_t 10^((P_tb + G_j(x_t)) / 10)

        ``tx_subband_powers_dbm``: (T, K) EIRP of each transmitter in each sub-band (−inf where the
        scheduler did not allocate it: :meth:`central.live.TxContext.subband_powers_dbm`);
        ``subband_widths_hz`` (K,); the noise floor N (the site's, over ``band_width_hz`` W, the band
        plan's PRB grid) is shared out by width; λ (``leakage_db``, default
        :data:`contracts.band_plan.SUBBAND_LEAKAGE_DB`) is what the node's estimator leaks of a sub-band
        into each neighbour. One gain map per SU serves every sub-band: across a
        100 MHz carrier at 3.7 GHz the traced gains move by a fraction of a dB (docs/architecture.md).
        The sum over sub-bands is :meth:`predict` of the transmitters' totals (plus the leakage, 2λ:
        +0.03 dB). Returns (n_su, K).
        """
        p = np.asarray(tx_subband_powers_dbm, dtype=np.float64)
        widths = np.asarray(subband_widths_hz, dtype=np.float64)
        noise_mw = self._noise_mw * widths / float(band_width_hz)
        if p.size == 0:
            return np.broadcast_to(10 * np.log10(noise_mw), (self.num_su, len(widths))).copy()
        g_mw = dbm_to_mw(self.lookup(np.asarray(tx_positions_m, dtype=np.float64)).gain_db)  # (T, n_su)
        sig = g_mw.T @ dbm_to_mw(p)  # (n_su, K)
        return 10 * np.log10(sig + 10 ** (leakage_db / 10) * neighbour_sum(sig) + noise_mw)

    def cell_gains(self) -> CellGains:
        """Gain matrix (valid cells × SUs), for localisation over candidate emitter positions."""
        grid = self.maps.grid
        valid = grid.valid.ravel()
        g_db = self.maps.gain_db.reshape(self.num_su, -1).T[valid].astype(np.float64)
        return CellGains(grid.cell_centres_m(only_valid=True), dbm_to_mw(g_db), g_db)
