"""Alarm transitions POSTed to the plant's systems (the RAN scheduler, a pager), signed and retried.

The store writes each transition ("raised", "updated" when what the interference is or the sub-bands
to avoid changed, "cleared", "acknowledged") into its outbox in the alarm's
own transaction (:mod:`central.store.webhooks`); this thread delivers it. Per URL, events go out in
order, one at a time: a receiver never sees an alarm cleared before it was raised. A POST that fails
(no connection, a timeout, anything but 2xx) is retried after ``backoff_initial_s``, doubling up to
``backoff_max_s``, for as long as it takes; the outbox is on disk, so a restart resumes where the last
run stopped, and an event may then arrive twice (the header ``X-Rftwin-Delivery`` is its id: receivers
drop repeats).

The request::

    POST <url>
    Content-Type: application/json
    X-Rftwin-Event: raised | updated | cleared | acknowledged
    X-Rftwin-Delivery: <outbox id>
    X-Rftwin-Timestamp: <unix seconds of this attempt>
    X-Rftwin-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>

    {"event": "raised", "alarm": {…as GET /api/v1/alarms…}, "t_ns": …}

The timestamp is inside the signature, so a receiver can refuse a replayed request (e.g. older than
five minutes) as well as a forged one: :func:`verify_signature` is the check, for receivers in Python.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time

import httpx

from central.config import WebhookConfig
from central.store.base import now_ns

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Rftwin-Signature"
TIMESTAMP_HEADER = "X-Rftwin-Timestamp"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, headers, body: bytes, max_age_s: float = 300.0, now_s: float | None = None) -> bool:
    """A receiver's check: the signature matches and the timestamp is at most ``max_age_s`` old."""
    ts, sig = headers.get(TIMESTAMP_HEADER, ""), headers.get(SIGNATURE_HEADER, "")
    try:
        age = (time.time() if now_s is None else now_s) - int(ts)
    except ValueError:
        return False
    return abs(age) <= max_age_s and hmac.compare_digest(sig, signature(secret, ts, body))


class WebhookDispatcher:
    """Delivers the store's webhook outbox in a daemon thread: ``start()``, ``stop()``, ``wake()``."""

    def __init__(self, store, config: WebhookConfig, poll_s: float = 0.5):
        self.store, self.config, self.poll_s = store, config, poll_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.delivered = self.failed = 0

    def start(self) -> WebhookDispatcher:
        self._thread = threading.Thread(target=self._run, name="rftwin-webhooks", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """Look at the outbox now (an alarm just changed), not at the next poll."""
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        with httpx.Client(timeout=self.config.timeout_s) as client:
            while not self._stop.is_set():
                try:
                    due = self.store.due_webhooks()
                except Exception:  # noqa: BLE001 - a store that cannot be read now may be readable later
                    log.exception("webhook outbox unreadable")
                    due = []
                for d in due:
                    if self._stop.is_set():
                        break
                    self._deliver(client, d)
                self._wake.wait(self.poll_s)
                self._wake.clear()

    def _deliver(self, client: httpx.Client, d) -> None:
        body = d.body.encode()
        ts = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Rftwin-Event": d.event, "X-Rftwin-Delivery": str(d.id),
                   TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: signature(self.config.secret, ts, body)}  # fmt: skip
        try:
            r = client.post(d.url, content=body, headers=headers)
            error = None if 200 <= r.status_code < 300 else f"HTTP {r.status_code}: {r.text[:200]}"
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"
        try:
            if error is None:
                self.store.webhook_delivered(d.id)
                self.delivered += 1
                log.info("webhook %s %d delivered to %s", d.event, d.id, d.url)
                return
            wait_s = min(self.config.backoff_max_s, self.config.backoff_initial_s * 2 ** d.attempts)
            self.store.webhook_failed(d.id, error, now_ns() + int(wait_s * 1e9))
            self.failed += 1
            log.warning("webhook %s %d to %s failed (attempt %d: %s); retry in %.1f s", d.event, d.id, d.url,
                        d.attempts + 1, error, wait_s)  # fmt: skip
        except Exception:  # noqa: BLE001 - the row stays due: it is tried again
            log.exception("webhook %d: recording the outcome failed", d.id)
