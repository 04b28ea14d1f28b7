"""Waiting in a test for something it expects to happen (a connection closed, a delivery recorded).

The timeout is a deadline on an event, not a duration the test asserts: on a loaded 2-core machine it
only bounds how long a failure takes to show. How fast things are is measured in ``bench/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The awaited condition did not hold before the deadline."""


def wait_for(predicate: Callable[[], T], timeout_s: float, what: str, *, step_s: float = 0.02,
             alive: Callable[[], None] | None = None, explain: Callable[[], str] | None = None) -> T:  # fmt: skip
    """Poll ``predicate`` until it returns something truthy, and return that.

    ``alive`` runs before every poll and should raise when the thing under test has died (a process
    exited), so that the test fails at once with that reason instead of waiting out the deadline.
    Raises :class:`WaitTimeout` naming ``what`` once ``timeout_s`` has passed, followed by what
    ``explain()`` says (a log tail, the state reached) to tell why.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if alive is not None:
            alive()
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            why = f":\n{explain()}" if explain is not None else ""
            raise WaitTimeout(f"timed out after {timeout_s:g} s waiting for {what}{why}")
        time.sleep(step_s)
