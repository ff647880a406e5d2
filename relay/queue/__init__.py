"""The durable queue: where accepted events and their deliveries live until done.

:class:`Queue` is what the receiver, the workers, `relay dlq`, `relay events` and
the console use. Its methods only build operations of :mod:`relay.queue.core`
(the logic, written once) and hand them to a :class:`~relay.queue.transport.Transport`
chosen by the URL scheme (``sqlite:///path`` embedded, default; ``postgresql://...``
shared by several instances), whose driver is imported only when used. Retrying is
the queue's job: a failed attempt sets a new ``available_at``, so a restart loses
nothing.

An instance is known by a random id and a heartbeat in the queue: its leases are
taken over only when its heartbeat has gone stale, never because of what a
process table on some host says (two containers may share a hostname and a pid).
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import __version__
from ..errors import QueueUnavailable, QueueURLInvalid
from ..model import Leased, NewEvent
from ..settings import Queue as QueueSettings
from . import core
from .core import DEFAULT_MAX_EVENTS
from .records import (
    Accepted,
    Activity,
    Cutoffs,
    DeadGroup,
    DeadLetter,
    Depth,
    DestinationState,
    EnqueueRequest,
    EventFilter,
    EventPage,
    ForgetReport,
    LeaseRequest,
    MinuteCounts,
    Settlement,
    StoredEvent,
)
from .transport import Transport

#: How often an instance writes its heartbeat, and after how long without one it is dead.
HEARTBEAT_EVERY = 2.0
DEAD_AFTER = 15.0
#: `/readyz` answers within this long, whatever the database does.
PROBE_TIMEOUT = 1.5


class Queue:
    """The queue's operations over one transport; see the module docstring."""

    def __init__(
        self,
        transport: Transport,
        *,
        heartbeat_every: float = HEARTBEAT_EVERY,
        dead_after: float = DEAD_AFTER,
    ) -> None:
        self.transport = transport
        self.owner = uuid.uuid4().hex
        self.heartbeat_every = heartbeat_every
        self.dead_after = dead_after
        self._joined = False
        self._instance = {
            "id": self.owner,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "version": __version__,
        }

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgres``."""
        return self.transport.dialect

    @property
    def schema_version(self) -> int:
        """The schema version ``open()`` brought the store to (``relay migrate`` prints it)."""
        return self.transport.schema_version

    # -- life -------------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect and bring the schema up to date (what every command needs)."""
        await self.transport.open()

    async def join(self) -> None:
        """Announce this instance (a serving relay) and take back dead instances' leases."""
        await self.heartbeat()
        self._joined = True
        await self.release_orphans()

    async def close(self) -> None:
        """Hand our unfinished leases back (due now, not when they expire), disconnect."""
        if self._joined:
            # Closing anyway if this fails: the leases expire, the heartbeat goes stale.
            with contextlib.suppress(Exception):
                await self.transport.write(
                    lambda: core.leave(self.owner, time.time()), durable=False
                )
            self._joined = False
        await self.transport.close()

    def on_new_work(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(destination)`` when deliveries become due ("" = any destination).

        PostgreSQL wakes every instance through LISTEN/NOTIFY; on SQLite this process
        wakes itself, and notices other processes' commits to the file within 50 ms.
        """
        self.transport.on_notify(callback)

    async def heartbeat(self, now: float | None = None) -> None:
        """Say this instance is alive."""
        stamp = time.time() if now is None else now
        await self.transport.write(lambda: core.heartbeat(self._instance, stamp), durable=False)

    async def ping(self, timeout: float = PROBE_TIMEOUT) -> None:
        """Raise :class:`QueueUnavailable` within ``timeout`` unless a write would succeed now."""
        stamp = time.time()
        await self.transport.probe(lambda: core.heartbeat(self._instance, stamp), timeout)

    async def release_orphans(self, now: float | None = None) -> int:
        """Leases of instances whose heartbeat is stale are due again now.

        Run at open and periodically, so a crashed instance (a SIGKILLed sibling under
        ``--workers``, another host) does not hold its deliveries until the lease runs
        out. Returns how many deliveries came back.
        """
        stamp = time.time() if now is None else now
        return await self.transport.write(
            lambda: core.release_orphans(stamp, stamp - self.dead_after), durable=False
        )

    # -- the hot path -----------------------------------------------------------------------
    async def enqueue(
        self, events: Sequence[NewEvent], dedupe_window: float, now: float
    ) -> list[Accepted]:
        """Commit events and their deliveries atomically; skip bodies seen in the window."""
        result: list[Accepted] = await self.transport.merged(
            "enqueue", EnqueueRequest(tuple(events), dedupe_window, now)
        )
        return result

    async def lease(
        self, destination: str, limit: int, lease_seconds: float, now: float
    ) -> list[Leased]:
        """Take up to ``limit`` due deliveries; they come back if not settled in time."""
        return await self.lease_many([LeaseRequest(destination, limit, now + lease_seconds)], now)

    async def lease_many(self, requests: Sequence[LeaseRequest], now: float) -> list[Leased]:
        """Lease for several destinations in one transaction."""
        return await self.transport.write(
            lambda: core.lease(requests, self.owner, now), durable=False
        )

    async def release_stray(self, destination: str, keep: Sequence[str]) -> int:
        """Hand back our leases of ``destination`` that no attempt of ours uses.

        A lease call that timed out may still have committed; run this before
        leasing again, with the ids of the attempts in flight.
        """
        now = time.time()
        return await self.transport.write(
            lambda: core.release_stray(self.owner, destination, keep, now), durable=False
        )

    async def release_unsent(self, destination: str, ids: Sequence[str]) -> int:
        """Hand back our leases of ``destination`` that were never sent (see
        core.release_unsent); their attempt is not counted."""
        now = time.time()
        return await self.transport.write(
            lambda: core.release_unsent(self.owner, destination, ids, now), durable=False
        )

    async def settle(self, settlement: Settlement) -> None:
        """Record an attempt; apply its outcome if the delivery is still pending and ours."""
        await self.transport.merged("settle", (settlement, self.owner))

    async def settle_many(self, settlements: Sequence[Settlement]) -> None:
        """Record many attempts in one transaction (see :meth:`settle`); not durable: a
        settle lost on power loss means a redelivery with the same Idempotency-Key."""
        items = [(s, self.owner) for s in settlements]
        await self.transport.write(lambda: core.settle(items), durable=False)

    # -- groups -----------------------------------------------------------------------------
    async def flush_groups(
        self, destination: str, max_events: Mapping[str, int], now: float
    ) -> list[tuple[str, int]]:
        """Turn every due group of ``destination`` into deliveries (see core.flush_groups)."""
        return await self.transport.write(
            lambda: core.flush_groups(destination, max_events, now), durable=False
        )

    async def group_flush_times(self) -> dict[str, float]:
        """Per destination, when its earliest open group is due."""
        return await self.transport.read(core.group_flush_times)

    async def next_due(self, destination: str) -> float | None:
        """When the earliest pending delivery or group flush of ``destination`` is due."""
        return await self.transport.read(lambda: core.next_due(destination))

    # -- operators --------------------------------------------------------------------------
    async def dead_letters(
        self, destination: str | None = None, limit: int = 1000
    ) -> list[DeadLetter]:
        """Dead deliveries, oldest first."""
        return await self.transport.read(lambda: core.dead_letters(destination, limit))

    async def replay(self, ids: Sequence[str] | None, destination: str | None, now: float) -> int:
        """Dead deliveries back to pending with a fresh attempt budget; ``ids=None`` = all."""
        return await self.transport.write(lambda: core.replay_dead(ids, destination, now))

    async def dead_groups(
        self, destination: str | None = None, limit: int = 200
    ) -> list[DeadGroup]:
        """Dead letters grouped by destination and last error, largest groups first."""
        return await self.transport.read(lambda: core.dead_groups(destination, limit))

    async def dead_count(self, destination: str | None, error: str | None) -> int:
        """Dead letters of ``destination`` whose last error is ``error`` (None = any)."""
        return await self.transport.read(lambda: core.dead_count(destination, error))

    async def dead_matching(
        self, destination: str | None, error: str | None, limit: int
    ) -> list[DeadLetter]:
        """The newest dead letters of that filter."""
        return await self.transport.read(lambda: core.dead_matching(destination, error, limit))

    async def dead_ids(self, destination: str | None, error: str | None, limit: int) -> list[str]:
        """Up to ``limit`` ids of dead letters of that filter."""
        return await self.transport.read(lambda: core.dead_ids(destination, error, limit))

    async def per_minute(self, since: float) -> MinuteCounts:
        """Per-minute events received and attempts (by destination, outcome) since ``since``."""
        return await self.transport.read(lambda: core.per_minute(since))

    async def depth(self, now: float) -> Depth:
        """Counts for metrics."""
        return await self.transport.read(lambda: core.depth(now))

    async def events(
        self, flt: EventFilter, limit: int = 50, before: str | None = None
    ) -> EventPage:
        """Stored events, newest first; ``before`` is the previous page's ``next``."""
        return await self.transport.read(lambda: core.events_page(flt, limit, before))

    async def event(self, event_id: str) -> StoredEvent | None:
        """One event with its deliveries and every attempt, or None."""
        return await self.transport.read(lambda: core.event_detail(event_id))

    async def resend(self, event_id: str, destination: str | None, now: float) -> list[str] | None:
        """Send a stored event again (any state) as new deliveries; None if no such event."""
        return await self.transport.write(lambda: core.resend(event_id, destination, now))

    async def forget(self, address: str, dry_run: bool, batch: int = 500) -> ForgetReport:
        """Erase every stored trace of ``address`` (or count it, in a dry run)."""
        total = ForgetReport()
        after: str | None = ""
        while after is not None:
            cursor = after if dry_run else ""  # erased rows are gone: start over each time
            run = self.transport.read if dry_run else self.transport.erase
            report, after = await run(
                functools.partial(core.forget, address, dry_run, cursor, batch)
            )
            total += report
        return total

    # -- destination health -----------------------------------------------------------------
    async def destination_states(self) -> dict[str, DestinationState]:
        """Every destination's shared state (paused, circuit); absent = active and closed."""
        states = await self.transport.read(core.destination_states)
        return {state.name: state for state in states}

    async def pause(self, name: str, reason: str | None, now: float) -> bool:
        """Hold ``name`` for every instance; False if it was paused already."""
        return await self.transport.write(lambda: core.pause(name, reason, now))

    async def resume(self, name: str, now: float) -> bool:
        """Release a pause; False if it was not paused."""
        return await self.transport.write(lambda: core.resume(name, now))

    async def open_circuit(self, name: str, reason: str, cooldown: float, now: float) -> bool:
        """Closed -> open; True for the one instance that did it."""
        return await self.transport.write(lambda: core.open_circuit(name, reason, cooldown, now))

    async def claim_probe(self, name: str, until: float, now: float) -> bool:
        """Take the half-open probe of ``name`` (one instance wins)."""
        return await self.transport.write(lambda: core.claim_probe(name, self.owner, until, now))

    async def close_circuit(self, name: str, now: float) -> bool:
        """Our probe got through: close the circuit."""
        return await self.transport.write(lambda: core.close_circuit(name, self.owner, now))

    async def reopen_circuit(self, name: str, reason: str, cooldown: float, now: float) -> bool:
        """Our probe failed: open again for ``cooldown``."""
        return await self.transport.write(
            lambda: core.reopen_circuit(name, self.owner, reason, cooldown, now)
        )

    async def health_window(self, destination: str, since: float) -> tuple[int, int]:
        """(attempts, failures counted against it) since ``since``."""
        return await self.transport.read(lambda: core.health_window(destination, since))

    async def activity(self, destination: str, since: float, errors_since: float) -> Activity:
        """Recent attempts of ``destination``: count, successes, p95, last failure."""
        return await self.transport.read(lambda: core.activity(destination, since, errors_since))

    async def dead_letters_notice(self, name: str, now: float, every: float) -> int | None:
        """The dead count of ``name`` if a dead-letter notice is due now, else None."""
        return await self.transport.write(
            lambda: core.dead_letters_notice(name, now, every), durable=False
        )

    async def prune(self, cutoffs: Cutoffs, batch: int = 1000) -> int:
        """Delete one small batch of what retention lets go; repeat while it returns ``batch``."""
        return await self.transport.write(lambda: core.prune(cutoffs, batch), durable=False)


def from_settings(settings: QueueSettings) -> Queue:
    """The queue a config's ``queue:`` section describes (not yet opened)."""
    every = float(settings.heartbeat)
    return open_queue(settings.url, heartbeat_every=every, dead_after=every * 5)


def open_queue(url: str, **options: Any) -> Queue:
    """The queue for ``url`` (not yet opened)."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from .sqlite import SqliteTransport

        return Queue(SqliteTransport.from_url(url), **options)
    if scheme in ("postgres", "postgresql"):
        try:
            from .postgres import PostgresTransport
        except ImportError as exc:  # the optional extra is not installed (or lacks libpq)
            if exc.name is not None and not exc.name.startswith("psycopg"):
                raise
            raise QueueUnavailable(
                "the PostgreSQL queue needs psycopg: pip install 'pushwoosh-relay[postgres]'"
            ) from None

        return Queue(PostgresTransport(url), **options)
    raise QueueURLInvalid(
        f"unsupported queue url {url.split('://')[0]}://...: "
        "use sqlite:///path or postgresql://user@host/db"
    )


__all__ = [
    "DEFAULT_MAX_EVENTS",
    "Accepted",
    "Cutoffs",
    "DeadGroup",
    "DeadLetter",
    "Depth",
    "DestinationState",
    "EventFilter",
    "EventPage",
    "ForgetReport",
    "LeaseRequest",
    "MinuteCounts",
    "Queue",
    "Settlement",
    "StoredEvent",
    "from_settings",
    "open_queue",
]
