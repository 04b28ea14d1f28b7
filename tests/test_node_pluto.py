"""The Pluto backend against a fake shaped like ``adi.Pluto``: manual gain, 12-bit scaling, retune, reconnect."""

from __future__ import annotations

import numpy as np
import pytest

from node.sdr.pluto import PlutoSdr, SdrUnavailable
from tests.fakes.fake_adi import Hardware


def pluto(hw, **kw):
    return PlutoSdr("usb:1.2.5", factory=hw.factory, sleep=lambda s: None, **kw)


def test_gain_is_applied_in_manual_mode():
    hw = Hardware()
    sdr = pluto(hw)
    sdr.set_gain(52.0)
    dev = hw.instances[-1]
    assert dev.gain_control_mode_chan0 == "manual" and dev.rx_hardwaregain_chan0 == 52.0


def test_samples_are_scaled_from_12_bit_codes_to_full_scale():
    hw = Hardware(tone_codes=1024.0)  # half of full scale at the reference gain
    sdr = pluto(hw)
    sdr.tune(3.7e9, 30.72e6)
    sdr.set_gain(30.0)
    buf = sdr.read(4096)
    assert buf.samples.dtype == np.complex64 and buf.samples.size == 4096
    assert np.median(np.abs(buf.samples)) == pytest.approx(0.5, abs=0.01)
    assert (buf.center_hz, buf.sample_rate_hz, buf.gain_db) == (3.7e9, 30.72e6, 30.0)
    dev = hw.instances[-1]
    assert (dev.rx_lo, dev.sample_rate, dev.rx_rf_bandwidth) == (3_700_000_000, 30_720_000, 30_720_000)


def test_buffers_after_a_retune_are_discarded():
    hw = Hardware()
    sdr = pluto(hw, discard_buffers_after_retune=2)
    sdr.tune(3.6e9, 30.72e6)
    buf = sdr.read(2048)
    assert np.abs(buf.samples.real).max() < 0.9  # the rail-to-rail settling buffer never reaches the DSP
    calls = hw.instances[-1].rx_calls
    sdr.read(2048)
    assert hw.instances[-1].rx_calls == calls + 1  # nothing discarded without a retune


def test_buffer_size_changes_recreate_the_libiio_buffer():
    hw = Hardware()
    sdr = pluto(hw)
    assert sdr.read(1000).samples.size == 1000
    assert sdr.read(3000).samples.size == 3000


def test_reconnects_after_the_device_disappears_and_reapplies_settings():
    hw = Hardware()
    sdr = pluto(hw)
    sdr.tune(3.75e9, 20e6)
    sdr.set_gain(35.0)
    sdr.read(1024)
    hw.present = False
    attempts = []

    def replug_on_third_try(s):
        attempts.append(s)
        hw.present = len(attempts) >= 3

    sdr._sleep = replug_on_third_try
    buf = sdr.read(1024)
    assert len(attempts) == 3 and len(hw.instances) == 2
    dev = hw.instances[-1]
    assert dev.rx_lo == 3_750_000_000 and dev.rx_hardwaregain_chan0 == 35.0 and dev.gain_control_mode_chan0 == "manual"
    assert np.abs(buf.samples.real).max() < 0.9  # settling buffer after reconnect discarded too


def test_gives_up_with_a_clear_error_when_the_device_stays_away():
    hw = Hardware()
    sdr = pluto(hw, reconnect_attempts=3)
    hw.present = False
    with pytest.raises(SdrUnavailable, match="unreachable after 3 attempts"):
        sdr.read(1024)


def test_timestamp_is_the_first_sample_in_utc_ns():
    import time

    sdr = pluto(Hardware())
    before = time.time_ns()
    buf = sdr.read(30_720)  # 1 ms at 30.72 MS/s
    assert before - 2_000_000 < buf.t_ns < time.time_ns()


def test_the_fake_has_the_shape_of_the_real_adi_pluto():
    """Every attribute the backend touches on the fake exists on pyadi-iio's real class."""
    import adi

    from tests.fakes.fake_adi import FakePluto

    used = ["rx_lo", "sample_rate", "rx_rf_bandwidth", "gain_control_mode_chan0", "rx_hardwaregain_chan0",
            "rx_buffer_size", "rx_enabled_channels", "rx_destroy_buffer", "rx"]  # fmt: skip
    fake = FakePluto("usb:", Hardware())
    for name in used:
        assert hasattr(adi.Pluto, name), name
        assert hasattr(fake, name), name
    assert isinstance(adi.Pluto.rx_hardwaregain_chan0, property)
    assert fake.rx().dtype == np.complex128
