"""The webhook outbox: alarm transitions waiting to be POSTed to the configured URLs.

An event is written in the same transaction as the alarm change it reports (one row per URL), so a
transition is never lost between the alarm's commit and the POST, nor by a restart: the dispatcher
(:mod:`central.webhooks`) delivers the rows, oldest first per URL, and marks each delivered or
schedules its retry. Delivered rows are kept for the record (the retention purge removes them with
the measurements).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from central.store.base import StoreBase, now_ns


@dataclass(frozen=True)
class WebhookDelivery:
    id: int
    url: str
    event: str  # "raised", "updated" (class or sub-bands to avoid changed), "cleared", "acknowledged"
    body: str  # the JSON document, exactly as signed and sent
    attempts: int


class WebhookQueries(StoreBase):
    webhook_urls: tuple[str, ...] = ()  # set by the service from [webhooks] urls

    def set_webhook_urls(self, urls) -> None:
        self.webhook_urls = tuple(urls)

    def _enqueue_event(self, c: sqlite3.Connection, event: str, document: dict) -> None:
        """Inside the caller's write transaction: one outbox row per configured URL."""
        if not self.webhook_urls:
            return
        t = now_ns()
        body = json.dumps({"event": event, **document, "t_ns": t}, separators=(",", ":"), allow_nan=False)
        c.executemany("INSERT INTO webhook_outbox (url, event, body, created_ns, attempts, next_ns) VALUES (?, ?, ?, ?, 0, ?)",
                      [(url, event, body, t, t) for url in self.webhook_urls])  # fmt: skip

    def due_webhooks(self, now: int | None = None, limit: int = 100) -> list[WebhookDelivery]:
        """The oldest undelivered event of each configured URL, if its retry time has come (later events of a
        URL wait for it: a receiver sees "raised" before "cleared")."""
        now = now_ns() if now is None else now
        marks = ",".join("?" * len(self.webhook_urls)) or "NULL"
        rows = self._r().execute(
            f"SELECT o.id, o.url, o.event, o.body, o.attempts FROM webhook_outbox o JOIN (SELECT url, min(id) AS id FROM "
            f"webhook_outbox WHERE delivered_ns IS NULL AND url IN ({marks}) GROUP BY url) h ON o.id = h.id "
            f"WHERE o.next_ns <= ? ORDER BY o.id LIMIT ?", [*self.webhook_urls, now, limit]).fetchall()  # fmt: skip
        return [WebhookDelivery(*r) for r in rows]

    def webhook_delivered(self, delivery_id: int, t_ns: int | None = None) -> None:
        with self._write() as c:
            c.execute("UPDATE webhook_outbox SET delivered_ns = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?",
                      [now_ns() if t_ns is None else t_ns, delivery_id])  # fmt: skip

    def webhook_failed(self, delivery_id: int, error: str, retry_ns: int) -> None:
        with self._write() as c:
            c.execute("UPDATE webhook_outbox SET attempts = attempts + 1, next_ns = ?, last_error = ? WHERE id = ?",
                      [retry_ns, error[:500], delivery_id])  # fmt: skip

    def webhook_backlog(self) -> dict[str, int]:
        """Undelivered events per URL (every URL ever configured)."""
        rows = self._r().execute("SELECT url, count(*) FROM webhook_outbox WHERE delivered_ns IS NULL GROUP BY url").fetchall()
        return dict(rows)
