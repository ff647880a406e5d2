"""What a queue backend must supply: moving statements to its database, nothing more.

The logic lives in :mod:`relay.queue.core` as operations that yield named
statements. A transport runs an operation inside one transaction, merges
concurrent calls of the hot operations into one transaction (group commit: one
fsync for many callers), reads without blocking writers, tells other instances
about new work, and says whether a write would succeed now. That is all that
differs between the embedded SQLite file and a shared PostgreSQL server.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, TypeVar

from .catalogue import Catalogue
from .core import OpFactory

T = TypeVar("T")


class Transport(abc.ABC):
    """One database connection strategy; see the module docstring."""

    catalogue: Catalogue
    schema_version: int = 0

    @property
    def dialect(self) -> str:
        return self.catalogue.dialect

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and apply the missing migrations; set ``schema_version``."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish pending writes and disconnect."""

    @abc.abstractmethod
    async def write(self, factory: OpFactory[T], *, durable: bool = True) -> T:
        """Run one operation in a write transaction of its own (or shared, committed once).

        ``durable=False`` lets the commit skip waiting for the disk (SQLite
        ``synchronous=NORMAL``, PostgreSQL ``synchronous_commit = off``): for writes whose
        loss on power failure costs only a repeat (a lease, a settle: the delivery is
        sent again with the same Idempotency-Key), never for an acknowledged event.
        """

    @abc.abstractmethod
    async def merged(self, kind: str, arg: Any) -> Any:
        """Run one call of a mergeable operation (``core.MERGED``) with every other one
        waiting at that moment, in one transaction: the group commit."""

    @abc.abstractmethod
    async def read(self, factory: OpFactory[T]) -> T:
        """Run a read-only operation without holding up writers."""

    async def erase(self, factory: OpFactory[T]) -> T:
        """Run a deleting operation so that the deleted bytes are gone from storage too.

        By default a plain write; SQLite overwrites freed space and truncates its log.
        """
        return await self.write(factory)

    @abc.abstractmethod
    async def probe(self, factory: OpFactory[None], timeout: float) -> None:
        """Raise QueueUnavailable within ``timeout`` unless a write would succeed now."""

    def on_notify(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(destination)`` when any instance commits due work for it."""
        self._notify = callback

    def notified(self, destinations: frozenset[str]) -> None:
        """Hand committed wake-ups to the registered callback (an empty set: all)."""
        callback = getattr(self, "_notify", None)
        if callback is None:
            return
        for destination in destinations or ("",):
            callback(destination)
