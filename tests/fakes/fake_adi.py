"""A stand-in for ``adi.Pluto`` (no libiio emulator can run here), shaped exactly like the real API.

Same attribute names and types as pyadi-iio's Pluto: ``rx_lo``/``sample_rate``/``rx_rf_bandwidth``
(int), ``gain_control_mode_chan0`` (str), ``rx_hardwaregain_chan0`` (float, ignored unless the mode is
"manual", as on the AD9363), ``rx_enabled_channels`` (list), ``rx_buffer_size``, ``rx()`` returning
complex128 with 12-bit integer I and Q (int16 codes combined as ``x[0::2] + 1j * x[1::2]``), and
``rx_destroy_buffer()``. It behaves like hardware where the backend must cope: the buffer after a
retune holds pre-settling junk, and an unplugged device raises OSError from ``rx()`` and from
construction.
"""

from __future__ import annotations

import numpy as np


class Hardware:
    """The physical board: what is on the air, and whether it is plugged in."""

    def __init__(self, tone_codes: float = 500.0, seed: int = 0):
        self.tone_codes = tone_codes
        self.present = True
        self.rng = np.random.default_rng(seed)
        self.instances: list[FakePluto] = []

    def factory(self, uri: str) -> "FakePluto":
        if not self.present:
            raise OSError(2, f"No such file or directory: unable to create IIO context for {uri}")
        dev = FakePluto(uri, self)
        self.instances.append(dev)
        return dev


class FakePluto:
    _rx_channel_names = ["voltage0", "voltage1"]

    def __init__(self, uri: str, hw: Hardware):
        self.uri = uri
        self._hw = hw
        self.rx_lo = 2_400_000_000
        self.sample_rate = 30_720_000
        self.rx_rf_bandwidth = 18_000_000
        self.gain_control_mode_chan0 = "slow_attack"
        self._gain = 30.0
        self.rx_enabled_channels = [0]
        self.rx_buffer_size = 1024
        self._buffer_created_with: int | None = None
        self._settling = 0
        self._lo_seen = self.rx_lo
        self.rx_calls = 0

    @property
    def rx_hardwaregain_chan0(self) -> float:
        return self._gain

    @rx_hardwaregain_chan0.setter
    def rx_hardwaregain_chan0(self, value: float) -> None:
        if self.gain_control_mode_chan0 == "manual":
            self._gain = float(value)

    def rx_destroy_buffer(self) -> None:
        self._buffer_created_with = None

    def rx(self) -> np.ndarray:
        if not self._hw.present:
            raise OSError(19, "No such device")
        if self._buffer_created_with is None:  # libiio creates the buffer on first use, at this size
            self._buffer_created_with = self.rx_buffer_size
        if self.rx_lo != self._lo_seen:
            self._lo_seen, self._settling = self.rx_lo, 1
        self.rx_calls += 1
        n = self._buffer_created_with
        if self._settling:
            self._settling -= 1
            x = np.full(2 * n, 2047, dtype=np.int16)  # LO still slewing: a rail-to-rail transient
        else:
            amp = self._hw.tone_codes * 10 ** ((self._gain - 30.0) / 20)
            phase = 2 * np.pi * 0.01 * np.arange(n)
            iq = np.empty(2 * n)
            iq[0::2], iq[1::2] = amp * np.cos(phase), amp * np.sin(phase)
            x = np.clip(np.rint(iq + self._hw.rng.normal(0, 2, 2 * n)), -2048, 2047).astype(np.int16)
        return x[0::2] + 1j * x[1::2]
