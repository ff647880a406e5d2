"""Leasing ahead of the free slots: how much, and that nothing leased ahead is lost or
counted as an attempt when the destination is held or the relay stops."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from relay.delivery import READ_AHEAD

from .helpers import config_text, eventually, running_app
from .sink import Answer, Sink

EVENTS = 12


def leases(db: Path) -> list[tuple[str, int, bool]]:
    """(state, attempts, leased) of every delivery, read from the file itself."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT state, attempts, lease_owner IS NOT NULL FROM deliveries ORDER BY rowid"
        ).fetchall()
    finally:
        conn.close()
    return [(str(s), int(a), bool(leased)) for s, a, leased in rows]


def leased_pending(db: Path) -> int:
    return sum(1 for state, _, leased in leases(db) if state == "pending" and leased)


def attempts_counted(db: Path) -> int:
    return sum(attempts for _, attempts, _ in leases(db))


def slow_config(db: Path, url: str, extra: str = "") -> str:
    return config_text(
        db,
        f"""
        destinations:
          crm: {{type: http, url: "{url}", concurrency: 2, timeout: 5s{extra}}}
        routes:
          - name: all
            to: [crm]
        """,
    )


@contextlib.asynccontextmanager
async def draining(
    db: Path, bounced: dict[str, Any], delay: float, extra: str = ""
) -> AsyncIterator[tuple[Any, Sink]]:
    """The app with EVENTS accepted for ``crm``, a sink answering after ``delay``."""
    with Sink() as sink:
        sink.default = Answer(200, delay=delay)
        async with running_app(slow_config(db, sink.url, extra)) as client:
            for i in range(EVENTS):
                r = await client.post("/webhooks/pushwoosh", json=dict(bounced, user_id=str(i)))
                assert r.status_code == 200
            yield client, sink


async def test_leases_one_round_ahead_and_hands_it_back_when_paused(
    tmp_path: Path, bounced: dict[str, Any]
) -> None:
    db = tmp_path / "q.db"
    async with draining(db, bounced, 0.5) as (client, sink):
        # Two in flight, two more leased and waiting for a slot: no more.
        await eventually(lambda: leased_pending(db) == 2 * (1 + READ_AHEAD))
        assert len(sink.received) == 2
        assert leased_pending(db) == 4
        queue = client.app.state.runtime.queue
        assert await queue.pause("crm", "test", time.time())
        # Held: what was leased ahead goes back at once, its attempt not counted.
        await eventually(lambda: leased_pending(db) <= 2)
        await eventually(lambda: leased_pending(db) == 0)
        sent = len(sink.received)
        assert attempts_counted(db) == sent
        assert sum(1 for state, _, _ in leases(db) if state == "succeeded") == sent
        await queue.resume("crm", time.time())
        await eventually(
            lambda: [s for s, _, _ in leases(db)] == ["succeeded"] * EVENTS, timeout=15
        )
    assert sorted(r.json()["user_id"] for r in sink.received) == sorted(map(str, range(EVENTS)))
    assert attempts_counted(db) == EVENTS  # one attempt each: none counted twice


async def test_stopping_hands_back_what_was_leased_ahead(
    tmp_path: Path, bounced: dict[str, Any]
) -> None:
    db = tmp_path / "q.db"
    async with draining(db, bounced, 0.3) as (_, sink):
        await eventually(lambda: leased_pending(db) == 4)
    rows = leases(db)
    sent = len(sink.received)
    assert not any(leased for _, _, leased in rows)  # every lease handed back
    assert attempts_counted(db) == sent  # and only sends counted as attempts
    assert sum(1 for state, _, _ in rows if state == "pending") == EVENTS - sent


async def test_a_rate_limited_destination_leases_only_what_it_sends(
    tmp_path: Path, bounced: dict[str, Any]
) -> None:
    """Its sends wait for the limiter, not the queue: leasing ahead would only hold
    deliveries another instance could send."""
    db = tmp_path / "q.db"
    async with draining(db, bounced, 0.5, ", rate_limit: 10/s") as (_, sink):
        await eventually(lambda: len(sink.received) >= 2)
        for _ in range(5):
            assert leased_pending(db) <= 2
            await asyncio.sleep(0.05)


async def test_slots_taking_the_next_delivery_themselves_keep_to_the_concurrency(
    tmp_path: Path, bounced: dict[str, Any]
) -> None:
    """A slot that frees starts what was leased ahead at once, itself: still never more
    requests in flight than the destination's concurrency (2 here), and all of them sent.

    Each answer takes DELAY, so a slot's next request arrives at least DELAY after its
    last: within any DELAY before an arrival, at most two arrivals (that one included).
    """
    delay = 0.2
    db = tmp_path / "q.db"
    async with draining(db, bounced, delay) as (_, sink):
        received = sink.wait_for(EVENTS, timeout=20)
        await eventually(lambda: [s for s, _, _ in leases(db)] == ["succeeded"] * EVENTS)
    arrivals = sorted(r.at for r in received)
    for at in arrivals:
        assert sum(1 for other in arrivals if at - delay + 0.02 < other <= at) <= 2
    assert attempts_counted(db) == EVENTS
    # Two at a time, back to back: about EVENTS / 2 answers' time, not a poll per slot.
    assert arrivals[-1] - arrivals[0] < (EVENTS / 2) * delay + 5.0
