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
