"""The queue contract, run unchanged on every backend (SQLite and PostgreSQL).

Each test gets an opened queue on a fresh store: a SQLite file under tmp_path, or
a PostgreSQL schema of its own (see tests/pg.py). Times are passed explicitly, as
the workers do, so no test sleeps to make something due. A few PostgreSQL-only
tests at the end cover what only a shared server has: notifications between
instances, concurrent migrations, dropped connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from relay.cli import main as cli_main
from relay.errors import QueueUnavailable, QueueURLInvalid
from relay.model import DeliveryState
from relay.queue import (
    DEFAULT_MAX_EVENTS,
    Accepted,
    Cutoffs,
    EventFilter,
    Queue,
    open_queue,
)
from relay.queue.catalogue import load
from relay.queue.sqlite import SqliteTransport

from . import pg
from .conftest import URL_KEY, OpenInstance
from .queuekit import (
    bury,
    cutoffs,
    event,
    grouped,
    numbers,
    put,
    retry,
    stored_deliveries,
    stored_events,
    succeed,
)


async def drop_tables(queue: Queue) -> None:
    """Break the store under an open queue (the one test that must go behind its back)."""
    transport = queue.transport
    if isinstance(transport, SqliteTransport):
        conn = sqlite3.connect(transport.path)
        try:
            conn.executescript("DROP TABLE deliveries; DROP TABLE events; DROP TABLE instances;")
        finally:
            conn.close()
        return
    async with await pg.connect(transport.schema) as conn:  # type: ignore[attr-defined]
        await conn.execute("DROP TABLE relay_deliveries, relay_events, relay_instances CASCADE")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- enqueue, lease, settle -------------------------------------------------------------------
async def test_enqueue_lease_succeed(queue: Queue) -> None:
    now = time.time()
    ev = event("slack", "crm")
    assert await put(queue, ev, now=now) == [Accepted(ev.id, False)]

    [leased] = await queue.lease("slack", 10, 30, now)
    slack = ev.deliveries[0]
    assert (leased.id, leased.event_id, leased.destination, leased.route) == (
        slack.id,
        ev.id,
        "slack",
        "to-slack",
    )
    assert leased.attempts == 1
    assert leased.created_at == now
    assert leased.event_body == ev.body

    await succeed(queue, leased, now + 1)
    assert await queue.lease("slack", 10, 30, now + 100) == []
    assert await queue.next_due("slack") is None
    depth = await queue.depth(now + 1)
    assert depth.counts == {("crm", "pending"): 1}


async def test_retry_makes_it_due_again_later(queue: Queue) -> None:
    now = time.time()
    await put(queue, event("crm"), now=now)
    [first] = await queue.lease("crm", 10, 30, now)
    await retry(queue, first, now + 60, now + 1)

    assert await queue.next_due("crm") == now + 60
    assert await queue.lease("crm", 10, 30, now + 59) == []
    [again] = await queue.lease("crm", 10, 30, now + 60)
    assert (again.id, again.attempts, again.created_at) == (first.id, 2, now)


async def test_bury_makes_a_dead_letter(queue: Queue) -> None:
    now = time.time()
    ev = event("crm", name="Email Opened")
    await put(queue, ev, now=now)
    [leased] = await queue.lease("crm", 10, 30, now)
    await bury(queue, leased, now + 1, "HTTP 404: no such hook", 404)

    assert await queue.lease("crm", 10, 30, now + 1000) == []
    [dead] = await queue.dead_letters()
    assert (
        dead.id,
        dead.destination,
        dead.event_id,
        dead.event_name,
        dead.attempts,
        dead.last_error,
        dead.updated_at,
    ) == (leased.id, "crm", ev.id, "Email Opened", 1, "HTTP 404: no such hook", now + 1)
    assert (await queue.depth(now + 2)).counts == {("crm", "dead"): 1}


async def test_lease_respects_available_at_limit_and_destination(queue: Queue) -> None:
    now = time.time()
    await put(queue, *(event("crm") for _ in range(5)), event("slack"), event("slack"), now=now)
    await put(queue, event("crm"), now=now + 100)  # not due before now + 100

    first = await queue.lease("crm", 3, 600, now)
    second = await queue.lease("crm", 10, 600, now)
    assert (len(first), len(second)) == (3, 2)
    assert {d.destination for d in first + second} == {"crm"}
    assert not {d.id for d in first} & {d.id for d in second}
    assert await queue.lease("crm", 10, 30, now) == []
    assert len(await queue.lease("slack", 10, 30, now)) == 2
    assert len(await queue.lease("crm", 10, 30, now + 100)) == 1
    assert await queue.lease("nobody", 10, 30, now + 100) == []


async def test_an_expired_lease_is_taken_again(queue: Queue) -> None:
    now = time.time()
    await put(queue, event("crm"), now=now)
    [first] = await queue.lease("crm", 10, 10, now)
    assert await queue.lease("crm", 10, 10, now + 9) == []
    [again] = await queue.lease("crm", 10, 10, now + 10)
    assert (again.id, again.attempts) == (first.id, 2)


async def test_settling_touches_only_own_pending_leases(
    queue: Queue, instances: OpenInstance
) -> None:
    other = await instances()
    now = time.time()
    await put(queue, event("crm"), event("crm"), now=now)
    [mine] = await queue.lease("crm", 1, 10, now)
    [theirs] = await other.lease("crm", 1, 600, now)

    # Not ours: nothing happens.
    await succeed(queue, theirs, now + 1)
    await bury(other, mine, now + 1, "not mine", None)
    assert (await queue.depth(now + 1)).counts == {("crm", "pending"): 2}

    # Our lease expired and another instance took it: our late outcome is ignored.
    [retaken] = await other.lease("crm", 10, 10, now + 10)
    assert retaken.id == mine.id
    await succeed(queue, mine, now + 11)
    assert await queue.next_due("crm") == now + 20

    # A dead delivery stays dead whatever its former holder says.
    await bury(other, retaken, now + 12, "gone", 410)
    await succeed(other, retaken, now + 13)
    await retry(other, retaken, now + 14, now + 13, "again", None)
    assert [d.id for d in await queue.dead_letters()] == [mine.id]


async def test_handing_back_unsent_leases_uncounts_their_attempt(
    queue: Queue, instances: OpenInstance
) -> None:
    """What a worker leased ahead and never sent goes back due now, attempt uncounted;
    only our own pending leases of that destination, only the ids named."""
    other = await instances()
    now = time.time()
    await put(queue, *(event("crm") for _ in range(4)), event("slack"), now=now)
    a, b, c = await queue.lease("crm", 3, 600, now)
    [theirs] = await other.lease("crm", 1, 600, now)
    [slack] = await queue.lease("slack", 1, 600, now)
    await succeed(queue, c, now + 1)
    named = [a.id, c.id, theirs.id, slack.id]
    assert await queue.release_unsent("crm", named) == 1  # only `a`: ours, crm, pending
    [back] = await queue.lease("crm", 10, 600, now + 2)
    assert (back.id, back.attempts) == (a.id, 1)  # the first attempt, not the second
    assert await other.lease("crm", 10, 600, now + 2) == []  # b and theirs: still held
    assert await queue.release_stray("crm", [back.id]) == 1  # b was ours all along
    [again] = await other.lease("crm", 10, 600, now + 3)
    assert (again.id, again.attempts) == (b.id, 2)  # released as stray: its lease counted


async def test_concurrent_leases_never_share_a_delivery(
    queue: Queue, instances: OpenInstance
) -> None:
    other = await instances()
    now = time.time()
    await put(queue, *(event("crm") for _ in range(60)), now=now)

    taken: list[str] = []
    for _ in range(5):
        batches = await asyncio.gather(
            *(q.lease("crm", 7, 30, now) for q in (queue, other) for _ in range(4))
        )
        taken += [d.id for batch in batches for d in batch]
    assert len(taken) == len(set(taken)) == 60


async def test_concurrent_duplicates_are_accepted_once(
    queue: Queue, instances: OpenInstance
) -> None:
    other = await instances()
    now = time.time()
    body = b'{"event_name":"Email Sent","hwid":"h1"}'
    copies = [event("crm", body=body, fingerprint=b"same-body") for _ in range(6)]
    results = await asyncio.gather(
        *(q.enqueue([ev], 60, now) for q, ev in zip([queue, other] * 3, copies, strict=True))
    )
    fresh = [r for [r] in results if not r.duplicate]
    assert len(fresh) == 1
    assert {r.event_id for [r] in results} == {fresh[0].event_id}
    assert len(await queue.lease("crm", 100, 30, now)) == 1


# -- duplicates and bodies ----------------------------------------------------------------------
async def test_dedupe_within_the_window_and_not_after(queue: Queue) -> None:
    now = time.time()
    first, again, later, last = (event("crm", fingerprint=b"digest-1") for _ in range(4))
    assert await put(queue, first, now=now, window=60) == [Accepted(first.id, False)]
    assert await put(queue, again, now=now + 59, window=60) == [Accepted(first.id, True)]
    assert await put(queue, later, now=now + 61, window=60) == [Accepted(later.id, False)]
    assert await put(queue, last, now=now + 62, window=60) == [Accepted(later.id, True)]
    assert {d.event_id for d in await queue.lease("crm", 10, 30, now + 100)} == {first.id, later.id}
    assert await stored_events(queue) == {first.id, later.id}


async def test_dedupe_inside_one_batch_and_when_off(queue: Queue) -> None:
    now = time.time()
    a, b, c = (event("crm", fingerprint=b"digest-2") for _ in range(3))
    assert await put(queue, a, b, now=now, window=60) == [
        Accepted(a.id, False),
        Accepted(a.id, True),
    ]
    assert await put(queue, c, now=now, window=0) == [Accepted(c.id, False)]
    plain = [event("crm", body=a.body) for _ in range(2)]  # no fingerprint: never a duplicate
    assert [r.duplicate for r in await put(queue, *plain, now=now, window=60)] == [False, False]
    assert len(await queue.lease("crm", 10, 30, now)) == 4


async def test_bodies_round_trip_byte_for_byte(queue: Queue) -> None:
    now = time.time()
    body = (
        '{ "event_name":"Email Bounced", "message_id": 18446744073709551615,\n'
        ' "campaign_id":9007199254740993, "hwid":"h\\u00e9", "payload":"ünï\\"code ✓",'
        ' "n": 1.50, "extra": {"nested": [1, 2e3]} }'
    ).encode()
    body_with_nul = b'{"event_name":"x"}\x00\xff\xfe trailing bytes'
    evs = [event("crm", body=body), event("crm", body=body_with_nul)]
    await put(queue, *evs, now=now)

    leased = {d.event_id: d for d in await queue.lease("crm", 10, 30, now)}
    assert leased[evs[0].id].event_body == body
    assert leased[evs[1].id].event_body == body_with_nul
    decoded = leased[evs[0].id].event()
    assert decoded["message_id"] == 2**64 - 1
    assert decoded["campaign_id"] == 9007199254740993


# -- dead letters and replay ----------------------------------------------------------------------
async def test_dead_letters_and_replay(queue: Queue) -> None:
    now = time.time()
    evs = [event("crm"), event("crm"), event("slack"), event("crm")]
    await put(queue, *evs, now=now)
    leased = await queue.lease("crm", 2, 30, now) + await queue.lease("slack", 1, 30, now)
    for i, d in enumerate(leased):
        await bury(queue, d, now + i, f"error {i}")
    [never_leased] = {ev.deliveries[0].id for ev in evs} - {d.id for d in leased}

    dead = await queue.dead_letters()
    assert [d.id for d in dead] == [d.id for d in leased]  # oldest first
    assert [d.id for d in await queue.dead_letters("slack")] == [leased[2].id]
    assert len(await queue.dead_letters(limit=2)) == 2

    assert await queue.replay([leased[2].id], "crm", now + 10) == 0  # not a crm delivery
    assert await queue.replay(["no-such-id"], None, now + 10) == 0
    assert await queue.replay([leased[0].id], None, now + 10) == 1
    assert await queue.replay([leased[0].id], None, now + 10) == 0  # pending now, not dead
    due = {d.id: d for d in await queue.lease("crm", 10, 600, now + 10)}
    assert set(due) == {leased[0].id, never_leased}
    back = due[leased[0].id]
    assert (back.attempts, back.created_at) == (1, now + 10)  # a fresh attempt budget

    assert await queue.replay(None, "slack", now + 20) == 1
    assert [d.id for d in await queue.dead_letters()] == [leased[1].id]
    assert await queue.replay(None, None, now + 30) == 1
    assert await queue.dead_letters() == []
    [last] = await queue.lease("crm", 10, 600, now + 30)
    assert (last.id, last.attempts) == (leased[1].id, 1)


# -- observability ------------------------------------------------------------------------------
async def test_next_due(queue: Queue) -> None:
    now = time.time()
    assert await queue.next_due("crm") is None
    await put(queue, event("crm"), now=now)
    await put(queue, event("crm"), now=now + 5)
    assert await queue.next_due("crm") == now
    first = (await queue.lease("crm", 1, 30, now))[0]
    assert await queue.next_due("crm") == now + 5
    await retry(queue, first, now + 2, now, "later", None)
    assert await queue.next_due("crm") == now + 2
    assert await queue.next_due("slack") is None


async def test_depth_counts_pending_and_dead_and_oldest_age(queue: Queue) -> None:
    now = time.time()
    assert (await queue.depth(now)).counts == {}
    await put(queue, event("crm", "slack"), now=now - 30)
    await put(queue, event("crm"), now=now - 10)
    [d] = await queue.lease("slack", 1, 30, now - 30)
    await bury(queue, d, now - 29)
    [s] = await queue.lease("crm", 1, 30, now - 10)
    await succeed(queue, s, now - 5)

    depth = await queue.depth(now)
    assert depth.counts == {("crm", "pending"): 1, ("slack", "dead"): 1}
    assert depth.oldest_pending_age == {"crm": pytest.approx(10.0)}


async def test_depth_counts_retrying_within_pending_and_leased_ones_as_oldest(
    queue: Queue,
) -> None:
    """A lease in flight is still pending (and the oldest); a failed attempt makes a
    delivery retrying until it settles."""
    now = time.time()
    await put(queue, event("crm"), now=now - 60)
    await put(queue, event("crm"), now=now - 40)
    await put(queue, event("crm"), now=now - 20)
    first, second = await queue.lease("crm", 2, 300, now - 15)
    await retry(queue, second, at=now + 30, now=now - 14)

    depth = await queue.depth(now)
    assert depth.counts == {("crm", "pending"): 3, ("crm", "retrying"): 1}
    assert depth.oldest_pending_age == {"crm": pytest.approx(60.0)}

    await succeed(queue, first, now - 1)
    taken = {d.id: d for d in await queue.lease("crm", 2, 300, now + 31)}
    assert second.id in taken and len(taken) == 2
    await bury(queue, taken[second.id], now + 32)  # the third stays in flight
    depth = await queue.depth(now + 33)
    assert depth.counts == {("crm", "pending"): 1, ("crm", "dead"): 1}
    assert depth.oldest_pending_age == {"crm": pytest.approx(53.0)}


async def test_ping(queue: Queue) -> None:
    await queue.ping()
    await queue.ping()


# -- groups (digests and batches) ----------------------------------------------------------------
KEY = '{"campaign_id":1}'


async def test_a_group_waits_then_goes_out_in_chunks(queue: Queue) -> None:
    now = time.time()
    await put(queue, *(grouped(n=i, also=("slack",) if i == 0 else ()) for i in range(7)), now=now)
    assert len(await queue.lease("slack", 10, 600, now)) == 1  # plain deliveries go at once
    assert await queue.lease("crm", 10, 600, now + 60) == []  # items are no deliveries yet
    assert await queue.next_due("crm") == now + 30
    assert (await queue.depth(now)).open_groups == {"crm": 1}

    assert await queue.flush_groups("crm", {"digest": 3}, now + 29) == []
    assert await queue.flush_groups("crm", {"digest": 3}, now + 30) == [
        (KEY, 3),
        (KEY, 3),
        (KEY, 1),
    ]
    assert await queue.flush_groups("crm", {"digest": 3}, now + 30) == []
    assert (await queue.depth(now + 30)).open_groups == {}

    leased = await queue.lease("crm", 10, 600, now + 30)
    assert [d.group_key for d in leased] == [KEY] * 3
    assert sorted(numbers(d.events) for d in leased) == [[0, 1, 2], [3, 4, 5], [6]]
    for d in leased:
        assert d.event_body == d.events[0]
        assert [e["n"] for e in d.all_events()] == numbers(d.events)


async def test_a_flushed_group_waits_for_its_interval(queue: Queue) -> None:
    now = time.time()
    await put(queue, grouped(n=1), now=now)
    assert await queue.flush_groups("crm", {}, now + 30) == [(KEY, 1)]
    await queue.lease("crm", 10, 10_000, now + 30)

    await put(queue, grouped(n=2), now=now + 40)
    assert await queue.next_due("crm") == now + 330  # last flush + interval, not now + wait
    assert await queue.flush_groups("crm", {}, now + 329) == []
    assert await queue.flush_groups("crm", {}, now + 330) == [(KEY, 1)]
    await queue.lease("crm", 10, 10_000, now + 330)

    await put(queue, grouped(n=3), now=now + 1000)  # long after: `wait` again
    assert await queue.next_due("crm") == now + 1030


async def test_groups_are_kept_apart_by_key_and_route(queue: Queue) -> None:
    now = time.time()
    other_key = '{"campaign_id":2}'
    await put(
        queue,
        grouped(n=1),
        grouped(other_key, n=2),
        grouped(route="other", n=3),
        grouped(n=4),
        now=now,
    )
    made = await queue.flush_groups("crm", {}, now + 30)
    assert sorted(made) == [(KEY, 1), (KEY, 2), (other_key, 1)]
    leased = await queue.lease("crm", 10, 600, now + 30)
    assert sorted((d.route, d.group_key, numbers(d.events)) for d in leased) == [
        ("digest", KEY, [1, 4]),
        ("digest", other_key, [2]),
        ("other", KEY, [3]),
    ]


async def test_a_route_no_longer_configured_uses_the_default_size(queue: Queue) -> None:
    now = time.time()
    await put(queue, *(grouped(n=i) for i in range(3)), now=now)
    assert await queue.flush_groups("crm", {"something-else": 1}, now + 30) == [(KEY, 3)]
    assert DEFAULT_MAX_EVENTS >= 3


async def test_concurrent_flushes_put_each_item_in_one_delivery(
    queue: Queue, instances: OpenInstance
) -> None:
    other = await instances()
    now = time.time()
    await put(queue, *(grouped(n=i) for i in range(10)), now=now)
    await put(queue, *(grouped('{"k":2}', n=10 + i) for i in range(10)), now=now)
    made = await asyncio.gather(
        *(q.flush_groups("crm", {"digest": 4}, now + 30) for q in (queue, other) for _ in range(3))
    )
    assert sum(count for m in made for _, count in m) == 20
    leased = await queue.lease("crm", 100, 600, now + 30)
    assert sorted(n for d in leased for n in numbers(d.events)) == list(range(20))


async def test_prune_removes_items_of_old_settled_groups(queue: Queue) -> None:
    now = time.time()
    old = now - 10_000
    evs = [grouped(n=i) for i in range(3)]
    await put(queue, *evs, now=old)
    await queue.flush_groups("crm", {}, old + 30)
    [d] = await queue.lease("crm", 10, 600, old + 30)
    await succeed(queue, d, old + 31)
    waiting = grouped(n=9)
    await put(queue, waiting, now=old)  # an open item of an old group: kept

    while await queue.prune(cutoffs(now - 1000), batch=2) >= 2:
        pass
    assert await stored_events(queue) == {waiting.id}
    assert await stored_deliveries(queue) == {waiting.deliveries[0].id}
    assert await queue.flush_groups("crm", {}, now) == [(KEY, 1)]


# -- pruning ------------------------------------------------------------------------------------
async def test_prune_removes_old_settled_rows_only(queue: Queue) -> None:
    now = time.time()
    old = now - 10_000
    done, pending, dead = (
        event(dest, fingerprint=f"fp-{dest}".encode()) for dest in ("done", "pending", "dead")
    )
    await put(queue, done, pending, dead, now=old, window=60)
    [d] = await queue.lease("done", 1, 30, old)
    await succeed(queue, d, old)
    [d] = await queue.lease("dead", 1, 30, old)
    await bury(queue, d, old, "gone", 410)
    recent = event("done", fingerprint=b"fp-recent")
    await put(queue, recent, now=now, window=60)
    [d] = await queue.lease("done", 1, 30, now)
    await succeed(queue, d, now)

    rounds: list[int] = []
    keep_dead = Cutoffs(now - 1000, old - 1, now - 1000, now - 1000)
    while not rounds or rounds[-1] >= 1:  # small batches, repeated, as maintenance does
        rounds.append(await queue.prune(keep_dead, batch=1))
        assert len(rounds) < 10
    assert rounds[0] == 1
    assert await stored_events(queue) == {pending.id, dead.id, recent.id}
    assert await stored_deliveries(queue) == {
        pending.deliveries[0].id,
        dead.deliveries[0].id,
        recent.deliveries[0].id,
    }
    # The recent fingerprint still marks a duplicate.
    copy = event("done", fingerprint=b"fp-recent")
    assert await put(queue, copy, now=now, window=60) == [Accepted(recent.id, True)]
    assert [x.event_id for x in await queue.dead_letters()] == [dead.id]
    assert [x.event_id for x in await queue.lease("pending", 10, 30, now)] == [pending.id]
    # The pruned fingerprint no longer marks a duplicate, however long the window.
    again = event("done", fingerprint=b"fp-done")
    assert await put(queue, again, now=now, window=10**9) == [Accepted(again.id, False)]


# -- lifecycle ------------------------------------------------------------------------------------
async def test_close_releases_leases(queue: Queue, instances: OpenInstance) -> None:
    holder = await instances()
    now = time.time()
    await put(queue, event("crm"), now=now)
    [held] = await holder.lease("crm", 10, 600, now)
    assert await queue.lease("crm", 10, 600, time.time()) == []
    await holder.close()
    [back] = await queue.lease("crm", 10, 600, time.time())
    assert (back.id, back.attempts) == (held.id, 2)


async def test_leases_of_an_instance_with_a_stale_heartbeat_come_back(
    queue: Queue, instances: OpenInstance
) -> None:
    holder = await instances()
    now = time.time()
    await put(queue, event("crm"), event("crm"), now=now)
    [held] = await holder.lease("crm", 1, 600, now)

    # Alive (a fresh heartbeat): its lease is never taken, whatever the process table says.
    await holder.heartbeat(now)
    assert await queue.release_orphans(now + 1) == 0
    assert [d.id for d in await queue.lease("crm", 10, 600, now + 1)] != [held.id]

    # Silent for longer than dead_after: its lease comes back at once.
    late = now + holder.dead_after + 1
    await queue.heartbeat(late)
    assert await queue.release_orphans(late) == 1
    [back] = await queue.lease("crm", 10, 600, late)
    assert (back.id, back.attempts) == (held.id, 2)


async def test_instances_are_random_ids_not_host_and_pid(
    queue: Queue, instances: OpenInstance
) -> None:
    other = await instances()
    assert queue.owner != other.owner
    assert str(os.getpid()) not in queue.owner and socket.gethostname() not in queue.owner


async def test_a_closed_queue_refuses_work(queue: Queue) -> None:
    await queue.close()
    with pytest.raises(QueueUnavailable):
        await queue.enqueue([event("crm")], 0, time.time())
    await queue.close()  # twice is fine


async def test_a_broken_store_raises_queue_unavailable(queue: Queue) -> None:
    await drop_tables(queue)
    for call in (
        lambda: queue.enqueue([event("crm")], 0, time.time()),
        lambda: queue.lease("crm", 1, 30, time.time()),
        queue.ping,
    ):
        with pytest.raises(QueueUnavailable) as info:
            await call()
        assert "\n" not in str(info.value)
        assert str(info.value).startswith(("SQLite queue error:", "PostgreSQL queue error:"))


async def test_unusable_sqlite_file_raises_queue_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    q = open_queue(f"sqlite:///{tmp_path / 'file' / 'queue.db'}")
    with pytest.raises(QueueUnavailable, match="cannot open SQLite queue"):
        await q.open()


async def test_unreachable_postgres_raises_one_line() -> None:
    q = open_queue(f"postgresql://relay:s3cret@127.0.0.1:{closed_port()}/relay")
    with pytest.raises(QueueUnavailable) as info:
        await q.open()
    message = str(info.value)
    assert message.startswith("cannot open PostgreSQL queue at 127.0.0.1:")
    assert "\n" not in message
    assert "s3cret" not in message


def test_missing_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "relay.queue.postgres", raising=False)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # makes `import psycopg` fail
    with pytest.raises(QueueUnavailable) as info:
        open_queue("postgresql://localhost/relay")
    assert str(info.value) == (
        "the PostgreSQL queue needs psycopg: pip install 'pushwoosh-relay[postgres]'"
    )


@pytest.mark.parametrize(
    ("query", "problem"),
    [("schema=Bad-Name", "invalid schema"), ("pool_size=0", "invalid pool_size")],
)
def test_bad_relay_parameters_in_the_postgres_url(query: str, problem: str) -> None:
    with pytest.raises(QueueURLInvalid, match=problem):
        open_queue(f"postgresql://localhost/relay?{query}")


def test_relay_migrate(
    queue: Queue, request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "relay.yaml"
    config.write_text(
        f"queue: {{url: '{request.node.stash[URL_KEY]}'}}\n"
        "destinations: {log: {type: log}}\nroutes: [{name: all, to: [log]}]\n"
    )
    assert cli_main(["migrate", "--config", str(config)]) == 0
    backend = "sqlite" if queue.dialect == "sqlite" else "postgresql"
    latest = len(load(queue.dialect).migrations)
    assert capsys.readouterr().out == f"migrated: {backend} schema version {latest}\n"


async def test_new_work_names_destinations_and_marks_the_ones_with_grouped_items(
    queue: Queue,
) -> None:
    """The dispatcher wakes the group flusher (a read) only for a "+" name, not per batch."""
    seen: list[str] = []
    queue.on_new_work(seen.append)
    await put(queue, event("slack"), grouped(also=("slack",)), now=1000.0)
    await _wait_for(seen, 2, 2.0)
    assert sorted(seen) == ["+crm", "slack"]


async def test_taking_back_leases_walks_only_leased_rows(tmp_path: Path) -> None:
    """Every heartbeat runs it in the writer's transaction: a walk of all pending rows
    there stalled every request for 0.2 s with a million pending."""
    queue = open_queue(f"sqlite:///{tmp_path / 'q.db'}")
    await queue.open()
    await queue.close()
    catalogue = load("sqlite")
    conn = sqlite3.connect(tmp_path / "q.db")
    try:
        for name, params in [
            ("release_orphans", {"now": 1.0, "alive_since": 1.0}),
            ("release_own", {"now": 1.0, "owner": "x"}),
        ]:
            plan = [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + catalogue.sql(name), params)]
            assert any("deliveries_leased" in step for step in plan), (name, plan)
    finally:
        conn.close()


# -- PostgreSQL only ----------------------------------------------------------------------------
async def _opened(url: str, callback: Callable[[str], None] | None = None) -> Queue:
    q = open_queue(url)
    if callback is not None:
        q.on_new_work(callback)
    await q.open()
    await q.join()
    return q


async def _wait_for(seen: list[str], count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(seen) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


@pytest.mark.postgres
async def test_enqueue_notifies_other_instances(pg_url: str) -> None:
    before: list[str] = []
    after: list[str] = []
    elsewhere: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        elsewhere_url = await stack.enter_async_context(pg.fresh_schema())
        sender = await _opened(pg_url)
        early = await _opened(pg_url, before.append)  # callback set before open
        late = await _opened(pg_url)
        late.on_new_work(after.append)  # ... and after
        unrelated = await _opened(elsewhere_url, elsewhere.append)  # another schema
        for q in (sender, early, late, unrelated):
            stack.push_async_callback(q.close)

        started = time.monotonic()
        await sender.enqueue([event("crm", "slack"), event("crm")], 0, time.time())
        await _wait_for(before, 2, 1.0)
        await _wait_for(after, 2, 1.0)
        assert time.monotonic() - started < 1.0
        assert sorted(before) == sorted(after) == ["crm", "slack"]  # once per destination

        [d] = await sender.lease("slack", 1, 30, time.time())
        await bury(sender, d, time.time())
        await sender.replay(None, None, time.time())
        await _wait_for(before, 3, 1.0)
        assert before[2:] == ["slack"]
        await asyncio.sleep(0.1)
        assert elsewhere == []


@pytest.mark.postgres
async def test_listener_and_pool_survive_dropped_connections(pg_url: str) -> None:
    app = f"relay_test_{pg.schema_of(pg_url)[-12:]}"
    url = f"{pg_url}&application_name={app}"  # to find exactly this test's connections
    seen: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        receiver = await _opened(url, seen.append)
        stack.push_async_callback(receiver.close)
        sender = await _opened(url)
        stack.push_async_callback(sender.close)
        async with await pg.connect() as admin:
            cur = await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (app,),
            )
            assert len(await cur.fetchall()) >= 3  # two listeners, at least two pooled
        # The listener notices and reconnects after its backoff (later on a loaded machine):
        # notifications sent meanwhile are lost, so keep sending until one arrives.
        sent = 0
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            await sender.enqueue([event("crm")], 0, time.time())  # the pool heals itself
            sent += 1
            await _wait_for(seen, 1, 0.5)
        assert seen and set(seen) == {"crm"}
        assert len(await receiver.lease("crm", 100, 30, time.time())) == sent


@pytest.mark.postgres
async def test_concurrent_migrations(pg_url: str) -> None:
    migrations = load("postgres").migrations
    queues = [open_queue(pg_url) for _ in range(3)]
    try:
        await asyncio.gather(*(q.open() for q in queues))
        assert [q.schema_version for q in queues] == [len(migrations)] * 3
        again = await _opened(pg_url)
        await again.close()
        async with await pg.connect(pg.schema_of(pg_url)) as conn:
            rows = await (
                await conn.execute("SELECT version FROM relay_schema_version ORDER BY version")
            ).fetchall()
        assert [r[0] for r in rows] == list(range(1, len(migrations) + 1))
    finally:
        for q in queues:
            await q.close()


@pytest.mark.postgres
async def test_taking_back_dead_leases_walks_only_the_leased_rows(pg_url: str) -> None:
    """Every instance runs release_orphans every heartbeat: with a large table the plan
    must go through the index of leased rows, not through every pending one (or all)."""
    queue = await _opened(pg_url)
    await queue.close()
    sql = load("postgres").sql("release_orphans")
    async with await pg.connect(pg.schema_of(pg_url)) as conn:
        await conn.execute(
            "INSERT INTO relay_events (id, received_at, body)"
            " SELECT 'e' || g, 1000, '{}' FROM generate_series(1, 50000) g"
        )
        await conn.execute(
            "INSERT INTO relay_deliveries (id, event_id, destination, route, available_at,"
            " created_at, budget_start, updated_at, lease_owner)"
            " SELECT 'd' || g, 'e' || g, 'crm', 'r', 3000, 1000, 1000, 1000,"
            " CASE WHEN g % 5000 = 0 THEN 'gone' END FROM generate_series(1, 50000) g"
        )
        await conn.execute("ANALYZE")
        params = {"now": 1500.0, "alive_since": 1490.0}
        plan = "\n".join(
            row[0] for row in await (await conn.execute(f"EXPLAIN {sql}", params)).fetchall()
        )
        assert "relay_deliveries_leased" in plan, plan
        assert "Seq Scan on relay_deliveries" not in plan, plan
        released = await conn.execute(sql, params)
        assert released.rowcount == 10  # every lease of the instance that is gone


async def test_depth_matches_the_stored_deliveries_through_every_kind_of_change(
    queue: Queue,
) -> None:
    """Depth is kept apart from the rows (counts on SQLite, partial indexes on
    PostgreSQL): after each of 150 seeded changes of every kind (accept, lease, succeed,
    retry, bury, replay, resend, forget, prune) it equals what the stored deliveries say."""
    rng = random.Random(20261129)
    now = time.time()
    addresses = [f"user{i}@example.com" for i in range(6)]

    async def truth() -> dict[tuple[str, str], int]:
        page = await queue.events(EventFilter(), limit=10_000)
        counts: dict[tuple[str, str], int] = {}
        for stored in page.events:
            for d in stored.deliveries:
                keys = {
                    DeliveryState.PENDING: [(d.destination, "pending")],
                    DeliveryState.RETRYING: [
                        (d.destination, "pending"),
                        (d.destination, "retrying"),
                    ],
                    DeliveryState.DEAD: [(d.destination, "dead")],
                }.get(d.state, [])
                for key in keys:
                    counts[key] = counts.get(key, 0) + 1
        return counts

    for step in range(150):
        now += 1
        action = rng.choice(["put", "put", "lease", "lease", "replay", "resend", "forget", "prune"])
        if action == "put":
            dests = rng.sample(["a", "b"], rng.randint(1, 2))
            hwid = rng.choice(addresses)
            body = msgspec.json.encode({"event_name": "Email Sent", "hwid": hwid, "n": step})
            await put(queue, event(*dests, body=body), now=now)
        elif action == "lease":
            for d in await queue.lease(rng.choice(["a", "b"]), rng.randint(1, 4), 2, now):
                fate = rng.choice(["succeed", "retry", "bury", "in flight"])
                if fate == "succeed":
                    await succeed(queue, d, now)
                elif fate == "retry":
                    await retry(queue, d, at=now, now=now)
                elif fate == "bury":
                    await bury(queue, d, now)
        elif action == "replay":
            await queue.replay(None, rng.choice([None, "a"]), now)
        elif action == "resend":
            page = await queue.events(EventFilter(), limit=20)
            if page.events:
                await queue.resend(rng.choice(page.events).id, None, now)
        elif action == "forget":
            await queue.forget(rng.choice(addresses), dry_run=False)
        else:
            await queue.prune(cutoffs(now - rng.randint(0, 60)))
        assert (await queue.depth(now)).counts == await truth(), f"after step {step}: {action}"


def test_an_sqlite_queue_answers_on_whichever_loop_asks(tmp_path: Path) -> None:
    """The writer thread answers the loop that asked: the one the queue was opened on
    (known without a lookup), a later loop in the same thread, or a loop in another."""
    queue = open_queue(f"sqlite:///{tmp_path / 'q.db'}")

    async def accept(n: int) -> list[str]:
        accepted = await queue.enqueue([event("a") for _ in range(n)], 0.0, 1000.0)
        return [a.event_id for a in accepted]

    async def opened_here() -> int:
        await queue.open()
        first, second = await asyncio.gather(accept(2), accept(3))
        return len(first) + len(second)

    assert asyncio.run(opened_here()) == 5
    assert len(asyncio.run(accept(4))) == 4  # a new loop in the same thread
    elsewhere: list[int] = []
    thread = threading.Thread(target=lambda: elsewhere.append(len(asyncio.run(accept(1)))))
    thread.start()
    thread.join(30)
    assert elsewhere == [1]

    async def count_and_close() -> int:
        try:
            return len(await stored_events(queue))
        finally:
            await queue.close()

    assert asyncio.run(count_and_close()) == 10
