"""`python -m bench`: flags, the run, the table and the JSON."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .context import Bench, Settings
from .procs import BenchError
from .relayenv import SHIPPED_CONCURRENCY
from .report import ERROR, MISS, NA, Row, machine, table, write_json
from .steps import NOT_QUICK, STEPS

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the relay against bare Litestar and a plain aiohttp client, "
        "on loopback, in one run.",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a ~20 s smoke: 1 s rounds, 2,000 backlog, no 1M scale step, "
        f"no {' or '.join(NOT_QUICK)} unless --only names them",
    )
    p.add_argument(
        "--only", default=None, help=f"comma-separated steps (default: all): {', '.join(STEPS)}"
    )
    p.add_argument("--duration", type=float, help="seconds per measured round (default 10)")
    p.add_argument("--warmup", type=float, help="seconds of load before measuring (default 2)")
    p.add_argument("--rounds", type=int, help="measured rounds, median reported (default 3)")
    p.add_argument("--connections", type=int, default=32, help="ingest connections (32)")
    p.add_argument(
        "--concurrency",
        type=int,
        default=64,
        help="the wide drain row: destination concurrency and client-ceiling tasks (64)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="every relay's logging level (default info, as shipped)",
    )
    p.add_argument(
        "--relay-concurrency",
        type=int,
        default=SHIPPED_CONCURRENCY,
        help="the destination concurrency of every relay but the wide drain row's "
        "(default 8, as shipped)",
    )
    p.add_argument("--backlog", type=int, help="drain backlog (default 100,000)")
    p.add_argument("--drain-rounds", type=int, default=1, help="drain repetitions (1)")
    p.add_argument(
        "--scale-pending",
        type=int,
        help="pending deliveries for the scale step (default 1,000,000)",
    )
    p.add_argument("--e2e-probes", type=int, help="rates tried by the end-to-end search (6)")
    p.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="auto: wrk when installed, else the Python generator",
    )
    p.add_argument("--wrk-threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"(default {DEFAULT_JSON})")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs)")
    p.add_argument("--strict", action="store_true", help="exit 3 when a target is missed")
    return p


def settings_from(args: argparse.Namespace) -> Settings:
    q = args.quick

    def pick(value: Any, full: Any, quick: Any) -> Any:
        return value if value is not None else (quick if q else full)

    return Settings(
        quick=q,
        duration=pick(args.duration, 10.0, 1.0),
        warmup=pick(args.warmup, 2.0, 0.0),
        rounds=pick(args.rounds, 3, 1),
        connections=args.connections,
        concurrency=args.concurrency,
        log_level=args.log_level,
        relay_concurrency=args.relay_concurrency,
        backlog=pick(args.backlog, 100_000, 2_000),
        drain_rounds=args.drain_rounds,
        scale_pending=pick(args.scale_pending, 1_000_000, 0),
        e2e_probes=pick(args.e2e_probes, 6, 2),
        loadgen=args.loadgen,
        wrk_threads=args.wrk_threads,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    only = args.only if args.only is not None else ",".join(STEPS)
    steps = [s.strip() for s in only.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        print(
            f"error: unknown step(s) {', '.join(unknown)}; steps: {', '.join(STEPS)}",
            file=sys.stderr,
        )
        return 2
    settings = settings_from(args)
    started = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    try:
        import aiohttp  # noqa: F401
    except ImportError:
        say(
            "note: aiohttp is not installed (pip install aiohttp, or pip install -e '.[bench]')"
            ": the drain step has no client ceiling and the Python load generator uses httpx"
        )
    workdir = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    failed = False
    try:
        bench = Bench(settings, workdir, say)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    say(f"load generator: {bench.load.describe()}; temp dir {workdir}")
    try:
        for name in steps:
            say(f"== {name}")
            t0 = time.monotonic()
            if settings.quick and args.only is None and name in NOT_QUICK:
                rows.append(
                    Row(name, "name it in --only to run it", "skipped (--quick)", result=NA)
                )
                raw[name] = {"skipped": True}
                continue
            try:
                step_rows, step_raw = STEPS[name](bench)
            except BenchError as exc:
                failed = True
                say(f"{name} failed: {exc}")
                step_rows, step_raw = (
                    [Row(name, "step failed", str(exc).splitlines()[0], result=ERROR)],
                    {"error": str(exc)},
                )
            rows += step_rows
            raw[name] = {**step_raw, "seconds": round(time.monotonic() - t0, 1)}
    except KeyboardInterrupt:
        say("interrupted")
        failed = True
    finally:
        bench.close()
        if args.keep or failed:
            say(f"logs and configs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    total = time.monotonic() - started
    header = (
        f"pushwoosh-relay bench, load generator {bench.load.name}, "
        f"{settings.connections} connections, {settings.rounds} round(s) of "
        f"{settings.duration:g}s (median), body {len(bench.body)} bytes, "
        f"{'quick' if settings.quick else 'full'} run, {total:.0f}s"
    )
    print(header + "\n\n" + table(rows), flush=True)
    doc = {
        "meta": {
            **machine(),
            "load_generator": bench.load.describe(),
            "seconds": round(total, 1),
            "body_bytes": len(bench.body),
        },
        "settings": vars(settings),
        "rows": [r.as_dict() for r in rows],
        "steps": raw,
    }
    write_json(args.json, doc)
    print(f"\nJSON: {args.json}", flush=True)
    if failed:
        return 1
    if args.strict and any(r.result == MISS for r in rows):
        return 3
    return 0
