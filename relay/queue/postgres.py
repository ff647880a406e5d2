"""PostgreSQL queue: one database shared by several relay instances.

Same semantics as the embedded SQLite queue (same tables, same statements where
the dialects agree), made safe for many writers: leasing is one
``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED)`` so two instances never take
the same delivery; a duplicate body is detected by claiming its fingerprint with
one upsert, so two instances receiving it at once cannot both accept it; and
every commit that creates due work sends ``pg_notify`` so idle workers of every
instance wake within milliseconds instead of at their next poll.

URL: ``postgresql://user:password@host:5432/db`` plus two optional query parameters
the relay reads and libpq never sees: ``schema=NAME`` (tables live in that schema,
created if missing; default: the connection's ``search_path``, usually ``public``)
and ``pool_size=N`` (connections per instance, default 10). Every other
parameter is libpq's (``sslmode``, ``options``, ``connect_timeout``...).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from ..errors import QueueUnavailable
from ..logs import get_logger
from ..model import DeadLetter, Leased, NewEvent, new_id
from . import (
    DEFAULT_MAX_EVENTS,
    Accepted,
    Depth,
    Outcome,
    Queue,
    event_name,
    instance_id,
    owner_alive,
)

log = get_logger("relay.queue")

#: Key of the transaction-level advisory lock that serialises migrations of every
#: instance starting at once ("rlay" in ASCII; any constant unique to this app will do).
MIGRATION_LOCK = 0x726C6179
#: Channel of the new-work notifications; the schema is appended when not ``public``
#: so relays (and parallel tests) in different schemas of one database don't wake each other.
CHANNEL = "relay_work"
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
DEFAULT_POOL_SIZE = 10
APPLICATION_NAME = "pushwoosh-relay"
#: How long a caller waits for a pooled connection before the queue counts as unavailable
#: (the receiver then answers 503 instead of hanging).
POOL_TIMEOUT = 5.0
CONNECT_TIMEOUT = 10
#: The listener checks its connection this often when no notification arrives, so a
#: silently dropped connection is noticed and replaced.
LISTEN_CHECK_EVERY = 15.0
LISTEN_BACKOFF = (0.1, 5.0)  # first and longest wait between reconnects

# -- schema: versioned, applied in order at open under MIGRATION_LOCK ------------------------
# The logical tables are SQLite's, prefixed ``relay_`` so they can share a schema with others.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE relay_events (
        id          text PRIMARY KEY,
        received_at double precision NOT NULL,
        body        bytea NOT NULL
    );
    CREATE TABLE relay_deliveries (
        id           text PRIMARY KEY,
        event_id     text NOT NULL REFERENCES relay_events(id),
        destination  text NOT NULL,
        route        text NOT NULL,
        state        text NOT NULL DEFAULT 'pending',
        attempts     integer NOT NULL DEFAULT 0,
        available_at double precision NOT NULL,
        created_at   double precision NOT NULL,
        budget_start double precision NOT NULL,
        updated_at   double precision NOT NULL,
        lease_owner  text,
        last_error   text,
        last_status  integer
    );
    -- The lease and next_due queries: (destination, state = 'pending', available_at).
    -- Partial, so settled rows (the bulk of the table) cost this index nothing.
    CREATE INDEX relay_deliveries_due ON relay_deliveries (destination, available_at)
        WHERE state = 'pending';
    CREATE INDEX relay_deliveries_event ON relay_deliveries (event_id);
    -- Pruning succeeded rows, listing dead letters oldest first.
    CREATE INDEX relay_deliveries_settled ON relay_deliveries (state, updated_at);
    CREATE INDEX relay_events_received ON relay_events (received_at);
    CREATE TABLE relay_fingerprints (
        digest     bytea PRIMARY KEY,
        event_id   text NOT NULL,
        created_at double precision NOT NULL
    );
    CREATE INDEX relay_fingerprints_age ON relay_fingerprints (created_at);
    CREATE TABLE relay_heartbeat (
        id integer PRIMARY KEY CHECK (id = 1),
        at double precision NOT NULL
    );
    """,
    # 2: grouped deliveries (digests and batches). An event of a grouped route waits as a
    # group item until its group is flushed into deliveries of at most max_events items.
    """
    ALTER TABLE relay_deliveries ADD COLUMN group_key text;
    CREATE TABLE relay_group_items (
        id          text PRIMARY KEY,
        seq         bigint GENERATED ALWAYS AS IDENTITY,  -- arrival order within one instant
        event_id    text NOT NULL REFERENCES relay_events(id),
        destination text NOT NULL,
        route       text NOT NULL,
        group_key   text NOT NULL,
        created_at  double precision NOT NULL,
        delivery_id text
    );
    CREATE INDEX relay_group_items_open ON relay_group_items
        (destination, route, group_key, created_at, seq) WHERE delivery_id IS NULL;
    CREATE INDEX relay_group_items_delivery ON relay_group_items (delivery_id);
    CREATE INDEX relay_group_items_event ON relay_group_items (event_id);
    CREATE TABLE relay_groups (
        destination   text NOT NULL,
        route         text NOT NULL,
        group_key     text NOT NULL,
        flush_at      double precision,
        last_flush_at double precision,
        PRIMARY KEY (destination, route, group_key)
    );
    CREATE INDEX relay_groups_due ON relay_groups (destination, flush_at)
        WHERE flush_at IS NOT NULL;
    """,
)

SQL_LOCK_MIGRATIONS = "SELECT pg_advisory_xact_lock(%s)"
SQL_VERSION_TABLE = """
    CREATE TABLE IF NOT EXISTS relay_schema_version (
        version    integer PRIMARY KEY,
        applied_at double precision NOT NULL
    )"""
SQL_VERSION = "SELECT coalesce(max(version), 0) FROM relay_schema_version"
SQL_SET_VERSION = "INSERT INTO relay_schema_version (version, applied_at) VALUES (%s, %s)"

# -- statements -------------------------------------------------------------------------------
SQL_INSERT_EVENT = "INSERT INTO relay_events (id, received_at, body) VALUES (%s, %s, %s)"
SQL_INSERT_DELIVERY = """
    INSERT INTO relay_deliveries (id, event_id, destination, route, available_at, created_at,
                                  budget_start, updated_at)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"""
# Claim the batch's fingerprints: a new digest, or one older than the window, becomes ours
# and comes back; a fresh one stays and does not come back (a duplicate). One statement, in
# digest order: a concurrent claim of the same digest waits for ours to commit and then sees
# it, and two batches naming the same bodies in another order cannot deadlock.
SQL_INSERT_GROUP_ITEM = """
    INSERT INTO relay_group_items (id, event_id, destination, route, group_key, created_at)
    VALUES (%s, %s, %s, %s, %s, %s)"""
# A new group goes out `wait` after its first event; a group that went out within the last
# `interval` goes out again no sooner than `interval` after that. Upserted in key order, so
# concurrent batches touching the same groups cannot deadlock.
SQL_OPEN_GROUP = """
    INSERT INTO relay_groups AS g (destination, route, group_key, flush_at, last_flush_at)
    VALUES (%(destination)s, %(route)s, %(key)s, %(now)s + %(wait)s, NULL)
    ON CONFLICT (destination, route, group_key) DO UPDATE
       SET flush_at = coalesce(g.flush_at, greatest(%(now)s + %(wait)s,
                                                    coalesce(g.last_flush_at + %(interval)s, 0)))"""
# SKIP LOCKED: a group another instance is flushing right now is its business.
SQL_DUE_GROUPS = """
    SELECT route, group_key FROM relay_groups
     WHERE destination = %s AND flush_at IS NOT NULL AND flush_at <= %s
     ORDER BY flush_at LIMIT 100
       FOR UPDATE SKIP LOCKED"""
SQL_GROUP_OPEN_ITEMS = """
    SELECT id, event_id FROM relay_group_items
     WHERE destination = %s AND route = %s AND group_key = %s AND delivery_id IS NULL
     ORDER BY created_at, seq"""
SQL_CLOSE_GROUP = """
    UPDATE relay_groups SET flush_at = NULL, last_flush_at = %s
     WHERE destination = %s AND route = %s AND group_key = %s"""
SQL_INSERT_GROUP_DELIVERY = """
    INSERT INTO relay_deliveries (id, event_id, destination, route, available_at, created_at,
                                  budget_start, updated_at, group_key)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"""
SQL_ASSIGN_ITEMS = "UPDATE relay_group_items SET delivery_id = %s WHERE id = ANY(%s::text[])"
SQL_GROUP_BODIES = """
    SELECT g.delivery_id, e.body FROM relay_group_items g JOIN relay_events e ON e.id = g.event_id
     WHERE g.delivery_id = ANY(%s::text[]) ORDER BY g.created_at, g.seq"""
SQL_CLAIM_FINGERPRINTS = """
    INSERT INTO relay_fingerprints (digest, event_id, created_at)
    SELECT c.digest, c.event_id, %(now)s
      FROM unnest(%(digests)s::bytea[], %(event_ids)s::text[]) AS c(digest, event_id)
     ORDER BY c.digest
    ON CONFLICT (digest) DO UPDATE SET event_id = excluded.event_id,
                                       created_at = excluded.created_at
     WHERE relay_fingerprints.created_at < %(since)s
    RETURNING digest"""
SQL_FIND_FINGERPRINTS = """
    SELECT digest, event_id FROM relay_fingerprints WHERE digest = ANY(%s::bytea[])"""
# Sent inside the transaction: PostgreSQL delivers it on commit, and never on rollback.
SQL_NOTIFY = "SELECT pg_notify(%(channel)s, d) FROM unnest(%(destinations)s::text[]) AS d"
# Taking a lease pushes available_at past the lease: a crashed holder's rows come back by
# themselves. The attempt is counted when taken, so a crash mid-send still uses budget.
# SKIP LOCKED: rows another instance is leasing right now are passed over, not waited for.
SQL_LEASE = """
    UPDATE relay_deliveries d
       SET available_at = %(until)s, attempts = d.attempts + 1, lease_owner = %(owner)s,
           updated_at = %(now)s
      FROM (SELECT id FROM relay_deliveries
             WHERE destination = %(destination)s AND state = 'pending'
               AND available_at <= %(now)s
             ORDER BY available_at LIMIT %(limit)s
               FOR UPDATE SKIP LOCKED) due, relay_events e
     WHERE d.id = due.id AND e.id = d.event_id
    RETURNING d.id, d.event_id, d.destination, d.route, d.attempts, d.budget_start, e.body,
              d.group_key"""
SQL_SETTLE = """
    UPDATE relay_deliveries
       SET state = %(state)s, available_at = %(available_at)s, last_error = %(error)s,
           last_status = %(status)s, lease_owner = NULL, updated_at = %(now)s
     WHERE id = %(id)s AND state = 'pending' AND lease_owner = %(owner)s"""
SQL_DEAD = """
    SELECT d.id, d.destination, d.event_id, e.body, d.attempts, d.last_error, d.updated_at
      FROM relay_deliveries d JOIN relay_events e ON e.id = d.event_id
     WHERE d.state = 'dead' AND (%(destination)s::text IS NULL
                                 OR d.destination = %(destination)s::text)
     ORDER BY d.updated_at LIMIT %(limit)s"""
SQL_REPLAY = """
    UPDATE relay_deliveries
       SET state = 'pending', attempts = 0, available_at = %(now)s, budget_start = %(now)s,
           lease_owner = NULL, updated_at = %(now)s
     WHERE state = 'dead'
       AND (%(destination)s::text IS NULL OR destination = %(destination)s::text)
       AND (%(ids)s::text[] IS NULL OR id = ANY(%(ids)s::text[]))
    RETURNING destination"""
# The earlier of the next pending delivery and the next group flush (least() skips NULLs).
SQL_NEXT_DUE = """
    SELECT least((SELECT min(available_at) FROM relay_deliveries
                   WHERE destination = %(destination)s AND state = 'pending'),
                 (SELECT min(flush_at) FROM relay_groups
                   WHERE destination = %(destination)s AND flush_at IS NOT NULL))"""
SQL_DEPTH = """
    SELECT destination, state, count(*), min(CASE WHEN state = 'pending' THEN created_at END)
      FROM relay_deliveries WHERE state IN ('pending', 'dead') GROUP BY destination, state"""
SQL_OPEN_GROUPS = """
    SELECT destination, count(*) FROM relay_groups WHERE flush_at IS NOT NULL
     GROUP BY destination"""
SQL_HEARTBEAT = """
    INSERT INTO relay_heartbeat (id, at) VALUES (1, %s)
    ON CONFLICT (id) DO UPDATE SET at = excluded.at"""
SQL_ORPHAN_LEASES = """
    SELECT DISTINCT lease_owner FROM relay_deliveries
     WHERE state = 'pending' AND lease_owner IS NOT NULL AND available_at > %s"""
SQL_RELEASE = """
    UPDATE relay_deliveries SET available_at = %s, lease_owner = NULL
     WHERE state = 'pending' AND lease_owner = %s"""
SQL_PRUNE_DELIVERIES = """
    DELETE FROM relay_deliveries WHERE id IN (
        SELECT id FROM relay_deliveries WHERE state = 'succeeded' AND updated_at < %s LIMIT %s)"""
SQL_PRUNE_GROUP_ITEMS = """
    DELETE FROM relay_group_items WHERE id IN (
        SELECT g.id FROM relay_group_items g WHERE g.created_at < %s AND g.delivery_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM relay_deliveries d WHERE d.id = g.delivery_id) LIMIT %s)"""
SQL_PRUNE_EVENTS = """
    DELETE FROM relay_events WHERE id IN (
        SELECT e.id FROM relay_events e WHERE e.received_at < %s
           AND NOT EXISTS (SELECT 1 FROM relay_deliveries d WHERE d.event_id = e.id)
           AND NOT EXISTS (SELECT 1 FROM relay_group_items g WHERE g.event_id = e.id) LIMIT %s)"""
SQL_PRUNE_FINGERPRINTS = """
    DELETE FROM relay_fingerprints WHERE digest IN (
        SELECT digest FROM relay_fingerprints WHERE created_at < %s LIMIT %s)"""


#: Transactions committing enqueued events at once, per instance, and requests per one.
COMMITTERS = 3
MAX_BATCH = 256


@dataclass(slots=True)
class _Waiting:
    """An enqueue call waiting for the next group commit."""

    events: Sequence[NewEvent]
    window: float
    now: float
    fut: asyncio.Future[list[Accepted]]


class PostgresQueue(Queue):
    """The shared backend: any number of instances on one database (or schema)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.owner = instance_id()
        self.conninfo, self.schema, self.pool_size = _parse_url(url)
        self.channel = CHANNEL
        self._schema_version = 0
        self._pool: AsyncConnectionPool | None = None
        self._listener: asyncio.Task[None] | None = None
        # Group commit: enqueue calls waiting for the next transaction, and how many
        # transactions are committing now (several, so one slow fsync does not stall all).
        self._waiting: list[_Waiting] = []
        self._committers: set[asyncio.Task[None]] = set()

    @property
    def schema_version(self) -> int:
        """The version recorded in ``relay_schema_version`` when this instance opened."""
        return self._schema_version

    # -- plumbing ---------------------------------------------------------------------------
    def _kwargs(self) -> dict[str, Any]:
        """Connection parameters the URL may leave out; a ``schema`` goes on the search_path."""
        given = psycopg.conninfo.conninfo_to_dict(self.conninfo)
        kwargs: dict[str, Any] = {}
        if "connect_timeout" not in given:
            kwargs["connect_timeout"] = CONNECT_TIMEOUT
        if "application_name" not in given:  # pg_stat_activity shows who is connected
            kwargs["application_name"] = APPLICATION_NAME
        if self.schema is not None:
            options = given.get("options") or ""
            kwargs["options"] = f"{options} -c search_path={self.schema}".strip()
        return kwargs

    async def _connect(self, autocommit: bool = False) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=autocommit, **self._kwargs()
        )

    async def open(self) -> None:
        listen: psycopg.AsyncConnection[Any] | None = None
        pool: AsyncConnectionPool | None = None
        try:
            async with await self._connect() as conn:
                self._schema_version = await self._migrate(conn)
                row = await (await conn.execute("SELECT current_schema()")).fetchone()
            self.channel = _channel(row[0] if row and row[0] else "public")
            listen = await self._listen_connect()
            pool = AsyncConnectionPool(
                self.conninfo,
                kwargs={**self._kwargs(), "autocommit": True},
                min_size=1,
                max_size=self.pool_size,
                open=False,
                timeout=POOL_TIMEOUT,
                check=AsyncConnectionPool.check_connection,
                name=f"relay-{self.owner}",
            )
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except (psycopg.Error, OSError) as exc:
            if listen is not None:
                await listen.close()
            if pool is not None:
                await pool.close()
            raise QueueUnavailable(
                f"cannot open PostgreSQL queue at {_where(self.conninfo)}: {_one_line(exc)}"
            ) from None
        self._pool = pool
        self._listener = asyncio.create_task(self._listen(listen), name="relay-pg-listen")
        try:
            await self.release_orphans()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._pool is not None:
            # Our unfinished leases are due again now, not when the lease runs out.
            with contextlib.suppress(Exception):
                await self._rows(SQL_RELEASE, (time.time(), self.owner))
            await self._pool.close()
            self._pool = None

    async def _migrate(self, conn: psycopg.AsyncConnection[Any]) -> int:
        """Apply the missing migrations; instances starting together take turns."""
        async with conn.transaction():
            await conn.execute(SQL_LOCK_MIGRATIONS, (MIGRATION_LOCK,))
            if self.schema is not None:
                await conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
                )
            await conn.execute(SQL_VERSION_TABLE)
            row = await (await conn.execute(SQL_VERSION)).fetchone()
            version = int(row[0]) if row else 0
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                await conn.execute(script)
                await conn.execute(SQL_SET_VERSION, (number, time.time()))
                version = number
        # A newer relay may have migrated further; its additions are compatible by rule.
        return version

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled autocommit connection: each statement is its own transaction.

        Most operations are one statement, so this spares the BEGIN and COMMIT round trips;
        those that must be atomic open ``conn.transaction()`` inside.
        """
        if self._pool is None:
            raise QueueUnavailable("the queue is closed")
        try:
            async with self._pool.connection() as conn:
                yield conn
        except (psycopg.Error, OSError) as exc:
            raise QueueUnavailable(f"PostgreSQL queue error: {_one_line(exc)}") from None

    async def _rows(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        async with self._conn() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall() if cur.description else []

    # -- new-work notifications -------------------------------------------------------------
    async def _listen_connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await self._connect(autocommit=True)
        try:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _listen(self, conn: psycopg.AsyncConnection[Any] | None) -> None:
        """Relay each notification to the ``on_new_work`` callback; reconnect when dropped.

        Notifications sent while reconnecting are lost; the workers' polling covers them.
        """
        delay = LISTEN_BACKOFF[0]
        loop = asyncio.get_running_loop()
        while True:
            try:
                if conn is None:
                    conn = await self._listen_connect()
                    log.info("queue.listen_restored", channel=self.channel)
                    delay = LISTEN_BACKOFF[0]
                while True:
                    async for notify in conn.notifies(timeout=LISTEN_CHECK_EVERY):
                        callback = getattr(self, "_new_work", None)
                        if callback is not None:
                            loop.call_soon(callback, notify.payload)
                    await conn.execute("SELECT 1")
            except Exception as exc:  # whatever broke, the listener must outlive it
                log.warning(
                    "queue.listen_lost",
                    channel=self.channel,
                    error=_one_line(exc),
                    retry_in_s=delay,
                )
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
                    conn = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, LISTEN_BACKOFF[1])

    # -- operations -------------------------------------------------------------------------
    async def enqueue(
        self, events: Sequence[NewEvent], dedupe_window: float, now: float
    ) -> list[Accepted]:
        """Queue ``events`` with every other request waiting: one transaction for them all.

        A commit costs a round trip and an fsync; concurrent requests share it, as
        the SQLite writer does. All of a transaction's callers fail together (503).
        """
        loop = asyncio.get_running_loop()
        waiting = _Waiting(events, dedupe_window, now, loop.create_future())
        self._waiting.append(waiting)
        if len(self._committers) < COMMITTERS:
            task = loop.create_task(self._commit_waiting())
            self._committers.add(task)
            task.add_done_callback(self._committers.discard)
        return await waiting.fut

    async def _commit_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            events = [ev for w in batch for ev in w.events]
            try:
                accepted = await self._enqueue_now(
                    events, max(w.window for w in batch), batch[0].now
                )
            except Exception as exc:
                for w in batch:
                    if not w.fut.done():
                        w.fut.set_exception(exc)
                continue
            start = 0
            for w in batch:
                if not w.fut.done():
                    w.fut.set_result(accepted[start : start + len(w.events)])
                start += len(w.events)

    async def _enqueue_now(
        self, events: Sequence[NewEvent], dedupe_window: float, now: float
    ) -> list[Accepted]:
        out: list[Accepted] = []
        fresh: list[NewEvent] = []
        async with self._conn() as conn, conn.pipeline(), conn.transaction():
            taken = await self._claim(conn, events, dedupe_window, now)
            first: dict[bytes, str] = {}  # digest -> the event of this batch that carries it
            for ev in events:
                digest = ev.fingerprint if dedupe_window > 0 else None
                if digest is not None:
                    original = taken.get(digest) or first.get(digest)
                    if original is not None:
                        out.append(Accepted(original, True))
                        continue
                    first[digest] = ev.id
                fresh.append(ev)
                out.append(Accepted(ev.id, False))
            # Pipelined: the inserts, the notification and the COMMIT go in one round trip.
            async with conn.cursor() as cur:
                await cur.executemany(SQL_INSERT_EVENT, [(ev.id, now, ev.body) for ev in fresh])
                plain = [(ev, d) for ev in fresh for d in ev.deliveries if d.group is None]
                if plain:
                    await cur.executemany(
                        SQL_INSERT_DELIVERY,
                        [
                            (d.id, ev.id, d.destination, d.route, now, now, now, now)
                            for ev, d in plain
                        ],
                    )
                await self._add_to_groups(cur, fresh, now)
            # Grouped items too: a woken worker learns when their group is due (next_due).
            await self._notify(conn, {d.destination for ev in fresh for d in ev.deliveries})
        return out

    @staticmethod
    async def _add_to_groups(
        cur: psycopg.AsyncCursor[Any], events: Sequence[NewEvent], now: float
    ) -> None:
        items = [(ev, d) for ev in events for d in ev.deliveries if d.group is not None]
        if not items:
            return
        await cur.executemany(
            SQL_INSERT_GROUP_ITEM,
            [
                (d.id, ev.id, d.destination, d.route, d.group.key, now)
                for ev, d in items
                if d.group is not None
            ],
        )
        groups: dict[tuple[str, str, str], dict[str, Any]] = {}
        for _, d in items:
            if d.group is not None:
                groups.setdefault(
                    (d.destination, d.route, d.group.key),
                    {
                        "destination": d.destination,
                        "route": d.route,
                        "key": d.group.key,
                        "now": now,
                        "wait": d.group.wait,
                        "interval": d.group.interval,
                    },
                )
        await cur.executemany(SQL_OPEN_GROUP, [groups[k] for k in sorted(groups)])

    @staticmethod
    async def _claim(
        conn: psycopg.AsyncConnection[Any],
        events: Sequence[NewEvent],
        dedupe_window: float,
        now: float,
    ) -> dict[bytes, str]:
        """Claim the fingerprints of ``events``; return those already taken -> original event."""
        if dedupe_window <= 0:
            return {}
        claims: dict[bytes, str] = {}
        for ev in events:
            if ev.fingerprint is not None:
                claims.setdefault(ev.fingerprint, ev.id)
        if not claims:
            return {}
        cur = await conn.execute(
            SQL_CLAIM_FINGERPRINTS,
            {
                "digests": list(claims),
                "event_ids": list(claims.values()),
                "now": now,
                "since": now - dedupe_window,
            },
        )
        ours = {bytes(digest) for (digest,) in await cur.fetchall()}
        others = [digest for digest in claims if digest not in ours]
        if not others:
            return {}
        cur = await conn.execute(SQL_FIND_FINGERPRINTS, (others,))
        # A digest missing here was pruned in between: its body counts as new.
        return {bytes(digest): event_id for digest, event_id in await cur.fetchall()}

    async def _notify(self, conn: psycopg.AsyncConnection[Any], destinations: set[str]) -> None:
        if destinations:
            await conn.execute(
                SQL_NOTIFY, {"channel": self.channel, "destinations": sorted(destinations)}
            )

    async def lease(
        self, destination: str, limit: int, lease_seconds: float, now: float
    ) -> list[Leased]:
        rows = await self._rows(
            SQL_LEASE,
            {
                "until": now + lease_seconds,
                "owner": self.owner,
                "now": now,
                "destination": destination,
                "limit": limit,
            },
        )
        bodies: dict[str, list[bytes]] = {}
        grouped = [r[0] for r in rows if r[7] is not None]
        if grouped:  # a grouped delivery carries every event of its items, oldest first
            for did, body in await self._rows(SQL_GROUP_BODIES, (grouped,)):
                bodies.setdefault(did, []).append(bytes(body))
        return [
            Leased(
                did,
                event_id,
                dest,
                route,
                attempts,
                budget_start,
                bytes(body),
                bodies.get(did, []),
                group_key,
            )
            for did, event_id, dest, route, attempts, budget_start, body, group_key in rows
        ]

    async def settle(self, outcome: Outcome) -> None:
        await self._rows(SQL_SETTLE, outcome.params(self.owner))

    async def dead_letters(
        self, destination: str | None = None, limit: int = 1000
    ) -> list[DeadLetter]:
        rows = await self._rows(SQL_DEAD, {"destination": destination, "limit": limit})
        return [
            DeadLetter(r[0], r[1], r[2], event_name(bytes(r[3])), r[4], r[5] or "", r[6])
            for r in rows
        ]

    async def replay(self, ids: Sequence[str] | None, destination: str | None, now: float) -> int:
        params = {"now": now, "destination": destination, "ids": None if ids is None else list(ids)}
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute(SQL_REPLAY, params)
            replayed = [dest for (dest,) in await cur.fetchall()]
            await self._notify(conn, set(replayed))
        return len(replayed)

    async def flush_groups(
        self, destination: str, max_events: Mapping[str, int], now: float
    ) -> list[tuple[str, int]]:
        made: list[tuple[str, int]] = []
        async with self._conn() as conn, conn.transaction():
            due = await (await conn.execute(SQL_DUE_GROUPS, (destination, now))).fetchall()
            for route, key in due:
                cur = await conn.execute(SQL_GROUP_OPEN_ITEMS, (destination, route, key))
                items = await cur.fetchall()
                size = max_events.get(route, DEFAULT_MAX_EVENTS)
                for start in range(0, len(items), size):
                    chunk = items[start : start + size]
                    did = new_id()
                    await conn.execute(
                        SQL_INSERT_GROUP_DELIVERY,
                        (did, chunk[0][1], destination, route, now, now, now, now, key),
                    )
                    await conn.execute(SQL_ASSIGN_ITEMS, (did, [item_id for item_id, _ in chunk]))
                    made.append((key, len(chunk)))
                await conn.execute(SQL_CLOSE_GROUP, (now, destination, route, key))
        return made

    async def next_due(self, destination: str) -> float | None:
        [(due,)] = await self._rows(SQL_NEXT_DUE, {"destination": destination})
        return None if due is None else float(due)

    async def depth(self, now: float) -> Depth:
        counts: dict[tuple[str, str], int] = {}
        oldest: dict[str, float] = {}
        for dest, state, n, first in await self._rows(SQL_DEPTH):
            counts[(dest, state)] = int(n)
            if first is not None:
                oldest[dest] = max(0.0, now - first)
        groups = {dest: int(n) for dest, n in await self._rows(SQL_OPEN_GROUPS)}
        return Depth(counts, oldest, groups)

    async def ping(self) -> None:
        await self._rows(SQL_HEARTBEAT, (time.time(),))

    async def prune(
        self, settled_before: float, fingerprints_before: float, batch: int = 1000
    ) -> int:
        # Three short statements, each its own transaction: pruning never holds locks long.
        async with self._conn() as conn:
            n = (await conn.execute(SQL_PRUNE_DELIVERIES, (settled_before, batch))).rowcount
            cur = await conn.execute(SQL_PRUNE_GROUP_ITEMS, (settled_before, batch))
            n = max(n, cur.rowcount)
            n = max(n, (await conn.execute(SQL_PRUNE_EVENTS, (settled_before, batch))).rowcount)
            cur = await conn.execute(SQL_PRUNE_FINGERPRINTS, (fingerprints_before, batch))
            return max(n, cur.rowcount)

    async def release_orphans(self) -> int:
        """Leases of processes that died on this host come back at once, not after the lease.

        Owners on other hosts cannot be checked from here; their leases simply expire.
        """
        now = time.time()
        async with self._conn() as conn:
            owners = await (await conn.execute(SQL_ORPHAN_LEASES, (now,))).fetchall()
            released = 0
            for (owner,) in owners:
                if not owner_alive(owner):
                    released += (await conn.execute(SQL_RELEASE, (now, owner))).rowcount
        return released


def _parse_url(url: str) -> tuple[str, str | None, int]:
    """Split the relay's own query parameters (``schema``, ``pool_size``) from libpq's."""
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    mine = {k: v for k, v in params if k in ("schema", "pool_size")}
    schema = mine.get("schema") or None
    if schema is not None and not SCHEMA_NAME.match(schema):
        raise QueueUnavailable(
            f"invalid schema {schema!r} in the queue url: use lower-case "
            "letters, digits and _ (at most 63)"
        )
    try:
        pool_size = int(mine.get("pool_size", DEFAULT_POOL_SIZE))
        if pool_size < 1:
            raise ValueError
    except ValueError:
        raise QueueUnavailable(
            f"invalid pool_size {mine['pool_size']!r} in the queue url: use a positive integer"
        ) from None
    rest = urlencode([(k, v) for k, v in params if k not in mine], quote_via=quote)
    # libpq knows "postgresql://" and "postgres://"; keep what the user wrote.
    return urlunsplit(parts._replace(query=rest)), schema, pool_size


def _channel(schema: str) -> str:
    if schema == "public":
        return CHANNEL
    name = f"{CHANNEL}_{schema}"
    if len(name.encode()) > 63:  # longer identifiers would be truncated by the server
        name = f"{CHANNEL}_{hashlib.sha256(schema.encode()).hexdigest()[:16]}"
    return name


def _where(conninfo: str) -> str:
    """host:port/db of the URL, never its password."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.Error:
        return "the configured url"
    host = info.get("host") or "localhost"
    port = info.get("port") or "5432"
    return f"{host}:{port}/{info.get('dbname') or ''}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
