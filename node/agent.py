"""The node agent: measure at a fixed interval, spool every reading, upload in the background.

Two threads, each with one job and its own SQLite connection to the spool:

- the *measurement loop* (the caller's thread) reads the SDR, turns IQ into a calibrated reading,
  appends it to the spool (durable before anything else happens), and pings the watchdog;
- the *uplink loop* sends the oldest pending records in batches as soon as there are any (so an
  alarm is not delayed by batching; backlogs after an outage go out in full batches), deletes what
  the central unit acknowledged, and backs off with jitter while it cannot.

Nothing here may kill the agent: SDR read errors are logged, counted, reported in the status and
retried (the radio is reopened when its backend gives up); upload failures only delay delivery.
A full spool (its disk full, or ``max_records``; :mod:`node.spool`) neither: the loop keeps its
heartbeat, the spool policy applies (``drop_oldest``: each new reading replaces the oldest;
``refuse``: the radio is left alone, and the spool looked at again every ``SPOOL_RETRY_S``), the
state goes to the status (file, systemd STATUS=) and to the central unit in every batch's header,
and the journal gets one line when the spool fills and one when it has room again: not one per
reading, for a condition that may last days. Room comes back by itself (acks free pages in the
file, or someone frees disk space) and the agent carries on without a restart.
Only a *stuck* measurement loop ends the process, on purpose: the watchdog thread stops pinging
systemd and exits non-zero, so systemd restarts a fresh process.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from node.config import NodeConfig
from node.measure import Measurer, Reading
from node.protocol import Measurement, ProtocolError, SpoolState
from contracts.sd_notify import Notifier, watchdog_interval_s
from node.sdr.base import SdrBackend
from node.sigmf import prune, write_capture
from node.signals import SignalRelay
from node.spool import Spool, SpoolFull
from node.uplink import Backoff, CentralLocator, Uplink, UplinkAuthError, UplinkError

log = logging.getLogger(__name__)
EXIT_WATCHDOG = 70  # EX_SOFTWARE: the measurement loop hung
STATUS_PERIOD_S = 1.0
# A full spool is looked at again this often when nothing could be stored (policy "refuse", or a disk
# so full that not even drop_oldest could write): the radio is left alone in between.
SPOOL_RETRY_S = 1.0


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
    dropped: int = 0  # records the drop_oldest policy deleted unsent (since the spool was created)
    refused: int = 0  # measurement intervals with no stored reading because the spool was full
    captures: int = 0
    spool_full: bool = False  # the spool had no room for the latest reading (spool_full_reason says why)
    spool_full_reason: str = ""
    spool_full_since_unix_s: float | None = None
    spool_free_bytes: int | None = None  # free space on the spool's filesystem, at the last report
    measuring_paused: bool = False  # the spool is full and nothing can be stored: the radio is left alone

    def summary(self) -> str:
        parts = [f"{self.readings} readings", f"{self.pending} pending", f"{self.uploaded} uploaded"]
        if self.spool_full:  # first: systemctl status may cut the line short
            action = "not measuring" if self.measuring_paused else "dropping the oldest"
            parts.insert(0, f"SPOOL FULL, {action} ({self.spool_full_reason})")
        if self.dropped or self.refused:
            parts.append(f"{self.dropped} dropped, {self.refused} refused")
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
        self._spool_retry_mono: float | None = None  # set while nothing can be stored: when to look again
        self._status_write_failed = False
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
        relay = None
        if threading.current_thread() is threading.main_thread():
            actions = {signal.SIGTERM: self.stop, signal.SIGINT: self.stop, signal.SIGUSR1: self.request_capture}
            relay = SignalRelay(actions).install()
        try:
            return self._run(duration_s)
        finally:
            if relay is not None:
                relay.close()

    def _run(self, duration_s: float | None) -> int:
        watchdog = threading.Thread(target=self._watchdog_loop, name="watchdog", daemon=True)
        watchdog.start()
        deadline = None if duration_s is None else time.monotonic() + duration_s
        self.spool = self._wait_for_spool(deadline)
        if self.spool is None:  # stopped before the spool could be opened
            self.notifier.stopping()
            self._stop.set()
            self.uplink.close()
            return 0
        uplink = threading.Thread(target=self._uplink_loop, name="uplink", daemon=True)
        self._threads = [uplink, watchdog]
        uplink.start()
        self.notifier.ready(f"measuring every {self.cfg.interval_s:g} s")
        log.info("node %s: measuring every %g s, spool %s", self.cfg.node_id, self.cfg.interval_s, self.cfg.spool.path)
        try:
            self._measure_loop(deadline)
        finally:
            self.notifier.stopping()
            self._measuring_done.set()
            self._stop.set()
            self._wake_uplink.set()
            uplink.join(timeout=self.cfg.central.timeout_s + 2.0)
            self._close_radio()
            self._write_status()
            self.spool.close()
            self.uplink.close()
        return 0

    def _wait_for_spool(self, deadline: float | None) -> Spool | None:
        """The spool, opened; while it cannot be (a disk without a free byte cannot even take SQLite's
        ``-shm`` file after a restart; an unreadable file), the agent stays up instead of exiting into a
        systemd restart loop: it says why once (journal, status, STATUS=), keeps its watchdog, does not
        measure, and tries again every :data:`SPOOL_RETRY_S` until it can or is stopped."""
        st = self.status
        failed_since = None
        while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
            self._heartbeat = time.monotonic()
            try:
                spool = self._open_spool()
            except (sqlite3.Error, OSError) as e:
                why = f"cannot open the spool {self.cfg.spool.path}: {type(e).__name__}: {e}"
                if failed_since is None:
                    failed_since = time.time()
                    log.error("%s; not measuring, trying again every %g s", why, SPOOL_RETRY_S)
                    st.spool_full, st.measuring_paused, st.spool_full_reason = True, True, why
                    st.spool_full_since_unix_s = failed_since
                    self.notifier.ready(f"SPOOL UNAVAILABLE, not measuring ({why})")
                    self._write_status()
                self._stop.wait(SPOOL_RETRY_S)
                continue
            if failed_since is not None:
                log.warning("spool %s open after %.0f s: measuring", self.cfg.spool.path, time.time() - failed_since)
                st.spool_full, st.measuring_paused, st.spool_full_reason = False, False, ""
                st.spool_full_since_unix_s = None
            return spool
        return None

    def _open_spool(self) -> Spool:
        sp = self.cfg.spool
        return Spool(sp.path, sp.max_records, sp.policy, sp.reserve_bytes)  # type: ignore[arg-type]

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
        """One full-band measurement: one reading, or a sweeping node's readings of every step, each
        spooled as soon as it is measured. False when the radio failed (it is then reopened, and the
        sweep starts again from its first step)."""
        st = self.status
        if self._spool_paused():
            st.refused += 1  # an interval without a reading: counted, so that the gap is known
            return True
        try:
            if self._measurer is None:
                self._measurer = Measurer.for_config(self.cfg, self._open_radio(self.cfg), self._calibration)
                st.radio_open = True
                log.info("radio %s open%s", self.cfg.radio.backend,
                         f", sweeping the band plan in {self._measurer.steps} steps" if self._measurer.steps > 1 else "")  # fmt: skip
        except Exception as e:  # any radio failure: count, report, reopen, retry; never die
            self._radio_failed(e)
            return False
        for step in range(self._measurer.steps):
            try:
                reading = self._measurer.read_step(step)
            except Exception as e:
                self._radio_failed(e)
                return False
            if not self._store(reading):
                break  # the spool is full: leave the rest of the sweep (and the radio) alone
            self._heartbeat = time.monotonic()
        return True

    def _radio_failed(self, e: Exception) -> None:
        st = self.status
        st.read_errors += 1
        st.last_read_error = f"{type(e).__name__}: {e}"
        log.warning("SDR read failed (%d so far): %s", st.read_errors, st.last_read_error)
        self._close_radio()

    def _store(self, reading: Reading) -> bool:
        """Spool one reading; False when the spool had no room (nothing stored, no seq used)."""
        st = self.status
        try:
            stored = self.spool.append(reading.measurement)
        except SpoolFull as e:  # nothing stored, no seq used: leave the radio alone for a while
            st.refused += 1
            self._spool_retry_mono = time.monotonic() + SPOOL_RETRY_S
            st.measuring_paused = True
            self._note_spool(e.reason, str(e))
            return False
        except ProtocolError as e:  # a reading no central unit would accept: a bug, say so loudly
            st.read_errors += 1
            st.last_read_error = f"invalid reading: {e}"
            log.error("invalid reading not spooled: %s", e)
            return True
        self._note_spool(self.spool.full_reason)
        self._wake_uplink.set()
        st.readings += 1
        st.last_power_dbm = stored.power_dbm
        st.saturated_readings += stored.saturated
        self._maybe_capture(reading, stored)
        return True

    def _spool_paused(self) -> bool:
        """True while a full spool can store nothing and the radio is to be left alone. Every
        SPOOL_RETRY_S: policy ``refuse`` looks at the spool (a statvfs and a count; no reading), so
        the radio stays off until there is room; ``drop_oldest`` just tries a reading again (for it,
        a spool short of space is normal work, and only a write can tell whether a ring step fits)."""
        if self._spool_retry_mono is None:
            return False
        now = time.monotonic()
        if now < self._spool_retry_mono:
            return True
        if self.cfg.spool.policy == "refuse" and self.spool.room():
            self._spool_retry_mono = now + SPOOL_RETRY_S
            return True
        self._spool_retry_mono = None
        self.status.measuring_paused = False
        return False

    def _note_spool(self, reason: str, detail: str = "") -> None:
        """Follow the spool's full / not full state (``reason`` "" = the reading had room): the status
        says it all the time, the journal once per change."""
        st = self.status
        if reason and not st.spool_full:
            st.spool_full, st.spool_full_since_unix_s = True, time.time()
            st.spool_full_reason = detail or self.spool.describe(reason)
            if self.cfg.spool.policy == "refuse":
                action = f"not measuring until it has room again (looking every {SPOOL_RETRY_S:g} s)"
            else:
                action = "each new reading replaces the oldest unsent one (counted as dropped)"
            log.warning("spool full: %s; policy %s: %s", st.spool_full_reason, self.cfg.spool.policy, action)
        elif not reason and st.spool_full:
            full_s = time.time() - (st.spool_full_since_unix_s or time.time())
            log.warning("spool has room again after %.0f s full (%d records dropped, %d readings refused so far): "
                        "measuring normally", full_s, self.spool.dropped, st.refused)  # fmt: skip
            st.spool_full, st.spool_full_reason, st.spool_full_since_unix_s = False, "", None
        elif reason and detail:
            st.spool_full_reason = detail

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
                    ack = self.uplink.send(batch, self._spool_header(spool))
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
                removed = self._forget(spool, list(ack.acked))
                if removed is None:
                    return  # stopping on a full disk: the next start sends those again (harmless)
                failures = 0
                backoff.reset()
                st = self.status
                st.uploaded += removed
                st.last_upload_error = ""
                st.last_upload_unix_s = time.time()
                st.central_url = self.uplink.locator.url()
        finally:
            spool.close()

    def _spool_header(self, spool: Spool) -> SpoolState:
        """The spool's state for the batch header (the measurement loop says whether it is full)."""
        st = self.status
        return SpoolState(st.spool_full, spool.dropped, st.refused, spool.free_bytes())

    def _forget(self, spool: Spool, seqs: list[int]) -> int | None:
        """Delete what the central unit acknowledged. On a disk so full that not even a delete fits,
        keep trying (with backoff) instead of sending anything else: the acknowledged records would
        only go out again. None when the agent stops first."""
        backoff = Backoff(min(1.0, SPOOL_RETRY_S), 30.0)
        while True:
            try:
                removed = spool.ack(seqs)
            except SpoolFull as e:
                if backoff.attempt == 0:
                    log.warning("%s; trying again", e)
                if self._stop.wait(backoff.next_delay_s()):
                    return None
                continue
            if backoff.attempt:
                log.warning("acknowledged records removed from the spool after %d attempts", backoff.attempt + 1)
            return removed

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
        st.spool_free_bytes = self.spool.free_bytes()
        self.notifier.status(st.summary())
        self._write_status()

    def _write_status(self) -> None:
        """status.json, replaced whole (a reader never sees half of it). It shares the spool's disk: on
        a full one the write fails, which is logged once (not every second) and survived."""
        path = self.cfg.status_path
        tmp = path.with_name(f"{path.name}.{threading.get_ident()}.tmp")  # two threads may write
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({**asdict(self.status), "written_unix_s": time.time()}, indent=1))
            os.replace(tmp, path)
        except OSError as e:
            try:
                tmp.unlink(missing_ok=True)  # a truncated temporary file would only take more space
            except OSError:
                pass
            if not self._status_write_failed:
                log.warning("cannot write status file %s: %s (logged once until it works again)", path, e)
            self._status_write_failed = True
            return
        if self._status_write_failed:
            log.warning("status file %s written again", path)
            self._status_write_failed = False
