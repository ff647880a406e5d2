"""The relay under test: its config, a pre-filled queue, and `relay serve` as a subprocess."""

from __future__ import annotations

import asyncio
import functools
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from .procs import REPO, python, python_env

PATH = "/webhooks/pushwoosh"
SINK_DEST = "sink"
PARKED_DEST = "parked"


def body_bytes() -> bytes:
    """The example Pushwoosh body, compact (what Pushwoosh sends: one JSON object)."""
    import msgspec

    return msgspec.json.encode(
        msgspec.json.decode((REPO / "examples/email-sent.json").read_bytes())
    )


#: What `relay serve` ships with: destination concurrency 8, logging at info.
SHIPPED_CONCURRENCY = 8
SHIPPED_LOG_LEVEL = "info"


def base_config(
    queue_url: str, *, dedupe: bool = False, log_level: str = SHIPPED_LOG_LEVEL
) -> dict[str, Any]:
    """The server, queue and logging sections every bench config shares.

    Logging is at the shipped level (info: one line per event and per delivery) unless
    a step asks otherwise: what users run is what is measured.
    """
    server: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 8080,
        "path": PATH,
        "token": "",
        "shutdown_grace": "1s",
    }
    if not dedupe:
        server["dedupe_window"] = "0s"  # one body posted again and again: no dedupe
    return {
        "server": server,
        "queue": {"url": queue_url},
        "logging": {"level": log_level, "format": "json"},
    }


def sink_destination(sink_port: int, concurrency: int) -> dict[str, Any]:
    """An http destination forwarding to the bench's sink."""
    return {
        "type": "http",
        "url": f"http://127.0.0.1:{sink_port}/hook",
        "concurrency": concurrency,
        "timeout": "10s",
    }


def write_config(
    path: Path,
    *,
    db: Path,
    sink_port: int,
    concurrency: int,
    throttled: bool,
    log_level: str = SHIPPED_LOG_LEVEL,
) -> Path:
    """Every event goes to one http destination, the sink.

    ``throttled`` caps forwarding at 1/s: deliveries are still written with every event,
    but (almost) none are sent, which isolates the receiver. ``parked`` is a disabled
    destination that only the scale step fills, so its deliveries stay pending.
    """
    sink = sink_destination(sink_port, concurrency)
    if throttled:
        sink["rate_limit"] = "1/s"
    doc = {
        **base_config(f"sqlite:///{db.resolve()}", log_level=log_level),
        "destinations": {
            SINK_DEST: sink,
            PARKED_DEST: {"type": "http", "url": "http://127.0.0.1:9/parked", "enabled": False},
        },
        "routes": [{"name": "everything-to-sink", "to": [SINK_DEST]}],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def serve_argv(config: Path, port: int, workers: int = 1, role: str | None = None) -> list[str]:
    """`relay serve`; without ``role``, its default (one process does everything; with
    ``workers`` > 1, a mix of receivers and workers)."""
    argv = python("-m", "relay", "serve", "--config", str(config), "--port", str(port))
    if workers != 1:
        argv += ["--workers", str(workers)]
    if role is not None:
        argv += ["--role", role]
    return argv


@functools.cache
def workers_flag() -> bool:
    """Whether this relay has `relay serve --workers N`."""
    out = subprocess.run(
        python("-m", "relay", "serve", "--help"),
        capture_output=True,
        text=True,
        env=python_env(),
        cwd=REPO,
        timeout=60,
    )
    return "--workers" in out.stdout


def check_config(config: Path) -> str:
    out = subprocess.run(
        python("-m", "relay", "check", "--config", str(config)),
        capture_output=True,
        text=True,
        env=python_env(),
        cwd=REPO,
        timeout=60,
    )
    if out.returncode != 0:
        from .procs import BenchError

        raise BenchError(f"relay check refused the bench config: {out.stderr.strip()}")
    return out.stdout.strip()


def prefill(db: Path, destination: str, count: int, body: bytes, batch: int = 5000) -> float:
    """Commit ``count`` events with one pending delivery each, through the relay's own queue.

    Returns the seconds it took.
    """
    return asyncio.run(_prefill(db, destination, count, body, batch))


async def _prefill(db: Path, destination: str, count: int, body: bytes, batch: int) -> float:
    from relay.model import NewDelivery, NewEvent, new_id
    from relay.queue import open_queue

    started = time.perf_counter()
    queue = open_queue(f"sqlite:///{db}")
    await queue.open()
    try:
        now = time.time()
        for start in range(0, count, batch):
            events = [
                NewEvent(
                    id=new_id(),
                    body=body,
                    deliveries=(
                        NewDelivery(id=new_id(), destination=destination, route="bench-prefill"),
                    ),
                )
                for _ in range(min(batch, count - start))
            ]
            await queue.enqueue(events, 0.0, now)
    finally:
        await queue.close()
    return time.perf_counter() - started


def copy_db(src: Path, dst: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        s = Path(str(src) + suffix)
        if s.exists():
            shutil.copyfile(s, Path(str(dst) + suffix))


def remove_db(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)


def delivery_states(db: Path) -> dict[str, int]:
    """Deliveries per state, read through the relay's queue after the relay stopped."""
    return asyncio.run(_delivery_states(db))


async def _delivery_states(db: Path) -> dict[str, int]:
    from relay.queue import open_queue

    queue = open_queue(f"sqlite:///{db}")
    await queue.open()
    try:
        depth = await queue.depth(time.time())
        pending = sum(n for (_, state), n in depth.counts.items() if state == "pending")
        dead = sum(n for (_, state), n in depth.counts.items() if state == "dead")
        return {"pending": pending, "dead": dead}
    finally:
        await queue.close()
