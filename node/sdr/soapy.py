"""Any SoapySDR device (RTL-SDR, HackRF, LimeSDR, USRP, an audio card...) through Debian's binding.

Facts this encodes (docs/architecture.md): SoapySDR has no PyPI binding, so ``import SoapySDR`` is lazy
and only nodes with ``python3-soapysdr`` linked into the venv pay for it; the module is injectable
for tests. Samples are read as CF32, which SoapySDR normalises so that the device's full scale (the
``fullScale`` of its native format) is 1.0 on I and on Q: exactly the convention of base.py, so no
scaling happens here. Gain is manual (``setGainMode(..., False)``) because an AGC would make band
power meaningless, and it is checked against ``getGainRange`` instead of being silently clipped by
the driver. ``readStream`` returns partial buffers, TIMEOUT and OVERFLOW codes; ``read(n)`` turns
them into n contiguous samples or an ``SdrReadError``.
"""

from __future__ import annotations

import logging
import time
from types import ModuleType
from typing import Any, Callable, Mapping

import numpy as np

from node.sdr.base import IQBuffer, SdrReadError, SdrUnavailable

log = logging.getLogger(__name__)
FULL_SCALE = 1.0  # CF32 from SoapySDR: the native format's full scale maps to ±1.0
__all__ = ["FULL_SCALE", "SdrReadError", "SdrUnavailable", "SoapySdr"]


def _kwargs(args: str | Mapping[str, str] | None) -> dict[str, str]:
    """SoapySDR's "k=v,k=v" markup (as in config files) or a mapping, as a dict."""
    if isinstance(args, str):
        return dict(kv.split("=", 1) for kv in args.split(",") if kv.strip())
    return {str(k): str(v) for k, v in (args or {}).items()}


def _import_soapy() -> ModuleType:
    import SoapySDR  # Debian's python3-soapysdr, linked into the venv by the Makefile

    return SoapySDR


class SoapySdr:
    """An RX channel of one SoapySDR device.

    ``device_args`` is what ``SoapySDR.Device`` takes ("driver=rtlsdr,serial=..." or a dict).
    ``stream_args`` go to ``setupStream`` ("k=v,k=v" or a dict); the audio driver needs
    ``chan=stereo_iq`` to map left/right to I/Q (by default it records one channel, which PulseAudio
    downmixes from L and R, and Q is zero). ``discard_buffers_after_retune`` counts stream MTUs
    dropped after every retune (LO and filters settling). A read waits at most ``read_timeout_s`` per
    ``readStream`` call and gives up after ``max_retries`` consecutive timeouts, or after that many
    overflow restarts within one read.
    """

    def __init__(
        self,
        device_args: str | Mapping[str, str] = "",
        *,
        channel: int = 0,
        antenna: str | None = None,
        stream_args: str | Mapping[str, str] | None = None,
        discard_buffers_after_retune: int = 2,
        read_timeout_s: float = 0.5,
        max_retries: int = 5,
        soapy: ModuleType | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ):
        self._soapy = soapy if soapy is not None else _import_soapy()
        self.device_args = device_args
        self.channel = int(channel)
        self.discard_after_retune = int(discard_buffers_after_retune)
        self.read_timeout_s = float(read_timeout_s)
        self.max_retries = int(max_retries)
        self._clock_ns = clock_ns
        self.overflows = 0  # readStream OVERFLOW reports (samples the device dropped), ever
        self.timeouts = 0  # readStream TIMEOUT reports, ever
        s = self._soapy
        self._rx = s.SOAPY_SDR_RX
        try:
            self._dev: Any = s.Device(dict(device_args) if isinstance(device_args, Mapping) else device_args)
        except RuntimeError as e:  # the binding raises RuntimeError("SoapySDR::Device::make() no match")
            raise SdrUnavailable(f"soapy device {device_args!r}: {e}") from e
        self._active = False
        self._to_discard = 0
        try:
            self._configure(antenna, _kwargs(stream_args))
        except Exception:
            self._dev.close()  # a half-opened device would stay claimed until garbage collection
            raise

    def _configure(self, antenna: str | None, stream_args: dict[str, str]) -> None:
        dev, rx, ch = self._dev, self._rx, self.channel
        if antenna is not None:
            dev.setAntenna(rx, ch, antenna)
        if dev.hasGainMode(rx, ch):
            dev.setGainMode(rx, ch, False)  # manual: no AGC under our readings
        if dev.hasHardwareTime():
            dev.setHardwareTime(self._clock_ns())  # device time = UTC, so stream timeNs is UTC
        self.center_hz = float(dev.getFrequency(rx, ch))
        self.sample_rate_hz = float(dev.getSampleRate(rx, ch))
        self._asked_rate_hz = self.sample_rate_hz
        self.gain_db = float(dev.getGain(rx, ch))
        self._stream = dev.setupStream(rx, self._soapy.SOAPY_SDR_CF32, [ch], stream_args)
        self._mtu = int(dev.getStreamMTU(self._stream))

    # -- settings -----------------------------------------------------------------------------

    def tune(self, center_hz: float, sample_rate_hz: float) -> None:
        """Set the LO and the sample rate; the rate the driver actually chose is what buffers report."""
        dev, rx, ch = self._live(), self._rx, self.channel
        if float(sample_rate_hz) != self._asked_rate_hz:  # the device may round: compare requests
            self._deactivate()  # many drivers cannot change the rate of a running stream
            dev.setSampleRate(rx, ch, float(sample_rate_hz))
            self._asked_rate_hz = float(sample_rate_hz)
            self.sample_rate_hz = float(dev.getSampleRate(rx, ch))
            if abs(self.sample_rate_hz - sample_rate_hz) > 1e-6 * sample_rate_hz:
                log.warning("soapy: asked for %.0f S/s, the device runs at %.0f S/s", sample_rate_hz,
                            self.sample_rate_hz)  # fmt: skip
        dev.setFrequency(rx, ch, float(center_hz))
        self.center_hz = float(dev.getFrequency(rx, ch))
        self._to_discard = self.discard_after_retune * self._mtu

    def set_gain(self, gain_db: float) -> None:
        """Manual gain in dB; outside the device's ``getGainRange`` is an error, not a silent clip."""
        dev = self._live()
        r = dev.getGainRange(self._rx, self.channel)
        lo_db, hi_db = float(r.minimum()), float(r.maximum())
        if not lo_db - 1e-9 <= gain_db <= hi_db + 1e-9:
            raise ValueError(f"gain {gain_db:g} dB outside {lo_db:g}..{hi_db:g} dB of soapy device "
                             f"{self.device_args!r} channel {self.channel}")  # fmt: skip
        dev.setGain(self._rx, self.channel, float(gain_db))
        self.gain_db = float(dev.getGain(self._rx, self.channel))

    # -- samples ------------------------------------------------------------------------------

    def read(self, n: int) -> IQBuffer:
        """n contiguous samples (complex64, full scale 1.0) and the UTC time of the first one."""
        if n <= 0:
            raise ValueError(f"n must be > 0, got {n}")
        self._activate()
        if self._to_discard > 0:
            self._collect(np.empty(self._to_discard, np.complex64))
            self._to_discard = 0
        samples = np.empty(n, np.complex64)
        t_ns = self._collect(samples)
        return IQBuffer(samples, t_ns, self.center_hz, self.sample_rate_hz, self.gain_db)

    def _collect(self, out: np.ndarray) -> int:
        """Fill ``out`` from the stream; return the first sample's UTC ns.

        An OVERFLOW means the device dropped samples, so what was collected is not contiguous with
        what follows: it is thrown away and collection restarts. Timestamps come from the hardware
        when the driver flags them (``SOAPY_SDR_HAS_TIME``), else from the wall clock at the end,
        less the buffer's duration.
        """
        s, n = self._soapy, out.size
        got, t_first_ns, timeouts, restarts = 0, None, 0, 0
        timeout_us = int(self.read_timeout_s * 1e6)
        while got < n:
            sr = self._dev.readStream(self._stream, [out[got:]], n - got, timeoutUs=timeout_us)
            if sr.ret > 0:
                if got == 0:
                    t_first_ns = int(sr.timeNs) if sr.flags & s.SOAPY_SDR_HAS_TIME else None
                got += sr.ret
                timeouts = 0
            elif sr.ret == s.SOAPY_SDR_OVERFLOW:
                self.overflows += 1
                restarts += 1
                if restarts > self.max_retries:
                    raise SdrReadError(f"soapy {self.device_args!r}: {restarts} overflows while reading "
                                       f"{n} samples; the host cannot keep up")  # fmt: skip
                got, t_first_ns = 0, None
            elif sr.ret == s.SOAPY_SDR_TIMEOUT or sr.ret == 0:  # 0: a stream that is not running
                self.timeouts += 1
                timeouts += 1
                if timeouts > self.max_retries:
                    raise SdrReadError(f"soapy {self.device_args!r}: no samples after {timeouts} reads of "
                                       f"{self.read_timeout_s:g} s")  # fmt: skip
            else:
                raise SdrReadError(f"soapy {self.device_args!r}: readStream failed: "
                                   f"{s.errToStr(sr.ret)} ({sr.ret})")  # fmt: skip
        if t_first_ns is None:
            t_first_ns = self._clock_ns() - int(round(n / self.sample_rate_hz * 1e9))
        return t_first_ns

    # -- stream state -------------------------------------------------------------------------

    def _live(self) -> Any:
        if self._dev is None:
            raise SdrUnavailable(f"soapy {self.device_args!r} is closed")
        return self._dev

    def _activate(self) -> None:
        if not self._active:
            try:
                ret = self._live().activateStream(self._stream)
            except RuntimeError as e:  # drivers throw, e.g. "RtAudio init error" for a vanished card
                raise SdrReadError(f"soapy {self.device_args!r}: activateStream: {e}") from e
            if ret != 0:
                raise SdrReadError(f"soapy {self.device_args!r}: activateStream: {self._soapy.errToStr(ret)}")
            self._active = True
            self._to_discard = max(self._to_discard, self.discard_after_retune * self._mtu)

    def _deactivate(self) -> None:
        if self._active:
            self._active = False
            self._dev.deactivateStream(self._stream)

    def close(self) -> None:
        if self._dev is not None:
            self._deactivate()
            self._dev.closeStream(self._stream)
            self._dev.close()  # the binding's explicit unmake; waiting for __del__ leaves the device open
            self._dev = None
