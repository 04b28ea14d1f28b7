"""In-process publish/subscribe for live updates (snapshots, alarms, node health) to the dashboard.

The detection loop runs in a worker thread; dashboard clients are asyncio coroutines (SSE). So a
publisher calls :meth:`EventBus.publish` from any thread and each subscriber gets its own bounded
asyncio queue, fed through its loop's ``call_soon_threadsafe``. A slow client loses its *oldest*
queued events (never blocks the detector); the latest state of each kind is kept so a client that
connects mid-alarm is brought up to date at once.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

KINDS = ("snapshot", "alarm", "nodes")


@dataclass(frozen=True)
class Event:
    id: int
    kind: str  # one of KINDS
    data: dict

    def sse(self) -> str:
        """The event in Server-Sent Events wire format."""
        return f"id: {self.id}\nevent: {self.kind}\ndata: {json.dumps(self.data, separators=(',', ':'))}\n\n"


class EventBus:
    def __init__(self, queue_size: int = 256):
        self._queue_size = queue_size
        self._subscribers: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._latest: dict[str, Event] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def publish(self, kind: str, data: dict) -> Event:
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        with self._lock:
            event = Event(next(self._ids), kind, data)
            self._latest[kind] = event
            subscribers = list(self._subscribers.values())
        for loop, queue in subscribers:
            try:
                loop.call_soon_threadsafe(_put_dropping_oldest, queue, event)
            except RuntimeError:
                pass  # that client's loop is closed; it unsubscribes on its way out
        return event

    def latest(self) -> list[Event]:
        with self._lock:
            return sorted(self._latest.values(), key=lambda e: e.id)

    async def subscribe(self) -> AsyncIterator[Event]:
        """Yield the latest state of every kind, then live events, until the consumer stops."""
        queue: asyncio.Queue = asyncio.Queue(self._queue_size)
        key = id(queue)
        with self._lock:
            self._subscribers[key] = (asyncio.get_running_loop(), queue)
            backlog = sorted(self._latest.values(), key=lambda e: e.id)
        try:
            seen = 0
            for event in backlog:
                seen = event.id
                yield event
            while True:
                event = await queue.get()
                if event.id > seen:
                    yield event
        finally:
            with self._lock:
                self._subscribers.pop(key, None)

    @property
    def num_subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)


def _put_dropping_oldest(queue: asyncio.Queue, event: Event) -> None:
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(event)
