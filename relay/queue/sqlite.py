"""The embedded SQLite transport (WAL, synchronous=FULL) with group commit.

One writer thread owns the write connection. Callers hand it small jobs; it runs
every job waiting at that moment inside one transaction and commits once: many
concurrent requests share one fsync, so a durable acknowledgement costs far less
than a commit per request. The hot operations (enqueue, settle) of a batch run
as one merged operation. If anything in a batch fails, the batch is run again job
by job, each in a savepoint, so one bad job fails alone; a failed COMMIT fails
every job in it, so nothing is acknowledged that is not on disk. Reads run on
their own connections in worker threads: WAL readers never wait for the writer.
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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from ..errors import QueueUnavailable
from . import core
from .catalogue import Catalogue, load
from .core import Mode, Notify, OpFactory, Step
from .multirow import MultiRow
from .transport import Transport

T = TypeVar("T")
MAX_BATCH = 1024
#: Threads (each with its own connection) running reads beside the writer.
READERS = 2
#: Free space kept on the queue's filesystem: below it writes are refused (503) before
#: SQLite fails half-way, and `/readyz` says so. A small filesystem keeps a twentieth.
DISK_RESERVE = 8 * 1024 * 1024
DISK_CHECK_EVERY = 0.25
#: A write failure keeps `/readyz` at 503 this long even if a probe then succeeds, so
#: readiness agrees with what the receiver just answered.
FAILURE_MEMORY = 2.0
CHECKPOINT_TRIES = 20
#: Seconds between looks for commits of other processes on the file (see _look_for_others).
WATCH_EVERY = 0.05
_IDLE: Any = object()  # the writer's queue stayed empty for WATCH_EVERY


@dataclass(slots=True)
class _Job:
    """One caller's work: an operation, or an item of a kind the writer merges."""

    factory: OpFactory[Any] | None
    kind: str | None
    arg: Any
    loop: asyncio.AbstractEventLoop
    fut: asyncio.Future[Any]
    notify: set[str] = field(default_factory=set)
    #: Overwrite what the job deletes and truncate the WAL after it (`relay forget`).
    secure: bool = False
    #: Must be on disk before the caller hears back (synchronous=FULL for its batch).
    durable: bool = True


class SqliteTransport(Transport):
    """The embedded default; several processes on one host may share the file."""

    def __init__(self, path: str, catalogue: Catalogue | None = None) -> None:
        self.path = path
        self.catalogue = catalogue or load("sqlite")
        self._sql: dict[tuple[str, tuple[str, ...]], str] = {}
        self._multirows: dict[str, MultiRow | None] = {}
        self._jobs: threadqueue.SimpleQueue[_Job | None] = threadqueue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None
        self._readers = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._read_pool: ThreadPoolExecutor | None = None
        self._disk_checked = 0.0
        self._disk_problem: str | None = None
        self._last_failure = (0.0, "")
        self._durable = True  # the writer connection's current synchronous setting
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0  # the thread self._loop runs in

    @classmethod
    def from_url(cls, url: str) -> SqliteTransport:
        """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``."""
        path = url.split("://", 1)[1] if "://" in url else url.split(":", 1)[1]
        path = path[1:] if path.startswith("/") else path
        return cls(path or "relay.db")

    # -- connections ------------------------------------------------------------------------
    def _connect(self, *, reader: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=30,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=512,  # the many-row inserts add a text per chunk size
        )
        conn.execute("PRAGMA busy_timeout=30000")
        conn.create_function("relay_lower", 1, _lower, deterministic=True)
        if reader:
            conn.execute("PRAGMA query_only=1")
            return conn
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        # Deleted content is zeroed where that costs no extra I/O; `relay forget` turns
        # it fully on for its own transaction.
        conn.execute("PRAGMA secure_delete=FAST")
        return conn

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self._lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            conn = self._connect()
            self._migrate(conn)
            # Statement journals in memory, not in a temporary file per batch: each was
            # opened, unlinked and written page by page (4 system calls and a page write
            # per changed page, for every batch of events), and held copies of the pages
            # it changed, event bodies included, in a file `relay forget` never reaches.
            # After the migrations, whose index builds may sort a whole table.
            conn.execute("PRAGMA temp_store=MEMORY")
            return conn

        try:
            conn = await asyncio.to_thread(connect)
        except (sqlite3.Error, OSError) as exc:
            raise QueueUnavailable(f"cannot open SQLite queue at {self.path}: {exc}") from None
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._thread = threading.Thread(
            target=self._writer, args=(conn,), name="relay-sqlite-writer", daemon=True
        )
        self._thread.start()
        self._read_pool = ThreadPoolExecutor(READERS, thread_name_prefix="relay-sqlite-reader")

    async def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        if self._read_pool is not None:  # reads in flight finish before their connections go
            pool, self._read_pool = self._read_pool, None
            await asyncio.to_thread(pool.shutdown, wait=True)
        for conn in self._reader_conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._reader_conns.clear()
        self._readers = threading.local()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _migrate(self, conn: sqlite3.Connection) -> None:
        with self._write_lock():
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                for migration in self.catalogue.migrations[version:]:
                    for statement in _statements(migration.sql):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {migration.number}")
                    if migration.number == 3:
                        self._backfill(conn)
                self.schema_version = max(version, len(self.catalogue.migrations))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _backfill(self, conn: sqlite3.Connection) -> None:
        after: str | None = ""
        while after is not None:
            after = core.run_sync(core.backfill_fields(after, 1000), self._executor(conn, set()))

    # -- running operations -----------------------------------------------------------------
    def _executor(self, conn: sqlite3.Connection, notify: set[str]) -> Callable[[Step], Any]:
        def execute(step: Step) -> Any:
            if isinstance(step, Notify):
                notify.update(step.destinations or {""})
                return None
            key = (step.name, step.fragments)
            sql = self._sql.get(key)
            if sql is None:
                sql = self._sql[key] = self.catalogue.sql(step.name, step.fragments)
            if step.mode is Mode.ROWS:
                return conn.execute(sql, _bind(step.params)).fetchall()
            if step.mode is Mode.EXECUTE:
                return conn.execute(sql, _bind(step.params)).rowcount
            if step.mode is Mode.MANY:
                form = self._multirow(sql)
                if form is None:
                    conn.executemany(sql, [_bind(p) for p in step.params])
                else:
                    for text, values in form.chunks([_bind(p) for p in step.params]):
                        conn.execute(text, values)
                return None
            rows: list[Any] = []
            for params in step.params:
                rows.extend(conn.execute(sql, _bind(params)).fetchall())
            return rows

        return execute

    def _multirow(self, sql: str) -> MultiRow | None:
        if sql not in self._multirows:
            self._multirows[sql] = MultiRow.of(sql)
        return self._multirows[sql]

    def _submit(
        self,
        factory: OpFactory[Any] | None,
        kind: str | None,
        arg: Any,
        secure: bool = False,
        durable: bool = True,
    ) -> Any:
        if self._thread is None:
            raise QueueUnavailable("the queue is closed")
        loop = self._loop
        if loop is None or self._loop_thread != threading.get_ident() or not loop.is_running():
            # Another loop (or thread) than the one we opened on. On the usual path the
            # check above spares the getpid(2) in every get_running_loop() on 3.11: a
            # twentieth of the receiver's time on the event loop.
            loop = asyncio.get_running_loop()
        job = _Job(factory, kind, arg, loop, loop.create_future(), secure=secure, durable=durable)
        self._jobs.put(job)
        return job.fut

    async def write(self, factory: OpFactory[T], *, durable: bool = True) -> T:
        result: T = await self._submit(factory, None, None, durable=durable)
        return result

    async def merged(self, kind: str, arg: Any) -> Any:
        if kind == "enqueue" and self._disk_full():
            raise QueueUnavailable(self._disk_problem or "disk full")
        return await self._submit(None, kind, arg, durable=kind in core.DURABLE_MERGES)

    async def erase(self, factory: OpFactory[T]) -> T:
        """Deleted rows are overwritten with zeros, then the WAL is checkpointed and
        truncated, so the bytes are gone from the queue's files, not just unlinked."""
        result: T = await self._submit(factory, None, None, secure=True)
        return result

    async def read(self, factory: OpFactory[T]) -> T:
        def run() -> T:
            conn = getattr(self._readers, "conn", None)
            if conn is None:
                conn = self._connect(reader=True)
                self._readers.conn = conn
                self._reader_conns.append(conn)
            conn.execute("BEGIN")
            try:
                return core.run_sync(factory(), self._executor(conn, set()))
            finally:
                conn.execute("COMMIT")

        if self._thread is None or self._read_pool is None:
            raise QueueUnavailable("the queue is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._read_pool, run)
        except sqlite3.Error as exc:
            raise QueueUnavailable(f"SQLite queue error: {exc}") from None

    async def probe(self, factory: OpFactory[None], timeout: float) -> None:
        if self._disk_full(force=True):
            raise QueueUnavailable(self._disk_problem or "disk full")
        at, reason = self._last_failure
        if time.monotonic() - at < FAILURE_MEMORY:
            raise QueueUnavailable(reason)
        try:
            async with asyncio.timeout(timeout):
                await self.write(factory)
        except TimeoutError:
            raise QueueUnavailable(
                f"the SQLite writer did not answer within {timeout:g}s"
            ) from None

    def _disk_full(self, force: bool = False) -> bool:
        """Whether the queue's filesystem is below its reserve (checked every 250 ms)."""
        now = time.monotonic()
        if force or now - self._disk_checked >= DISK_CHECK_EVERY:
            self._disk_checked = now
            self._disk_problem = _disk_problem(self.path)
        return self._disk_problem is not None

    # -- the writer thread ------------------------------------------------------------------
    def _writer(self, conn: sqlite3.Connection) -> None:
        stop = False
        others = _data_version(conn)
        next_look = time.monotonic() + WATCH_EVERY
        while not stop:
            try:
                first = self._jobs.get(timeout=WATCH_EVERY)
            except threadqueue.Empty:
                first = _IDLE
            if first is None:
                break
            if first is not _IDLE:
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
            now = time.monotonic()
            if now >= next_look:
                next_look = now + WATCH_EVERY
                others = self._look_for_others(conn, others)
        conn.close()

    def _look_for_others(self, conn: sqlite3.Connection, seen: int) -> int:
        """Wake this process's workers when another process committed to the file.

        Other processes (a ``--role receiver``, a sibling of ``--workers``, `relay dlq
        replay`) cannot wake us directly as PostgreSQL's NOTIFY does; SQLite's
        ``data_version`` of this connection changes only on their commits, never on ours,
        and reading it is a look at shared memory. Without it, an idle worker would notice
        their events at its next poll (``queue.poll_interval``).
        """
        try:
            version = _data_version(conn)
        except sqlite3.Error:
            return seen
        if version != seen and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed while we stop
                self._loop.call_soon_threadsafe(self.notified, frozenset())
        return version

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        """Fast path: merged kinds as one operation each, no savepoints, one COMMIT.

        If anything fails, the batch is rolled back and run again job by job, each in
        a savepoint, so one bad job fails alone.
        """
        secure = any(job.secure for job in batch)
        if secure:
            conn.execute("PRAGMA secure_delete=ON")
        # One fsync per batch that holds an acknowledgement; none for one that does not.
        # (In WAL mode a later FULL commit syncs the earlier NORMAL ones' frames too.)
        durable = any(job.durable for job in batch)
        if durable != self._durable:
            conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._durable = durable
        try:
            results = self._transaction(conn, lambda: self._fast(conn, batch))
        except Exception as exc:
            if len(batch) == 1 and isinstance(exc, sqlite3.Error | _Aborted):
                results = [(False, _unavailable(_cause(exc)))]
            else:
                for job in batch:
                    job.notify.clear()
                try:
                    results = self._transaction(conn, lambda: self._one_by_one(conn, batch))
                except (sqlite3.Error, _Aborted) as exc2:
                    results = [(False, _unavailable(_cause(exc2)))] * len(batch)
        finally:
            if secure:
                conn.execute("PRAGMA secure_delete=FAST")
        if secure:
            _truncate_wal(conn)
        failed = next((value for ok, value in results if not ok), None)
        if isinstance(failed, QueueUnavailable):
            self._last_failure = (time.monotonic(), str(failed))
        for job, (ok, value) in zip(batch, results, strict=True):
            job.loop.call_soon_threadsafe(_resolve, job.fut, ok, value)
            if ok and job.notify:
                job.loop.call_soon_threadsafe(self.notified, frozenset(job.notify))

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

    def _run_job(self, conn: sqlite3.Connection, jobs: list[_Job]) -> list[Any]:
        """Run one job, or every job of one mergeable kind as one operation."""
        notify: set[str] = set()
        execute = self._executor(conn, notify)
        first = jobs[0]
        if first.kind is None:
            assert first.factory is not None
            values = [core.run_sync(first.factory(), execute)]
        else:
            values = core.run_sync(core.MERGED[first.kind]([j.arg for j in jobs]), execute)
        for job in jobs:
            job.notify = notify
        return values

    def _fast(self, conn: sqlite3.Connection, batch: list[_Job]) -> list[tuple[bool, Any]]:
        results: dict[int, tuple[bool, Any]] = {}
        kinds: dict[str, list[int]] = {}
        for i, job in enumerate(batch):
            if job.kind is None:
                results[i] = (True, self._run_job(conn, [job])[0])
            else:
                kinds.setdefault(job.kind, []).append(i)
        for indexes in kinds.values():
            values = self._run_job(conn, [batch[i] for i in indexes])
            for i, value in zip(indexes, values, strict=True):
                results[i] = (True, value)
        return [results[i] for i in range(len(batch))]

    def _one_by_one(self, conn: sqlite3.Connection, batch: list[_Job]) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        for job in batch:
            conn.execute("SAVEPOINT job")
            try:
                value = self._run_job(conn, [job])[0]
                results.append((True, value))
                conn.execute("RELEASE job")
            except Exception as exc:  # one job's failure must not fail the others
                job.notify = set()
                if not conn.in_transaction:  # SQLite rolled everything back (disk full)
                    raise _Aborted(exc) from exc
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                results.append((False, _unavailable(exc)))
        return results


def _truncate_wal(conn: sqlite3.Connection) -> None:
    """Copy the WAL into the database and truncate it; readers may make us wait a little."""
    for _ in range(CHECKPOINT_TRIES):
        with contextlib.suppress(sqlite3.Error):
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return
        time.sleep(0.05)


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration script (semicolons in comments and strings are safe)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer
            buffer = ""
    if buffer.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buffer.splitlines()
    ):
        yield buffer


def _bind(params: Any) -> Any:
    """SQLite has no arrays: a list parameter is passed as JSON text, read with json_each."""
    if not isinstance(params, dict):
        return params
    for value in params.values():
        if isinstance(value, list | tuple):
            break
    else:  # the common case (every insert): nothing to convert, nothing to copy
        return params
    return {k: _ENCODE(v).decode() if isinstance(v, list | tuple) else v for k, v in params.items()}


_ENCODE = msgspec.json.Encoder().encode


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _disk_problem(path: str) -> str | None:
    """Why the filesystem of ``path`` cannot take writes, or None."""
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)) or ".")
    except OSError as exc:
        return f"cannot read the queue's filesystem: {exc}"
    free = st.f_bavail * st.f_frsize
    reserve = min(DISK_RESERVE, st.f_blocks * st.f_frsize // 20)
    if free < reserve:
        return (
            f"disk full: {free // 1024} KiB free on the queue's filesystem, "
            f"under the reserve of {reserve // 1024} KiB"
        )
    return None


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


def _resolve(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


def _data_version(conn: sqlite3.Connection) -> int:
    """Changes whenever another connection commits to the file (never on ours)."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])
