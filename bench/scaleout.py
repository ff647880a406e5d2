"""The `scaleout` step: 1, 2 and 3 `relay serve` instances on one shared PostgreSQL queue.

For each instance count N (and each round) a fresh schema is created, N relays are
started on it (same config, each on its own port), and N load generators run in
parallel, one per instance, each with ``connections / N`` connections (at least 4).
Ingest is the sum of their req/s. Delivery is timed on the sink's counter: from the
start of the load until the sink has counted every accepted event, so
``delivered/s = accepted / (load + drain tail)``. The schema is dropped afterwards.

The PostgreSQL server: ``$RELAY_BENCH_POSTGRES_URL``, else ``$RELAY_TEST_POSTGRES_URL``
(the tests' server), else ``postgresql://postgres@127.0.0.1:5432/test``. When it does
not answer, the step reports why and is skipped.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import yaml

from .context import Bench
from .loadgen import LoadResult
from .procs import BenchError, Server, free_port
from .relayenv import (
    SINK_DEST,
    base_config,
    serve_argv,
    sink_destination,
)
from .report import NA, Row, judge

StepResult = tuple[list[Row], dict[str, Any]]

INSTANCES = (1, 2, 3)
MIN_CONNECTIONS = 4
PG_MIN_RATIO = 0.70
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_url() -> str:
    return (
        os.environ.get("RELAY_BENCH_POSTGRES_URL")
        or os.environ.get("RELAY_TEST_POSTGRES_URL")
        or DEFAULT_POSTGRES_URL
    )


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5432}{parts.path}"


def unavailable(url: str) -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed: pip install -e '.[postgres]'"
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"PostgreSQL at {_where(url)} does not answer: {' '.join(str(exc).split())}"
    return None


def with_schema(url: str, schema: str) -> str:
    """``url`` with the relay's ``schema`` query parameter set."""
    parts = urlsplit(url)
    query = f"{parts.query}&" if parts.query else ""
    return urlunsplit(parts._replace(query=query + urlencode({"schema": schema})))


def _sql(url: str, statement: str, schema: str | None = None) -> list[tuple[Any, ...]]:
    """Run one statement (in ``schema`` when given); psycopg's errors become BenchError."""
    import psycopg

    options = {"options": f"-c search_path={schema}"} if schema else {}
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5, **options) as conn:
            cur = conn.execute(statement)
            return cur.fetchall() if cur.description else []
    except psycopg.Error as exc:
        raise BenchError(f"PostgreSQL at {_where(url)}: {' '.join(str(exc).split())}") from exc


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """A new empty schema, dropped afterwards; yields its name."""
    schema = f"relay_bench_{uuid.uuid4().hex[:12]}"
    _sql(url, f"CREATE SCHEMA {schema}")
    try:
        yield schema
    finally:
        _sql(url, f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def write_config(
    path: Path, *, queue_url: str, sink_port: int, concurrency: int, log_level: str
) -> Path:
    """The bench's usual relay config (see `bench.relayenv.write_config`), on PostgreSQL."""
    doc = {
        **base_config(queue_url, log_level=log_level),
        "destinations": {SINK_DEST: sink_destination(sink_port, concurrency)},
        "routes": [{"name": "everything-to-sink", "to": [SINK_DEST]}],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _one_round(b: Bench, pg: str, n: int) -> dict[str, Any]:
    sink_port, sink = b.sink()
    conns = max(MIN_CONNECTIONS, b.s.connections // n)
    with fresh_schema(pg) as schema, ExitStack() as stack:
        queue_url = with_schema(pg, schema)
        servers: list[Server] = []
        for _ in range(n):
            port = free_port()
            config = write_config(
                b.workdir / f"scaleout-{schema}-{port}.yaml",
                queue_url=queue_url,
                sink_port=sink_port,
                concurrency=b.s.relay_concurrency,
                log_level=b.s.log_level,
            )
            server = b.start(f"relay-pg{n}", serve_argv(config, port), port, "/healthz", 120.0)
            stack.callback(b.stop, server)
            servers.append(server)
        sink.reset()
        t0 = time.monotonic()
        loads = [b.load.start(b.url(s), conns, b.s.duration) for s in servers]
        while any(load.running() for load in loads):
            time.sleep(0.02)
        t_load = time.monotonic()
        results: list[LoadResult] = [load.wait(60) for load in loads]
        ok = sum(r.ok for r in results)

        def stored() -> int:
            return int(_sql(pg, "SELECT count(*) FROM relay_events", schema)[0][0])

        # The queue has the truth: requests in flight when the load generator stopped may
        # be committed after it printed its count, so the target is re-read until stable.
        target = max(ok, stored())
        deadline = t_load + max(60.0, target / 200)
        count = sink.count()
        while True:
            while count < target and time.monotonic() < deadline:
                time.sleep(0.02)
                count = sink.count()
            t_done = time.monotonic()
            events = stored()
            if events <= target or t_done >= deadline:
                break
            target = events
        time.sleep(0.3)  # a late duplicate, if any, arrives now
        count_final = sink.count()
        events = stored()
        states = dict(
            _sql(pg, "SELECT state, count(*) FROM relay_deliveries GROUP BY state", schema)
        )
        rss = [round(s.rss_mb()[0], 1) for s in servers]
    ingest = sum(r.rps for r in results)
    complete = count_final >= events and states.get("succeeded", 0) == events
    return {
        "instances": n,
        "connections_each": conns,
        "ingest_rps": round(ingest, 1),
        "per_instance_rps": [round(r.rps, 1) for r in results],
        "accepted": ok,
        "events_stored": events,
        "errors": sum(r.errors for r in results),
        "p99_ms_max": round(max(r.p99_ms for r in results), 2),
        "load_s": round(t_load - t0, 2),
        "drain_tail_s": round(t_done - t_load, 2),
        "delivered": count_final,
        "complete": complete,
        "delivered_per_s": round(min(count, events) / (t_done - t0), 1),
        "states": states,
        "rss_mb": rss,
        "loads": [r.as_dict() for r in results],
    }


def _median(rounds: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rounds))


def _versus_sqlite(b: Bench, pg_ingest: float) -> Row:
    """One instance on PostgreSQL against one on the SQLite file, both forwarding to the
    sink with the shipped defaults (the SQLite figure is the ingest step's, when it ran)."""
    sqlite = b.ingest_relay()
    ratio = pg_ingest / sqlite.rps if sqlite.rps else None
    return Row(
        "postgres",
        "ingest req/s, forwarding on, 1 instance (vs the SQLite queue)",
        pg_ingest,
        sqlite.rps,
        ratio,
        ">= 70 %",
        judge((ratio or 0) >= PG_MIN_RATIO),
        note=f"PostgreSQL {_where(postgres_url())} on this machine, default settings",
    )


def scaleout(b: Bench) -> StepResult:
    pg = postgres_url()
    why = unavailable(pg)
    if why is not None:
        row = Row(
            "scaleout",
            "ingest / delivered, 1-3 instances on PostgreSQL",
            "not available",
            result=NA,
            note=why,
        )
        return [row], {"skipped": why}
    b.sink()
    raw: dict[str, Any] = {"postgres": _where(pg), "instances": {}}
    medians: dict[int, tuple[float, float]] = {}
    notes: list[str] = []
    for n in INSTANCES:
        rounds = []
        for i in range(b.s.rounds):
            b.say(
                f"scaleout: {n} instance(s) on PostgreSQL, round {i + 1}/{b.s.rounds}, "
                f"{max(MIN_CONNECTIONS, b.s.connections // n)} connections each"
            )
            r = _one_round(b, pg, n)
            b.say(
                f"  -> ingest {r['ingest_rps']:,.0f} req/s, delivered "
                f"{r['delivered_per_s']:,.0f}/s (drain tail {r['drain_tail_s']:.1f}s)"
            )
            rounds.append(r)
        medians[n] = (_median(rounds, "ingest_rps"), _median(rounds, "delivered_per_s"))
        raw["instances"][str(n)] = {
            "ingest_rps": medians[n][0],
            "delivered_per_s": medians[n][1],
            "rounds": rounds,
        }
        if any(not r["complete"] for r in rounds):
            notes.append(f"{n} instance(s): not every accepted event reached the sink in time")
        if any(r["errors"] for r in rounds):
            notes.append(f"{n} instance(s): {sum(r['errors'] for r in rounds)} failed requests")
        extra = max(r["delivered"] - r["events_stored"] for r in rounds)
        if extra > 0:
            notes.append(
                f"{n} instance(s): the sink saw {extra} more requests than events (retries)"
            )
    cores = os.cpu_count() or 0
    shared = (
        f"all instances, PostgreSQL, the load generators and the sink share this machine's "
        f"{cores} cores: the figures check that scaling out works (every accepted event "
        f"delivered, throughput holding), not the gain instances on separate machines get; "
        f"load {b.s.duration:g}s per round, {b.s.rounds} round(s), median"
    )
    rows: list[Row] = []
    for kind, idx, unit in (("ingest", 0, "req/s"), ("delivered", 1, "events/s")):
        base = medians[1][idx]
        for n in INSTANCES:
            value = medians[n][idx]
            label = f"{kind} {unit}, {n} instance{'s' * (n > 1)}"
            if n == 1:
                note = (
                    shared
                    if kind == "ingest"
                    else ("accepted events / (load + time until the sink counted the last one)")
                )
                rows.append(Row("scaleout", label, value, note=note))
            else:
                ratio = value / base if base else None
                rows.append(Row("scaleout", f"{label} (vs 1)", value, base, ratio, ratio_style="x"))
    rows.append(_versus_sqlite(b, medians[1][0]))
    rows[-2].note = "; ".join(notes) or (
        "every round: sink requests = events stored = succeeded deliveries (each event once)"
    )
    return rows, raw
