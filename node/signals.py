"""Run what a signal asks for on a thread of its own, never inside the signal handler.

Why: CPython runs a signal handler in the main thread between two bytecodes, possibly while that
thread holds the lock inside ``threading.Event.wait()``. A handler that calls ``Event.set()`` on the
same event then waits for that lock for ever: a SIGTERM that arrives at the wrong microsecond hangs
the agent instead of stopping it (systemd would SIGKILL it after ``TimeoutStopSec``, and the spool
would not be drained). The handler here only writes the signal number to a pipe, which takes no
Python lock; a daemon thread reads the pipe and runs the action, where taking a lock is harmless.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class SignalRelay:
    """Install with :meth:`install` (main thread only), undo with :meth:`close`.

    ``actions`` maps a signal number to what it should do; each action runs on the relay thread, in
    the order the signals arrived. A flood of signals faster than the actions run is not queued
    without bound: once the pipe is full, further signals of the flood are dropped (each action is
    idempotent: stop, request a capture)."""

    def __init__(self, actions: Mapping[int, Callable[[], None]]) -> None:
        self._actions = dict(actions)
        self._previous: dict[int, object] = {}
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._thread = threading.Thread(target=self._relay, name="signals", daemon=True)

    def install(self) -> SignalRelay:
        self._thread.start()
        for sig in self._actions:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def close(self) -> None:
        """Restore the previous handlers and end the relay thread (it reads end-of-file)."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        os.close(self._write_fd)
        self._thread.join(timeout=5.0)
        os.close(self._read_fd)

    def _on_signal(self, signum: int, _frame: object) -> None:
        try:
            os.write(self._write_fd, bytes([signum]))
        except (BlockingIOError, OSError):
            pass  # pipe full (a flood) or closed (shutting down): the action is already on its way

    def _relay(self) -> None:
        while chunk := os.read(self._read_fd, 64):
            for signum in chunk:
                try:
                    self._actions[signum]()
                except Exception:  # an action must not end the relay: the next SIGTERM still has to work
                    log.exception("handling signal %d failed", signum)
