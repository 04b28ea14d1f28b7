"""The central unit as a process: ``rftwin-central run --config FILE``.

Loads the config and the site, opens (and migrates) the store, builds the API, starts uvicorn
programmatically on a socket it binds itself (so ``port = 0`` works and the real port is known),
advertises ``_rftwin._tcp.local.`` by zeroconf once the server listens (when ``advertise``), purges
old data on a timer, and shuts down gracefully on SIGTERM/SIGINT: uvicorn stops accepting and
finishes the requests in flight (an ingest that was stored is acknowledged), then the advertisement
says goodbye, the live engine stops and the store is closed.

Start-up checks, each failure one line and an exit status of its own (:mod:`central.cli`): the data
directory and ``central.db`` before SQLite opens them (:func:`central.store.integrity.preflight`: not
writable, not readable, not a database, truncated; too wide modes are narrowed with a warning), the
port, then ``PRAGMA quick_check`` for at most ``[store] integrity_check_startup_s``; one that does not
finish goes on in the background, and the check is repeated every ``integrity_check_period_s``. A
database that *fails* it is not refused: the service starts **degraded**, serving reads and
``/health`` (``failing``) while every write answers 503 ``database_corrupt`` (the nodes keep their
spools), so that the operator sees why in the dashboard, ``rftwin-central status`` and the journal
(docs/operations.md); it is not migrated, so one that would need a migration is refused (exit 65).

Plug-in points (other parts of the central unit, looked up at start so this module does not depend
on them):

- **Live engine**: ``engine_factory(state) -> engine``; by default ``central.detection.engine:
  create_engine`` (:mod:`central.detection.live`). The engine's ``on_ingest(node_id, measurements)`` and
  ``on_context(contexts)`` become the state's callbacks (called after the data is stored); its
  optional ``start()`` runs before the server listens and ``stop()`` after it has stopped.
- **Dashboard**: ``central.dashboard:mount(app, state)`` when that module exists; it adds its pages
  and the live event stream (``/api/v1/events``, SSE) to the app (the log then says where the
  dashboard is); an ``app.state.dashboard_recorder`` it leaves is stopped at shutdown.
"""

from __future__ import annotations

import asyncio
import errno
import importlib
import logging
import signal
import socket
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import uvicorn

from central.api import API_PREFIX, AppState, create_app
from central.config import CentralConfig
from central.enrolment import assign_missing_sus
from central.events import EventBus
from central.http_limits import uvicorn_limits
from central.store import SCHEMA_VERSION, Store, StoreError, StoreFileError
from central.store.integrity import EX_CANTCREAT, EX_DATAERR, EX_TEMPFAIL, open_error, preflight
from central.webhooks import WebhookDispatcher
from contracts.sd_notify import Notifier, watchdog_interval_s

log = logging.getLogger("rftwin.central")

ENGINE_FACTORY = "central.detection.live:create_engine"
DASHBOARD_MOUNT = "central.dashboard:mount"
PURGE_PERIOD_S = 3600.0

EngineFactory = Callable[[AppState], Any]


def _optional(ref: str) -> Callable | None:
    """``module:attr`` if that module exists (an ImportError from *inside* it is not hidden)."""
    module_name, attr = ref.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            return None
        raise
    return getattr(module, attr, None)


class CentralService:
    """One central unit. ``start()``/``stop()`` run it in a background thread (tests, embedding);
    ``run()`` runs it in the calling (main) thread until SIGTERM/SIGINT."""

    def __init__(self, config: CentralConfig, *, engine_factory: EngineFactory | None = None,
                 use_default_plugins: bool = True, log_level: str = "info"):  # fmt: skip
        self.config = config
        self.site = config.load_site()
        mode_warnings = preflight(config.db_path)  # the data dir and central.db: unusable is one line and exit
        try:
            config.models_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise StoreFileError(f"{config.models_dir}: cannot create: {e.strerror or e}", EX_CANTCREAT) from None
        self.sock = _bind(config.listen.host, config.listen.port)  # before the store: a busy port fails fast
        self.port: int = self.sock.getsockname()[1]
        try:
            self.store = _open_store(config)
        except BaseException:
            self.sock.close()
            raise
        for w in mode_warnings:  # now: a start-up that fails says only why
            log.warning("%s", w)
        if self.store.corrupt is None:  # it writes; a corrupt store refuses that
            for w in assign_missing_sus(self.store, self.site):
                log.warning("%s", w)
        self.store.set_webhook_urls(config.webhooks.urls)  # alarm transitions go to the outbox from now on
        self.webhooks = WebhookDispatcher(self.store, config.webhooks) if config.webhooks.urls else None
        self.bus = EventBus()
        self.state = AppState(config, self.store, self.bus, self.site)
        factory = engine_factory or (_optional(ENGINE_FACTORY) if use_default_plugins else None)
        self.engine = factory(self.state) if factory else None
        if self.engine is not None:
            self.state.on_ingest = getattr(self.engine, "on_ingest", None)
            self.state.on_context = getattr(self.engine, "on_context", None)
            self.state.learn = getattr(self.engine, "learn", None)
        self.app = create_app(self.state)
        mount = _optional(DASHBOARD_MOUNT) if use_default_plugins else None
        self.dashboard = bool(mount)
        if mount:
            mount(self.app, self.state)
        self._uvicorn = uvicorn.Server(uvicorn.Config(
            **uvicorn_limits(self.app, config.limits),  # the app behind a body timeout; header timeout, cap
            ssl_certfile=str(config.tls.cert) if config.tls else None,
            ssl_keyfile=str(config.tls.key) if config.tls else None, log_level=log_level, access_log=False,
            log_config=None,  # uvicorn logs through the root logger, in the service's format
            lifespan="off", timeout_graceful_shutdown=10, server_header=False,
        ))  # fmt: skip
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # ------------------------------------------------------------------------------------ where
    @property
    def url(self) -> str:
        """A URL to reach the API's root from this host (the listen address, or loopback for 0.0.0.0)."""
        host = self.config.listen.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"{self.config.scheme}://{host}:{self.port}"

    def _announce(self) -> None:
        host = self.config.listen.host
        shown = self.url
        if host in ("0.0.0.0", "::", ""):
            from contracts.discovery import host_ipv4_addresses

            shown = f"{self.config.scheme}://{host_ipv4_addresses()[0]}:{self.port}"
        log.info("central unit for site %s: API at %s%s, docs at %s/docs", self.site.name, shown, API_PREFIX, shown)
        if self.dashboard:
            log.info("dashboard at %s/", shown)
        else:
            log.info("no dashboard installed (central.dashboard)")
        if self.store.corrupt is None:
            log.info("store %s (schema v%d)", self.config.db_path, self.store.schema_version)
        else:  # the critical record came at start-up; this is where a reader of the log's tail looks
            log.warning("store %s: DEGRADED, writes (ingest included) are refused: %s; see docs/operations.md",
                        self.config.db_path, self.store.corrupt)  # fmt: skip
        if self.engine is None:
            log.warning("no live detection engine (%s not found): measurements are stored, no alarms are raised",
                        ENGINE_FACTORY)  # fmt: skip
        else:
            log.info("live detection: %s", type(self.engine).__name__)

    # ---------------------------------------------------------------------------------- running
    async def serve(self) -> None:
        """Serve until uvicorn is told to exit (signal, or :meth:`stop`)."""
        cfg = self.config
        if self.engine is not None and hasattr(self.engine, "start"):
            self.engine.start()
        server = self._uvicorn
        task = asyncio.create_task(server.serve(sockets=[self.sock]))
        purge = None
        integrity = None
        adv = None
        watchdog = None
        notifier = Notifier()  # systemd Type=notify; a no-op outside systemd
        try:
            while not server.started and not task.done():
                await asyncio.sleep(0.01)
            if task.done():
                await task
                raise RuntimeError("the HTTP server did not start")
            self._announce()
            purge = asyncio.create_task(self._purge_loop())
            integrity = asyncio.create_task(self._integrity_loop())
            if self.webhooks is not None:
                self.webhooks.start()
                log.info("webhooks: alarm transitions to %s", ", ".join(cfg.webhooks.urls))
            if cfg.advertise:
                adv = await self._advertise()
            self._ready.set()
            notifier.ready(f"serving site {self.site.name} on port {self.port}")
            if (wd_s := watchdog_interval_s()) is not None:
                watchdog = asyncio.create_task(self._watchdog_loop(notifier, wd_s))
            await task
        finally:
            self._ready.set()
            notifier.stopping()
            if watchdog is not None:
                watchdog.cancel()
            if purge is not None:
                purge.cancel()
            if integrity is not None:
                integrity.cancel()
            if adv is not None:
                try:
                    await adv.async_close()
                except Exception as e:  # noqa: BLE001 - shutting down anyway
                    log.warning("zeroconf goodbye failed: %s", e)
            if self.engine is not None and hasattr(self.engine, "stop"):
                self.engine.stop()
            if self.webhooks is not None:
                self.webhooks.stop()
            recorder = getattr(self.app.state, "dashboard_recorder", None)
            if recorder is not None:
                recorder.stop()
            self.store.close()
            self.sock.close()
            notifier.close()
            log.info("central unit stopped")

    @staticmethod
    async def _watchdog_loop(notifier: Notifier, timeout_s: float) -> None:
        """Ping systemd's watchdog from the event loop: a blocked loop stops the pings and gets restarted."""
        while True:
            notifier.watchdog()
            await asyncio.sleep(timeout_s / 3.0)

    async def _advertise(self):
        from contracts.discovery import Advertisement

        try:
            adv = Advertisement(self.port, scheme=self.config.scheme, path="/", allow_name_change=True)
            await adv.async_start()
        except Exception as e:  # noqa: BLE001 - nodes with a configured URL still work
            log.warning("zeroconf advertisement failed (%s: %s); nodes must be given the URL", type(e).__name__, e)
            return None
        log.info("advertised as %s (%s)", adv.info.name, adv.url)
        return adv

    async def _integrity_loop(self) -> None:
        """``quick_check`` in a worker thread: at once if the start-up check did not finish, then every
        ``[store] integrity_check_period_s`` (0: never again)."""
        period = self.config.store.integrity_check_period_s
        last = self.store.last_integrity_check
        now = last is None or last.status == "not_finished"
        while now or period:
            if not now:
                await asyncio.sleep(period)
            now = False
            try:
                result = await asyncio.to_thread(self.store.check_integrity)
                log.log(logging.INFO if result.status in ("ok", "not_finished") else logging.ERROR,
                        "store integrity check: %s (%.1f s)", result.summary(), result.duration_s)  # fmt: skip
            except Exception:
                log.exception("store integrity check failed to run")

    async def _purge_loop(self) -> None:
        r = self.config.retention
        while True:
            if self.store.corrupt is not None:  # it would only be refused, every hour, with a traceback
                await asyncio.sleep(PURGE_PERIOD_S)
                continue
            try:
                n = await asyncio.to_thread(self.store.purge, r.measurements_days, r.snapshots_days)
                if any(n.values()):
                    log.info("retention purge: %s", ", ".join(f"{v} {k}" for k, v in n.items()))
            except Exception:
                log.exception("retention purge failed")
            await asyncio.sleep(PURGE_PERIOD_S)

    def _runner(self) -> asyncio.Runner:
        return asyncio.Runner(loop_factory=self._uvicorn.config.get_loop_factory())

    def run(self) -> int:
        """Serve in this (main) thread until SIGTERM or SIGINT; then shut down gracefully."""

        def on_signal(signum, frame) -> None:  # uvicorn installs its own while serving, then re-raises
            self._uvicorn.should_exit = True

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        with self._runner() as runner:
            runner.run(self.serve())
        return 0

    def start(self, timeout_s: float = 30.0) -> "CentralService":
        """Serve in a background thread; returns once the API answers (or raises why not)."""

        def target() -> None:
            try:
                with self._runner() as runner:
                    runner.run(self.serve())
            except BaseException as e:  # noqa: BLE001 - reported by start()
                self._error = e
                self._ready.set()

        self._thread = threading.Thread(target=target, name="rftwin-central", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError(f"central unit did not start within {timeout_s} s")
        if self._error is not None:
            raise RuntimeError(f"central unit failed to start: {self._error}") from self._error
        return self

    def stop(self, timeout_s: float = 15.0) -> None:
        self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)


def _open_store(config: CentralConfig) -> Store:
    """Open the database, ``quick_check`` it for at most ``integrity_check_startup_s``, migrate it if it
    did not fail. What SQLite says while opening becomes one line and an exit status (StoreFileError)."""
    path = config.db_path
    try:
        store = Store(path, migrate=False)
    except sqlite3.Error as e:
        raise open_error(e, path) from None
    try:
        version = store.schema_version  # reads the schema: a file whose schema is unreadable stops here
        if version > SCHEMA_VERSION:
            raise StoreError(f"{path}: schema version {version} is newer than this software's ({SCHEMA_VERSION}); "
                             "upgrade rftwin")  # fmt: skip
        budget = config.store.integrity_check_startup_s
        result = store.check_integrity(budget)
        if result.failed:  # logged critical by the store; served degraded, read-only
            if version != SCHEMA_VERSION:
                raise StoreFileError(f"{path}: fails its integrity check ({result.summary()}) and needs a "
                                     "migration, which is not run on a damaged database; restore a backup "
                                     "(docs/operations.md)", EX_DATAERR)  # fmt: skip
        else:
            store.migrate()
        if result.status == "ok":
            log.info("store %s: quick_check ok (%.1f s)", path, result.duration_s)
        elif result.status == "not_finished":
            log.warning("store %s: quick_check not finished within %g s ([store] integrity_check_startup_s); "
                        "it goes on in the background", path, budget)  # fmt: skip
    except sqlite3.Error as e:
        store.close()
        raise open_error(e, path) from None
    except StoreError as e:  # written by newer software
        store.close()
        raise StoreFileError(str(e), EX_DATAERR) from None
    except BaseException:
        store.close()
        raise
    return store


class ListenError(OSError):
    """The listening socket could not be bound; ``exit_code`` 75 (EX_TEMPFAIL) for a port in use,
    77 (EX_NOPERM) for one this user may not bind, 69 (EX_UNAVAILABLE) otherwise (central.cli)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        code = {errno.EADDRINUSE: EX_TEMPFAIL, errno.EACCES: 77}.get(e.errno, 69)
        raise ListenError(f"cannot listen on {host}:{port}: {e.strerror or e}", code) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
