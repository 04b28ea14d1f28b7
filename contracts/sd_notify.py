"""systemd's notify protocol over the raw socket: READY=1, STATUS=…, WATCHDOG=1, STOPPING=1.

Why the raw socket and not a library: it is one datagram per message and the protocol is stable;
the node image stays small. Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op, so the
agent runs the same way from a shell.

``$WATCHDOG_USEC`` (set by systemd when the unit has ``WatchdogSec=``) tells how often systemd
expects a ping; :func:`watchdog_interval_s` returns it in seconds (None when there is no watchdog).
"""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, address: str | None = None):
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._sock: socket.socket | None = None
        self._address = None
        if address:
            # A leading '@' is an abstract-namespace socket: the name starts with a NUL byte.
            self._address = "\0" + address[1:] if address.startswith("@") else address
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, **fields: str | int) -> None:
        """Send ``KEY=value`` lines, e.g. ``notify(READY=1, STATUS="measuring")``; never raises."""
        if self._sock is None:
            return
        msg = "\n".join(f"{k}={str(v).replace(chr(10), ' ')}" for k, v in fields.items())
        try:
            self._sock.sendto(msg.encode(), self._address)
        except OSError:
            pass  # systemd gone (shutdown) or socket full: nothing useful to do about it

    def ready(self, status: str) -> None:
        self.notify(READY=1, STATUS=status)

    def status(self, status: str) -> None:
        self.notify(STATUS=status)

    def watchdog(self) -> None:
        self.notify(WATCHDOG=1)

    def stopping(self) -> None:
        self.notify(STOPPING=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval_s(environ=os.environ) -> float | None:
    """systemd's watchdog timeout in seconds, if this process is the one it watches."""
    usec = environ.get("WATCHDOG_USEC")
    pid = environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1e6 if int(usec) > 0 else None
    except ValueError:
        return None
