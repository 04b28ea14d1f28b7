"""Bearer tokens: issued once, stored as SHA-256 only, compared in constant time.

A token is 32 random bytes (URL-safe base64) with a short prefix saying what it is for, so a token
pasted into the wrong place is recognisable. Only ``sha256(token)`` (hex) is ever written down (the
database, the config file); a stolen database does not let anyone write measurements.

Comparison: the presented token is hashed and compared with *every* stored hash of the kind asked
for with :func:`hmac.compare_digest`, so the time taken does not depend on which entry (if any)
matched or how many leading characters agreed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")

PREFIXES = {"node": "rtn_", "integration": "rti_", "operator": "rto_", "viewer": "rtv_", "scraper": "rts_"}
# The named (non-node) credential kinds and their store tables. What each may do: an integration
# reports context; an operator reads everything and acknowledges, learns and runs campaigns; a viewer
# reads (the API, the event stream, the dashboard); a scraper reads /metrics only.
CREDENTIAL_TABLES = {"integration": "integrations", "operator": "operators", "viewer": "viewers",
                     "scraper": "scrapers"}  # fmt: skip


def new_token(kind: str) -> str:
    return PREFIXES[kind] + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None when absent or malformed."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 512:
        return None
    return token


def match_token(token: str, entries: Iterable[tuple[str, T]]) -> T | None:
    """The value of the entry whose stored hash (first item) is the token's hash, or None.

    Every entry is compared (no early exit), each with :func:`hmac.compare_digest`.
    """
    digest = hash_token(token).encode()
    found: T | None = None
    for stored, value in entries:
        if hmac.compare_digest(digest, stored.encode()):
            found = value
    return found
