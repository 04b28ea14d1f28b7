"""Find the central unit on the local network by mDNS/DNS-SD (zeroconf): the node's browsing side.

Why: a sensing unit bolted to a hall ceiling should find the central unit without anyone typing a
URL into it. The central unit advertises one DNS-SD service (:class:`contracts.discovery.Advertisement`);
a node browses for :data:`contracts.discovery.SERVICE_TYPE`, resolves it and builds the base URL it
uploads to. The service type, the TXT keys and their parsing are the shared contract in
:mod:`contracts.discovery`; this module holds only the browsing. A configured URL, where there is
one, takes precedence over this (the caller decides); discovery is the zero-configuration fallback.

Units: timeouts and windows are in seconds (zeroconf itself counts milliseconds; converted here).

mDNS is link-local multicast (224.0.0.251:5353): it does not cross routers. Where the central unit
sits in another subnet, configure its URL instead.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from zeroconf import (
    DNSQuestionType,
    InterfaceChoice,
    InterfacesType,
    ServiceBrowser,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
)

from contracts.discovery import API_VERSION, SERVICE_TYPE, CentralService

log = logging.getLogger(__name__)

#: After the first service resolves, keep listening this long (s) for others, so that the choice
#: among several central units does not depend on which one happened to answer first.
DEFAULT_SETTLE_S = 0.3
#: Longest a single resolution attempt (SRV/TXT/A query round) may block before other names get a turn (s).
RESOLVE_ATTEMPT_S = 1.0


class DiscoveryError(RuntimeError):
    """No usable central unit was found by mDNS within the timeout."""


def discover_central(
    timeout_s: float = 5.0,
    *,
    interfaces: InterfacesType = InterfaceChoice.All,
    settle_s: float = DEFAULT_SETTLE_S,
    api_version: str | None = API_VERSION,
) -> CentralService:
    """Browse for :data:`SERVICE_TYPE` and return the central unit to use.

    Blocks for at most ``timeout_s`` seconds (plus the zeroconf shutdown, a few ms). Returns as soon
    as one service has resolved and ``settle_s`` more seconds have passed without the deadline
    being hit; if several resolved by then, picks the lowest instance name (deterministic on every
    node) and logs the others. Services whose TXT ``api`` differs from ``api_version`` (None:
    accept any) or that lack a usable address/port/scheme are skipped with a warning.

    ``interfaces``: zeroconf's choice of interfaces (``InterfaceChoice.All``, or a list of
    addresses). Raises :class:`DiscoveryError` when nothing usable answers in time. The Zeroconf
    instance is always closed.

    Timing (measured on loopback): ~0.15 s to the first answer plus ``settle_s``. A responder
    does not multicast a record again within 1 s of announcing it (RFC 6762 §6), so a browse that
    starts right after the central unit registered is answered by the second query, ~1.1 s later.

    Blocking: from asyncio code, call it through
    ``asyncio.to_thread``; called inside a running event loop it runs in a helper thread (so
    zeroconf does not try to share that loop) and still blocks that loop until done.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _discover(timeout_s, interfaces, settle_s, api_version)
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["result"] = _discover(timeout_s, interfaces, settle_s, api_version)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    t = threading.Thread(target=run, name="rftwin-discovery", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]


def _discover(
    timeout_s: float, interfaces: InterfacesType, settle_s: float, api_version: str | None
) -> CentralService:
    start = time.monotonic()
    deadline = start + timeout_s
    seen: dict[str, None] = {}  # names announced and not yet withdrawn, in arrival order
    lock = threading.Lock()
    wake = threading.Event()

    def on_change(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        with lock:
            if state_change is ServiceStateChange.Removed:
                seen.pop(name, None)
            else:
                seen[name] = None
        wake.set()

    resolved: dict[str, CentralService] = {}
    rejected: dict[str, str] = {}
    first_at: float | None = None
    zc = Zeroconf(interfaces=interfaces)
    try:
        # QM, not zeroconf's default QU first query: a QU answer is unicast to port 5353 of the
        # asking host, and where several mDNS stacks share that port there (avahi-daemon on the
        # node, or the central unit on the same host) the kernel hands it to any one of them,
        # often not us; the browser then waits ~1 s for its next (QM) query.
        browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[on_change], question_type=DNSQuestionType.QM)
        try:
            while True:
                now = time.monotonic()
                stop_at = deadline if first_at is None else min(deadline, first_at + settle_s)
                if now >= stop_at:
                    break
                wake.clear()
                with lock:
                    pending = [n for n in seen if n not in resolved and n not in rejected]
                for name in pending:
                    remaining_ms = (stop_at - time.monotonic()) * 1000.0
                    if remaining_ms <= 0:
                        break
                    # Capped, so one stale name (announced, responder gone) cannot starve the rest.
                    remaining_ms = min(remaining_ms, RESOLVE_ATTEMPT_S * 1000.0)
                    info = ServiceInfo(SERVICE_TYPE, name)
                    if not info.request(zc, timeout=remaining_ms, question_type=DNSQuestionType.QM):
                        continue  # not answered yet: retried on the next pass while time is left
                    try:
                        svc = CentralService.from_info(info)
                    except ValueError as exc:
                        rejected[name] = str(exc)
                        log.warning("ignoring %s", exc)
                        continue
                    if api_version is not None and svc.api_version != api_version:
                        rejected[name] = f"api={svc.api_version!r}, want {api_version!r}"
                        log.warning("ignoring %s: %s", name, rejected[name])
                        continue
                    resolved[name] = svc
                    if first_at is None:
                        first_at = time.monotonic()
                        log.debug("resolved %s → %s after %.3f s", name, svc.url, first_at - start)
                    stop_at = min(deadline, first_at + settle_s)
                # Sleep until something new is announced or the window ends; poll now and then so
                # a name whose resolution timed out gets another try.
                wake.wait(max(0.0, min(stop_at - time.monotonic(), 0.25)))
        finally:
            browser.cancel()
        with lock:
            still_there = set(seen)
    finally:
        zc.close()

    live = {n: s for n, s in resolved.items() if n in still_there}
    if not live:
        detail = ""
        if rejected:
            detail = "; found but unusable: " + "; ".join(
                f"{n}: {why}" for n, why in sorted(rejected.items())
            )
        elif still_there:
            detail = f"; seen but not resolved: {', '.join(sorted(still_there))}"
        raise DiscoveryError(
            f"no central unit found: no {SERVICE_TYPE} service resolved within {timeout_s:g} s by mDNS"
            f"{detail}. Check that the central unit is running and on the same link, or configure its URL."
        )
    chosen_key = min(live, key=lambda n: (live[n].name.lower(), n))
    chosen = live[chosen_key]
    others = [live[n] for n in sorted(live) if n != chosen_key]
    if others:
        log.warning(
            "%d central units answered; using %s (%s), ignoring %s",
            len(live),
            chosen.name,
            chosen.url,
            ", ".join(f"{s.name} ({s.url})" for s in others),
        )
    else:
        log.info("discovered central unit %s at %s", chosen.name, chosen.url)
    return chosen
