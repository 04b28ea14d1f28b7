"""The interface every SDR backend implements, and the buffer it returns.

Samples are complex64 normalised so that the ADC's full scale is 1.0 on I and on Q; each backend
owns its own scaling (Pluto: 12-bit codes / 2048). The DSP never needs to know which radio it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class IQBuffer:
    samples: np.ndarray  # complex64, full scale 1.0
    t_ns: int  # UTC nanoseconds of the first sample
    center_hz: float
    sample_rate_hz: float
    gain_db: float


class SdrUnavailable(RuntimeError):
    """The radio cannot deliver samples: unreachable after the configured attempts, or closed.

    Every backend raises this family, so the agent catches one type whatever the radio is."""


class SdrReadError(SdrUnavailable):
    """The radio is open but its sample stream failed: timeouts past the retry limit, or a driver
    error code. The agent may close and reopen the backend."""


class SdrBackend(Protocol):
    def tune(self, center_hz: float, sample_rate_hz: float) -> None: ...

    def set_gain(self, gain_db: float) -> None: ...

    def read(self, n: int) -> IQBuffer: ...

    def close(self) -> None: ...


DEFAULT_DISCARD_BUFFERS_AFTER_RETUNE = 2


class DiscardAfterRetune:
    """Any backend, with the buffers after a retune discarded: the first ``count`` reads after every
    :meth:`tune` (and after opening) are read at the requested size and thrown away, so that samples
    from before the LO and the filters settled never reach the DSP. The Pluto and SoapySDR backends do
    this themselves (they know their buffers: whole libiio buffers, stream MTUs, and re-arm after a
    reconnect or a stream restart); this wraps the others (the simulated radios) so that every
    backend behaves alike, a sweep's cost included. Other attributes pass through to the backend."""

    def __init__(self, backend: SdrBackend, count: int = DEFAULT_DISCARD_BUFFERS_AFTER_RETUNE):
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        self.backend, self.count = backend, int(count)
        self._to_discard = self.count
        self.discarded = 0  # buffers thrown away, ever (diagnostics, tests)

    def tune(self, center_hz: float, sample_rate_hz: float) -> None:
        self.backend.tune(center_hz, sample_rate_hz)
        self._to_discard = self.count

    def set_gain(self, gain_db: float) -> None:
        self.backend.set_gain(gain_db)

    def read(self, n: int) -> IQBuffer:
        while self._to_discard > 0:
            self.backend.read(n)
            self._to_discard -= 1
            self.discarded += 1
        return self.backend.read(n)

    def close(self) -> None:
        self.backend.close()

    def __getattr__(self, name: str):
        return getattr(self.backend, name)
