"""Upload spooled records to the central unit: batched HTTP(S) POST, bearer token, backoff with jitter.

The uplink never deletes anything itself: :meth:`Uplink.send` returns the central unit's
acknowledgement and the caller removes exactly those seqs from the spool. A lost response means the
batch is sent again, which the central unit's idempotency on (node_id, seq) makes harmless.

Where the central unit is: a configured URL, or found by zeroconf (:mod:`node.discovery`) and
found again after repeated failures (it may have moved to another address).

TLS: an ``https`` URL is verified against the pinned site CA (``ca_file``) when one is configured,
otherwise against the system's trust store.
"""

from __future__ import annotations

import json
import logging
import random
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from node.protocol import INGEST_PATH, IngestAck, IngestBatch, Measurement, ProtocolError, SpoolState

log = logging.getLogger(__name__)


class UplinkError(RuntimeError):
    """The batch was not stored (network down, central unit busy or failing, refused); retry later."""


class UplinkAuthError(UplinkError):
    """The central unit refused this node's token (401/403): enrolment or rotation needed."""


@dataclass
class Backoff:
    """Exponential backoff with "equal jitter": half the delay fixed, half random, so that twelve
    nodes cut off by the same outage do not come back in lock-step."""

    initial_s: float
    max_s: float
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay_s(self) -> float:
        d = min(self.max_s, self.initial_s * 2.0**self.attempt)
        self.attempt = min(self.attempt + 1, 60)
        return d / 2.0 + self.rng.uniform(0.0, d / 2.0)

    def reset(self) -> None:
        self.attempt = 0


class CentralLocator:
    """The central unit's base URL: fixed, or discovered by zeroconf on first use and after
    :meth:`invalidate`."""

    def __init__(self, url: str | None, discovery_timeout_s: float = 5.0,
                 discover: Callable[[float], str] | None = None):  # fmt: skip
        self._fixed = url
        self._url = url
        self._timeout_s = discovery_timeout_s
        self._discover = discover or _zeroconf_discover

    @property
    def discovers(self) -> bool:
        return self._fixed is None

    def url(self) -> str:
        if self._url is None:
            try:
                self._url = self._discover(self._timeout_s).rstrip("/")
            except Exception as e:  # discovery is best effort: the caller backs off and retries
                raise UplinkError(f"central unit not found by zeroconf: {e}") from e
            log.info("central unit discovered at %s", self._url)
        return self._url

    def invalidate(self) -> None:
        if self._fixed is None:
            self._url = None


def _zeroconf_discover(timeout_s: float) -> str:
    from node.discovery import discover_central

    return discover_central(timeout_s).url


def tls_verify(ca_file: Path | None) -> ssl.SSLContext | bool:
    """httpx's ``verify``: only the pinned site CA when one is configured, else the system trust store."""
    return ssl.create_default_context(cafile=str(ca_file)) if ca_file else True


class Uplink:
    def __init__(self, node_id: str, token: str, locator: CentralLocator, *, ca_file: Path | None = None,
                 timeout_s: float = 5.0, transport: httpx.BaseTransport | None = None):  # fmt: skip
        self.node_id = node_id
        self.locator = locator
        verify = tls_verify(ca_file)
        self._client = httpx.Client(
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                     "User-Agent": f"rftwin-node/{node_id}"},
            timeout=timeout_s, verify=verify, transport=transport,
        )  # fmt: skip

    def send(self, records: Sequence[Measurement], spool: SpoolState | None = None) -> IngestAck:
        """POST one batch (with ``spool`` in its header when given); returns the acknowledgement
        restricted to the seqs actually sent."""
        body = json.dumps(IngestBatch(self.node_id, tuple(records), spool=spool).to_dict())
        url = self.locator.url() + INGEST_PATH
        try:
            resp = self._client.post(url, content=body)
        except httpx.HTTPError as e:
            raise UplinkError(f"POST {url}: {type(e).__name__}: {e}") from e
        if resp.status_code in (401, 403):
            raise UplinkAuthError(f"POST {url}: {resp.status_code}: {_reason(resp)}")
        if resp.status_code != 200:
            raise UplinkError(f"POST {url}: {resp.status_code}: {_reason(resp)}")
        try:
            ack = IngestAck.from_dict(resp.json())
        except (ValueError, ProtocolError) as e:
            raise UplinkError(f"POST {url}: unreadable acknowledgement: {e}") from e
        sent = {m.seq for m in records}
        return IngestAck(tuple(s for s in ack.acked if s in sent), ack.duplicates)

    def close(self) -> None:
        self._client.close()


def _reason(resp: httpx.Response) -> str:
    try:
        detail = resp.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail if detail is not None else resp.text[:200] or resp.reason_phrase)


def drain_spool(spool_path: Path, node_id: str, token: str, url: str, batch_records: int = 500) -> int:
    """Send everything a stopped agent left in its spool, with the agent's own spool and uplink code (what
    its next start does first); returns the number of records acknowledged. For operators moving a
    board, and for tests and benchmarks that must account for every reading."""
    from node.spool import Spool

    spool, up = Spool(spool_path), Uplink(node_id, token, CentralLocator(url))
    sent = 0
    try:
        while batch := spool.pending(batch_records):
            acked = list(up.send(batch).acked)
            spool.ack(acked)
            sent += len(acked)
    finally:
        spool.close()
        up.close()
    return sent
