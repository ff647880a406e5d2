"""Every attempt on record, events searchable and resendable, one address erasable.

Run unchanged on both backends, through the queue's interface only (the fixtures
of conftest.py); the catalogue tests check that the two dialects stay in step.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import msgspec
import pytest

from relay.model import DeliveryState, Grouping, NewDelivery, NewEvent, new_id, search_fields
from relay.queue import Cutoffs, EventFilter, Queue, open_queue
from relay.queue import core as core_module
from relay.queue.catalogue import DIALECTS, load, parse

from . import pg
from .queuekit import bury, grouped, put, retry, succeed


def person(
    hwid: str,
    *destinations: str,
    name: str = "Email Opened",
    user_id: str = "u1",
    campaign_id: int | None = 7,
    fingerprint: bytes | None = None,
) -> NewEvent:
    body: dict[str, object] = {"event_name": name, "hwid": hwid, "user_id": user_id}
    if campaign_id is not None:
        body["campaign_id"] = campaign_id
    raw = msgspec.json.encode(body)
    return NewEvent(
        new_id(),
        raw,
        tuple(NewDelivery(new_id(), d, f"to-{d}") for d in destinations),
        fingerprint,
        search_fields(body),
    )


# -- the catalogues -------------------------------------------------------------------------
def test_both_dialects_name_the_same_statements_and_migrations() -> None:
    sqlite, postgres = (load(d) for d in DIALECTS)
    assert set(sqlite.statements) == set(postgres.statements)
    assert [(m.number, m.name) for m in sqlite.migrations] == [
        (m.number, m.name) for m in postgres.migrations
    ]


def test_the_core_asks_only_for_statements_that_exist() -> None:
    source = Path(core_module.__file__).read_text()
    asked = set(re.findall(r'_(?:rows|execute|many|many_rows)\(\s*"([a-z_]+)"', source))
    asked |= set(re.findall(r'fragments\.append\("([a-z_]+)"\)', source))
    asked |= set(re.findall(r'f"where_\{name\}"', source) and ["where_event_name"])
    assert asked and asked <= set(load("sqlite").statements)
    # ... and every statement is asked for somewhere (nothing dead in the catalogue).
    used = set(re.findall(r'"([a-z_]+)"', source))
    unused = {n for n in load("sqlite").statements if n not in used and not n.startswith("where_")}
    assert unused == set()


def test_a_malformed_catalogue_is_refused() -> None:
    from relay.queue.catalogue import CatalogueError

    with pytest.raises(CatalogueError, match="twice"):
        parse("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")
    with pytest.raises(CatalogueError, match="empty"):
        parse("-- name: a\n-- only a comment\n")


# -- attempts -------------------------------------------------------------------------------
async def test_every_attempt_is_recorded_with_its_answer(queue: Queue) -> None:
    now = time.time()
    ev = person("a@example.com", "crm")
    await put(queue, ev, now=now)
    [first] = await queue.lease("crm", 1, 30, now)
    await retry(queue, first, now + 5, now + 1, "HTTP 503: busy", 503)
    [second] = await queue.lease("crm", 1, 30, now + 5)
    await succeed(queue, second, now + 6)

    stored = await queue.event(ev.id)
    assert stored is not None and stored.body == ev.body
    [delivery] = stored.deliveries
    assert (delivery.id, delivery.destination, delivery.route, delivery.state) == (
        first.id,
        "crm",
        "to-crm",
        DeliveryState.SUCCEEDED,
    )
    assert [(a.n, a.outcome, a.status_code, a.error) for a in delivery.attempts] == [
        (1, "retry", 503, "HTTP 503: busy"),
        (2, "succeeded", 200, None),
    ]
    assert [a.response for a in delivery.attempts] == ["answer", "answer"]
    assert (delivery.attempts[0].method, delivery.attempts[0].url) == ("POST", "u")
    assert await queue.event("no-such-event") is None


async def test_an_attempt_on_an_erased_delivery_is_not_recorded(queue: Queue) -> None:
    now = time.time()
    ev = person("gone@example.com", "crm")
    await put(queue, ev, now=now)
    [d] = await queue.lease("crm", 1, 30, now)
    await queue.forget("gone@example.com", dry_run=False)
    await succeed(queue, d, now + 1)  # a worker finishing after the erasure
    assert await queue.event(ev.id) is None
    assert (await queue.events(EventFilter(hwid="gone@example.com"))).events == ()


# -- listing --------------------------------------------------------------------------------
async def test_events_are_listed_newest_first_and_filtered_by_field(queue: Queue) -> None:
    now = time.time()
    big = 2**64 - 1
    a = person("Ann@Example.com", "crm", name="Email Opened", user_id="u-a", campaign_id=big)
    time.sleep(0.002)  # ids are time-ordered to the millisecond
    b = person("bob@example.com", "crm", "slack", name="Email Bounced", user_id="u-b")
    time.sleep(0.002)
    c = person("ann@example.com", "slack", name="Email Sent", campaign_id=None)
    await put(queue, a, b, c, now=now)

    def ids(page: object) -> list[str]:
        return [e.id for e in page.events]  # type: ignore[attr-defined]

    assert ids(await queue.events(EventFilter())) == [c.id, b.id, a.id]
    assert ids(await queue.events(EventFilter(hwid="ANN@example.COM"))) == [c.id, a.id]
    assert ids(await queue.events(EventFilter(event_name="Email Bounced"))) == [b.id]
    assert ids(await queue.events(EventFilter(user_id="u-a"))) == [a.id]
    assert ids(await queue.events(EventFilter(campaign_id=str(big)))) == [a.id]
    assert ids(await queue.events(EventFilter(destination="slack"))) == [c.id, b.id]
    assert ids(await queue.events(EventFilter(hwid="nobody@example.com"))) == []
    both = EventFilter(hwid="ann@example.com", destination="crm", event_name="Email Opened")
    assert ids(await queue.events(both)) == [a.id]

    [listed] = (await queue.events(EventFilter(event_name="Email Bounced"))).events
    assert sorted(d.destination for d in listed.deliveries) == ["crm", "slack"]
    assert {d.state for d in listed.deliveries} == {DeliveryState.PENDING}


async def test_events_filtered_by_delivery_state(queue: Queue) -> None:
    now = time.time()
    evs = [person(f"s{i}@example.com", "crm") for i in range(4)]
    await put(queue, *evs, now=now)
    leased = {d.event_id: d for d in await queue.lease("crm", 3, 30, now)}
    await succeed(queue, leased[evs[0].id], now)
    await retry(queue, leased[evs[1].id], now + 60, now)
    await bury(queue, leased[evs[2].id], now)

    async def having(state: DeliveryState, destination: str | None = None) -> set[str]:
        page = await queue.events(EventFilter(state=state, destination=destination))
        return {e.id for e in page.events}

    assert await having(DeliveryState.SUCCEEDED) == {evs[0].id}
    assert await having(DeliveryState.RETRYING) == {evs[1].id}
    assert await having(DeliveryState.DEAD) == {evs[2].id}
    assert await having(DeliveryState.DEAD, "slack") == set()
    assert await having(DeliveryState.PENDING) == {evs[3].id}


async def test_pages_follow_the_cursor_without_gaps_or_repeats(queue: Queue) -> None:
    now = time.time()
    evs = [person("page@example.com", "crm") for _ in range(7)]
    await put(queue, *evs, now=now)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await queue.events(EventFilter(hwid="page@example.com"), limit=3, before=cursor)
        seen += [e.id for e in page.events]
        pages += 1
        cursor = page.next
        if cursor is None:
            break
    assert pages == 3
    assert seen == sorted((ev.id for ev in evs), reverse=True)


async def test_since_and_until_select_by_time_received(queue: Queue) -> None:
    early = person("t@example.com", "crm")
    await put(queue, early, now=time.time())
    time.sleep(0.01)
    middle = time.time()
    time.sleep(0.01)
    late = person("t@example.com", "crm")
    await put(queue, late, now=time.time())
    since = await queue.events(EventFilter(since=middle))
    until = await queue.events(EventFilter(until=middle))
    assert [e.id for e in since.events] == [late.id]
    assert [e.id for e in until.events] == [early.id]


async def test_a_grouped_event_shows_its_group_item_then_its_delivery(queue: Queue) -> None:
    now = time.time()
    ev = grouped(n=1)
    await put(queue, ev, now=now)
    [waiting] = (await queue.event(ev.id)).deliveries  # type: ignore[union-attr]
    assert (waiting.state, waiting.attempt_count, waiting.group_key) == (
        DeliveryState.PENDING,
        0,
        '{"campaign_id":1}',
    )
    await queue.flush_groups("crm", {}, now + 30)
    [d] = await queue.lease("crm", 10, 600, now + 30)
    await succeed(queue, d, now + 31)
    [sent] = (await queue.event(ev.id)).deliveries  # type: ignore[union-attr]
    assert (sent.id, sent.state, [a.outcome for a in sent.attempts]) == (
        d.id,
        DeliveryState.SUCCEEDED,
        ["succeeded"],
    )
    done = await queue.events(EventFilter(state=DeliveryState.SUCCEEDED))
    assert [e.id for e in done.events] == [ev.id]


# -- resending ------------------------------------------------------------------------------
async def test_resend_makes_new_deliveries_with_a_fresh_budget(queue: Queue) -> None:
    now = time.time()
    ev = person("r@example.com", "crm", "slack")
    await put(queue, ev, now=now)
    for d in await queue.lease("crm", 1, 30, now) + await queue.lease("slack", 1, 30, now):
        await succeed(queue, d, now)

    made = await queue.resend(ev.id, "crm", now + 100)
    assert made is not None and len(made) == 1
    assert made[0] not in {d.id for d in ev.deliveries}  # a new Idempotency-Key
    [again] = await queue.lease("crm", 10, 30, now + 100)
    assert (again.id, again.attempts, again.created_at, again.event_body) == (
        made[0],
        1,
        now + 100,
        ev.body,
    )
    assert await queue.lease("slack", 10, 30, now + 100) == []
    everywhere = await queue.resend(ev.id, None, now + 200)
    assert everywhere is not None and len(everywhere) == 2
    assert await queue.resend("no-such-event", None, now) is None
    assert await queue.resend(ev.id, "nowhere", now) == []


async def test_resending_a_grouped_event_sends_a_group_of_one(queue: Queue) -> None:
    now = time.time()
    evs = [grouped(n=i) for i in range(3)]
    await put(queue, *evs, now=now)
    await queue.flush_groups("crm", {}, now + 30)
    [d] = await queue.lease("crm", 10, 600, now + 30)
    await bury(queue, d, now + 31)

    [made] = await queue.resend(evs[1].id, None, now + 40) or [""]
    [again] = await queue.lease("crm", 10, 600, now + 40)
    assert again.id == made and again.group_key == '{"campaign_id":1}'
    assert [msgspec.json.decode(b)["n"] for b in again.events] == [1]


# -- erasure --------------------------------------------------------------------------------
async def test_forget_erases_every_trace_of_one_address(queue: Queue) -> None:
    now = time.time()
    mine = [
        person("Victim@Example.com", "crm", fingerprint=b"fp-victim-1"),
        person("victim@example.com", "crm", "slack", fingerprint=b"fp-victim-2"),
    ]
    other = person("other@example.com", "crm", fingerprint=b"fp-other")
    await put(queue, *mine, other, now=now, window=3600)
    leased = {d.event_id: d for d in await queue.lease("crm", 10, 30, now)}
    await bury(queue, leased[mine[0].id], now, "HTTP 400: bad address victim@example.com")
    await succeed(queue, leased[other.id], now)

    dry = await queue.forget("VICTIM@example.com", dry_run=True)
    assert (dry.events, dry.deliveries, dry.cancelled, dry.attempts, dry.fingerprints) == (
        2,
        3,
        2,
        1,
        2,
    )
    assert len((await queue.events(EventFilter(hwid="victim@example.com"))).events) == 2

    done = await queue.forget("victim@EXAMPLE.com", dry_run=False)
    assert done == dry
    assert (await queue.events(EventFilter(hwid="victim@example.com"))).events == ()
    assert [await queue.event(ev.id) for ev in mine] == [None, None]
    assert await queue.dead_letters() == []
    assert await queue.lease("slack", 10, 30, now) == []  # its pending delivery is cancelled
    # Its fingerprints are gone: the same body is no longer a duplicate.
    again = person("victim@example.com", "crm", fingerprint=b"fp-victim-1")
    [accepted] = await put(queue, again, now=now, window=3600)
    assert not accepted.duplicate
    # Nobody else's history is touched.
    kept = await queue.event(other.id)
    assert kept is not None and kept.deliveries[0].state == DeliveryState.SUCCEEDED
    assert (await queue.forget("nobody@example.com", dry_run=False)).events == 0


async def test_forget_keeps_a_shared_digest_for_the_others_masked(queue: Queue) -> None:
    now = time.time()

    def member(hwid: str) -> NewEvent:
        body = {"event_name": "Email Bounced", "hwid": hwid, "n": 0}
        raw = msgspec.json.encode(body)
        item = NewDelivery(new_id(), "crm", "digest", Grouping('{"k":1}', 30, 300))
        return NewEvent(new_id(), raw, (item,), None, search_fields(body))

    victim, other = member("victim@example.com"), member("other@example.com")
    await put(queue, victim, other, now=now)
    await queue.flush_groups("crm", {}, now + 30)
    [d] = await queue.lease("crm", 10, 600, now + 30)
    await bury(queue, d, now + 31, "HTTP 400: VICTIM@example.com and other@example.com rejected")

    report = await queue.forget("victim@example.com", dry_run=False)
    assert (report.events, report.shared_deliveries, report.group_items) == (1, 1, 1)
    kept = await queue.event(other.id)
    assert kept is not None
    [delivery] = kept.deliveries
    assert delivery.id == d.id
    texts = [delivery.last_error or "", *(a.error or "" for a in delivery.attempts)]
    assert all("victim" not in t.lower() and "other@example.com" in t for t in texts)
    [dead] = await queue.dead_letters()
    assert dead.event_id == other.id


async def test_forget_leaves_no_bytes_in_the_sqlite_files(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    queue = open_queue(url)
    await queue.open()
    try:
        now = time.time()
        address = "erase.me.please@example.com"
        evs = [person(address, "crm") for _ in range(50)]
        evs += [person(f"keep{i}@example.com", "crm") for i in range(50)]
        await put(queue, *evs, now=now)
        hwids = {ev.id: msgspec.json.decode(ev.body)["hwid"] for ev in evs}
        for d in await queue.lease("crm", 100, 30, now):
            await bury(queue, d, now, f"HTTP 400: {hwids[d.event_id]} is blocked")
        await queue.forget(address.upper(), dry_run=False)
    finally:
        await queue.close()
    for file in tmp_path.iterdir():
        data = file.read_bytes().lower()
        assert address.encode() not in data, file.name
    assert (tmp_path / "queue.db").stat().st_size > 0


# -- retention and upgrades -----------------------------------------------------------------
async def test_dead_letters_have_their_own_retention(queue: Queue) -> None:
    now = time.time()
    old_dead, fresh_dead = person("d1@example.com", "crm"), person("d2@example.com", "crm")
    await put(queue, old_dead, now=now - 100_000)
    [d] = await queue.lease("crm", 1, 30, now - 100_000)
    await bury(queue, d, now - 100_000)
    await put(queue, fresh_dead, now=now)
    [d] = await queue.lease("crm", 1, 30, now)
    await bury(queue, d, now)

    cut = Cutoffs(now - 10, now - 50_000, now - 10, now - 10)
    while await queue.prune(cut, batch=10) >= 10:
        pass
    assert [x.event_id for x in await queue.dead_letters()] == [fresh_dead.id]
    assert await queue.event(old_dead.id) is None


async def test_an_old_store_is_upgraded_and_its_events_become_searchable(
    queue_url: str, tmp_path: Path
) -> None:
    """A store written by the previous release (schema 2) opens, and old rows are indexed."""
    old_body = b'{"event_name":"Email Opened","hwid":"Legacy@Example.com","user_id":"u9"}'
    if queue_url.startswith("sqlite"):
        conn = sqlite3.connect(tmp_path / "queue.db")
        for m in load("sqlite").migrations[:2]:
            conn.executescript(m.sql)
        conn.execute("PRAGMA user_version = 2")
        conn.execute("INSERT INTO events VALUES ('e-legacy', 1.0, ?)", (old_body,))
        conn.commit()
        conn.close()
    else:
        async with await pg.connect(pg.schema_of(queue_url)) as conn:
            await conn.execute(
                "CREATE TABLE relay_schema_version (version integer PRIMARY KEY, "
                "applied_at double precision NOT NULL)"
            )
            for m in load("postgres").migrations[:2]:
                await conn.execute(m.sql.encode())
                await conn.execute("INSERT INTO relay_schema_version VALUES (%s, 0)", (m.number,))
            await conn.execute("INSERT INTO relay_events VALUES ('e-legacy', 1.0, %s)", (old_body,))
    queue = open_queue(queue_url)
    await queue.open()
    try:
        assert queue.schema_version == len(load(queue.dialect).migrations)
        page = await queue.events(EventFilter(hwid="legacy@example.com", user_id="u9"))
        assert [e.id for e in page.events] == ["e-legacy"]
    finally:
        await queue.close()


async def test_a_state_filter_pages_through_plain_and_grouped_events(queue: Queue) -> None:
    """The state filter walks deliveries, not events: its pages must still be complete,
    newest first, without repeats, when plain and grouped events interleave."""
    now = time.time()
    plain, waiting = [], []
    for i in range(9):
        time.sleep(0.002)
        plain.append(person(f"p{i}@example.com", "crm", name="Email Opened" if i % 2 else "X"))
        time.sleep(0.002)
        waiting.append(grouped(n=i))
    await put(queue, *plain, *waiting, now=now)
    dead = await queue.lease("crm", 100, 30, now)
    for d in dead:
        await bury(queue, d, now)
    expected_dead = sorted((e.id for e in plain), reverse=True)
    expected_pending = sorted((e.id for e in waiting), reverse=True)

    async def walk(**filters: object) -> list[str]:
        seen: list[str] = []
        cursor: str | None = None
        while True:
            page = await queue.events(EventFilter(**filters), limit=2, before=cursor)  # type: ignore[arg-type]
            seen += [e.id for e in page.events]
            if page.next is None:
                return seen
            cursor = page.next

    assert await walk(state=DeliveryState.DEAD) == expected_dead
    assert await walk(state=DeliveryState.PENDING) == expected_pending
    assert await walk(state=DeliveryState.DEAD, event_name="Email Opened") == [
        e.id
        for e in sorted(plain, key=lambda e: e.id, reverse=True)
        if msgspec.json.decode(e.body)["event_name"] == "Email Opened"
    ]
    assert await walk(state=DeliveryState.DEAD, destination="slack") == []
