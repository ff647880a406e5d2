"""The PostgreSQL transport: one database shared by several relay instances.

The statements are the catalogue's (``sql/postgres.sql``), made safe for many
writers there: leasing skips rows another instance is leasing, fingerprints are
claimed by an upsert in digest order. This module only moves them: a pool of
autocommit connections, one transaction per operation, pipelined so that a
whole operation costs about one round trip; group commit of concurrent enqueue
and settle calls (several committers, so one slow fsync does not stall all);
and ``LISTEN/NOTIFY`` so idle workers of every instance wake within
milliseconds when another commits work for them.

URL: ``postgresql://user:password@host:5432/db`` plus two optional query
parameters the relay reads and libpq never sees: ``schema=NAME`` (tables live in
that schema, created if missing; default: the connection's ``search_path``,
usually ``public``) and ``pool_size=N`` (connections per instance, default 10).
Every other parameter is libpq's (``sslmode``, ``options``, ``connect_timeout``...).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import re
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from ..errors import QueueUnavailable, QueueURLInvalid
from ..logs import get_logger
from . import core
from .catalogue import Catalogue, load
from .core import Mode, Notify, Op, OpFactory, Step
from .transport import Transport

T = TypeVar("T")
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
#: How long one operation (waiting for a pooled connection included) may take before the
#: queue counts as unavailable: the receiver then answers 503 instead of hanging, even when
#: the database went silent (a partition sends no reset).
OPERATION_TIMEOUT = 5.0
CONNECT_TIMEOUT = 10
#: The listener checks its connection this often when no notification arrives, so a
#: silently dropped connection is noticed and replaced.
LISTEN_CHECK_EVERY = 15.0
LISTEN_BACKOFF = (0.1, 5.0)  # first and longest wait between reconnects
#: Transactions committing merged operations at once, per instance, and callers per one.
COMMITTERS = 3
MAX_BATCH = 256

# Transport plumbing, not queue logic: these never appear in the SQLite dialect.
SQL_LOCK_MIGRATIONS = "SELECT pg_advisory_xact_lock(%s)"
SQL_VERSION_TABLE = """
    CREATE TABLE IF NOT EXISTS relay_schema_version (
        version    integer PRIMARY KEY,
        applied_at double precision NOT NULL
    )"""
SQL_VERSION = "SELECT coalesce(max(version), 0) FROM relay_schema_version"
SQL_SET_VERSION = "INSERT INTO relay_schema_version (version, applied_at) VALUES (%s, %s)"
SQL_ASYNC_COMMIT = "SET LOCAL synchronous_commit TO OFF"
# Sent inside the transaction: PostgreSQL delivers it on commit, and never on rollback.
SQL_NOTIFY = "SELECT pg_notify(%(channel)s, d) FROM unnest(%(destinations)s::text[]) AS d"


@dataclass(slots=True)
class _Waiting:
    """A call of a mergeable operation waiting for the next group commit."""

    arg: Any
    fut: asyncio.Future[Any]


class PostgresTransport(Transport):
    """Any number of instances on one database (or schema)."""

    def __init__(self, url: str, catalogue: Catalogue | None = None) -> None:
        self.url = url
        self.catalogue = catalogue or load("postgres")
        self.conninfo, self.schema, self.pool_size = parse_url(url)
        self.channel = CHANNEL
        self._pool: AsyncConnectionPool | None = None
        self._listener: asyncio.Task[None] | None = None
        self._sql: dict[tuple[str, tuple[str, ...]], str] = {}
        self._waiting: dict[str, list[_Waiting]] = {}
        self._abandoned: set[asyncio.Future[Any]] = set()
        self._committers: dict[str, set[asyncio.Task[None]]] = {}

    # -- connections ------------------------------------------------------------------------
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
                self.schema_version = await self._migrate(conn)
                row = await (await conn.execute("SELECT current_schema()")).fetchone()
            self.channel = _channel(row[0] if row and row[0] else "public")
            listen = await self._listen_connect()
            pool = AsyncConnectionPool(
                self.conninfo,
                kwargs={**self._kwargs(), "autocommit": True},
                min_size=1,
                max_size=self.pool_size,
                open=False,
                timeout=OPERATION_TIMEOUT,
                check=AsyncConnectionPool.check_connection,
                name="relay",
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

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        for tasks in self._committers.values():
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._pool is not None:
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
            for migration in self.catalogue.migrations[version:]:
                await conn.execute(migration.sql.encode())
                await conn.execute(SQL_SET_VERSION, (migration.number, time.time()))
                if migration.number == 3:
                    after: str | None = ""
                    while after is not None:
                        after = await self._run(conn, core.backfill_fields(after, 1000))
                version = migration.number
        # A newer relay may have migrated further; its additions are compatible by rule.
        return version

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled autocommit connection; every database error becomes QueueUnavailable."""
        if self._pool is None:
            raise QueueUnavailable("the queue is closed")
        try:
            async with self._pool.connection() as conn:
                yield conn
        except (psycopg.Error, OSError) as exc:
            raise QueueUnavailable(f"PostgreSQL queue error: {_one_line(exc)}") from None

    async def _bounded(self, work: Coroutine[Any, Any, T], timeout: float) -> T:
        """``work``'s result within ``timeout`` seconds, or QueueUnavailable.

        A silent server (a partition sends no reset) must not hold the caller: on
        cancellation psycopg asks the server to cancel the query and waits for that
        too, so the work runs as a task of its own, and past the deadline the caller
        leaves it to finish (and give its connection back) in the background.
        """
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if task in done:
            return task.result()
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(self._abandoned.discard)
        raise QueueUnavailable(f"PostgreSQL did not answer within {timeout:g}s")

    # -- running operations -----------------------------------------------------------------
    async def _run(self, conn: psycopg.AsyncConnection[Any], op: Op[T]) -> T:
        """Drive ``op`` on ``conn`` (pipelined: results are awaited only when needed)."""
        result: Any = None
        async with conn.pipeline() as pipeline:
            while True:
                try:
                    step = op.send(result)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                result = await self._step(conn, pipeline, step)

    async def _step(
        self, conn: psycopg.AsyncConnection[Any], pipeline: psycopg.AsyncPipeline, step: Step
    ) -> Any:
        if isinstance(step, Notify):
            destinations = sorted(step.destinations or {""})
            await conn.execute(SQL_NOTIFY, {"channel": self.channel, "destinations": destinations})
            return None
        key = (step.name, step.fragments)
        query = self._sql.get(key)
        if query is None:
            query = self._sql[key] = self.catalogue.sql(step.name, step.fragments)
        cur = conn.cursor()
        if step.mode is Mode.ROWS:
            await cur.execute(query.encode(), step.params)
            return await cur.fetchall()
        if step.mode is Mode.EXECUTE:
            await cur.execute(query.encode(), step.params)
            await pipeline.sync()
            return cur.rowcount
        if step.mode is Mode.MANY:
            if step.params:
                await cur.executemany(query.encode(), step.params)
            return None
        rows: list[Any] = []
        if step.params:
            await cur.executemany(query.encode(), step.params, returning=True)
            while True:
                rows.extend(await cur.fetchall())
                if not cur.nextset():
                    break
        return rows

    async def _in_transaction(self, factory: OpFactory[T], durable: bool = True) -> T:
        async with self._conn() as conn, conn.transaction():
            if not durable:  # a lost commit only repeats an attempt (see Transport.write)
                await conn.execute(SQL_ASYNC_COMMIT)
            return await self._run(conn, factory())

    async def _outside_transaction(self, factory: OpFactory[T]) -> T:
        async with self._conn() as conn:
            return await self._run(conn, factory())

    async def write(self, factory: OpFactory[T], *, durable: bool = True) -> T:
        return await self._bounded(self._in_transaction(factory, durable), OPERATION_TIMEOUT)

    async def read(self, factory: OpFactory[T]) -> T:
        return await self._bounded(self._outside_transaction(factory), OPERATION_TIMEOUT)

    async def probe(self, factory: OpFactory[None], timeout: float) -> None:
        await self._bounded(self._in_transaction(factory), timeout)

    async def merged(self, kind: str, arg: Any) -> Any:
        """Queue this call with the others waiting: one transaction for them all.

        A commit costs a round trip and an fsync; concurrent callers share it, as the
        SQLite writer does. If the transaction fails for another reason than the
        connection, each caller is retried alone so one bad call fails alone.
        """
        loop = asyncio.get_running_loop()
        waiting = _Waiting(arg, loop.create_future())
        self._waiting.setdefault(kind, []).append(waiting)
        committers = self._committers.setdefault(kind, set())
        if len(committers) < COMMITTERS:
            task = loop.create_task(self._commit_waiting(kind))
            committers.add(task)
            task.add_done_callback(committers.discard)
        return await waiting.fut

    async def _commit_waiting(self, kind: str) -> None:
        queue = self._waiting[kind]
        while queue:
            batch = queue[:MAX_BATCH]
            del queue[:MAX_BATCH]
            merge = core.MERGED[kind]
            durable = kind in core.DURABLE_MERGES
            try:
                values = await self.write(
                    functools.partial(merge, [w.arg for w in batch]), durable=durable
                )
            except QueueUnavailable as exc:
                _fail(batch, exc)
                continue
            except Exception as exc:  # a bug in one call: isolate it
                if len(batch) == 1:
                    _fail(batch, exc)
                    continue
                for w in batch:
                    try:
                        [value] = await self.write(
                            functools.partial(merge, [w.arg]), durable=durable
                        )
                    except Exception as one:
                        _fail([w], one)
                    else:
                        _done(w, value)
                continue
            for w, value in zip(batch, values, strict=True):
                _done(w, value)

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
        """Relay each notification to the ``on_notify`` callback; reconnect when dropped.

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
                        loop.call_soon(self.notified, frozenset({notify.payload}))
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


def _done(waiting: _Waiting, value: Any) -> None:
    if not waiting.fut.done():
        waiting.fut.set_result(value)


def _fail(batch: list[_Waiting], exc: BaseException) -> None:
    for w in batch:
        if not w.fut.done():
            w.fut.set_exception(exc)


def parse_url(url: str) -> tuple[str, str | None, int]:
    """Split the relay's own query parameters (``schema``, ``pool_size``) from libpq's."""
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    mine = {k: v for k, v in params if k in ("schema", "pool_size")}
    schema = mine.get("schema") or None
    if schema is not None and not SCHEMA_NAME.match(schema):
        raise QueueURLInvalid(
            f"invalid schema {schema!r} in the queue url: use lower-case "
            "letters, digits and _ (at most 63)"
        )
    try:
        pool_size = int(mine.get("pool_size", DEFAULT_POOL_SIZE))
        if not 1 <= pool_size <= 1000:
            raise ValueError
    except ValueError:
        raise QueueURLInvalid(
            f"invalid pool_size {mine['pool_size']!r} in the queue url: use 1 to 1000"
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


__all__ = ["PostgresTransport", "parse_url"]
