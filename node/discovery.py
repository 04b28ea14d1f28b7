"""Find the central unit on the local network by mDNS/DNS-SD (zeroconf), and advertise it.

Why: a sensing unit bolted to a hall ceiling should find the central unit without anyone typing a
URL into it. The central unit advertises one DNS-SD service of type :data:`SERVICE_TYPE`; a node
browses for it, resolves it (SRV → port, A/AAAA → address, TXT → scheme, path, API version) and
builds the base URL it uploads to. A configured URL, where there is one, takes precedence over this
(the caller decides); discovery is the zero-configuration fallback.

Both sides share this one module: the central unit imports :class:`Advertisement` from here, so the
service type and the TXT keys cannot drift apart between advertiser and browser.

TXT properties (all strings):

``scheme``  ``"http"`` (default) or ``"https"``.
``path``    URL path prefix under which the central API lives, default ``"/"``.
``api``     protocol version, :data:`API_VERSION`; services advertising another version are ignored.

Units: timeouts and windows are in seconds (zeroconf itself counts milliseconds; converted here),
ports are TCP port numbers.

mDNS is link-local multicast (224.0.0.251:5353): it does not cross routers. Where the central unit
sits in another subnet, configure its URL instead.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import ifaddr  # zeroconf's own (hard) dependency: the interface enumeration zeroconf itself uses
from zeroconf import (
    DNSQuestionType,
    InterfaceChoice,
    InterfacesType,
    IPVersion,
    ServiceBrowser,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf.asyncio import AsyncZeroconf

log = logging.getLogger(__name__)

SERVICE_TYPE = "_rftwin._tcp.local."
API_VERSION = "1"
SCHEMES = ("http", "https")
#: After the first service resolves, keep listening this long (s) for others, so that the choice
#: among several central units does not depend on which one happened to answer first.
DEFAULT_SETTLE_S = 0.3
#: Longest a single resolution attempt (SRV/TXT/A query round) may block before other names get a turn (s).
RESOLVE_ATTEMPT_S = 1.0


class DiscoveryError(RuntimeError):
    """No usable central unit was found by mDNS within the timeout."""


@dataclass(frozen=True)
class CentralService:
    """One resolved central unit.

    ``name`` is the DNS-SD instance name without the service type (e.g. ``"rftwin-central-hall1"``),
    ``url`` the base URL without a trailing slash (``"https://192.0.2.7:8443"``,
    ``"http://[fe80::1%25eth0]:8080/rftwin"``), ``properties`` the decoded TXT record.
    """

    name: str
    url: str
    properties: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def host(self) -> str:
        """Address the URL points to (IPv6 without brackets or scope)."""
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        port = urlsplit(self.url).port
        assert port is not None  # always set by from_info
        return port

    @property
    def path(self) -> str:
        return urlsplit(self.url).path or "/"

    @property
    def api_version(self) -> str:
        return self.properties.get("api", API_VERSION)

    @classmethod
    def from_info(cls, info: ServiceInfo) -> CentralService:
        """Build from a resolved zeroconf ServiceInfo; ValueError when it cannot make a usable URL."""
        props = decode_properties(info.properties)
        scheme = props.get("scheme", "http").lower() or "http"
        if scheme not in SCHEMES:
            raise ValueError(f"{info.name}: TXT scheme={scheme!r} is not one of {SCHEMES}")
        path = normalise_path(props.get("path", "/"))
        if not info.port:
            raise ValueError(f"{info.name}: no port in its SRV record")
        # Prefer IPv4: link-local IPv6 needs a zone id that HTTP stacks handle unevenly.
        v4 = info.parsed_scoped_addresses(IPVersion.V4Only)
        v6 = info.parsed_scoped_addresses(IPVersion.V6Only)
        if v4:
            host = v4[0]
        elif v6:
            host = "[" + v6[0].replace("%", "%25") + "]"  # RFC 6874: zone id "%" is escaped in URLs
        else:
            raise ValueError(f"{info.name}: no A/AAAA address resolved for {info.server}")
        url = f"{scheme}://{host}:{info.port}" + ("" if path == "/" else path)
        return cls(name=instance_name(info.name), url=url, properties=props)


def decode_properties(raw: dict[bytes, bytes | None] | dict) -> dict[str, str]:
    """TXT record → str dict; keys lower-cased (DNS-SD keys are case-insensitive), valueless keys → ""."""
    out: dict[str, str] = {}
    for k, v in raw.items():
        key = k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)
        if v is None:
            val = ""
        else:
            val = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
        out[key.lower()] = val
    return out


def normalise_path(path: str) -> str:
    """Empty or "/" → "/"; otherwise one leading slash and no trailing slash ("api/" → "/api")."""
    path = "/" + path.strip().strip("/")
    return path


def instance_name(full_name: str) -> str:
    suffix = "." + SERVICE_TYPE
    return full_name.removesuffix(suffix)


def _dns_label(text: str) -> str:
    label = re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-")
    return label[:63] or "rftwin"


def host_ipv4_addresses() -> list[str]:
    """The host's non-loopback IPv4 addresses (sorted), or ``["127.0.0.1"]`` when it has none.

    The fallback is what a machine with only ``lo`` (a fresh network namespace, a test rig) needs
    for nodes on the same host to reach the central unit.
    """
    addrs = {
        str(ip.ip)
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if ip.is_IPv4 and not ipaddress.IPv4Address(ip.ip).is_loopback
    }
    return sorted(addrs, key=ipaddress.IPv4Address) or ["127.0.0.1"]


# --------------------------------------------------------------------------------------- browsing


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


# ------------------------------------------------------------------------------------ advertising


class Advertisement:
    """Advertise the central unit as :data:`SERVICE_TYPE` while the context is open.

    ``port``: TCP port the central API listens on. ``scheme``: ``"http"`` or ``"https"``. ``path``:
    URL path prefix of the API. ``name``: DNS-SD instance name (default
    ``"rftwin-central-<hostname>"``; at most 63 bytes). ``addresses``: IP addresses to publish
    (default: the host's non-loopback IPv4 addresses, or 127.0.0.1 when there are none).
    ``properties``: extra TXT entries (``scheme``, ``path``, ``api`` are set from the arguments and
    cannot be overridden). ``interfaces``: where zeroconf listens and answers.
    ``allow_name_change``: on a name conflict with another live central unit, let zeroconf pick a
    new name instead of raising ``zeroconf.NonUniqueNameException``.

    Use ``with Advertisement(8080): ...`` from synchronous code (registration probes for name
    conflicts first: about 1–2 s), or ``async with`` inside an event loop (uses AsyncZeroconf; the
    synchronous form refuses to run on an event loop thread). Leaving the context sends goodbye
    packets, so browsers drop the service at once rather than after the record TTL.
    """

    def __init__(
        self,
        port: int,
        *,
        scheme: str = "http",
        path: str = "/",
        name: str | None = None,
        addresses: list[str] | None = None,
        properties: dict[str, str] | None = None,
        interfaces: InterfacesType = InterfaceChoice.All,
        allow_name_change: bool = False,
    ) -> None:
        if not 0 < int(port) < 65536:
            raise ValueError(f"port must be in 1..65535, got {port}")
        scheme = scheme.lower()
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
        hostname = socket.gethostname().split(".")[0]
        self.name = name if name is not None else f"rftwin-central-{hostname}"
        if not self.name or len(self.name.encode()) > 63:
            raise ValueError(f"service instance name must be 1..63 bytes, got {self.name!r}")
        self.port = int(port)
        self.scheme = scheme
        self.path = normalise_path(path)
        self.addresses = list(addresses) if addresses else host_ipv4_addresses()
        for a in self.addresses:
            ipaddress.ip_address(a.split("%")[0])  # ValueError on a malformed address
        txt = {str(k): str(v) for k, v in (properties or {}).items()}
        txt.update(scheme=self.scheme, path=self.path, api=API_VERSION)
        self.properties = txt
        self.interfaces = interfaces
        self.allow_name_change = allow_name_change
        self.info = ServiceInfo(
            SERVICE_TYPE,
            f"{self.name}.{SERVICE_TYPE}",
            port=self.port,
            properties=txt,
            parsed_addresses=self.addresses,
            server=f"{_dns_label(hostname)}.local.",
        )
        self._zc: Zeroconf | None = None
        self._aiozc: AsyncZeroconf | None = None

    @property
    def url(self) -> str:
        """The URL a node will build from this advertisement (first address)."""
        return CentralService.from_info(self.info).url

    # synchronous use
    def start(self) -> Self:
        if self._zc is not None or self._aiozc is not None:
            raise RuntimeError("advertisement already started")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:  # zeroconf would attach to this loop, then block it and fail with EventLoopBlocked
            raise RuntimeError(
                "Advertisement: inside a running event loop use `async with Advertisement(...)`"
            )
        zc = Zeroconf(interfaces=self.interfaces)
        try:
            zc.register_service(self.info, allow_name_change=self.allow_name_change)
        except BaseException:
            zc.close()
            raise
        self._zc = zc
        log.info("advertising %s as %s on %s", self.url, self.info.name, ", ".join(self.addresses))
        return self

    def close(self) -> None:
        zc, self._zc = self._zc, None
        if zc is None:
            return
        try:
            zc.unregister_service(self.info)
        finally:
            zc.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # asyncio use
    async def async_start(self) -> Self:
        if self._zc is not None or self._aiozc is not None:
            raise RuntimeError("advertisement already started")
        aiozc = AsyncZeroconf(interfaces=self.interfaces)
        try:
            await (await aiozc.async_register_service(self.info, allow_name_change=self.allow_name_change))
        except BaseException:
            await aiozc.async_close()
            raise
        self._aiozc = aiozc
        log.info("advertising %s as %s on %s", self.url, self.info.name, ", ".join(self.addresses))
        return self

    async def async_close(self) -> None:
        aiozc, self._aiozc = self._aiozc, None
        if aiozc is None:
            return
        try:
            await (await aiozc.async_unregister_service(self.info))
        finally:
            await aiozc.async_close()

    async def __aenter__(self) -> Self:
        return await self.async_start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.async_close()
