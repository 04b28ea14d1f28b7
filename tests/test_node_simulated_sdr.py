"""The simulated SDR end to end through the DSP: dBm in the air → IQ (noise, ADC) → band power in dBm."""

from __future__ import annotations

import math

import numpy as np
import pytest

from node.calibration_table import CalibrationTable
from node.dsp import Band, BandPowerConfig, measure_band_power
from node.sdr.simulated import THERMAL_DBM_PER_HZ, Emitter, ReceiverModel, SimulatedSdr

FS = 30.72e6
N = 2**16
BAND = Band(0.0, 10e6)
CFG = BandPowerConfig(sample_rate_hz=FS, band=BAND)
RX = ReceiverModel(noise_figure_db=5.0, full_scale_dbm_at_0db=-10.0, adc_bits=12)


def measure_dbm(sdr: SimulatedSdr, cfg=CFG):
    buf = sdr.read(N)
    bp = measure_band_power(buf.samples, cfg)
    table = CalibrationTable.constant(-RX.dbm_to_dbfs_offset_db(buf.gain_db), buf.center_hz, buf.gain_db)
    return table.dbfs_to_dbm(bp.power_dbfs, buf.center_hz, buf.gain_db), bp


def expected_dbm(signal_dbm, gain_db, bw_hz=BAND.bandwidth_hz):
    """Signal + thermal noise + 12-bit quantisation noise in the band, summed in mW."""
    thermal = THERMAL_DBM_PER_HZ + RX.noise_figure_db + 10 * math.log10(bw_hz)
    quant_dbfs = -10 * math.log10(6 * 2048**2) + 10 * math.log10(bw_hz / FS)  # q²/12 per rail, uniform
    quant_dbm = quant_dbfs - RX.dbm_to_dbfs_offset_db(gain_db)
    return 10 * math.log10(sum(10 ** (p / 10) for p in (signal_dbm, thermal, quant_dbm)))


def sdr_with(*emitters, gain_db=20.0, seed=1):
    sdr = SimulatedSdr(list(emitters), RX, seed=seed)
    sdr.tune(3.7e9, FS)
    sdr.set_gain(gain_db)
    return sdr


@pytest.mark.parametrize("signal_dbm", [-105, -95, -85, -75, -65, -55, -45])
def test_ofdm_power_is_recovered_within_a_tenth_of_a_db_over_60_db(signal_dbm):
    got, bp = measure_dbm(sdr_with(Emitter(signal_dbm, 0.0, 9e6, "ofdm"), seed=signal_dbm + 200))
    assert got == pytest.approx(expected_dbm(signal_dbm, 20.0), abs=0.1)
    assert not bp.saturated


def test_no_emitter_reads_thermal_noise_at_the_noise_figure():
    got, _ = measure_dbm(sdr_with(gain_db=60.0))  # high gain: quantisation noise far below thermal
    assert got == pytest.approx(THERMAL_DBM_PER_HZ + 5.0 + 10 * math.log10(10e6), abs=0.1)


@pytest.mark.parametrize("waveform", ["tone", "noise", "sweep"])
def test_each_waveform_carries_its_stated_power(waveform):
    e = Emitter(-60.0, 1e6, 6e6, waveform, period_s=1e-4)
    got, _ = measure_dbm(sdr_with(e))
    assert got == pytest.approx(expected_dbm(-60.0, 20.0), abs=0.1)


def test_duty_cycle_scales_the_average_power():
    e = Emitter(-50.0, 0.0, 8e6, "noise", duty_cycle=0.25, period_s=1e-4)
    got, _ = measure_dbm(sdr_with(e))
    assert got == pytest.approx(expected_dbm(-50.0 + 10 * math.log10(0.25), 20.0), abs=0.15)


def test_overload_clips_at_full_scale_and_reads_as_a_lower_bound():
    got, bp = measure_dbm(sdr_with(Emitter(-20.0, 0.0, 9e6, "noise"), gain_db=40.0))
    assert bp.saturated and bp.clip_fraction > 0.1
    assert got < -20.0
    assert np.abs(sdr_with(Emitter(-20.0), gain_db=40.0).read(1000).samples.real).max() <= 1.0


def test_emitters_add_in_power_and_stay_in_their_subbands():
    cfg = BandPowerConfig(sample_rate_hz=FS, band=Band(0, 20e6), subbands=(Band(-5e6, 8e6), Band(5e6, 8e6)))
    sdr = sdr_with(Emitter(-60.0, -5e6, 6e6, "ofdm"), Emitter(-70.0, 5e6, 6e6, "noise"))
    _, bp = measure_dbm(sdr, cfg)
    off = RX.dbm_to_dbfs_offset_db(20.0)
    assert bp.subband_powers_dbfs[0] - off == pytest.approx(expected_dbm(-60.0, 20.0, 8e6), abs=0.1)
    assert bp.subband_powers_dbfs[1] - off == pytest.approx(expected_dbm(-70.0, 20.0, 8e6), abs=0.1)


def test_samples_are_12_bit_codes():
    buf = sdr_with(Emitter(-50.0)).read(4096)
    codes = buf.samples.view(np.float32) * 2048
    assert buf.samples.dtype == np.complex64
    np.testing.assert_array_equal(codes, np.rint(codes))


def test_bad_settings_are_refused():
    sdr = sdr_with()
    with pytest.raises(ValueError, match="outside the receiver's range"):
        sdr.set_gain(90.0)
    with pytest.raises(ValueError, match="unknown waveform"):
        Emitter(-50.0, waveform="laser")
    with pytest.raises(ValueError, match="duty_cycle"):
        Emitter(-50.0, duty_cycle=0.0)
    sdr.close()
    with pytest.raises(RuntimeError, match="closed"):
        sdr.read(10)
