"""The node agent: measure at a fixed interval, spool every reading, upload in the background.

Two threads, each with one job and its own SQLite connection to the spool:

- the *measurement loop* (the caller's thread) reads the SDR, turns IQ into a calibrated reading,
  appends it to the spool (durable before anything else happens), and pings the watchdog;
- the *uplink loop* sends the oldest pending records in batches as soon as there are any (so an
  alarm is not delayed by batching; backlogs after an outage go out in full batches), deletes what
  the central unit acknowledged, and backs off with jitter while it cannot.

Nothing here may kill the agent: SDR read errors are logged, counted, reported in the status and
retried (the radio is reopened when its backend gives up); upload failures only delay delivery.
Only a *stuck* measurement loop ends the process, on purpose: the watchdog thread stops pinging
systemd and exits non-zero, so systemd restarts a fresh process.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from node.config import NodeConfig
from node.measure import Measurer, Reading
from node.protocol import Measurement, ProtocolError
from contracts.sd_notify import Notifier, watchdog_interval_s
from node.sdr.base import SdrBackend
from node.sigmf import prune, write_capture
from node.spool import Spool, SpoolFull
from node.uplink import Backoff, CentralLocator, Uplink, UplinkAuthError, UplinkError

log = logging.getLogger(__name__)
EXIT_WATCHDOG = 70  # EX_SOFTWARE: the measurement loop hung
STATUS_PERIOD_S = 1.0


@dataclass
class AgentStatus:
    """What an operator (``rftwin-node status``, systemd's STATUS=, the status file) needs to know."""

    node_id: str
    started_unix_s: float = field(default_factory=time.time)
    readings: int = 0
    last_power_dbm: float | None = None
    saturated_readings: int = 0
    read_errors: int = 0
    last_read_error: str = ""
    radio_open: bool = False
    uploaded: int = 0
    upload_failures: int = 0
    last_upload_error: str = ""
    last_upload_unix_s: float | None = None
    central_url: str | None = None
    pending: int = 0
    dropped: int = 0
    refused: int = 0  # readings the spool refused (policy "refuse" and full)
    captures: int = 0

    def summary(self) -> str:
        parts = [f"{self.readings} readings", f"{self.pending} pending", f"{self.uploaded} uploaded"]
        if self.last_power_dbm is not None:
            parts.append(f"last {self.last_power_dbm:.1f} dBm")
        if self.read_errors:
            parts.append(f"{self.read_errors} read errors (last: {self.last_read_error})")
        if self.last_upload_error:
            parts.append(f"uplink: {self.last_upload_error}")
        return "; ".join(parts)


class Agent:
    def __init__(self, cfg: NodeConfig, *, open_radio: Callable[[NodeConfig], SdrBackend] | None = None,
                 uplink: Uplink | None = None, notifier: Notifier | None = None,
                 watchdog_s: float | None = None):  # fmt: skip
        from node.sdr.open import calibration_for, open_backend

        self.cfg = cfg
        self._open_radio = open_radio or open_backend
        self._calibration = calibration_for(cfg)
        self.status = AgentStatus(cfg.node_id)
        self.notifier = notifier or Notifier()
        self._stop = threading.Event()
        self._measuring_done = threading.Event()  # set once no reading can be spooled any more
        self._wake_uplink = threading.Event()
        self._capture_requested = threading.Event()
        self._heartbeat = time.monotonic()
        # systemd's watchdog when it watches us; else our own, generous enough for a slow radio.
        self.watchdog_s = watchdog_s or watchdog_interval_s() or max(30.0, 20 * cfg.interval_s)
        self._last_capture_mono = -float("inf")
        self.spool: Spool | None = None  # opened by run(): an SQLite connection belongs to its thread
        c = cfg.central
        self.uplink = uplink or Uplink(cfg.node_id, c.token, CentralLocator(c.url, c.discovery_timeout_s),
                                       ca_file=c.ca_file, timeout_s=c.timeout_s)  # fmt: skip
        self._measurer: Measurer | None = None
        self._threads: list[threading.Thread] = []

    # -- control -------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        self._wake_uplink.set()

    def request_capture(self) -> None:
        """Capture the next buffer to SigMF (SIGUSR1 does this for a running service)."""
        self._capture_requested.set()

    def run(self, duration_s: float | None = None) -> int:
        """Measure until :meth:`stop` (or SIGTERM/SIGINT, or ``duration_s``); returns an exit code."""
        self.spool = self._open_spool()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
            signal.signal(signal.SIGINT, lambda *_: self.stop())
            signal.signal(signal.SIGUSR1, lambda *_: self.request_capture())
        self._threads = [
            threading.Thread(target=self._uplink_loop, name="uplink", daemon=True),
            threading.Thread(target=self._watchdog_loop, name="watchdog", daemon=True),
        ]
        for t in self._threads:
            t.start()
        self.notifier.ready(f"measuring every {self.cfg.interval_s:g} s")
        log.info("node %s: measuring every %g s, spool %s", self.cfg.node_id, self.cfg.interval_s, self.cfg.spool.path)
        deadline = None if duration_s is None else time.monotonic() + duration_s
        try:
            self._measure_loop(deadline)
        finally:
            self.notifier.stopping()
            self._measuring_done.set()
            self._stop.set()
            self._wake_uplink.set()
            self._threads[0].join(timeout=self.cfg.central.timeout_s + 2.0)
            self._close_radio()
            self._write_status()
            self.spool.close()
            self.uplink.close()
        return 0

    def _open_spool(self) -> Spool:
        return Spool(self.cfg.spool.path, self.cfg.spool.max_records, self.cfg.spool.policy)  # type: ignore[arg-type]

    # -- measurement ---------------------------------------------------------------------------

    def _measure_loop(self, deadline: float | None) -> None:
        next_t = time.monotonic()
        last_status = 0.0
        # Retry a failing radio with backoff, but ping the watchdog often enough while waiting.
        retry = Backoff(min(1.0, self.cfg.interval_s), max(self.cfg.interval_s, min(30.0, self.watchdog_s / 3.0)))
        while not self._stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            self._heartbeat = now
            if self._measure_once():
                retry.reset()
            else:
                next_t = time.monotonic() + retry.next_delay_s() - self.cfg.interval_s
            if now - last_status >= STATUS_PERIOD_S:
                last_status = now
                self._report()
            next_t += self.cfg.interval_s
            delay = next_t - time.monotonic()
            if delay < -self.cfg.interval_s:  # fell behind (slow radio): skip, do not burst
                next_t = time.monotonic()
                delay = 0.0
            if delay > 0:
                self._stop.wait(delay)

    def _measure_once(self) -> bool:
        st = self.status
        try:
            if self._measurer is None:
                self._measurer = Measurer(self.cfg.node_id, self._open_radio(self.cfg), self.cfg.band,
                                          self._calibration, self.cfg.radio.samples_per_reading)  # fmt: skip
                st.radio_open = True
                log.info("radio %s open", self.cfg.radio.backend)
            reading = self._measurer.read()
        except Exception as e:  # any radio failure: count, report, reopen, retry; never die
            st.read_errors += 1
            st.last_read_error = f"{type(e).__name__}: {e}"
            log.warning("SDR read failed (%d so far): %s", st.read_errors, st.last_read_error)
            self._close_radio()
            return False
        try:
            stored = self.spool.append(reading.measurement)
        except SpoolFull as e:
            st.refused += 1
            log.error("%s; reading dropped (spool policy 'refuse')", e)
            return True
        except ProtocolError as e:  # a reading no central unit would accept: a bug, say so loudly
            st.read_errors += 1
            st.last_read_error = f"invalid reading: {e}"
            log.error("invalid reading not spooled: %s", e)
            return True
        self._wake_uplink.set()
        st.readings += 1
        st.last_power_dbm = stored.power_dbm
        st.saturated_readings += stored.saturated
        self._maybe_capture(reading, stored)
        return True

    def _close_radio(self) -> None:
        if self._measurer is not None:
            try:
                self._measurer.backend.close()
            except Exception as e:
                log.warning("closing the radio failed: %s", e)
            self._measurer = None
            self.status.radio_open = False

    def _maybe_capture(self, reading: Reading, stored: Measurement) -> None:
        """IQ of this reading to SigMF, on demand or on saturation; the recording carries the record as
        the spool stored it (its ``seq`` is the one the central unit will see)."""
        saturated = stored.saturated
        sig = self.cfg.sigmf
        on_demand = self._capture_requested.is_set()
        now = time.monotonic()
        auto = saturated and sig.on_saturation and now - self._last_capture_mono >= sig.min_interval_s
        if not (on_demand or auto) or sig.max_captures == 0:
            return
        self._capture_requested.clear()
        self._last_capture_mono = now
        try:
            path = write_capture(sig.directory, reading.buffer, stored, self.cfg.position_m,
                                 "on demand" if on_demand else "saturated", self.cfg.radio.backend)  # fmt: skip
            prune(sig.directory, sig.max_captures)
            self.status.captures += 1
            log.info("IQ capture written to %s", path)
        except OSError as e:
            log.error("IQ capture failed: %s", e)

    # -- uplink --------------------------------------------------------------------------------

    def _uplink_loop(self) -> None:
        spool = self._open_spool()
        backoff = Backoff(self.cfg.central.backoff_initial_s, self.cfg.central.backoff_max_s)
        failures = 0
        try:
            while True:
                # Read "done" before the spool: a reading spooled after an empty look (a SIGTERM lands
                # mid-reading) is still sent before the uplink ends, not left for the next start.
                done = self._measuring_done.is_set()
                batch = spool.pending(self.cfg.central.batch_max_records)
                if not batch:
                    if done:
                        return
                    self._wake_uplink.wait(1.0)
                    self._wake_uplink.clear()
                    continue
                try:
                    ack = self.uplink.send(batch)
                except Exception as e:  # UplinkError is expected; anything else must not end uploads
                    if not isinstance(e, UplinkError):
                        log.exception("unexpected uplink failure")
                    failures += 1
                    self.status.upload_failures += 1
                    self.status.last_upload_error = f"{type(e).__name__}: {e}"
                    level = logging.ERROR if isinstance(e, UplinkAuthError) else logging.WARNING
                    log.log(level, "upload of %d records failed (%d in a row): %s", len(batch), failures, e)
                    if failures % 3 == 0:
                        self.uplink.locator.invalidate()  # rediscover: the central unit may have moved
                    if self._stop.wait(backoff.next_delay_s()):
                        return  # stopping: what is unsent stays spooled for the next start
                    continue
                removed = spool.ack(list(ack.acked))
                failures = 0
                backoff.reset()
                st = self.status
                st.uploaded += removed
                st.last_upload_error = ""
                st.last_upload_unix_s = time.time()
                st.central_url = self.uplink.locator.url()
        finally:
            spool.close()

    # -- health --------------------------------------------------------------------------------

    def _watchdog_loop(self) -> None:
        """Ping systemd while the measurement loop makes progress; exit the process when it hangs."""
        period = min(self.watchdog_s / 3.0, 5.0)
        while not self._stop.wait(period):
            stalled_s = time.monotonic() - self._heartbeat
            if stalled_s > self.watchdog_s:
                log.critical("measurement loop stuck for %.1f s (watchdog %.1f s): exiting so that it is restarted",
                             stalled_s, self.watchdog_s)  # fmt: skip
                self.status.last_read_error = f"watchdog: loop stuck for {stalled_s:.1f} s"
                self._write_status()
                os._exit(EXIT_WATCHDOG)  # the stuck thread cannot be unwound; the spool is durable
            self.notifier.watchdog()

    def _report(self) -> None:
        st = self.status
        st.pending = len(self.spool)
        st.dropped = self.spool.dropped
        self.notifier.status(st.summary())
        self._write_status()

    def _write_status(self) -> None:
        path = self.cfg.status_path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{threading.get_ident()}.tmp")  # two threads may write
            tmp.write_text(json.dumps({**asdict(self.status), "written_unix_s": time.time()}, indent=1))
            os.replace(tmp, path)
        except OSError as e:
            log.warning("cannot write status file %s: %s", path, e)
