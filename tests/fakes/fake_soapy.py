"""A stand-in for Debian's ``SoapySDR`` Python module, shaped like the real binding (a test pins it).

Same names and values as python3-soapysdr 0.8: ``SOAPY_SDR_RX`` = 1, ``SOAPY_SDR_CF32`` = "CF32",
``SOAPY_SDR_TIMEOUT`` = -1, ``SOAPY_SDR_OVERFLOW`` = -4, ``SOAPY_SDR_HAS_TIME`` = 4, ``errToStr``,
``Device(args)``, and ``readStream(stream, buffs, numElems, flags=0, timeoutUs=100000)`` returning a
``StreamResult`` with ``.ret``, ``.flags``, ``.timeNs`` and writing into ``buffs[0]``.

It misbehaves the way drivers do, on a script: a timeout, an overflow (samples dropped), an error
code, short reads. Sample k of the device's stream has the value k + 0j, so a test can tell whether a
buffer is contiguous; samples dropped by an overflow are skipped in that count.
"""

from __future__ import annotations

from collections import deque
from types import ModuleType

import numpy as np

CONSTANTS = {
    "SOAPY_SDR_TX": 0,
    "SOAPY_SDR_RX": 1,
    "SOAPY_SDR_CF32": "CF32",
    "SOAPY_SDR_TIMEOUT": -1,
    "SOAPY_SDR_STREAM_ERROR": -2,
    "SOAPY_SDR_CORRUPTION": -3,
    "SOAPY_SDR_OVERFLOW": -4,
    "SOAPY_SDR_HAS_TIME": 4,
}
ERRORS = {-1: "TIMEOUT", -2: "STREAM_ERROR", -3: "CORRUPTION", -4: "OVERFLOW"}


class StreamResult:
    def __init__(self, ret: int = 0, flags: int = 0, timeNs: int = 0):  # noqa: N803 (the binding's name)
        self.ret, self.flags, self.timeNs = ret, flags, timeNs


class Range:
    def __init__(self, lo: float, hi: float, step: float = 0.0):
        self._lo, self._hi, self._step = lo, hi, step

    def minimum(self) -> float:
        return self._lo

    def maximum(self) -> float:
        return self._hi

    def step(self) -> float:
        return self._step


class Radio:
    """The board behind the fake module: its script of stream events and its settings."""

    def __init__(self, *, chunk: int = 1000, gain_range_db=(0.0, 70.0), has_time: bool = False,
                 rates_hz: tuple[float, ...] | None = None):  # fmt: skip
        self.chunk = chunk  # most samples one readStream returns, like a driver's MTU
        self.gain_range_db = gain_range_db
        self.has_time = has_time
        self.rates_hz = rates_hz  # None: any rate; else the nearest of these is taken
        self.script: deque = deque()  # "timeout", ("overflow", dropped), ("error", code), ("short", k)
        self.devices: list[FakeDevice] = []
        self.reads = 0

    def module(self) -> ModuleType:
        m = ModuleType("SoapySDR")
        m.__dict__.update(CONSTANTS)
        m.errToStr = lambda code: ERRORS.get(code, "UNKNOWN")
        m.StreamResult = StreamResult
        m.Range = Range
        radio = self

        class Device(FakeDevice):
            def __init__(self, args):
                super().__init__(radio, args)

        m.Device = Device
        return m


class FakeDevice:
    T0_NS = 1_700_000_000_000_000_000

    def __init__(self, radio: Radio, args):
        if isinstance(args, str) and "driver=missing" in args:
            raise RuntimeError("SoapySDR::Device::make() no match")
        self.radio, self.args = radio, args
        self.frequency_hz, self.rate_hz, self.gain_db = 100e6, 1e6, 0.0
        self.gain_mode_auto, self.antenna, self.hw_time_ns = True, "RX", None
        self.next_index = 0  # index of the next sample the device will hand out
        self.active = False
        self.calls: list[str] = []
        radio.devices.append(self)

    # settings
    def setAntenna(self, direction, channel, name):
        self.antenna = name

    def hasGainMode(self, direction, channel):
        return True

    def setGainMode(self, direction, channel, automatic):
        self.gain_mode_auto = automatic

    def getGainRange(self, direction, channel):
        return Range(*self.radio.gain_range_db)

    def setGain(self, direction, channel, value):
        self.gain_db = min(max(value, self.radio.gain_range_db[0]), self.radio.gain_range_db[1])

    def getGain(self, direction, channel):
        return self.gain_db

    def setFrequency(self, direction, channel, frequency):
        self.calls.append("setFrequency")
        self.frequency_hz = frequency

    def getFrequency(self, direction, channel):
        return self.frequency_hz

    def setSampleRate(self, direction, channel, rate):
        assert not self.active, "rate changed on a running stream"
        self.calls.append("setSampleRate")
        rates = self.radio.rates_hz
        self.rate_hz = rate if rates is None else min(rates, key=lambda r: abs(r - rate))

    def getSampleRate(self, direction, channel):
        return self.rate_hz

    def hasHardwareTime(self, what=""):
        return self.radio.has_time

    def setHardwareTime(self, time_ns, what=""):
        self.hw_time_ns = time_ns

    # stream
    def setupStream(self, direction, format, channels, args):  # noqa: A002 (the binding's name)
        assert format == "CF32"
        if args.get("chan") == "bogus":
            raise RuntimeError("setupStream invalid channel selection")
        self.stream_args = args
        return object()

    def getStreamMTU(self, stream):
        return self.radio.chunk

    def activateStream(self, stream, flags=0, timeNs=0, numElems=0):  # noqa: N803
        self.calls.append("activateStream")
        self.active = True
        return 0

    def deactivateStream(self, stream, flags=0, timeNs=0):  # noqa: N803
        self.calls.append("deactivateStream")
        self.active = False
        return 0

    def closeStream(self, stream):
        self.calls.append("closeStream")

    def close(self):
        self.calls.append("close")

    def readStream(self, stream, buffs, numElems, flags=0, timeoutUs=100000):  # noqa: N803
        r = self.radio
        r.reads += 1
        if not self.active:
            return StreamResult(0)
        limit = min(numElems, r.chunk)
        if r.script:
            ev = r.script.popleft()
            if ev == "timeout":
                return StreamResult(CONSTANTS["SOAPY_SDR_TIMEOUT"])
            if ev[0] == "overflow":
                self.next_index += ev[1]
                return StreamResult(CONSTANTS["SOAPY_SDR_OVERFLOW"])
            if ev[0] == "error":
                return StreamResult(ev[1])
            limit = min(limit, ev[1])  # "short"
        start = self.next_index
        buffs[0][:limit] = np.arange(start, start + limit, dtype=np.float32)
        self.next_index += limit
        if r.has_time:
            return StreamResult(limit, CONSTANTS["SOAPY_SDR_HAS_TIME"],
                                self.hw_time_ns + int(round(start / self.rate_hz * 1e9)))  # fmt: skip
        return StreamResult(limit)
