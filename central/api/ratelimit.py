"""Request rate limits: a token bucket per credential (node, integration, operator, viewer, scraper),
and one per client address for failed authentications (:mod:`central.api.security`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """Token buckets, one per key (a credential): ``rate`` requests per second on average, up to
    ``burst`` at once. ``rate <= 0`` disables the limit. Thread-safe (endpoints run in the threadpool).
    At most ``max_keys`` buckets are kept (keys may be client addresses, which anyone can make many
    of): beyond it the least recently used is forgotten, which only ever forgives a client."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 10_000):  # fmt: skip
        self.rate, self.burst, self.clock, self.max_keys = rate, max(1, burst), clock, max_keys
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when), least recent first

    def _refilled(self, key: str, now: float) -> float:
        tokens, when = self._buckets.pop(key, (float(self.burst), now))
        return min(float(self.burst), tokens + max(0.0, now - when) * self.rate)

    def _put(self, key: str, tokens: float, now: float) -> None:
        if len(self._buckets) >= self.max_keys:
            del self._buckets[next(iter(self._buckets))]
        self._buckets[key] = (tokens, now)

    def wait_s(self, key: str) -> float:
        """The seconds until ``key`` may make a request (0.0: now), without taking a token."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self.clock()
            tokens = self._refilled(key, now)
            self._put(key, tokens, now)
            return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def acquire(self, key: str) -> float:
        """0.0 when the request may go ahead (it takes a token), else the seconds until one is free."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self.clock()
            tokens = self._refilled(key, now)
            if tokens >= 1.0:
                self._put(key, tokens - 1.0, now)
                return 0.0
            self._put(key, tokens, now)
            return (1.0 - tokens) / self.rate
