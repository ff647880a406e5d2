"""The Python load generator, run as its own process: `python -m bench.pyload ...`.

Used when wrk is not installed, and always for the drain ceiling (the "plain
aiohttp client" the relay's delivery is compared with). Three modes:

- closed loop for ``--duration`` seconds with ``--connections`` in flight;
- paced (``--rate R``): open loop, one request every 1/R s, whatever the answers;
- ``--count N``: exactly N requests, ``--connections`` in flight, then stop.

aiohttp when installed, else httpx; uvloop when installed. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Post = Callable[[], Awaitable[int]]


@dataclass
class Tally:
    ok: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)


def client_name(prefer: str = "auto") -> str:
    if prefer in ("auto", "aiohttp"):
        try:
            import aiohttp  # noqa: F401
        except ImportError:
            if prefer == "aiohttp":
                raise SystemExit("aiohttp is not installed: pip install aiohttp") from None
        else:
            return "aiohttp"
    return "httpx"


async def _timed(post: Post, tally: Tally) -> None:
    started = time.perf_counter()
    try:
        status = await post()
    except Exception:
        tally.errors += 1
        return
    tally.latencies.append(time.perf_counter() - started)
    if 200 <= status < 300:
        tally.ok += 1
    else:
        tally.errors += 1


async def drive(
    post: Post, connections: int, duration: float | None, rate: float | None, count: int | None
) -> tuple[Tally, float]:
    tally = Tally()
    started = time.perf_counter()
    deadline = started + duration if duration else float("inf")
    if rate:
        slots: asyncio.Queue[None] = asyncio.Queue()

        async def pacer() -> None:
            sent = 0
            while time.perf_counter() < deadline and (count is None or sent < count):
                due = int((time.perf_counter() - started) * rate) + 1 - sent
                for _ in range(max(0, due)):
                    slots.put_nowait(None)
                sent += max(0, due)
                await asyncio.sleep(min(0.002, 1 / rate))
            for _ in range(connections):
                slots.put_nowait(None)  # one stop mark per worker (after the real slots)

        async def paced_worker() -> None:
            while True:
                await slots.get()
                if time.perf_counter() >= deadline:
                    return
                await _timed(post, tally)

        await asyncio.gather(pacer(), *(paced_worker() for _ in range(connections)))
    else:
        issued = 0

        async def worker() -> None:
            nonlocal issued
            while time.perf_counter() < deadline and (count is None or issued < count):
                issued += 1
                await _timed(post, tally)

        await asyncio.gather(*(worker() for _ in range(connections)))
    return tally, time.perf_counter() - started


async def run(
    url: str,
    body: bytes,
    connections: int,
    duration: float | None,
    rate: float | None,
    count: int | None,
    prefer: str,
) -> dict[str, Any]:
    name = client_name(prefer)
    headers = {"Content-Type": "application/json"}
    if name == "aiohttp":
        import aiohttp

        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

            async def post_aiohttp() -> int:
                async with session.post(url, data=body) as resp:
                    await resp.read()
                    return resp.status

            tally, elapsed = await drive(post_aiohttp, connections, duration, rate, count)
    else:
        import httpx

        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(limits=limits, headers=headers, timeout=30) as client:

            async def post_httpx() -> int:
                return (await client.post(url, content=body)).status_code

            tally, elapsed = await drive(post_httpx, connections, duration, rate, count)
    lat = sorted(tally.latencies)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else 0.0

    return {
        "tool": f"python-{name}",
        "requests": tally.ok + tally.errors,
        "ok": tally.ok,
        "errors": tally.errors,
        "duration_s": elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pyload")
    p.add_argument("--url", required=True)
    p.add_argument("--body", required=True, help="file with the request body")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--duration", type=float, default=None)
    p.add_argument("--rate", type=float, default=None, help="requests/s, open loop")
    p.add_argument("--count", type=int, default=None)
    p.add_argument("--client", choices=("auto", "aiohttp", "httpx"), default="auto")
    args = p.parse_args(argv)
    if args.duration is None and args.count is None:
        p.error("give --duration or --count")
    coro = run(
        args.url,
        Path(args.body).read_bytes(),
        args.connections,
        args.duration,
        args.rate,
        args.count,
        args.client,
    )
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(coro)
    else:
        result = uvloop.run(coro)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
