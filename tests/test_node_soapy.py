"""The SoapySDR backend: against a real SoapySDR device (the audio driver on a PulseAudio null sink
fed by pacat), and against a fake of the binding for what a live device will not do on demand
(timeouts, overflows, driver errors, hardware timestamps).

The real path: a complex tone exp(j·2π·3 kHz·t) of amplitude A is played as stereo (L = A·cos,
R = A·sin) into a float32 48 kHz null sink, whose monitor SoapySDR opens with ``chan=stereo_iq``.
Float32 end to end, no resampling, every volume at 100 %: the path is exact, so the band power is
20·log10(A) dBFS to float rounding (measured: −6.021 and −26.021 dBFS for A = 0.5 and 0.05, mirror
band below −150 dBFS, silence exactly 0). The tolerances are still loose enough for a PulseAudio
that scales by a fixed volume: differences to 0.05 dB, absolutes to 0.5 dB.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from node.dsp import Band, BandPowerConfig, measure_band_power
from node.sdr.base import SdrReadError, SdrUnavailable
from node.sdr.soapy import SoapySdr
from tests.fakes.fake_soapy import CONSTANTS, FakeDevice, Radio
from tests.pulse_sink import LABEL, RATE_HZ, PulseNullSink, missing_tools

ROOT = Path(__file__).resolve().parents[1]
TONE_HZ = 3000.0  # exactly bin 64 of a 1024-point PSD at 48 kHz: no leakage out of a 1 kHz band
CFG = BandPowerConfig(RATE_HZ, Band(TONE_HZ, 1000.0), subbands=(Band(-TONE_HZ, 1000.0),))
SETTLE_SAMPLES = int(0.3 * RATE_HZ)  # a new feed reaches the monitor after ~50–100 ms of stream


def _soapy_or_skip():
    missing = missing_tools()
    try:
        import SoapySDR
    except ImportError:
        missing.append("SoapySDR (python3-soapysdr linked into the venv)")
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}; `make install` installs them")
    return SoapySDR


# -- a real device: SoapySDR audio driver on a PulseAudio null sink ------------------------------


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    _soapy_or_skip()
    with PulseNullSink(tmp_path_factory.mktemp("pulse")) as pa, pytest.MonkeyPatch.context() as mp:
        mp.setenv("PULSE_SERVER", pa.server)  # libpulse inside SoapySDR's audio driver, in this process
        mp.setenv("PULSE_COOKIE", str(pa.cookie))  # else libpulse writes one into ~/.config/pulse
        yield pa
    assert pa.proc.poll() is not None and pa.keepalive.poll() is not None  # nothing left running


@pytest.fixture(scope="module")
def monitor(pulse):
    """The null sink's monitor, as SoapySDR enumerates it."""
    import SoapySDR

    devices = [dict(d) for d in SoapySDR.Device.enumerate("driver=audio")]
    found = [d for d in devices if LABEL in d.get("label", "")]
    assert found, f"the null sink's monitor is not among the audio devices: {devices}"
    return found[0]


@pytest.fixture()
def audio_sdr(monitor):
    sdr = SoapySdr(monitor, stream_args="chan=stereo_iq", read_timeout_s=1.0)
    sdr.tune(100e6, RATE_HZ)
    sdr.set_gain(0.0)
    yield sdr
    sdr.close()


def tone(amplitude: float) -> np.ndarray:
    t = np.arange(RATE_HZ) / RATE_HZ  # one second, a whole number of periods: loops seamlessly
    phase = 2 * np.pi * TONE_HZ * t
    return np.stack([amplitude * np.cos(phase), amplitude * np.sin(phase)], 1)


def measure(sdr: SoapySdr, pa: PulseNullSink, amplitude: float) -> list[tuple[float, float]]:
    """(tone band, mirror band) dBFS of two consecutive 4096-sample reads while ``amplitude`` plays."""
    with pa.play(tone(amplitude)):
        sdr.tune(100e6, RATE_HZ)  # drops what the driver queued before the feed
        sdr.read(SETTLE_SAMPLES)
        out = []
        for _ in range(2):
            buf = sdr.read(4096)
            assert buf.samples.dtype == np.complex64 and buf.samples.size == 4096
            assert buf.sample_rate_hz == RATE_HZ and buf.center_hz == 100e6
            p = measure_band_power(buf.samples, CFG)
            out.append((p.power_dbfs, p.subband_powers_dbfs[0]))
    return out


def test_band_power_through_a_real_soapy_device_follows_the_fed_amplitude(audio_sdr, pulse):
    loud = measure(audio_sdr, pulse, 0.5)
    quiet = measure(audio_sdr, pulse, 0.05)
    silent = measure(audio_sdr, pulse, 0.0)
    for a, b in (loud, quiet):  # settled: consecutive buffers agree
        assert a == pytest.approx(b, abs=0.05)
    assert loud[0][0] - quiet[0][0] == pytest.approx(20.0, abs=0.05)  # 20 dB apart fed, 20 dB apart read
    assert loud[0][0] == pytest.approx(20 * np.log10(0.5), abs=0.5)  # CF32 full scale is 1.0
    for band_db, mirror_db in loud + quiet:  # L/R became I/Q: the tone is at +3 kHz only
        assert mirror_db < band_db - 60
    assert max(s[0] for s in silent) < quiet[0][0] - 60


def test_a_real_device_reports_a_utc_timestamp_and_its_gain_range(audio_sdr):
    audio_sdr.read(4800)
    before = time.time_ns()
    buf = audio_sdr.read(4800)  # 100 ms
    after = time.time_ns()
    assert before - 1_000_000_000 < buf.t_ns < after - 50_000_000
    with pytest.raises(ValueError, match=r"gain 10 dB outside 0\.\.0 dB"):  # the audio driver has no gain
        audio_sdr.set_gain(10.0)


def test_opening_a_device_that_is_not_there_is_sdr_unavailable():
    _soapy_or_skip()
    with pytest.raises(SdrUnavailable, match="no match"):
        SoapySdr("driver=rftwin_no_such_driver")


def test_a_node_configured_for_soapy_measures_calibrated_power_from_the_real_device(monitor, pulse, tmp_path):
    """The config path a site engineer uses: ``[radio] backend = "soapy"`` with device and stream args."""
    from node.config import load_config
    from node.measure import Measurer
    from node.sdr.open import calibration_for, open_backend

    device = ", ".join(f'{k} = "{v}"' for k, v in monitor.items())
    (tmp_path / "node.toml").write_text(f"""
node_id = "audio01"
position_m = [1.0, 1.0, 1.5]
[radio]
backend = "soapy"
center_hz = 100e6
sample_rate_hz = {RATE_HZ}
gain_db = 0.0
samples_per_reading = 4096
[radio.args]
device = {{ {device} }}
stream_args = "chan=stereo_iq"
read_timeout_s = 1.0
[band]
offset_hz = {TONE_HZ}
bandwidth_hz = 1000.0
[calibration]
frequencies_hz = [50e6, 200e6]
gains_db = [0.0]
offsets_db = [[-30.0], [-30.0]]
[central]
url = "http://127.0.0.1:9"
token = "t"
""")
    cfg = load_config(tmp_path / "node.toml")
    radio = open_backend(cfg)
    try:
        with pulse.play(tone(0.5)):
            radio.tune(100e6, RATE_HZ)
            radio.read(SETTLE_SAMPLES)
            m = Measurer(cfg.node_id, radio, cfg.band, calibration_for(cfg), 4096).read().measurement
    finally:
        radio.close()
    assert m.power_dbm == pytest.approx(20 * np.log10(0.5) - 30.0, abs=0.5)  # -6 dBFS through the table
    assert m.f_center_hz == 100e6 + TONE_HZ and not m.saturated


# -- the fake binding: the driver behaviours a live device does not produce on demand ------------


def fake_sdr(radio: Radio, **kw) -> SoapySdr:
    kw.setdefault("discard_buffers_after_retune", 0)
    return SoapySdr("driver=fake", soapy=radio.module(), clock_ns=lambda: 5_000_000_000, **kw)


def assert_contiguous(samples: np.ndarray) -> None:
    assert np.array_equal(np.diff(samples.real), np.ones(samples.size - 1))


def test_timeouts_are_retried_then_reported_as_sdr_read_error():
    radio = Radio()
    sdr = fake_sdr(radio, max_retries=3)
    radio.script.extend(["timeout"] * 3)
    buf = sdr.read(2500)  # three timeouts are within the limit
    assert buf.samples.size == 2500 and sdr.timeouts == 3
    assert_contiguous(buf.samples)
    radio.script.extend(["timeout"] * 4)
    with pytest.raises(SdrReadError, match="no samples after 4 reads") as e:
        sdr.read(100)
    assert isinstance(e.value, SdrUnavailable) and isinstance(e.value, RuntimeError)


def test_an_overflow_discards_the_partial_buffer_so_samples_stay_contiguous():
    radio = Radio(chunk=1000)
    sdr = fake_sdr(radio)
    radio.script.extend([("short", 1000), ("short", 700), ("overflow", 5000)])
    buf = sdr.read(2000)
    assert sdr.overflows == 1
    assert_contiguous(buf.samples)
    assert buf.samples[0].real == 1700 + 5000  # the 1700 before the gap were thrown away


def test_overflows_that_never_stop_are_an_error_not_a_hang():
    radio = Radio()
    sdr = fake_sdr(radio, max_retries=2)
    radio.script.extend([("short", 10), ("overflow", 1)] * 3)
    with pytest.raises(SdrReadError, match="3 overflows"):
        sdr.read(500)


def test_other_driver_errors_are_raised_with_the_drivers_name_for_them():
    radio = Radio()
    sdr = fake_sdr(radio)
    radio.script.append(("error", CONSTANTS["SOAPY_SDR_STREAM_ERROR"]))
    with pytest.raises(SdrReadError, match=r"STREAM_ERROR \(-2\)"):
        sdr.read(100)


def test_timestamps_come_from_the_hardware_when_flagged_else_from_the_wall_clock():
    radio = Radio(has_time=True)
    sdr = fake_sdr(radio)  # the fake's device clock is set to our clock (5 s) on open
    radio.script.extend([("short", 300), ("overflow", 700)])
    buf = sdr.read(1000)  # first sample kept: index 1000 at 1 MS/s
    assert buf.t_ns == 5_000_000_000 + 1_000_000
    plain = fake_sdr(Radio(has_time=False))
    assert plain.read(1000).t_ns == 5_000_000_000 - 1_000_000  # the end, less 1 ms of samples


def test_settings_manual_gain_range_rate_and_retune_discard():
    radio = Radio(chunk=1000, gain_range_db=(0.0, 49.6), rates_hz=(1.024e6, 2.048e6))
    sdr = fake_sdr(radio, antenna="LNAW", stream_args={"chan": "0"}, discard_buffers_after_retune=2)
    dev: FakeDevice = radio.devices[-1]
    assert dev.gain_mode_auto is False and dev.antenna == "LNAW" and dev.stream_args == {"chan": "0"}
    sdr.set_gain(30.0)
    assert dev.gain_db == 30.0 and sdr.gain_db == 30.0
    with pytest.raises(ValueError, match=r"gain 60 dB outside 0\.\.49\.6 dB"):
        sdr.set_gain(60.0)
    sdr.tune(433.9e6, 2e6)
    assert sdr.sample_rate_hz == 2.048e6  # what the device took, not what was asked
    first = sdr.read(500)
    assert first.samples[0].real == 2000 and first.sample_rate_hz == 2.048e6  # 2 MTUs dropped
    sdr.tune(434.0e6, 2e6)  # same rate: the stream keeps running, only the LO moves
    assert dev.calls.count("deactivateStream") == 0
    assert sdr.read(500).samples[0].real == 2500 + 2000
    sdr.tune(434.0e6, 1e6)  # a new rate: the stream is stopped around it
    assert dev.calls[-3:] == ["deactivateStream", "setSampleRate", "setFrequency"]
    assert sdr.read(10).sample_rate_hz == 1.024e6 and dev.calls[-1] == "activateStream"
    sdr.close()
    assert dev.calls[-3:] == ["deactivateStream", "closeStream", "close"]
    with pytest.raises(SdrUnavailable, match="closed"):
        sdr.tune(1e9, 1e6)


def test_a_device_that_fails_to_set_up_is_released():
    radio = Radio()
    with pytest.raises(RuntimeError, match="invalid channel"):
        fake_sdr(radio, stream_args="chan=bogus")
    assert radio.devices[-1].calls[-1] == "close"


def test_the_module_imports_without_soapysdr():
    code = "import sys; sys.modules['SoapySDR'] = None; import node.sdr.soapy"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))  # fmt: skip
    assert r.returncode == 0, r.stderr


def test_the_fake_has_the_shape_of_the_real_binding():
    """Every constant the backend relies on has the real module's value, and every method the backend
    calls on the fake exists on ``SoapySDR.Device``."""
    soapy = _soapy_or_skip()
    for name, value in CONSTANTS.items():
        assert getattr(soapy, name) == value, name
    assert soapy.errToStr(-4) == "OVERFLOW" and soapy.errToStr(-1) == "TIMEOUT"
    used = ["setAntenna", "hasGainMode", "setGainMode", "getGainRange", "setGain", "getGain",
            "setFrequency", "getFrequency", "setSampleRate", "getSampleRate", "hasHardwareTime",
            "setHardwareTime", "setupStream", "getStreamMTU", "activateStream", "deactivateStream",
            "closeStream", "close", "readStream"]  # fmt: skip
    for name in used:
        assert callable(getattr(soapy.Device, name, None)), name
        assert callable(getattr(FakeDevice, name, None)), name
    result = soapy.StreamResult()
    assert {"ret", "flags", "timeNs"} <= set(dir(result))
    assert {"minimum", "maximum", "step"} <= set(dir(soapy.Range))
