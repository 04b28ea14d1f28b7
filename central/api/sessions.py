"""Dashboard sessions: a browser logs in once with a viewer or operator token and then carries a
cookie instead of the token.

Why a cookie and not the token in the page: ``EventSource`` cannot send an ``Authorization`` header,
and a token kept in page storage is readable by any script that gets into the page. The cookie is
``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page makes the browser send
it) and ``Secure`` when the unit serves https. A session id is 32 random bytes; only its SHA-256 is
kept, in memory: a restart logs every browser out, which costs a login and leaks nothing.

CSRF: requests that change something and are authenticated by the cookie must also carry the
session's CSRF token in ``X-CSRF-Token`` (the page reads it from ``GET /api/v1/session``). A custom
header cannot be sent cross-origin without a CORS preflight, which this server never grants, so
SameSite and the header are two independent locks.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from central.auth import hash_token

COOKIE_NAME = "rftwin_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_TTL_S = 12 * 3600.0  # one shift, then log in again
MAX_SESSIONS = 1000  # beyond it the oldest session is ended (a login flood cannot grow memory)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Session:
    """Who logged in (the credential's name and kind: ``viewer`` or ``operator``), with the hash of
    the token used (a session ends when that token is rotated or removed), and until when."""

    name: str
    role: str
    token_sha256: str
    csrf_token: str
    expires_mono_s: float

    def remaining_s(self, now_mono_s: float) -> float:
        return max(0.0, self.expires_mono_s - now_mono_s)


class SessionStore:
    """Live sessions by the SHA-256 of their id. Thread-safe (dependencies run in the threadpool)."""

    def __init__(self, ttl_s: float = SESSION_TTL_S, max_sessions: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic):  # fmt: skip
        self.ttl_s, self.max_sessions, self.clock = ttl_s, max_sessions, clock
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def create(self, name: str, role: str, token_sha256: str) -> tuple[str, Session]:
        """A new session; returns its id (for the cookie, never stored) and the session."""
        session_id = secrets.token_urlsafe(32)
        session = Session(name, role, token_sha256, secrets.token_urlsafe(24), self.clock() + self.ttl_s)
        with self._lock:
            self._sessions[hash_token(session_id)] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of a cookie value, or None (unknown, ended or expired)."""
        if not session_id or len(session_id) > 128:
            return None
        key = hash_token(session_id)
        with self._lock:
            session = self._sessions.get(key)
            if session is not None and session.expires_mono_s <= self.clock():
                del self._sessions[key]
                return None
        return session

    def end(self, session_id: str | None) -> bool:
        if not session_id:
            return False
        with self._lock:
            return self._sessions.pop(hash_token(session_id), None) is not None



def csrf_ok(session: Session, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(session.csrf_token.encode(), presented.encode())
