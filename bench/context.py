"""What the steps share: settings, the temp dir, the sink, the load generator, and the
measurements other steps reuse (bare Litestar ingest, the relay's ingest), each taken once.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .loadgen import LoadGenerator, LoadResult
from .procs import Server, free_port, python
from .relayenv import (
    PATH,
    body_bytes,
    copy_db,
    remove_db,
    serve_argv,
    write_config,
)
from .sink import SinkClient

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    quick: bool
    duration: float  # seconds of load per measured round
    warmup: float  # seconds of load before the measured rounds (0 = none)
    rounds: int  # measured rounds; the median is reported
    connections: int  # load generator connections (ingest)
    concurrency: int  # the "high concurrency" drain row's destination and client ceiling
    log_level: str  # every relay's logging level (the shipped default is info)
    relay_concurrency: int  # every relay's destination concurrency (shipped: 8) but one
    backlog: int  # deliveries pre-filled for the drain step
    drain_rounds: int
    scale_pending: int  # pending deliveries for the scale step (0 = skip it)
    e2e_probes: int  # rates tried by the end-to-end search
    loadgen: str  # auto | wrk | python
    wrk_threads: int


@dataclass
class Ingest:
    """Median of the measured rounds (each metric on its own), plus every round."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    rss_mb: float | None
    rounds: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, results: list[LoadResult], rss: list[float]) -> Ingest:
        return cls(
            rps=statistics.median(r.rps for r in results),
            p50_ms=statistics.median(r.p50_ms for r in results),
            p99_ms=statistics.median(r.p99_ms for r in results),
            errors=sum(r.errors for r in results),
            rss_mb=max(rss) if rss else None,
            rounds=[
                {**r.as_dict(), **({"rss_mb": round(m, 1)} if m else {})}
                for r, m in zip(results, rss or [0.0] * len(results), strict=True)
            ],
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "errors": self.errors,
            "rss_mb": None if self.rss_mb is None else round(self.rss_mb, 1),
            "rounds": self.rounds,
        }


class Bench:
    def __init__(self, settings: Settings, workdir: Path, say: Callable[[str], None]) -> None:
        self.s = settings
        self.workdir = workdir
        self.say = say
        self.body = body_bytes()
        self.body_path = workdir / "body.json"
        self.body_path.write_bytes(self.body)
        self.load = LoadGenerator(settings.loadgen, workdir, self.body_path, settings.wrk_threads)
        self._memo: dict[str, Any] = {}
        self._servers: list[Server] = []
        self._sink: Server | None = None
        self.sink_client: SinkClient | None = None
        self._n = 0

    # -- shared, measured once -----------------------------------------------------------
    def memo(self, key: str, fn: Callable[[], T]) -> T:
        if key not in self._memo:
            self._memo[key] = fn()
        return self._memo[key]  # type: ignore[no-any-return]

    def known(self, key: str) -> Any:
        return self._memo.get(key)

    # -- processes -----------------------------------------------------------------------
    def start(
        self,
        name: str,
        argv: list[str],
        port: int,
        ready_path: str,
        timeout: float = 60.0,
        env: dict[str, str] | None = None,
    ) -> Server:
        server = Server(name, argv, port, self.workdir, env=env)
        self._servers.append(server)
        server.wait_ready(ready_path, timeout)
        return server

    def stop(self, server: Server) -> None:
        server.stop()
        if server in self._servers:
            self._servers.remove(server)

    def close(self) -> None:
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()
        if self.sink_client is not None:
            self.sink_client.close()

    def sink(self) -> tuple[int, SinkClient]:
        """The sink (one process for the whole run) and a client for its counter."""
        if self._sink is None:
            port = free_port()
            self._sink = self.start(
                "sink", python("-m", "bench.sink", "--port", str(port)), port, "/_count"
            )
            self.sink_client = SinkClient("127.0.0.1", port)
        assert self.sink_client is not None
        return self._sink.port, self.sink_client

    @contextmanager
    def _served(
        self,
        name: str,
        module: str,
        args: list[str],
        ready_path: str,
        env: dict[str, str] | None = None,
    ) -> Iterator[Server]:
        """`python -m <module>` on a free loopback port, uvloop, quiet logs; stopped after."""
        port = free_port()
        argv = python("-m", module, "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop")
        server = self.start(
            name, [*argv, "--log-level", "warning", *args], port, ready_path, env=env
        )
        try:
            yield server
        finally:
            self.stop(server)

    def bare(self, workers: int = 1) -> contextlib.AbstractContextManager[Server]:
        args = ["--http", "httptools", "--no-access-log", "--workers", str(workers)]
        return self._served(
            f"bare-w{workers}", "uvicorn", [*args, "bench.bare_app:app"], "/nothing"
        )

    def granian(
        self, target: str, ready_path: str, env: dict[str, str] | None = None
    ) -> contextlib.AbstractContextManager[Server]:
        """``target`` (an ASGI app) under granian: one process, HTTP/1, no access log."""
        args = ["--interface", "asgi", "--http", "1", "--no-ws", "--workers", "1", target]
        return self._served(f"granian-{target}", "granian", args, ready_path, env)

    def _ingest_rounds(
        self,
        serve: Callable[[Path], contextlib.AbstractContextManager[Server]],
        fresh: bool,
        template: Path | None = None,
    ) -> Ingest:
        """The measured rounds: each on a fresh server and queue (``fresh``: no round
        inherits the previous one's backlog), or all of them on one."""
        results, rss = [], []
        for _ in range(self.s.rounds if fresh else 1):
            db = self.new_db(template)
            try:
                with serve(db) as server:
                    self.warm(server)
                    for _ in range(1 if fresh else self.s.rounds):
                        result, mb = self.measure(server)
                        results.append(result)
                        rss.append(mb)
            finally:
                remove_db(db)
        return Ingest.of(results, rss)

    def ingest_granian(self, relay: bool) -> Ingest:
        """Bare Litestar, or the relay's app receiving only, under granian (the servers
        step); the relay on a fresh queue per round, as :meth:`ingest_relay`."""

        def run() -> Ingest:
            self.say(f"servers: {'relay, receiver only' if relay else 'bare Litestar'}, granian")
            return self._ingest_rounds(lambda db: self._granian_server(relay, db), relay)

        return self.memo(f"granian-{'relay' if relay else 'bare'}", run)

    def _granian_server(self, relay: bool, db: Path) -> contextlib.AbstractContextManager[Server]:
        if not relay:
            return self.granian("bench.bare_app:app", "/nothing")
        config = self.relay_config(f"relay-granian-{db.stem}", db, throttled=True)
        return self.granian(
            "bench.granian_app:app", "/healthz", env={"BENCH_RELAY_CONFIG": str(config)}
        )

    def new_db(self, template: Path | None = None) -> Path:
        self._n += 1
        db = self.workdir / f"relay-{self._n}.db"
        remove_db(db)
        if template is not None:
            copy_db(template, db)
        return db

    @contextmanager
    def relay(
        self,
        *,
        throttled: bool = False,
        workers: int = 1,
        db: Path | None = None,
        ready_timeout: float = 120.0,
        concurrency: int | None = None,
        log_level: str | None = None,
        role: str | None = None,
    ) -> Iterator[Server]:
        """`relay serve` on a fresh (or the given) queue file; the file is removed after.

        The destination's concurrency and the log level are the shipped defaults unless
        the step names others; so is the split of ``workers`` processes into roles.
        """
        db = db or self.new_db()
        port = free_port()
        config = self.relay_config(f"relay-{port}", db, throttled, concurrency, log_level)
        server = self.start(
            f"relay-w{workers}{'-' + role if role else ''}",
            serve_argv(config, port, workers, role),
            port,
            "/healthz",
            ready_timeout,
        )
        try:
            yield server
        finally:
            self.stop(server)

    def relay_config(
        self,
        name: str,
        db: Path,
        throttled: bool,
        concurrency: int | None = None,
        log_level: str | None = None,
    ) -> Path:
        """The relay's config file: every event to the sink, the run's defaults unless named."""
        sink_port, _ = self.sink()
        return write_config(
            self.workdir / f"{name}.yaml",
            db=db,
            sink_port=sink_port,
            concurrency=concurrency or self.s.relay_concurrency,
            throttled=throttled,
            log_level=log_level or self.s.log_level,
        )

    # -- measurements --------------------------------------------------------------------
    def url(self, server: Server, path: str = PATH) -> str:
        return f"http://127.0.0.1:{server.port}{path}"

    def warm(self, server: Server, path: str = PATH) -> None:
        if self.s.warmup > 0:
            self.load.run(self.url(server, path), self.s.connections, self.s.warmup)

    def measure(self, server: Server, path: str = PATH) -> tuple[LoadResult, float]:
        result = self.load.run(self.url(server, path), self.s.connections, self.s.duration)
        return result, server.rss_mb()[0]

    def ingest_bare(self, workers: int = 1) -> Ingest:
        """Bare Litestar, one server for every round."""

        def run() -> Ingest:
            self.say(f"ingest: bare Litestar, {workers} process(es)")
            with self.bare(workers) as server:
                self.warm(server)
                out = [self.measure(server) for _ in range(self.s.rounds)]
            return Ingest.of([r for r, _ in out], [m for _, m in out])

        return self.memo(f"bare-w{workers}", run)

    def ingest_relay(
        self,
        *,
        throttled: bool = False,
        workers: int = 1,
        template: Path | None = None,
        label: str = "",
        role: str | None = None,
    ) -> Ingest:
        """The relay, a fresh process on a fresh queue (or a copy of ``template``) per round,
        so that no round inherits the previous one's backlog."""
        key = relay_key(workers, throttled, label + (f"-{role}" if role else ""))

        def run() -> Ingest:
            self.say(
                f"ingest: relay, {workers} process(es), "
                f"{'forwarding throttled' if throttled else 'forwarding on'}"
                f"{', ' + label if label else ''}"
                f"{', --role ' + role if role else ''}"
            )
            return self._ingest_rounds(
                lambda db: self.relay(throttled=throttled, workers=workers, db=db, role=role),
                True,
                template,
            )

        return self.memo(key, run)


def relay_key(workers: int = 1, throttled: bool = False, label: str = "") -> str:
    """The memo key of one relay ingest measurement."""
    return f"relay-w{workers}-{'rx' if throttled else 'fwd'}-{label}"
