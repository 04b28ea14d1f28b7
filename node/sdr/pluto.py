"""ADALM-Pluto through pyadi-iio (``adi.Pluto``), hardened for unattended operation.

Facts this encodes (docs/architecture.md): samples are 12-bit codes in int16 (full scale ±2048) that
``rx()`` returns as complex128; the gain setter is ignored unless ``gain_control_mode_chan0`` is
"manual"; the first buffers after a retune still hold samples from before the LO settled, so they
are discarded; a Pluto that drops off USB or the network raises OSError from ``rx()``, and the
backend reconnects and re-applies its settings instead of dying.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np

from node.sdr.base import IQBuffer, SdrUnavailable

log = logging.getLogger(__name__)
FULL_SCALE_CODES = 2048.0

# SdrUnavailable moved to base (shared by all backends); still importable from here.
__all__ = ["FULL_SCALE_CODES", "PlutoSdr", "SdrUnavailable"]


def _adi_pluto(uri: str):
    import adi  # pyadi-iio: only on nodes with the `pluto` extra

    return adi.Pluto(uri)


class PlutoSdr:
    def __init__(
        self,
        uri: str = "ip:192.168.2.1",
        *,
        discard_buffers_after_retune: int = 2,
        reconnect_attempts: int = 5,
        reconnect_delay_s: float = 1.0,
        factory: Callable[[str], object] = _adi_pluto,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.uri = uri
        self.discard_after_retune = discard_buffers_after_retune
        self.reconnect_attempts = reconnect_attempts
        self.reconnect_delay_s = reconnect_delay_s
        self._factory = factory
        self._sleep = sleep
        self.center_hz = 3.7e9
        self.sample_rate_hz = 30.72e6
        self.gain_db = 40.0
        self._buffer_size: int | None = None
        self._to_discard = 0
        self._dev = None
        self._connect()

    # -- settings -----------------------------------------------------------------------------

    def tune(self, center_hz: float, sample_rate_hz: float) -> None:
        self.center_hz, self.sample_rate_hz = float(center_hz), float(sample_rate_hz)
        self._apply_tuning()

    def set_gain(self, gain_db: float) -> None:
        self.gain_db = float(gain_db)
        self._apply_gain()

    def _apply_tuning(self) -> None:
        self._dev.rx_lo = int(round(self.center_hz))
        self._dev.sample_rate = int(round(self.sample_rate_hz))
        self._dev.rx_rf_bandwidth = int(round(self.sample_rate_hz))
        self._to_discard = self.discard_after_retune

    def _apply_gain(self) -> None:
        self._dev.gain_control_mode_chan0 = "manual"  # else the AGC owns the gain and ignores ours
        self._dev.rx_hardwaregain_chan0 = self.gain_db

    def _connect(self) -> None:
        self._dev = self._factory(self.uri)
        self._dev.rx_enabled_channels = [0]
        self._buffer_size = None
        self._apply_tuning()
        self._apply_gain()

    def _reconnect(self, cause: Exception) -> None:
        self._dev = None
        for attempt in range(1, self.reconnect_attempts + 1):
            log.warning("pluto %s lost (%s); reconnect attempt %d/%d", self.uri, cause, attempt,
                        self.reconnect_attempts)  # fmt: skip
            self._sleep(self.reconnect_delay_s)
            try:
                self._connect()
                return
            except OSError as e:
                cause = e
        raise SdrUnavailable(f"pluto {self.uri} unreachable after {self.reconnect_attempts} attempts: {cause}")

    # -- samples ------------------------------------------------------------------------------

    def read(self, n: int) -> IQBuffer:
        try:
            return self._read(n)
        except OSError as e:
            self._reconnect(e)
            return self._read(n)

    def _read(self, n: int) -> IQBuffer:
        if self._dev is None:
            raise SdrUnavailable(f"pluto {self.uri} is closed")
        if self._buffer_size != n:
            self._dev.rx_destroy_buffer()  # the buffer size is fixed when libiio creates the buffer
            self._dev.rx_buffer_size = n
            self._buffer_size = n
        while self._to_discard > 0:
            self._dev.rx()
            self._to_discard -= 1
        codes = self._dev.rx()
        t_end_ns = time.time_ns()
        samples = (np.asarray(codes) / FULL_SCALE_CODES).astype(np.complex64)
        t_ns = t_end_ns - int(round(n / self.sample_rate_hz * 1e9))
        return IQBuffer(samples, t_ns, self.center_hz, self.sample_rate_hz, self.gain_db)

    def close(self) -> None:
        if self._dev is not None:
            self._dev.rx_destroy_buffer()
            self._dev = None
