"""Logging set-up for the services: structured records to the systemd journal, plain lines elsewhere.

:func:`setup_logging` picks one of three outputs:

- **journal** (the process runs under systemd and its stderr is the journal, ``$JOURNAL_STREAM``):
  every record is sent over journald's native socket (``/run/systemd/journal/socket``, one datagram,
  the same wire format as ``sd_journal_send``, no python-systemd needed) as fields: ``MESSAGE``,
  ``PRIORITY``, ``SYSLOG_IDENTIFIER``, ``CODE_FILE``/``CODE_LINE``/``CODE_FUNC``, ``LOGGER``,
  ``THREAD_NAME``, ``EXCEPTION`` (the traceback, also in ``MESSAGE``), the service's fixed fields
  (``RFTWIN_NODE_ID``, ``RFTWIN_SITE``, …) and per-record ones (``log.info(..., extra={"journal":
  {"ALARM_ID": 3}})``). ``journalctl -u rftwin-node -o verbose`` shows them; ``journalctl
  LOGGER=rftwin.uplink`` filters on them.
- **prefix** (stderr is the journal but the native socket is not reachable, or a record does not fit
  one datagram): one line per record on stderr, ``<N>logger: message key=value …`` where ``<N>`` is the
  syslog priority that journald reads with ``SyslogLevelPrefix=yes`` (its default). No timestamp: the
  journal adds one.
- **plain** (a terminal, a test, a pipe): ``time LEVEL logger: message`` on stderr, as before.

``$RFTWIN_LOG_FORMAT`` (``journal`` | ``prefix`` | ``plain``) forces a choice.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
import traceback
from collections.abc import Mapping
from typing import TextIO

JOURNAL_SOCKET = "/run/systemd/journal/socket"
FORMAT_ENV = "RFTWIN_LOG_FORMAT"
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FIELD_RE = re.compile(r"^[A-Z0-9][A-Z0-9_]{0,63}$")

# logging level -> syslog priority (journald's PRIORITY): CRITICAL 2, ERROR 3, WARNING 4, INFO 6, DEBUG 7.
SYSLOG_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


def syslog_priority(levelno: int) -> int:
    for level in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= level:
            return SYSLOG_PRIORITY[level]
    return 7


def journal_stream_is(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """True when ``stream`` is the journal stream systemd connected (``$JOURNAL_STREAM`` = ``dev:inode``)."""
    value = environ.get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError, AttributeError):  # no fileno (a StringIO), closed, garbage in the variable
        return False


def _record_fields(record: logging.LogRecord) -> dict[str, object]:
    extra = getattr(record, "journal", None)
    return {k.upper(): v for k, v in extra.items()} if isinstance(extra, Mapping) else {}


def _kv(fields: Mapping[str, object]) -> str:
    return "".join(f" {k.lower()}={_quote(v)}" for k, v in fields.items())


def _quote(v: object) -> str:
    s = str(v)
    return s if s and not any(c in s for c in ' "=\n') else '"' + s.replace('"', '\\"').replace("\n", "\\n") + '"'


class PrefixFormatter(logging.Formatter):
    """``<N>logger: message key=value …``; a traceback follows on lines of their own, each with the prefix."""

    def format(self, record: logging.LogRecord) -> str:
        prio = f"<{syslog_priority(record.levelno)}>"
        text = f"{record.name}: {record.getMessage()}{_kv(_record_fields(record))}"
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        # journald splits the stream at newlines: every line carries the priority.
        return "\n".join(prio + line for line in text.splitlines() or [""])


def encode_journal_fields(fields: Mapping[str, object]) -> bytes:
    """journald's native wire format: ``KEY=value\\n``, or ``KEY\\n`` + 64-bit LE length + bytes + ``\\n``
    for values that contain a newline."""
    out = bytearray()
    for key, value in fields.items():
        if not FIELD_RE.match(key):
            continue  # journald drops (or rejects) such fields: skip them here
        data = value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + len(data).to_bytes(8, "little") + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


class JournalHandler(logging.Handler):
    """Sends each record to journald as structured fields; falls back to a ``<N>`` line on ``fallback``."""

    def __init__(self, identifier: str, fields: Mapping[str, object] | None = None,
                 socket_path: str = JOURNAL_SOCKET, fallback: TextIO | None = None):  # fmt: skip
        super().__init__()
        self.identifier = identifier
        self.fields = {k.upper(): v for k, v in (fields or {}).items()}
        self.socket_path = socket_path
        self.fallback = fallback if fallback is not None else sys.stderr
        self._prefix = PrefixFormatter()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def fields_of(self, record: logging.LogRecord) -> dict[str, object]:
        msg = record.getMessage()
        fields: dict[str, object] = {"PRIORITY": syslog_priority(record.levelno), "SYSLOG_IDENTIFIER": self.identifier,
                                     "LOGGER": record.name, "THREAD_NAME": record.threadName,
                                     "CODE_FILE": record.pathname, "CODE_LINE": record.lineno,
                                     "CODE_FUNC": record.funcName}  # fmt: skip
        if record.exc_info:
            tb = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            fields["EXCEPTION"] = tb
            msg = f"{msg}\n{tb}"
        fields.update(self.fields)
        fields.update(_record_fields(record))
        fields["MESSAGE"] = msg
        return fields

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._sock.sendto(encode_journal_fields(self.fields_of(record)), self.socket_path)
        except OSError:  # journald restarting, or a record larger than one datagram: keep it anyway
            try:
                self.fallback.write(self._prefix.format(record) + "\n")
                self.fallback.flush()
            except Exception:  # noqa: BLE001 - logging must never raise
                self.handleError(record)
        except Exception:  # noqa: BLE001
            self.handleError(record)

    def close(self) -> None:
        self._sock.close()
        super().close()


def choose_format(stream: TextIO = sys.stderr, environ: Mapping[str, str] = os.environ,
                  socket_path: str = JOURNAL_SOCKET) -> str:  # fmt: skip
    forced = environ.get(FORMAT_ENV, "").strip().lower()
    if forced in ("journal", "prefix", "plain"):
        return forced
    if not journal_stream_is(stream, environ):
        return "plain"
    return "journal" if os.path.exists(socket_path) else "prefix"


def setup_logging(identifier: str, level: int | str = logging.INFO, fields: Mapping[str, object] | None = None,
                  *, stream: TextIO | None = None, environ: Mapping[str, str] = os.environ,
                  socket_path: str = JOURNAL_SOCKET, force: bool = False) -> str:  # fmt: skip
    """Configure the root logger for a service; returns the format chosen (``"kept"`` if nothing was done).

    Like ``logging.basicConfig``: a root logger that already has handlers (a test runner's, an embedding
    program's) is left alone unless ``force``.

    ``identifier`` is the journal's ``SYSLOG_IDENTIFIER`` (``rftwin-node``); ``fields`` are added to every
    record (``{"RFTWIN_NODE_ID": "su01"}``; in the other formats they are left out, as the unit says who
    is logging)."""
    root = logging.getLogger()
    if root.handlers and not force:
        return "kept"
    stream = stream if stream is not None else sys.stderr
    kind = choose_format(stream, environ, socket_path)
    if kind == "journal":
        handler: logging.Handler = JournalHandler(identifier, fields, socket_path, stream)
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(PrefixFormatter() if kind == "prefix" else logging.Formatter(PLAIN_FORMAT))
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return kind
