"""Embedded SQLite queue (WAL, synchronous=FULL) with group commit.

One writer thread owns the connection. Callers hand it small jobs; it runs
every job waiting at that moment inside one transaction and commits once:
many concurrent requests share one fsync, so a durable acknowledgement costs
far less than a commit per request. The hot kinds (enqueue, settle) are merged
into one statement per batch. If anything in a batch fails, the batch is run
again job by job, each in a savepoint, so one bad job fails alone; a failed
COMMIT fails every job in it, so nothing is acknowledged that is not on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import queue as threadqueue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..errors import QueueUnavailable
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

T = TypeVar("T")
MAX_BATCH = 1024

# -- schema: versioned, applied in order at open --------------------------------------------
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        id          TEXT PRIMARY KEY,
        received_at REAL NOT NULL,
        body        BLOB NOT NULL
    );
    CREATE TABLE deliveries (
        id           TEXT PRIMARY KEY,
        event_id     TEXT NOT NULL REFERENCES events(id),
        destination  TEXT NOT NULL,
        route        TEXT NOT NULL,
        state        TEXT NOT NULL DEFAULT 'pending',
        attempts     INTEGER NOT NULL DEFAULT 0,
        available_at REAL NOT NULL,
        created_at   REAL NOT NULL,
        budget_start REAL NOT NULL,
        updated_at   REAL NOT NULL,
        lease_owner  TEXT,
        last_error   TEXT,
        last_status  INTEGER
    );
    CREATE INDEX deliveries_due ON deliveries (destination, state, available_at);
    CREATE INDEX deliveries_event ON deliveries (event_id);
    CREATE INDEX deliveries_settled ON deliveries (state, updated_at);
    CREATE TABLE fingerprints (
        digest     BLOB PRIMARY KEY,
        event_id   TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX fingerprints_age ON fingerprints (created_at);
    CREATE TABLE heartbeat (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL);
    """,
    # 2: grouped deliveries (digests and batches). An event of a grouped route waits as a
    # group item until its group is flushed into deliveries of at most max_events items.
    """
    ALTER TABLE deliveries ADD COLUMN group_key TEXT;
    CREATE TABLE group_items (
        id          TEXT PRIMARY KEY,
        event_id    TEXT NOT NULL REFERENCES events(id),
        destination TEXT NOT NULL,
        route       TEXT NOT NULL,
        group_key   TEXT NOT NULL,
        created_at  REAL NOT NULL,
        delivery_id TEXT
    );
    CREATE INDEX group_items_open ON group_items (destination, route, group_key, delivery_id);
    CREATE INDEX group_items_delivery ON group_items (delivery_id);
    CREATE INDEX group_items_event ON group_items (event_id);
    CREATE TABLE groups (
        destination   TEXT NOT NULL,
        route         TEXT NOT NULL,
        group_key     TEXT NOT NULL,
        flush_at      REAL,
        last_flush_at REAL,
        PRIMARY KEY (destination, route, group_key)
    );
    CREATE INDEX groups_due ON groups (destination, flush_at);
    """,
)

# -- statements -------------------------------------------------------------------------------
SQL_INSERT_EVENT = "INSERT INTO events (id, received_at, body) VALUES (?, ?, ?)"
SQL_INSERT_DELIVERY = """
    INSERT INTO deliveries (id, event_id, destination, route, available_at, created_at,
                            budget_start, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)"""
SQL_INSERT_GROUP_ITEM = """
    INSERT INTO group_items (id, event_id, destination, route, group_key, created_at)
    VALUES (?, ?, ?, ?, ?, ?)"""
# A new group goes out `wait` after its first event; a group that went out within the last
# `interval` goes out again no sooner than `interval` after that.
SQL_OPEN_GROUP = """
    INSERT INTO groups (destination, route, group_key, flush_at, last_flush_at)
    VALUES (:destination, :route, :key, :now + :wait, NULL)
    ON CONFLICT (destination, route, group_key) DO UPDATE
       SET flush_at = COALESCE(groups.flush_at,
                               MAX(:now + :wait, COALESCE(groups.last_flush_at + :interval, 0)))"""
SQL_DUE_GROUPS = """
    SELECT route, group_key FROM groups
     WHERE destination = ? AND flush_at IS NOT NULL AND flush_at <= ? LIMIT 100"""
SQL_GROUP_OPEN_ITEMS = """
    SELECT id, event_id FROM group_items
     WHERE destination = ? AND route = ? AND group_key = ? AND delivery_id IS NULL
     ORDER BY created_at, rowid"""
SQL_CLOSE_GROUP = """
    UPDATE groups SET flush_at = NULL, last_flush_at = ?
     WHERE destination = ? AND route = ? AND group_key = ?"""
SQL_INSERT_GROUP_DELIVERY = """
    INSERT INTO deliveries (id, event_id, destination, route, available_at, created_at,
                            budget_start, updated_at, group_key)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"""
SQL_ASSIGN_ITEM = "UPDATE group_items SET delivery_id = ? WHERE id = ?"
SQL_GROUP_BODIES = """
    SELECT e.body FROM group_items g JOIN events e ON e.id = g.event_id
     WHERE g.delivery_id = ? ORDER BY g.created_at, g.rowid"""
SQL_NEXT_GROUP_FLUSH = """
    SELECT MIN(flush_at) FROM groups WHERE destination = ? AND flush_at IS NOT NULL"""
SQL_OPEN_GROUPS = """
    SELECT destination, COUNT(*) FROM groups WHERE flush_at IS NOT NULL GROUP BY destination"""
SQL_FIND_FINGERPRINT = "SELECT event_id FROM fingerprints WHERE digest = ? AND created_at >= ?"
SQL_PUT_FINGERPRINT = """
    INSERT INTO fingerprints (digest, event_id, created_at) VALUES (?, ?, ?)
    ON CONFLICT (digest) DO UPDATE SET event_id = excluded.event_id,
                                       created_at = excluded.created_at"""
# Taking a lease pushes available_at past the lease: a crashed holder's rows come back by
# themselves. The attempt is counted when taken, so a crash mid-send still uses budget.
SQL_LEASE = """
    UPDATE deliveries
       SET available_at = :until, attempts = attempts + 1, lease_owner = :owner,
           updated_at = :now
     WHERE id IN (SELECT id FROM deliveries
                   WHERE destination = :destination AND state = 'pending'
                     AND available_at <= :now
                   ORDER BY available_at LIMIT :limit)
    RETURNING id, event_id, destination, route, attempts, budget_start, group_key"""
SQL_EVENT_BODY = "SELECT body FROM events WHERE id = ?"
SQL_SETTLE = """
    UPDATE deliveries
       SET state = :state, available_at = :available_at, last_error = :error,
           last_status = :status, lease_owner = NULL, updated_at = :now
     WHERE id = :id AND state = 'pending' AND lease_owner = :owner"""
SQL_DEAD = """
    SELECT d.id, d.destination, d.event_id, e.body, d.attempts, d.last_error, d.updated_at
      FROM deliveries d JOIN events e ON e.id = d.event_id
     WHERE d.state = 'dead' AND (:destination IS NULL OR d.destination = :destination)
     ORDER BY d.updated_at LIMIT :limit"""
SQL_REPLAY = """
    UPDATE deliveries
       SET state = 'pending', attempts = 0, available_at = :now, budget_start = :now,
           lease_owner = NULL, updated_at = :now
     WHERE state = 'dead' AND (:destination IS NULL OR destination = :destination)"""
SQL_NEXT_DUE = """
    SELECT MIN(available_at) FROM deliveries WHERE destination = ? AND state = 'pending'"""
SQL_DEPTH = """
    SELECT destination, state, COUNT(*), MIN(CASE WHEN state = 'pending' THEN created_at END)
      FROM deliveries WHERE state IN ('pending', 'dead') GROUP BY destination, state"""
SQL_HEARTBEAT = """
    INSERT INTO heartbeat (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at"""
SQL_ORPHAN_LEASES = """
    SELECT DISTINCT lease_owner FROM deliveries
     WHERE state = 'pending' AND lease_owner IS NOT NULL AND available_at > ?"""
SQL_RELEASE = """
    UPDATE deliveries SET available_at = ?, lease_owner = NULL
     WHERE state = 'pending' AND lease_owner = ?"""
SQL_PRUNE_DELIVERIES = """
    DELETE FROM deliveries WHERE rowid IN (
        SELECT rowid FROM deliveries WHERE state = 'succeeded' AND updated_at < ? LIMIT ?)"""
SQL_PRUNE_GROUP_ITEMS = """
    DELETE FROM group_items WHERE rowid IN (
        SELECT g.rowid FROM group_items g WHERE g.created_at < ? AND g.delivery_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.id = g.delivery_id) LIMIT ?)"""
SQL_PRUNE_EVENTS = """
    DELETE FROM events WHERE rowid IN (
        SELECT e.rowid FROM events e WHERE e.received_at < ?
           AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
           AND NOT EXISTS (SELECT 1 FROM group_items g WHERE g.event_id = e.id) LIMIT ?)"""
SQL_PRUNE_FINGERPRINTS = """
    DELETE FROM fingerprints WHERE rowid IN (
        SELECT rowid FROM fingerprints WHERE created_at < ? LIMIT ?)"""


class SqliteQueue(Queue):
    """The embedded default; several processes on one host may share the file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.owner = instance_id()
        self._jobs: threadqueue.SimpleQueue[_Job | None] = threadqueue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None

    @classmethod
    def from_url(cls, url: str) -> SqliteQueue:
        """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``."""
        path = url.split("://", 1)[1] if "://" in url else url.split(":", 1)[1]
        path = path[1:] if path.startswith("/") else path
        return cls(path or "relay.db")

    # -- plumbing ---------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    async def open(self) -> None:
        try:
            conn = await asyncio.to_thread(self._connect)
            await asyncio.to_thread(self._migrate, conn)
        except (sqlite3.Error, OSError) as exc:
            raise QueueUnavailable(f"cannot open SQLite queue at {self.path}: {exc}") from None
        self._thread = threading.Thread(
            target=self._writer, args=(conn,), name="relay-sqlite-writer", daemon=True
        )
        self._thread.start()
        await self.release_orphans()

    async def close(self) -> None:
        if self._thread is not None:
            # Our unfinished leases are due again now, not when the lease runs out.
            with contextlib.suppress(Exception):
                await self._call(
                    lambda conn: conn.execute(SQL_RELEASE, (time.time(), self.owner)) and None
                )
            self._jobs.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for i, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {i}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Run ``fn`` in the writer's next transaction."""
        return self._submit(_Job(fn, None, None))

    def _merged(self, kind: str, arg: Any) -> asyncio.Future[Any]:
        """Run one item of a mergeable kind (see :data:`MERGED`) in the next transaction."""
        return self._submit(_Job(None, kind, arg))

    def _submit(self, job: _Job) -> asyncio.Future[Any]:
        if self._thread is None:
            raise QueueUnavailable("the queue is closed")
        job.loop = asyncio.get_running_loop()
        job.fut = job.loop.create_future()
        self._jobs.put(job)
        return job.fut

    def _writer(self, conn: sqlite3.Connection) -> None:
        stop = False
        while not stop:
            first = self._jobs.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    job = self._jobs.get_nowait()
                except threadqueue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                batch.append(job)
            self._run_batch(conn, batch)
        conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        """Fast path: every job of a kind in one statement, no savepoints, one COMMIT.

        If anything fails, the batch is rolled back and run again job by job, each in
        a savepoint, so one bad job fails alone.
        """
        try:
            results = self._transaction(conn, lambda: self._fast(conn, batch))
        except (sqlite3.Error, _Aborted) as exc:
            if len(batch) == 1:
                results = [(False, _unavailable(_cause(exc)))]
            else:
                try:
                    results = self._transaction(conn, lambda: self._one_by_one(conn, batch))
                except (sqlite3.Error, _Aborted) as exc2:
                    results = [(False, _unavailable(_cause(exc2)))] * len(batch)
        except Exception as exc:  # a job's own bug: retry one by one to isolate it
            try:
                results = self._transaction(conn, lambda: self._one_by_one(conn, batch))
            except (sqlite3.Error, _Aborted) as exc2:
                results = [(False, _unavailable(_cause(exc2)))] * len(batch)
            del exc
        for job, (ok, value) in zip(batch, results, strict=True):
            assert job.loop is not None and job.fut is not None
            job.loop.call_soon_threadsafe(_settle, job.fut, ok, value)

    def _transaction(self, conn: sqlite3.Connection, body: Callable[[], T]) -> T:
        """One write transaction, holding the file lock shared by every process on the file.

        SQLite's own busy handler makes a waiting process sleep and retry (up to
        100 ms a time, unfairly), which starves siblings under ``--workers``; a
        blocking ``flock`` queues writers in order and wakes the next at once.
        """
        with self._write_lock():
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = body()
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
        return result

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        if self._lock_fd is None:
            yield
            return
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @staticmethod
    def _fast(conn: sqlite3.Connection, batch: list[_Job]) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any] | None] = [None] * len(batch)
        kinds: dict[str, list[int]] = {}
        for i, job in enumerate(batch):
            if job.kind is None:
                assert job.fn is not None
                results[i] = (True, job.fn(conn))
            else:
                kinds.setdefault(job.kind, []).append(i)
        for kind, indexes in kinds.items():
            values = MERGED[kind](conn, [batch[i].arg for i in indexes])
            for i, value in zip(indexes, values, strict=True):
                results[i] = (True, value)
        return [r for r in results if r is not None]

    @staticmethod
    def _one_by_one(conn: sqlite3.Connection, batch: list[_Job]) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        for job in batch:
            conn.execute("SAVEPOINT job")
            try:
                if job.kind is None:
                    assert job.fn is not None
                    value = job.fn(conn)
                else:
                    value = MERGED[job.kind](conn, [job.arg])[0]
                results.append((True, value))
                conn.execute("RELEASE job")
            except Exception as exc:  # one job's failure must not fail the others
                if not conn.in_transaction:  # SQLite rolled everything back (disk full)
                    raise _Aborted(exc) from exc
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                results.append((False, _unavailable(exc)))
        return results

    # -- jobs -------------------------------------------------------------------------------
    async def enqueue(
        self, events: Sequence[NewEvent], dedupe_window: float, now: float
    ) -> list[Accepted]:
        result: list[Accepted] = await self._merged("enqueue", (events, dedupe_window, now))
        return result

    async def lease(
        self, destination: str, limit: int, lease_seconds: float, now: float
    ) -> list[Leased]:
        def job(conn: sqlite3.Connection) -> list[Leased]:
            rows = conn.execute(
                SQL_LEASE,
                {
                    "until": now + lease_seconds,
                    "owner": self.owner,
                    "now": now,
                    "destination": destination,
                    "limit": limit,
                },
            ).fetchall()
            if not rows:
                return []
            ids = list({r[1] for r in rows})
            marks = ",".join("?" * len(ids))
            bodies = dict(conn.execute(f"SELECT id, body FROM events WHERE id IN ({marks})", ids))
            out = []
            for did, event_id, dest, route, attempts, budget_start, group_key in rows:
                body = bodies[event_id]
                events = (
                    [b for (b,) in conn.execute(SQL_GROUP_BODIES, (did,))]
                    if group_key is not None
                    else []
                )
                out.append(
                    Leased(
                        did, event_id, dest, route, attempts, budget_start, body, events, group_key
                    )
                )
            return out

        return await self._call(job)

    async def settle(self, outcome: Outcome) -> None:
        await self._merged("settle", outcome.params(self.owner))

    async def dead_letters(
        self, destination: str | None = None, limit: int = 1000
    ) -> list[DeadLetter]:
        def job(conn: sqlite3.Connection) -> list[DeadLetter]:
            rows = conn.execute(SQL_DEAD, {"destination": destination, "limit": limit})
            return [
                DeadLetter(r[0], r[1], r[2], event_name(r[3]), r[4], r[5] or "", r[6]) for r in rows
            ]

        return await self._call(job)

    async def replay(self, ids: Sequence[str] | None, destination: str | None, now: float) -> int:
        def job(conn: sqlite3.Connection) -> int:
            params = {"now": now, "destination": destination}
            if ids is None:
                return conn.execute(SQL_REPLAY, params).rowcount
            return sum(
                conn.execute(SQL_REPLAY + " AND id = :id", {**params, "id": i}).rowcount
                for i in ids
            )

        return await self._call(job)

    async def flush_groups(
        self, destination: str, max_events: Mapping[str, int], now: float
    ) -> list[tuple[str, int]]:
        def job(conn: sqlite3.Connection) -> list[tuple[str, int]]:
            made: list[tuple[str, int]] = []
            for route, key in conn.execute(SQL_DUE_GROUPS, (destination, now)).fetchall():
                items = conn.execute(SQL_GROUP_OPEN_ITEMS, (destination, route, key)).fetchall()
                size = max_events.get(route, DEFAULT_MAX_EVENTS)
                for start in range(0, len(items), size):
                    chunk = items[start : start + size]
                    did = new_id()
                    conn.execute(
                        SQL_INSERT_GROUP_DELIVERY,
                        (did, chunk[0][1], destination, route, now, now, now, now, key),
                    )
                    conn.executemany(SQL_ASSIGN_ITEM, [(did, item_id) for item_id, _ in chunk])
                    made.append((key, len(chunk)))
                conn.execute(SQL_CLOSE_GROUP, (now, destination, route, key))
            return made

        return await self._call(job)

    async def next_due(self, destination: str) -> float | None:
        def job(conn: sqlite3.Connection) -> float | None:
            due = [
                conn.execute(sql, (destination,)).fetchone()[0]
                for sql in (SQL_NEXT_DUE, SQL_NEXT_GROUP_FLUSH)
            ]
            return min((d for d in due if d is not None), default=None)

        return await self._call(job)

    async def depth(self, now: float) -> Depth:
        def job(conn: sqlite3.Connection) -> Depth:
            counts: dict[tuple[str, str], int] = {}
            oldest: dict[str, float] = {}
            for dest, state, n, first in conn.execute(SQL_DEPTH):
                counts[(dest, state)] = n
                if first is not None:
                    oldest[dest] = max(0.0, now - first)
            return Depth(counts, oldest, dict(conn.execute(SQL_OPEN_GROUPS).fetchall()))

        return await self._call(job)

    async def ping(self) -> None:
        await self._call(lambda conn: conn.execute(SQL_HEARTBEAT, (time.time(),)) and None)

    async def prune(
        self, settled_before: float, fingerprints_before: float, batch: int = 1000
    ) -> int:
        def job(conn: sqlite3.Connection) -> int:
            n = conn.execute(SQL_PRUNE_DELIVERIES, (settled_before, batch)).rowcount
            n = max(n, conn.execute(SQL_PRUNE_GROUP_ITEMS, (settled_before, batch)).rowcount)
            n = max(n, conn.execute(SQL_PRUNE_EVENTS, (settled_before, batch)).rowcount)
            return max(
                n, conn.execute(SQL_PRUNE_FINGERPRINTS, (fingerprints_before, batch)).rowcount
            )

        return await self._call(job)

    async def release_orphans(self) -> int:
        return await self._call(self._release_orphans)

    def _release_orphans(self, conn: sqlite3.Connection) -> int:
        now = time.time()
        dead = [o for (o,) in conn.execute(SQL_ORPHAN_LEASES, (now,)) if not owner_alive(o)]
        return sum(conn.execute(SQL_RELEASE, (now, o)).rowcount for o in dead)


@dataclass(slots=True)
class _Job:
    """One caller's work: a function, or an item of a kind the writer merges."""

    fn: Callable[[sqlite3.Connection], Any] | None
    kind: str | None
    arg: Any
    loop: asyncio.AbstractEventLoop | None = None
    fut: asyncio.Future[Any] | None = None


def _enqueue_many(
    conn: sqlite3.Connection, items: list[tuple[Sequence[NewEvent], float, float]]
) -> list[list[Accepted]]:
    """Every waiting request's events in a handful of statements (the group commit)."""
    digests = [
        ev.fingerprint
        for evs, window, _ in items
        if window > 0
        for ev in evs
        if ev.fingerprint is not None
    ]
    known: dict[bytes, tuple[str, float]] = {}
    for start in range(0, len(digests), 500):
        chunk = digests[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for digest, event_id, created in conn.execute(
            f"SELECT digest, event_id, created_at FROM fingerprints WHERE digest IN ({marks})",
            chunk,
        ):
            known[digest] = (event_id, created)
    out: list[list[Accepted]] = []
    events: list[tuple[str, float, bytes]] = []
    deliveries: list[tuple[Any, ...]] = []
    items_rows: list[tuple[Any, ...]] = []
    groups: list[dict[str, Any]] = []
    prints: list[tuple[bytes, str, float]] = []
    for evs, window, now in items:
        accepted = []
        for ev in evs:
            if ev.fingerprint is not None and window > 0:
                seen = known.get(ev.fingerprint)
                if seen is not None and seen[1] >= now - window:
                    accepted.append(Accepted(seen[0], True))
                    continue
                known[ev.fingerprint] = (ev.id, now)
                prints.append((ev.fingerprint, ev.id, now))
            events.append((ev.id, now, ev.body))
            for d in ev.deliveries:
                if d.group is None:
                    deliveries.append((d.id, ev.id, d.destination, d.route, now, now, now, now))
                else:
                    items_rows.append((d.id, ev.id, d.destination, d.route, d.group.key, now))
                    groups.append(
                        {
                            "destination": d.destination,
                            "route": d.route,
                            "key": d.group.key,
                            "now": now,
                            "wait": d.group.wait,
                            "interval": d.group.interval,
                        }
                    )
            accepted.append(Accepted(ev.id, False))
        out.append(accepted)
    if prints:
        conn.executemany(SQL_PUT_FINGERPRINT, prints)
    conn.executemany(SQL_INSERT_EVENT, events)
    if deliveries:
        conn.executemany(SQL_INSERT_DELIVERY, deliveries)
    if items_rows:
        conn.executemany(SQL_INSERT_GROUP_ITEM, items_rows)
        conn.executemany(SQL_OPEN_GROUP, groups)
    return out


def _settle_many(conn: sqlite3.Connection, params: list[dict[str, Any]]) -> list[None]:
    """Outcomes of many attempts in one statement: acks cost one write per batch."""
    conn.executemany(SQL_SETTLE, params)
    return [None] * len(params)


#: Job kinds the writer runs as one statement per batch instead of one per caller.
MERGED: dict[str, Callable[[sqlite3.Connection, list[Any]], list[Any]]] = {
    "enqueue": _enqueue_many,
    "settle": _settle_many,
}


def _cause(exc: BaseException) -> BaseException:
    return exc.cause if isinstance(exc, _Aborted) else exc


class _Aborted(Exception):
    """SQLite aborted the whole transaction inside a job: every job of the batch fails."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _unavailable(exc: BaseException) -> BaseException:
    if isinstance(exc, sqlite3.Error):
        return QueueUnavailable(f"SQLite queue error: {exc}")
    return exc


def _settle(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)
