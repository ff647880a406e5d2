"""The queue reads the console adds: activity per minute, dead letters by group and filter.

Run unchanged on both backends through the queue's interface (and the operations
built on it), like the history tests.
"""

from __future__ import annotations

from relay import operations
from relay.queue import Queue

from .queuekit import bury, event, put, retry, succeed

T0 = 1_800_000_000.0  # a minute boundary (divisible by 60)


async def _dead(queue: Queue, destination: str, error: str, n: int, now: float) -> list[str]:
    await put(queue, *(event(destination) for _ in range(n)), now=now)
    ids = []
    for d in await queue.lease(destination, n, 60, now):
        await bury(queue, d, now, error=error)
        ids.append(d.id)
    return ids


async def test_activity_counts_events_and_attempts_per_minute(queue: Queue) -> None:
    await put(queue, event("crm"), event("crm"), now=T0 + 5)
    await put(queue, event("log"), now=T0 + 65)
    leased = await queue.lease("crm", 10, 60, T0 + 10)
    await succeed(queue, leased[0], T0 + 10)
    await retry(queue, leased[1], T0 + 200, T0 + 70)
    [log] = await queue.lease("log", 10, 60, T0 + 70)
    await succeed(queue, log, T0 + 70)

    doc = await operations.activity_per_minute(queue, T0 + 90, minutes=3)
    assert len(doc["minutes"]) == 3 and doc["minutes"][-1].endswith(":01:00.000Z")
    assert doc["events"] == [0, 2, 1]
    assert doc["attempts"] == {"succeeded": [0, 1, 1], "retry": [0, 0, 1], "dead": [0, 0, 0]}
    assert doc["by_destination"]["crm"]["retry"] == [0, 0, 1]
    assert doc["by_destination"]["log"]["succeeded"] == [0, 0, 1]
    # Outside the window nothing is counted.
    later = await operations.activity_per_minute(queue, T0 + 3600, minutes=5)
    assert later["events"] == [0] * 5 and set(later["by_destination"]) == set()


async def test_dead_letters_are_grouped_counted_and_filtered(queue: Queue) -> None:
    await _dead(queue, "crm", "HTTP 400: bad token", 3, T0)
    await _dead(queue, "crm", "HTTP 404: gone", 1, T0 + 1)
    await _dead(queue, "slack", "HTTP 400: bad token", 2, T0 + 2)

    report = await operations.dead_letter_report(queue, None, None, limit=100)
    assert report["count"] == 6
    assert [(g["destination"], g["error"], g["count"]) for g in report["groups"]] == [
        ("crm", "HTTP 400: bad token", 3),
        ("slack", "HTTP 400: bad token", 2),
        ("crm", "HTTP 404: gone", 1),
    ]
    assert report["dead_letters"][0]["destination"] == "slack"  # newest first

    crm = await operations.dead_letter_report(queue, "crm", "HTTP 400: bad token", limit=2)
    assert crm["count"] == 3 and len(crm["dead_letters"]) == 2
    assert [g["count"] for g in crm["groups"]] == [3]
    assert await operations.count_dead(queue, None, "HTTP 400: bad token") == 5
    assert await operations.count_dead(queue, "nowhere", None) == 0


async def test_replaying_a_filter_takes_back_exactly_its_letters(queue: Queue) -> None:
    await _dead(queue, "crm", "HTTP 400: bad token", 7, T0)
    await _dead(queue, "crm", "HTTP 404: gone", 2, T0)
    await _dead(queue, "slack", "HTTP 400: bad token", 1, T0)

    # in batches smaller than the filter, so the loop runs
    n = await operations.replay_dead_matching(queue, "crm", "HTTP 400: bad token", T0 + 5, batch=3)
    assert n == 7
    assert await operations.count_dead(queue, None, None) == 3
    assert await operations.replay_dead_matching(queue, None, "HTTP 400: bad token", T0 + 6) == 1
    assert await operations.replay_dead_matching(queue, "crm", None, T0 + 7) == 2
    assert await operations.count_dead(queue, None, None) == 0
    assert await operations.replay_dead_matching(queue, None, "no such error", T0 + 8) == 0


async def test_finished_minutes_are_counted_once(queue: Queue) -> None:
    now = T0 + 3600
    for minute in (10, 30, 58):
        await put(queue, event("crm"), now=T0 + minute * 60 + 1)
    cache = operations.MinuteCache()
    plain = await operations.activity_per_minute(queue, now)
    cached = await operations.activity_per_minute(queue, now, cache=cache)
    assert cached == plain and sum(plain["events"]) == 3
    # A late write into a minute already over is not counted again (the cache answers);
    # one into the last few minutes is, and so is everything once the hour moves on.
    await put(queue, event("crm"), now=T0 + 10 * 60 + 2)
    await put(queue, event("crm"), now=T0 + 58 * 60 + 2)
    again = await operations.activity_per_minute(queue, now, cache=cache)
    assert sum(again["events"]) == 4 and again["events"][57] == 2  # minute 58 of the hour
    fresh = await operations.activity_per_minute(queue, now)
    assert sum(fresh["events"]) == 5
    hour_later = await operations.activity_per_minute(queue, now + 3600, cache=cache)
    assert hour_later == await operations.activity_per_minute(queue, now + 3600)
    assert cache.events == {}  # nothing older than the hour is kept
