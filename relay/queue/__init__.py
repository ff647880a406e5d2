"""The durable queue: where accepted events and their deliveries live until done.

:class:`Queue` is the interface the receiver, the workers and `relay dlq` use;
a backend is chosen by the URL scheme (``sqlite:///path`` embedded, default;
``postgresql://...`` shared by several instances), its driver imported only
when used. Retrying is the queue's job: a failed attempt sets a new
``available_at``, so a restart loses nothing.
"""

from __future__ import annotations

import abc
import os
import socket
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..errors import QueueUnavailable, RelayError
from ..model import DeadLetter, Leased, NewEvent


@dataclass(frozen=True, slots=True)
class Accepted:
    """What the queue did with one event: stored, or a duplicate of ``event_id``."""

    event_id: str
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Depth:
    """Queue depth per (destination, state) and the age of the oldest pending delivery."""

    counts: dict[tuple[str, str], int]
    oldest_pending_age: dict[str, float]
    open_groups: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """An attempt's result as the queue records it: the delivery's next state."""

    delivery_id: str
    state: str  # pending (retry at available_at) | succeeded | dead
    available_at: float
    error: str | None
    status_code: int | None
    now: float

    def params(self, owner: str) -> dict[str, Any]:
        """Named parameters of both backends' SQL_SETTLE."""
        return {
            "id": self.delivery_id,
            "state": self.state,
            "available_at": self.available_at,
            "error": self.error,
            "status": self.status_code,
            "now": self.now,
            "owner": owner,
        }


def owner_alive(owner: str) -> bool:
    """Whether a lease owner (see :func:`instance_id`) on this host still runs.

    Owners on other hosts are assumed alive: their leases simply expire.
    """
    host, _, rest = owner.partition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(rest.partition(":")[0]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def event_name(body: bytes) -> str:
    """The event name inside a stored body, for `relay dlq list`."""
    try:
        return str(msgspec.json.decode(body).get("event_name", ""))
    except (msgspec.DecodeError, AttributeError):
        return ""


def instance_id() -> str:
    """Who holds a lease: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


#: Items per grouped delivery when the route that made them has left the config.
DEFAULT_MAX_EVENTS = 500


class Queue(abc.ABC):
    """A backend: every method is one short transaction."""

    owner: str

    @property
    def schema_version(self) -> int:
        """The schema version ``open()`` brought the store to (``relay migrate`` prints it).

        By default the number of ``MIGRATIONS`` of the backend's module, all applied at open.
        """
        return len(getattr(sys.modules[type(self).__module__], "MIGRATIONS", ()))

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish pending writes and disconnect."""

    @abc.abstractmethod
    async def enqueue(
        self, events: Sequence[NewEvent], dedupe_window: float, now: float
    ) -> list[Accepted]:
        """Commit events and their deliveries atomically; skip bodies seen in the window."""

    @abc.abstractmethod
    async def lease(
        self, destination: str, limit: int, lease_seconds: float, now: float
    ) -> list[Leased]:
        """Take up to ``limit`` due deliveries; they come back if not settled in time."""

    @abc.abstractmethod
    async def settle(self, outcome: Outcome) -> None:
        """Record an attempt's outcome, only if the delivery is still pending and ours."""

    async def succeed(self, delivery_id: str, status_code: int | None, now: float) -> None:
        """Mark a leased delivery done."""
        await self.settle(Outcome(delivery_id, "succeeded", now, None, status_code, now))

    async def retry(
        self, delivery_id: str, available_at: float, error: str, status_code: int | None, now: float
    ) -> None:
        """Put a leased delivery back, due at ``available_at``."""
        await self.settle(Outcome(delivery_id, "pending", available_at, error, status_code, now))

    async def bury(self, delivery_id: str, error: str, status_code: int | None, now: float) -> None:
        """Make a leased delivery a dead letter (kept, replayable)."""
        await self.settle(Outcome(delivery_id, "dead", now, error, status_code, now))

    @abc.abstractmethod
    async def dead_letters(
        self, destination: str | None = None, limit: int = 1000
    ) -> list[DeadLetter]:
        """Dead deliveries, oldest first."""

    @abc.abstractmethod
    async def replay(self, ids: Sequence[str] | None, destination: str | None, now: float) -> int:
        """Dead deliveries back to pending with a fresh attempt budget; ``ids=None`` = all."""

    @abc.abstractmethod
    async def flush_groups(
        self, destination: str, max_events: Mapping[str, int], now: float
    ) -> list[tuple[str, int]]:
        """Turn every due group of ``destination`` into deliveries, atomically.

        Each open item goes into exactly one delivery of at most ``max_events[route]``
        items (:data:`DEFAULT_MAX_EVENTS` for a route no longer configured); the group
        then waits for new items. Returns (group key, item count) per delivery made.
        """

    @abc.abstractmethod
    async def next_due(self, destination: str) -> float | None:
        """When the earliest pending delivery of ``destination`` becomes due."""

    @abc.abstractmethod
    async def depth(self, now: float) -> Depth:
        """Counts for metrics."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise :class:`QueueUnavailable` unless a write would succeed now."""

    def on_new_work(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(destination)`` when another process commits deliveries.

        Shared backends (PostgreSQL LISTEN/NOTIFY) wake idle workers this way; the
        embedded backend has no other writer worth waking for, so polling suffices.
        """
        self._new_work = callback

    @abc.abstractmethod
    async def release_orphans(self) -> int:
        """Leases held by processes that died on this host are due again now.

        Run at open and periodically, so a SIGKILLed sibling (``--workers``, or
        another instance on the host) does not hold its deliveries until the lease
        runs out. Returns how many deliveries came back.
        """

    @abc.abstractmethod
    async def prune(
        self, settled_before: float, fingerprints_before: float, batch: int = 1000
    ) -> int:
        """Delete one small batch of old succeeded deliveries, their events, old fingerprints.

        Returns how many rows went; callers repeat while it returns ``batch`` or more.
        """


class UnknownQueueURL(RelayError):
    """The queue URL names no backend we have."""


def open_queue(url: str) -> Queue:
    """The backend for ``url`` (not yet opened)."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from .sqlite import SqliteQueue

        return SqliteQueue.from_url(url)
    if scheme in ("postgres", "postgresql"):
        try:
            from .postgres import PostgresQueue
        except ImportError as exc:  # the optional extra is not installed (or lacks libpq)
            if exc.name is not None and not exc.name.startswith("psycopg"):
                raise
            raise QueueUnavailable(
                "the PostgreSQL queue needs psycopg: pip install 'pushwoosh-relay[postgres]'"
            ) from None

        return PostgresQueue(url)
    raise UnknownQueueURL(
        f"unsupported queue url {url.split('://')[0]}://...: "
        "use sqlite:///path or postgresql://user@host/db"
    )


__all__ = ["Accepted", "Depth", "Outcome", "Queue", "instance_id", "open_queue"]
