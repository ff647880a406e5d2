"""Large bodies against a real `relay serve`: answered right, answers bounded, loop kept free.

A 50,000-event array (``max_body_bytes`` raised) and a 1 MB array of ``{}`` are
posted at once while ``/healthz`` is asked every few milliseconds. The test
asserts on the answers; the worst ``/healthz`` latency it saw is printed and
recorded as a property (the receiver works in slices, so it stays a fraction
of a second) but never asserted: timings belong to bench/.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import load_example
from .process import Server

MAX_BODY = 32 * 1024 * 1024
EVENTS = 50_000
REQUIRED = 7  # fields an empty object misses


@pytest.fixture
def server(tmp_path: Path) -> Any:
    config = tmp_path / "relay.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            server: {{max_body_bytes: {MAX_BODY}, dedupe_window: 0}}
            queue: {{url: "sqlite:///{tmp_path}/queue.db"}}
            logging: {{format: json}}
            destinations:
              parked: {{type: log, enabled: false}}   # deliveries are queued, not sent
            routes:
              - {{name: all, to: [parked]}}
            """
        )
    )
    srv = Server(tmp_path, config)
    yield srv
    srv.stop()


async def _ping_while(client: httpx.AsyncClient, busy: asyncio.Event) -> list[tuple[float, float]]:
    """(start, latency) of each /healthz answer while ``busy`` is not set."""
    seen = []
    while not busy.is_set():
        start = time.perf_counter()
        r = await client.get("/healthz")
        assert r.status_code == 200
        seen.append((start, time.perf_counter() - start))
        await asyncio.sleep(0.005)
    return seen


async def test_large_bodies_do_not_hold_the_event_loop(
    server: Server, record_property: Any
) -> None:
    event = load_example("email-sent.json")
    big = json.dumps([dict(event, user_id=str(i)) for i in range(EVENTS)]).encode()
    empties_n = (1024 * 1024 - 2) // 3
    empties = b"[" + b",".join([b"{}"] * empties_n) + b"]"
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
        done = asyncio.Event()
        pings = asyncio.create_task(_ping_while(client, done))
        await asyncio.sleep(0.2)
        started = time.perf_counter()
        accepted, refused = await asyncio.gather(
            client.post("/webhooks/pushwoosh", content=big),
            client.post("/webhooks/pushwoosh", content=empties),
        )
        finished = time.perf_counter()
        done.set()
        seen = await pings
        metrics = (await client.get("/metrics")).text

    assert accepted.status_code == 200, accepted.text[:300]
    body = accepted.json()
    assert body["accepted"] == EVENTS and len(set(body["ids"])) == EVENTS
    assert f'relay_events_received_total{{outcome="accepted"}} {float(EVENTS)}' in metrics

    assert refused.status_code == 422
    assert len(refused.content) < 4096
    report = refused.json()
    assert len(report["errors"]) + report["errors_omitted"] == empties_n * REQUIRED

    # the loop answered /healthz while the bodies were being worked on
    during = [latency for start, latency in seen if started < start and start + latency < finished]
    assert during, "no /healthz answer while the bodies were processed"
    worst = max(latency for _, latency in seen)
    record_property("healthz_worst_ms", round(worst * 1000, 1))
    print(
        f"\n/healthz while posting {len(big)} + {len(empties)} bytes: "
        f"{len(during)} answers in {finished - started:.2f}s, worst {worst * 1000:.0f} ms"
    )
