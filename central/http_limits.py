"""Slow and greedy clients, at the HTTP server: a request-head timeout, a request-body timeout and a
connection cap for the central unit's uvicorn (``[limits] header_timeout_s``, ``body_timeout_s``,
``max_connections``).

uvicorn itself closes an idle keep-alive connection (``timeout_keep_alive``) and can answer 503 beyond
``limit_concurrency`` *requests*, but never times out a request head: a client that opens a socket and
sends nothing, or one byte a second, holds it forever (slowloris), and enough of them exhaust the
process. Hence, from :func:`uvicorn_limits` (what :mod:`central.service` passes to ``uvicorn.Config``):

- **Header timeout** (:class:`SlowClientGuard`, mixed into the HTTP protocol class uvicorn would pick
  itself, httptools or h11): a connection whose request head is not complete ``header_timeout_s``
  after it opened is closed. Between requests on a keep-alive connection the clock starts at the
  first byte of the next head (until then uvicorn's own keep-alive timeout governs an idle
  connection). Once a head is complete the clock stops: a long response (the SSE event stream) or a
  slow handler is never cut by it.
- **Body timeout** (:class:`BodyDeadline`, an ASGI middleware around the app): a request body not
  complete ``body_timeout_s`` after its head answers 408 (problem+json, ``reason: timeout``,
  ``Connection: close``), and the app sees the client as disconnected. A route that does not read
  the body is not affected, nor is anything after the body is complete.
- **Connection cap**: beyond ``max_connections`` open connections a new one gets a 503 (problem+json,
  ``Retry-After``) and is closed at once, before anything of it is read, so that a flood of sockets
  costs a write and a close each, not a parser and a timer.

Each kind of refusal logs one warning per minute at most, with the count since the last.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, ClassVar

from central.config import LimitsConfig

log = logging.getLogger("rftwin.central.http")

REPORT_PERIOD_S = 60.0


class _Tally:
    """Counts one kind of refusal; logs the first at once, then at most one line per period."""

    def __init__(self, what: str, period_s: float = REPORT_PERIOD_S):
        self.what = what
        self.period_s = period_s
        self.count = 0
        self.total = 0
        self._last = -float("inf")

    def note(self) -> None:
        self.count += 1
        self.total += 1
        now = time.monotonic()
        if now - self._last >= self.period_s:
            log.warning("%s (%d since the last report, %d in all)", self.what, self.count, self.total)
            self.count = 0
            self._last = now


def _problem_bytes(status: int, title: str, detail: str, reason: str, headers: dict[str, str]) -> bytes:
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail,
                       "reason": reason}, separators=(",", ":")).encode()  # fmt: skip
    head = [f"HTTP/1.1 {status} {title}", "content-type: application/problem+json",
            f"content-length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class SlowClientGuard:
    """Mixin for uvicorn's HTTP protocols (``HttpToolsProtocol``, ``H11Protocol``): the header
    timeout and the connection cap. Uses only what both have: ``transport``, ``cycle`` (the current
    request's RequestResponseCycle, a new one per request head), ``server_state.connections``, ``loop``.
    Configured by class attributes (uvicorn instantiates the class itself): see :func:`protocol_class`."""

    header_timeout_s: ClassVar[float] = 10.0
    max_connections: ClassVar[int] = 500
    slow_heads: ClassVar[_Tally]
    over_cap: ClassVar[_Tally]

    _header_timer: asyncio.TimerHandle | None = None
    _refused: bool = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        connections = self.server_state.connections  # type: ignore[attr-defined]
        if len(connections) >= self.max_connections:
            self._refused = True
            self.over_cap.note()
            transport.write(_problem_bytes(503, "Service Unavailable", f"too many open connections (at most "
                                           f"{self.max_connections}): retry later", "unavailable",
                                           {"retry-after": "1", "connection": "close"}))  # fmt: skip
            transport.close()
            return
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self._cancel_header_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        before = self.cycle  # type: ignore[has-type]
        if self._header_timer is None and (before is None or before.response_complete):
            self._arm_header_timer()  # the first byte of the next request on a keep-alive connection
        super().data_received(data)  # type: ignore[misc]
        # A head is complete once the protocol has made its cycle (or handed the socket to websockets).
        if self.cycle is not before or self.transport.get_protocol() is not self:  # type: ignore[has-type]
            self._cancel_header_timer()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        loop = self.loop  # type: ignore[attr-defined]
        self._header_timer = loop.call_later(self.header_timeout_s, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        transport = self.transport  # type: ignore[has-type]
        if transport is not None and not transport.is_closing():
            self.slow_heads.note()
            transport.close()


def protocol_class(limits: LimitsConfig, base: type[asyncio.Protocol] | None = None) -> type[asyncio.Protocol]:
    """The HTTP protocol uvicorn would choose (httptools if installed, else h11), or ``base``, with
    :class:`SlowClientGuard` mixed in and configured from ``limits``."""
    if base is None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        base = AutoHTTPProtocol
    attrs: dict[str, Any] = {
        "header_timeout_s": float(limits.header_timeout_s),
        "max_connections": int(limits.max_connections),
        "slow_heads": _Tally(f"closed connections whose request head took longer than "
                             f"{limits.header_timeout_s:g} s"),  # fmt: skip
        "over_cap": _Tally(f"refused connections beyond max_connections = {limits.max_connections} (503)"),
        "__module__": __name__,
    }
    return type(f"Guarded{base.__name__}", (SlowClientGuard, base), attrs)


class BodyDeadline:
    """ASGI middleware: the request body must be complete ``timeout_s`` after the request reached
    the app, or the answer is 408 and the app's ``receive`` says the client disconnected (what it
    sends after that is dropped, an exception it raises for it is swallowed)."""

    def __init__(self, app: Any, timeout_s: float):
        self.app = app
        self.timeout_s = float(timeout_s)
        self.timeouts = _Tally(f"answered 408 to request bodies not complete within {self.timeout_s:g} s")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        body_done = timed_out = started = False

        async def timed_receive() -> dict:
            nonlocal body_done, timed_out
            if timed_out:
                return {"type": "http.disconnect"}
            if body_done:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):  # a message already there is returned, even late
                    message = await receive()
            except TimeoutError:
                timed_out = True
                self.timeouts.note()
                self._count(scope)
                if not started:
                    await self._answer_408(send)
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal started
            if timed_out:
                return  # answered with the 408 already
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, timed_receive, guarded_send)
        except Exception as e:
            if not timed_out:
                raise
            log.debug("after a body timeout on %s: %s: %s", scope.get("path"), type(e).__name__, e)

    async def _answer_408(self, send: Any) -> None:
        body = json.dumps({"type": "about:blank", "title": "Request Timeout", "status": 408,
                           "detail": f"request body not complete within {self.timeout_s:g} s", "reason": "timeout"},
                          separators=(",", ":")).encode()  # fmt: skip
        await send({"type": "http.response.start", "status": 408,
                    "headers": [(b"content-type", b"application/problem+json"),
                                (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def _count(self, scope: dict) -> None:
        """As a refusal in the metrics (``rftwin_rejected_requests_total{reason="timeout"}``)."""
        state = getattr(getattr(self.app, "state", None), "rftwin", None)
        metrics = getattr(state, "metrics", None)
        if metrics is None:
            return
        from central.api.state import API_PREFIX

        route = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        try:
            metrics.reject(path.removeprefix(API_PREFIX) or "/", "timeout")
        except Exception:  # noqa: BLE001 - counting must never break the answer
            log.debug("could not count a body timeout", exc_info=True)


def uvicorn_limits(app: Any, limits: LimitsConfig, base: type[asyncio.Protocol] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config``: the app behind :class:`BodyDeadline` and the
    guarded HTTP protocol class (``http=``)."""
    return {"app": BodyDeadline(app, limits.body_timeout_s), "http": protocol_class(limits, base)}
