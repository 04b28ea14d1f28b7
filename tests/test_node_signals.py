"""A signal must stop the agent whatever its main thread is doing at that instant.

A handler that calls ``threading.Event.set()`` can land while the main thread holds that event's
lock inside ``Event.wait()``; the handler then waits for the lock for ever. Seen once in CI: an agent
that did not stop within 30 s of SIGTERM. Each case below runs the real pattern of the agent's
measurement loop (the main thread waiting on the very event the signal sets, in short waits) in a
process of its own and floods it with signals. With the handler setting the event itself, the same
flood hung or crashed that loop in 1 of 5 runs (measured when the relay was written); through the
relay, in none."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LOOP = textwrap.dedent(
    """
    import signal, threading
    from node.signals import SignalRelay

    stop, wake = threading.Event(), threading.Event()
    SignalRelay({signal.SIGUSR1: wake.set, signal.SIGTERM: stop.set}).install()
    print("ready", flush=True)
    while not stop.is_set():
        wake.wait(0.0001)
        wake.clear()
        stop.wait(0.0001)
    print("stopped", flush=True)
    """
)


def flood_then_terminate(signals: int = 3000) -> tuple[int | None, str]:
    proc = subprocess.Popen([sys.executable, "-c", LOOP], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "ready"
        for _ in range(signals):
            if proc.poll() is not None:
                break
            proc.send_signal(signal.SIGUSR1)
            time.sleep(0.0005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            return None, "hung: " + err[-500:]
        return proc.returncode, out + err[-500:]
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_flood_of_signals_then_sigterm_stops_a_loop_that_waits_on_the_event_the_signal_sets():
    rc, output = flood_then_terminate()
    assert rc == 0 and "stopped" in output, output
