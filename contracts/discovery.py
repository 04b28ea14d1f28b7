"""The discovery contract between the central unit and its nodes: the DNS-SD service and its TXT record.

The central unit advertises one DNS-SD service of type :data:`SERVICE_TYPE` (:class:`Advertisement`);
a node browses for it (:func:`node.discovery.discover_central`), resolves it (SRV → port, A/AAAA →
address, TXT → scheme, path, API version) and builds the base URL it uploads to
(:meth:`CentralService.from_info`). Both sides take the service type, the TXT keys and their parsing
from this one module, so advertiser and browser cannot drift apart.

TXT properties (all strings):

``scheme``  ``"http"`` (default) or ``"https"``.
``path``    URL path prefix under which the central API lives, default ``"/"``.
``api``     protocol version, :data:`API_VERSION`; services advertising another version are ignored.

Ports are TCP port numbers. mDNS is link-local multicast (224.0.0.251:5353): it does not cross
routers; where the central unit sits in another subnet, nodes are given its URL instead.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import ifaddr  # zeroconf's own (hard) dependency: the interface enumeration zeroconf itself uses
from zeroconf import InterfaceChoice, InterfacesType, IPVersion, ServiceInfo, Zeroconf
from zeroconf.asyncio import AsyncZeroconf

log = logging.getLogger(__name__)

SERVICE_TYPE = "_rftwin._tcp.local."
API_VERSION = "1"
SCHEMES = ("http", "https")


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
