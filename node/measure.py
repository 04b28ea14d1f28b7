"""One reading: read a buffer from the SDR, measure its band power, convert dBFS to dBm.

The one place where a backend, the DSP and the calibration table meet, so that the agent loop,
``rftwin-node measure --once``, ``rftwin-node check`` and the benchmark all take the same path.
The record's ``seq`` is left at 0: the spool allocates sequence numbers when it stores a record.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.calibration_table import CalibrationTable
from node.dsp import BandPower, BandPowerConfig, measure_band_power
from node.protocol import POWER_DBM_RANGE, Measurement
from node.sdr.base import IQBuffer, SdrBackend


@dataclass(frozen=True)
class Reading:
    measurement: Measurement
    band_power: BandPower  # the dBFS figures behind it, for diagnostics
    buffer: IQBuffer  # kept so a saturated reading can be captured to SigMF


class Measurer:
    def __init__(self, node_id: str, backend: SdrBackend, band: BandPowerConfig, calibration: CalibrationTable,
                 samples_per_reading: int):  # fmt: skip
        if samples_per_reading < band.nperseg:
            raise ValueError(f"samples_per_reading {samples_per_reading} is shorter than one Welch segment ({band.nperseg})")
        self.node_id = node_id
        self.backend = backend
        self.band = band
        self.calibration = calibration
        self.samples_per_reading = samples_per_reading

    def read(self) -> Reading:
        buf = self.backend.read(self.samples_per_reading)
        bp = measure_band_power(buf.samples, self.band)

        def dbm(p_dbfs: float) -> float:
            # An all-zero buffer (a dead front end) reads −300 dBFS: clamp into what a record may
            # carry rather than producing a record no central unit would accept.
            return min(max(self.calibration.dbfs_to_dbm(p_dbfs, buf.center_hz, buf.gain_db), POWER_DBM_RANGE[0]),
                       POWER_DBM_RANGE[1])  # fmt: skip

        m = Measurement(
            node_id=self.node_id,
            seq=0,
            t_ns=buf.t_ns,
            f_center_hz=buf.center_hz + self.band.band.offset_hz,
            bandwidth_hz=self.band.band.bandwidth_hz,
            power_dbm=dbm(bp.power_dbfs),
            subband_powers_dbm=tuple(dbm(p) for p in bp.subband_powers_dbfs),
            saturated=bp.saturated,
            clip_fraction=bp.clip_fraction,
            gain_db=buf.gain_db,
            band_plan=self.band.band_plan,
        )
        return Reading(m, bp, buf)
