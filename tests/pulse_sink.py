"""A private PulseAudio server with a null sink, so SoapySDR's audio driver is a real radio in tests.

What is on the "air" is whatever ``pacat`` plays into the sink; the sink's monitor is the SoapySDR
device (driver=audio), and with ``chan=stereo_iq`` left/right become I/Q. The server runs as our
child (``--daemonize=no``) in a temporary runtime directory, is reached only through its own socket
(``PULSE_SERVER``, which also stops libpulse from autospawning a daemon), and is killed on exit.
Running as root works (PulseAudio only warns); realtime scheduling is off because there is no rtkit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

RATE_HZ = 48_000
SINK = "rftwin_sim"
LABEL = "rftwin-sim"  # the monitor enumerates as "Monitor of rftwin-sim"


def missing_tools() -> list[str]:
    return [t for t in ("pulseaudio", "pacat", "parec", "pactl") if shutil.which(t) is None]


class PulseNullSink:
    """``with PulseNullSink(tmp) as pa:`` a server with a 48 kHz float32 stereo null sink."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.socket = self.workdir / "runtime" / "native"
        self.server = f"unix:{self.socket}"
        self.cookie = self.workdir / "home" / "cookie"  # unused (anonymous auth) but libpulse wants one
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ, PULSE_SERVER=self.server, HOME=str(self.workdir / "home"),
                   XDG_RUNTIME_DIR=str(self.workdir / "runtime"))  # fmt: skip
        env["PULSE_COOKIE"] = str(self.cookie)
        return env

    def __enter__(self) -> "PulseNullSink":
        for d in ("runtime", "home"):
            (self.workdir / d).mkdir(mode=0o700, parents=True, exist_ok=True)
        self.log = open(self.workdir / "pulseaudio.log", "wb")
        self.proc = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--realtime=no",
             "--high-priority=no", "--use-pid-file=no", "--log-target=stderr",
             "-L", f"module-native-protocol-unix auth-anonymous=1 socket={self.socket}",
             "-L", f"module-null-sink sink_name={SINK} rate={RATE_HZ} format=float32le channels=2 "
                   f"sink_properties=device.description={LABEL}"],
            env=self.env(), stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 10.0
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                log = (self.workdir / "pulseaudio.log").read_text()
                raise RuntimeError(f"pulseaudio did not start: {log}")
            time.sleep(0.05)
        self._warm_up()
        return self

    def _warm_up(self) -> None:
        """Keep a low-latency recording on the monitor for the server's lifetime, and wait for its
        first bytes. An idle null sink renders in 2 s blocks and a new client waits out the block
        in progress (measured 1.96 s on a fresh server, again after every idle spell); with this
        client the sink never idles and every later recording gets data within ~0.1 s."""
        self.keepalive_file = self.workdir / "keepalive.raw"
        with open(self.keepalive_file, "wb") as out:
            self.keepalive = subprocess.Popen(
                ["parec", "--raw", f"--device={SINK}.monitor", "--latency-msec=20", "--format=u8",
                 "--rate=8000", "--channels=1"],
                env=self.env(), stdout=out, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + 10.0
        while self.keepalive_file.stat().st_size == 0:
            if self.keepalive.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the null sink's monitor delivered nothing")
            time.sleep(0.02)

    def _ready(self) -> bool:
        if not self.socket.exists():
            return False
        r = subprocess.run(["pactl", "list", "short", "sinks"], env=self.env(), capture_output=True,
                           text=True)  # fmt: skip
        return r.returncode == 0 and SINK in r.stdout

    def __exit__(self, *exc) -> None:
        for p in (getattr(self, "keepalive", None), self.proc):
            if p is None or p.poll() is not None:
                continue
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.log.close()

    def play(self, stereo: np.ndarray) -> "Feed":
        """Play ``stereo`` ((n, 2) float32, full scale ±1) into the sink in a loop until stopped."""
        return Feed(self, stereo)


class Feed:
    """A ``pacat`` playing one block over and over (a context manager). When the constructor returns
    the stream is connected to the sink; its first samples reach the monitor some 50–100 ms later
    (pacat's prebuffer, then the capture fragment), so readers drop a settling interval."""

    def __init__(self, pa: PulseNullSink, stereo: np.ndarray):
        block = np.ascontiguousarray(stereo, dtype="<f4").tobytes()
        self.proc = subprocess.Popen(
            ["pacat", "--playback", "--raw", f"--device={SINK}", "--format=float32le", f"--rate={RATE_HZ}",
             "--channels=2", "--latency-msec=20"],
            env=pa.env(), stdin=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, args=(block,), daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 5.0
        while not subprocess.run(["pactl", "list", "short", "sink-inputs"], env=pa.env(),
                                 capture_output=True, text=True).stdout.strip():  # fmt: skip
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("pacat's stream never reached the sink")
            time.sleep(0.01)

    def _pump(self, block: bytes) -> None:
        try:
            while not self._stop.is_set():
                self.proc.stdin.write(block)  # blocks at real time once pacat's buffer is full
        except (BrokenPipeError, ValueError, OSError):
            pass

    def stop(self) -> None:
        self._stop.set()
        self.proc.terminate()
        self.proc.wait(5)
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        self._thread.join(5)

    def __enter__(self) -> "Feed":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
