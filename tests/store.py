"""Read a running relay's queue from a test, through the queue's own interface.

Process tests (a real `relay serve`) are synchronous; :class:`Store` keeps an
opened :class:`~relay.queue.Queue` on an event loop of its own thread and offers
blocking reads, so the same test runs against either backend's URL and never
reads a backend's tables.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from relay.queue import EventFilter, Queue, StoredEvent, open_queue
from relay.queue.records import DeliveryView

T = TypeVar("T")


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.queue: Queue = open_queue(url)
        self.call(self.queue.open)

    def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        async def run() -> T:
            return await fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)

    def close(self) -> None:
        self.call(self.queue.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)

    def events(self, limit: int = 10_000, **filters: Any) -> list[StoredEvent]:
        page = self.call(lambda: self.queue.events(EventFilter(**filters), limit))
        return list(page.events)

    def event(self, event_id: str) -> StoredEvent | None:
        return self.call(lambda: self.queue.event(event_id))

    def deliveries(self) -> list[DeliveryView]:
        """Every delivery (a waiting group item stands for its future delivery)."""
        return [d for e in self.events() for d in e.deliveries]

    def states(self, destination: str | None = None) -> list[str]:
        """The states of every delivery (of ``destination``), sorted."""
        return sorted(
            str(d.state)
            for d in self.deliveries()
            if destination is None or d.destination == destination
        )


@contextmanager
def store(url_or_db: str | Path) -> Iterator[Store]:
    """A :class:`Store` on a queue URL, or on a SQLite file path."""
    url = url_or_db if isinstance(url_or_db, str) else f"sqlite:///{url_or_db}"
    s = Store(url)
    try:
        yield s
    finally:
        s.close()


async def deliveries_of(queue: Queue) -> list[DeliveryView]:
    """Every delivery stored in ``queue`` (for tests running the app in-process)."""
    page = await queue.events(EventFilter(), limit=10_000)
    return [d for e in page.events for d in e.deliveries]
