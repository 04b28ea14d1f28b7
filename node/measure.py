"""One reading: read a buffer from the SDR, measure its band power, convert dBFS to dBm.

The one place where a backend, the DSP and the calibration table meet, so that the agent loop,
``rftwin-node measure --once``, ``rftwin-node check`` and the benchmarks all take the same path.
The record's ``seq`` is left at 0: the spool allocates sequence numbers when it stores a record.

A sweeping node (:mod:`node.sweep`, a band plan wider than the radio) measures step by step:
:meth:`Measurer.read_step` retunes to the step's LO (the backend then discards its settling
buffers), reads one buffer and measures the step's sub-bands in it; :meth:`Measurer.sweep` does
every step once, in order. A measurer without a sweep has one step, the configured band, and never
retunes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from node.calibration_table import CalibrationTable
from node.dsp import BandPower, BandPowerConfig, measure_band_power
from node.protocol import POWER_DBM_RANGE, Measurement
from node.sdr.base import IQBuffer, SdrBackend
from node.sweep import SweepPlan


@dataclass(frozen=True)
class Reading:
    measurement: Measurement
    band_power: BandPower  # the dBFS figures behind it, for diagnostics
    buffer: IQBuffer  # kept so a saturated reading can be captured to SigMF


class Measurer:
    def __init__(self, node_id: str, backend: SdrBackend, band: BandPowerConfig, calibration: CalibrationTable,
                 samples_per_reading: int, sweep: SweepPlan | None = None):  # fmt: skip
        if samples_per_reading < band.nperseg:
            raise ValueError(f"samples_per_reading {samples_per_reading} is shorter than one Welch segment ({band.nperseg})")
        self.node_id = node_id
        self.backend = backend
        self.band = band
        self.calibration = calibration
        self.samples_per_reading = samples_per_reading
        self.sweep_plan = sweep
        self._next_step = 0
        self._tuned_hz: float | None = None  # the LO this measurer last tuned (None: as opened)
        self.retunes = 0

    @classmethod
    def for_config(cls, cfg, backend: SdrBackend, calibration: CalibrationTable) -> Measurer:
        """The measurer of a node's config (``cfg``: :class:`node.config.NodeConfig`), sweep included."""
        return cls(cfg.node_id, backend, cfg.band, calibration, cfg.radio.samples_per_reading, cfg.sweep)

    @property
    def steps(self) -> int:
        """Readings per full-band measurement (1 without a sweep)."""
        return 1 if self.sweep_plan is None else len(self.sweep_plan.steps)

    def read(self) -> Reading:
        """The next reading: the configured band, or a sweeping node's next step (round robin)."""
        if self.sweep_plan is None:
            return self._measure(self.backend.read(self.samples_per_reading), self.band, ())
        step = self._next_step
        self._next_step = (step + 1) % self.steps
        return self.read_step(step)

    def read_step(self, index: int) -> Reading:
        """Step ``index`` of the sweep: retune if the radio is elsewhere, read, measure its sub-bands."""
        if self.sweep_plan is None:
            if index != 0:
                raise IndexError(f"step {index} of a measurer without a sweep")
            return self.read()
        step = self.sweep_plan.steps[index]
        rate_hz = self.sweep_plan.sample_rate_hz
        current_hz = self._tuned_hz if self._tuned_hz is not None else getattr(self.backend, "center_hz", None)
        if current_hz != step.center_hz:
            self.backend.tune(step.center_hz, rate_hz)
            self.retunes += 1
        self._tuned_hz = step.center_hz
        ids = () if len(step.subband_ids) == self.sweep_plan.plan.subbands else step.subband_ids
        return self._measure(self.backend.read(self.samples_per_reading), step.band, ids)

    def sweep(self) -> Iterator[Reading]:
        """One full-band measurement: every step once, in order (one reading without a sweep). Each
        reading is yielded as soon as it is measured, stamped with its own buffer's time."""
        for i in range(self.steps):
            yield self.read_step(i)
        self._next_step = 0

    def _measure(self, buf: IQBuffer, band: BandPowerConfig, subband_ids: tuple[int, ...]) -> Reading:
        bp = measure_band_power(buf.samples, band)

        def dbm(p_dbfs: float) -> float:
            # An all-zero buffer (a dead front end) reads −300 dBFS: clamp into what a record may
            # carry rather than producing a record no central unit would accept.
            return min(max(self.calibration.dbfs_to_dbm(p_dbfs, buf.center_hz, buf.gain_db), POWER_DBM_RANGE[0]),
                       POWER_DBM_RANGE[1])  # fmt: skip

        m = Measurement(
            node_id=self.node_id,
            seq=0,
            t_ns=buf.t_ns,
            f_center_hz=buf.center_hz + band.band.offset_hz,
            bandwidth_hz=band.band.bandwidth_hz,
            power_dbm=dbm(bp.power_dbfs),
            subband_powers_dbm=tuple(dbm(p) for p in bp.subband_powers_dbfs),
            saturated=bp.saturated,
            clip_fraction=bp.clip_fraction,
            gain_db=buf.gain_db,
            band_plan=band.band_plan,
            subband_ids=subband_ids,
        )
        return Reading(m, bp, buf)
