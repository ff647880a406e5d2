"""What the queue says to its database, written once for every dialect.

Each operation is a generator that yields the statements it needs, by name from
the dialect's catalogue (:mod:`relay.queue.catalogue`), and receives their
results: the logic knows *what* to say, a transport (:mod:`relay.queue.sqlite`,
:mod:`relay.queue.postgres`) knows *how* to say it and drives the generator
inside one transaction, synchronously on SQLite's writer thread or with
``await`` on a PostgreSQL connection. The split is procrastinate's (manager vs
connector) in sans-I/O form, so the two backends cannot drift apart.

Nothing here does I/O or reads the clock; times are passed in.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from ..model import DeliveryState, Leased, NewEvent, address_key, id_at, new_id, search_fields
from .records import (
    Accepted,
    Activity,
    AttemptView,
    Cutoffs,
    DeadGroup,
    DeadLetter,
    DeliveryView,
    Depth,
    DestinationState,
    EnqueueRequest,
    EventFilter,
    EventPage,
    ForgetReport,
    LeaseRequest,
    MinuteCounts,
    Settlement,
    StoredEvent,
)

T = TypeVar("T")

#: Items per grouped delivery when the route that made them has left the config.
DEFAULT_MAX_EVENTS = 500
MASK = "***"


class Mode(enum.Enum):
    """How a transport runs a statement, and what the generator receives back."""

    EXECUTE = "execute"  # -> the number of rows it changed
    ROWS = "rows"  # -> list of tuples
    MANY = "many"  # one statement, many parameter sets -> None
    MANY_ROWS = "many_rows"  # the same, each returning rows -> all rows, in order


@dataclass(frozen=True, slots=True)
class Stmt:
    """A request for the statement ``name`` of the catalogue."""

    name: str
    params: Any
    mode: Mode
    fragments: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Notify:
    """Tell every instance that these destinations have new due work (after commit).

    A name prefixed with :data:`STATE_CHANGED` announces a changed shared state
    (paused, resumed, circuit) instead: instances read it again at once. One prefixed
    with :data:`GROUPS_OPENED` is new work that includes grouped items.
    """

    destinations: frozenset[str]


STATE_CHANGED = "@"
GROUPS_OPENED = "+"


Step = Stmt | Notify
Op = Generator[Step, Any, T]
OpFactory = Callable[[], Op[T]]


def _rows(statement: str, fragments: tuple[str, ...] = (), /, **params: Any) -> Stmt:
    return Stmt(statement, params, Mode.ROWS, fragments)


def _execute(statement: str, /, **params: Any) -> Stmt:
    return Stmt(statement, params, Mode.EXECUTE)


def _many(statement: str, seq: Sequence[Mapping[str, Any]], /) -> Stmt:
    return Stmt(statement, list(seq), Mode.MANY)


def _many_rows(statement: str, seq: Sequence[Mapping[str, Any]], /) -> Stmt:
    return Stmt(statement, list(seq), Mode.MANY_ROWS)


def run_sync(op: Op[T], execute: Callable[[Step], Any]) -> T:
    """Drive ``op`` with a blocking ``execute`` (SQLite's writer thread)."""
    result: Any = None
    try:
        while True:
            result = execute(op.send(result))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


# -- enqueue --------------------------------------------------------------------------------
def enqueue(requests: Sequence[EnqueueRequest]) -> Op[list[list[Accepted]]]:
    """Commit every waiting request's events at once (the group commit).

    Dedupe: each new body's fingerprint is claimed; a claim that does not come back
    belongs to an event accepted within the window, whose id the answer names.
    """
    claims: dict[bytes, dict[str, Any]] = {}
    for req in requests:
        if req.dedupe_window <= 0:
            continue
        for ev in req.events:
            if ev.fingerprint is not None and ev.fingerprint not in claims:
                claims[ev.fingerprint] = {
                    "digest": ev.fingerprint,
                    "event_id": ev.id,
                    "now": req.now,
                    "since": req.now - req.dedupe_window,
                }
    ours: set[bytes] = set()
    originals: dict[bytes, str] = {}
    if claims:
        # In digest order: concurrent claimers of the same bodies cannot deadlock.
        ordered = [claims[d] for d in sorted(claims)]
        ours = {bytes(r[0]) for r in (yield _many_rows("claim_fingerprint", ordered))}
        others = [{"digest": d} for d in sorted(claims) if d not in ours]
        if others:
            found = yield _many_rows("find_fingerprint", others)
            originals = {bytes(digest): event_id for digest, event_id in found}

    out: list[list[Accepted]] = []
    events: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for req in requests:
        accepted: list[Accepted] = []
        for ev in req.events:
            digest = ev.fingerprint if req.dedupe_window > 0 else None
            if digest is not None:
                claimer = claims[digest]["event_id"]
                if digest not in ours and digest in originals:
                    accepted.append(Accepted(originals[digest], True))
                    continue
                if claimer != ev.id:  # the same body twice in this batch
                    accepted.append(Accepted(claimer, True))
                    continue
            accepted.append(Accepted(ev.id, False))
            _rows_of(ev, req.now, events, deliveries, items, groups)
        out.append(accepted)
    yield _many("insert_event", events)
    if deliveries:
        yield _many("insert_delivery", deliveries)
    if items:
        yield _many("insert_group_item", items)
        yield _many("open_group", [groups[k] for k in sorted(groups)])
    # Grouped items too: a woken worker learns when their group is due (next_due), and
    # the group flusher reads the new flush times (only then: it costs a read).
    touched = {d["destination"] for d in deliveries} | {
        GROUPS_OPENED + i["destination"] for i in items
    }
    if touched:
        yield Notify(frozenset(touched))
    return out


def _rows_of(
    ev: NewEvent,
    now: float,
    events: list[dict[str, Any]],
    deliveries: list[dict[str, Any]],
    items: list[dict[str, Any]],
    groups: dict[tuple[str, str, str], dict[str, Any]],
) -> None:
    # The receiver extracted the searchable fields; the queue never parses bodies.
    row = {"id": ev.id, "now": now, "body": ev.body, **_NO_FIELDS}
    row.update(ev.fields)
    events.append(row)
    for d in ev.deliveries:
        if d.group is None:
            deliveries.append(
                {
                    "id": d.id,
                    "event_id": ev.id,
                    "destination": d.destination,
                    "route": d.route,
                    "now": now,
                    "group_key": None,
                    "order_key": d.order_key,
                }
            )
            continue
        items.append(
            {
                "id": d.id,
                "event_id": ev.id,
                "destination": d.destination,
                "route": d.route,
                "now": now,
                "group_key": d.group.key,
            }
        )
        groups.setdefault(
            (d.destination, d.route, d.group.key),
            {
                "destination": d.destination,
                "route": d.route,
                "group_key": d.group.key,
                "now": now,
                "wait": d.group.wait,
                "interval": d.group.interval,
            },
        )


# -- leasing and settling -------------------------------------------------------------------
def lease(requests: Sequence[LeaseRequest], owner: str, now: float) -> Op[list[Leased]]:
    """Take due deliveries of several destinations in one transaction."""
    leased: list[Leased] = []
    for req in requests:
        if req.limit <= 0:
            continue
        rows = yield _rows(
            "lease",
            destination=req.destination,
            limit=req.limit,
            until=req.until,
            owner=owner,
            now=now,
        )
        for did, event_id, dest, route, attempts, budget_start, group_key, body in rows:
            leased.append(
                Leased(
                    did, event_id, dest, route, attempts, budget_start, bytes(body), [], group_key
                )
            )
    grouped = {item.id: item for item in leased if item.group_key is not None}
    if grouped:  # a grouped delivery carries every event of its items, oldest first
        for did, body in (yield _rows("group_bodies", ids=list(grouped))):
            grouped[did].events.append(bytes(body))
    return leased


def settle(items: Sequence[tuple[Settlement, str]]) -> Op[list[None]]:
    """Record many attempts' outcomes (each with its lease owner) in two statements."""
    yield _many(
        "settle",
        [
            {
                "id": s.delivery_id,
                "state": str(s.state),
                "available_at": s.available_at,
                "error": s.error,
                "status_code": s.status_code,
                "now": s.now,
                "owner": owner,
            }
            for s, owner in items
        ],
    )
    yield _many(
        "insert_attempt",
        [
            {
                "id": s.delivery_id,
                "destination": s.destination,
                "n": s.attempt.n,
                "started_at": s.attempt.started_at,
                "duration_ms": s.attempt.duration_ms,
                "outcome": str(s.attempt.outcome),
                "status_code": s.attempt.status_code,
                "error": s.attempt.error,
                "response": s.attempt.response,
                "method": s.attempt.method,
                "url": s.attempt.url,
                "failed": s.attempt.failed,
            }
            for s, _ in items
        ],
    )
    return [None] * len(items)


#: Operations the transports merge across concurrent callers into one transaction.
MERGED: dict[str, Callable[[list[Any]], Op[list[Any]]]] = {
    "enqueue": enqueue,
    "settle": settle,
}
#: Of those, the ones that must be on disk before the caller hears back: an accepted
#: event is acknowledged with a 2xx. A lost settle only means the attempt is repeated.
DURABLE_MERGES = frozenset({"enqueue"})


# -- dead letters, groups, depth ------------------------------------------------------------
def dead_letters(destination: str | None, limit: int) -> Op[list[DeadLetter]]:
    return _dead_letters((yield _rows("dead_letters", destination=destination, limit=limit)))


def _dead_letters(rows: list[tuple[Any, ...]]) -> list[DeadLetter]:
    return [
        DeadLetter(did, dest, event_id, name or "", attempts, error or "", at, status, route)
        for did, dest, event_id, name, attempts, error, status, at, route in rows
    ]


def replay_dead(ids: Sequence[str] | None, destination: str | None, now: float) -> Op[int]:
    """Dead deliveries back to pending with a fresh budget; ``ids=None`` means all."""
    rows = yield _rows(
        "replay_dead", ids=None if ids is None else list(ids), destination=destination, now=now
    )
    if rows:
        yield Notify(frozenset(dest for (dest,) in rows))
    return len(rows)


def flush_groups(
    destination: str, max_events: Mapping[str, int], now: float
) -> Op[list[tuple[str, int]]]:
    """Turn every due group of ``destination`` into deliveries of at most max_events items.

    Each open item goes into exactly one delivery (:data:`DEFAULT_MAX_EVENTS` for a route
    no longer configured); the group then waits for new items. Returns (key, count) per
    delivery made.
    """
    made: list[tuple[str, int]] = []
    for route, key in (yield _rows("due_groups", destination=destination, now=now)):
        group = {"destination": destination, "route": route, "group_key": key}
        items = yield _rows("group_open_items", **group)
        size = max_events.get(route, DEFAULT_MAX_EVENTS)
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            did = new_id()
            yield _many(
                "insert_delivery",
                [{"id": did, "event_id": chunk[0][1], "now": now, "order_key": None, **group}],
            )
            yield _execute("assign_items", delivery_id=did, ids=[i for i, _ in chunk])
            made.append((key, len(chunk)))
        yield _execute("close_group", now=now, **group)
    return made


def group_flush_times() -> Op[dict[str, float]]:
    """Per destination, when its earliest open group is due."""
    return {dest: float(at) for dest, at in (yield _rows("group_flush_times"))}


def next_due(destination: str) -> Op[float | None]:
    [(due,)] = yield _rows("next_due", destination=destination)
    return None if due is None else float(due)


def depth(now: float) -> Op[Depth]:
    """Counts for metrics: ``pending`` is every unsettled delivery, ``retrying`` a part of it."""
    counts: dict[tuple[str, str], int] = {}
    oldest: dict[str, float] = {}
    for dest, state, n in (yield _rows("depth")):
        counts[(dest, state)] = int(n)
        if state == "pending":
            [(first,)] = yield _rows("oldest_pending", destination=dest)
            if first is not None:
                oldest[dest] = max(now - float(first), 0.0)
    for dest, n in (yield _rows("depth_retrying")):
        counts[(dest, "retrying")] = int(n)
    groups = {dest: int(n) for dest, n in (yield _rows("open_groups"))}
    return Depth(counts, oldest, groups)


# -- instances ------------------------------------------------------------------------------
def heartbeat(instance: Mapping[str, Any], now: float) -> Op[None]:
    """Say this instance is alive (also the write `/readyz` probes with)."""
    yield _execute("heartbeat", now=now, **instance)


def release_orphans(now: float, alive_since: float) -> Op[int]:
    """Leases of instances whose heartbeat is older than ``alive_since`` are due now."""
    released = yield _execute("release_orphans", now=now, alive_since=alive_since)
    if released:
        yield Notify(frozenset())
    return int(released)


def release_stray(owner: str, destination: str, keep: Sequence[str], now: float) -> Op[int]:
    """Hand back our leases of ``destination`` but those in ``keep`` (in flight)."""
    released = yield _execute(
        "release_stray", owner=owner, destination=destination, keep=list(keep), now=now
    )
    return int(released)


def release_unsent(owner: str, destination: str, ids: Sequence[str], now: float) -> Op[int]:
    """Hand back leases that were never sent, and the attempts their lease counted."""
    released = yield _execute(
        "release_unsent", owner=owner, destination=destination, ids=list(ids), now=now
    )
    if released:
        yield Notify(frozenset({destination}))
    return int(released)


def leave(owner: str, now: float) -> Op[None]:
    """A closing instance hands its leases back and leaves the instance list."""
    yield _execute("release_own", owner=owner, now=now)
    yield _execute("forget_instance", id=owner)


# -- retention ------------------------------------------------------------------------------
def prune(cutoffs: Cutoffs, batch: int) -> Op[int]:
    """Delete one small batch of old settled deliveries with their attempts and events.

    Returns how many rows of the largest kind went; callers repeat while it is ``batch``.
    """
    old = yield _rows(
        "old_deliveries",
        succeeded_before=cutoffs.succeeded_before,
        dead_before=cutoffs.dead_before,
        limit=batch,
    )
    ids = [{"id": did} for did, _ in old]
    if ids:
        events = {ev for _, ev in old}
        grouped = yield _rows("item_events_of", ids=[did for did, _ in old])
        events.update(ev for (ev,) in grouped)
        yield _many("delete_attempts_of", ids)
        yield _many("delete_items_of", ids)
        yield _many("delete_delivery", ids)
        yield _many("delete_event_if_done", [{"id": e} for e in sorted(events)])
    orphans = yield _rows("old_orphan_events", before=cutoffs.events_before, limit=batch)
    if orphans:
        yield _many("delete_event_if_done", [{"id": e} for (e,) in orphans])
    prints = yield _execute("prune_fingerprints", before=cutoffs.fingerprints_before, limit=batch)
    groups = yield _execute("prune_groups", before=cutoffs.succeeded_before, limit=batch)
    yield _execute("prune_instances", before=cutoffs.succeeded_before)
    return max(len(old), len(orphans), int(prints), int(groups))


def backfill_fields(after: str, batch: int) -> Op[str | None]:
    """Fill the searchable fields of events stored before they existed; next cursor or None."""
    rows = yield _rows("events_to_backfill", after=after, limit=batch)
    updates = []
    for event_id, body in rows:
        try:
            event = msgspec.json.decode(bytes(body))
        except msgspec.DecodeError:
            event = None
        fields = search_fields(event) if isinstance(event, dict) else {}
        updates.append({"id": event_id, **_NO_FIELDS, **fields})
    if updates:
        yield _many("set_event_fields", updates)
    return rows[-1][0] if len(rows) == batch else None


#: The searchable columns of an event that has none of them.
_NO_FIELDS: dict[str, None] = dict.fromkeys(("event_name", "hwid", "user_id", "campaign_id"))


# -- history --------------------------------------------------------------------------------
def events_page(flt: EventFilter, limit: int, before: str | None) -> Op[EventPage]:
    """Stored events, newest first, with each one's deliveries; ``before`` is the cursor.

    A state filter without a selective field filter (an address, a user, a campaign)
    walks the deliveries in that state instead of every event: dead letters are few
    and may be old, and a scan of a million events for them would take a second.
    """
    selective = flt.hwid is not None or flt.user_id is not None or flt.campaign_id is not None
    if flt.state is not None and not selective:
        return (yield from _events_by_state(flt, limit, before))
    fragments: list[str] = []
    params: dict[str, Any] = {"limit": limit + 1}
    for name in ("event_name", "user_id", "campaign_id"):
        value = getattr(flt, name)
        if value is not None:
            fragments.append(f"where_{name}")
            params[name] = value
    if flt.hwid is not None:
        fragments.append("where_hwid")
        params["hwid"] = address_key(flt.hwid)
    if before is not None:
        fragments.append("where_before")
        params["before"] = before
    if flt.since is not None:
        fragments.append("where_since")
        params["since"] = id_at(flt.since)
    if flt.until is not None:
        fragments.append("where_until")
        params["until"] = id_at(flt.until)
    if flt.destination is not None or flt.state is not None:
        fragments.append("where_delivery")
        params["destination"] = flt.destination
        params["state"] = None if flt.state is None else str(flt.state)
    rows = yield _rows("events_page", tuple(fragments), **params)
    more = len(rows) > limit
    rows = rows[:limit]
    views = yield from _deliveries_of([r[0] for r in rows], with_attempts=False)
    events = tuple(
        StoredEvent(eid, float(at), bytes(body), tuple(views.get(eid, ())))
        for eid, at, body in rows
    )
    return EventPage(events, rows[-1][0] if more and rows else None)


#: How a listed state reads in storage: (stored state, failed before?, waiting in a group?).
_STORED_STATE: dict[DeliveryState, tuple[str, bool | None, bool]] = {
    DeliveryState.PENDING: ("pending", False, True),
    DeliveryState.RETRYING: ("pending", True, False),
    DeliveryState.SUCCEEDED: ("succeeded", None, False),
    DeliveryState.DEAD: ("dead", None, False),
}
#: Sorts after every id (ids are lower-case hex).
_AFTER_ALL_IDS = "~"


def _events_by_state(flt: EventFilter, limit: int, before: str | None) -> Op[EventPage]:
    assert flt.state is not None
    db_state, errored, waiting = _STORED_STATE[flt.state]
    fragments: list[str] = []
    extra: dict[str, Any] = {}
    if flt.event_name is not None:
        fragments.append("where_event_name")
        extra["event_name"] = flt.event_name
    upper = before or _AFTER_ALL_IDS
    if flt.until is not None:
        upper = min(upper, id_at(flt.until))
    since = id_at(flt.since) if flt.since is not None else ""
    chunk = max(limit + 1, 200)
    found: list[tuple[Any, ...]] = []
    while len(found) <= limit:
        params = {
            "db_state": db_state,
            "errored": errored,
            "waiting": waiting,
            "destination": flt.destination,
            "before": upper,
            "since": since,
            "limit": chunk,
        }
        plain = [r[0] for r in (yield _rows("event_ids_by_state", **params))]
        grouped = [r[0] for r in (yield _rows("item_event_ids_by_state", **params))]
        # Each list is complete down to its last id when it came back full: below the
        # higher of those two floors, ids may be missing from one of them.
        floor = max([ids[-1] for ids in (plain, grouped) if len(ids) == chunk], default="")
        candidates = sorted({i for i in plain + grouped if i >= floor}, reverse=True)
        if not candidates:
            break
        found += yield _rows("events_by_ids", tuple(fragments), ids=candidates, **extra)
        if not floor:
            break
        upper = floor
    found.sort(key=lambda r: r[0], reverse=True)
    more = len(found) > limit
    rows = found[:limit]
    views = yield from _deliveries_of([r[0] for r in rows], with_attempts=False)
    events = tuple(
        StoredEvent(eid, float(at), bytes(body), tuple(views.get(eid, ())))
        for eid, at, body in rows
    )
    return EventPage(events, rows[-1][0] if more and rows else None)


def event_detail(event_id: str) -> Op[StoredEvent | None]:
    """One event with every delivery and every attempt (`relay events show`)."""
    rows = yield _rows("event", id=event_id)
    if not rows:
        return None
    eid, at, body = rows[0]
    views = yield from _deliveries_of([eid], with_attempts=True)
    return StoredEvent(eid, float(at), bytes(body), tuple(views.get(eid, ())))


def _deliveries_of(event_ids: list[str], with_attempts: bool) -> Op[dict[str, list[DeliveryView]]]:
    if not event_ids:
        return {}
    rows = yield _rows("event_deliveries", ids=event_ids)
    attempts: dict[str, list[AttemptView]] = {}
    sent = [r[10] for r in rows if r[10] is not None]
    if with_attempts and sent:
        for did, *rest in (yield _rows("attempts_of", ids=sent)):
            attempts.setdefault(did, []).append(AttemptView(*rest))
    out: dict[str, list[DeliveryView]] = {}
    for eid, did, dest, route, state, count, error, status, at, key, sent_id in rows:
        out.setdefault(eid, []).append(
            DeliveryView(
                did,
                dest,
                route,
                DeliveryState(state),
                int(count),
                error,
                status,
                float(at),
                key,
                tuple(attempts.get(sent_id, ())) if sent_id else (),
                waiting=sent_id is None,
            )
        )
    for views in out.values():
        views.sort(key=lambda v: (v.destination, v.id))
    return out


def resend(event_id: str, destination: str | None, now: float) -> Op[list[str] | None]:
    """Send an event again to its destinations (any state) with a fresh budget and new ids.

    A new delivery id is a new Idempotency-Key: this is a deliberate resend, which the
    destination must not take for a retry. A grouped event goes out as a group of one,
    at once. Returns the new delivery ids, or None when there is no such event.
    """
    if not (yield _rows("event", id=event_id)):
        return None
    made: list[str] = []
    touched: set[str] = set()
    seen: set[str] = set()
    previous = yield _rows("delivery_for_replay", event_id=event_id)
    for _, dest, route, group_key, order_key in previous:
        if (destination is not None and dest != destination) or dest in seen:
            continue
        seen.add(dest)
        did = new_id()
        row = {"id": did, "event_id": event_id, "destination": dest, "route": route, "now": now}
        yield _many("insert_delivery", [{**row, "group_key": group_key, "order_key": order_key}])
        if group_key is not None:
            yield _many(
                "insert_replay_item",
                [{**row, "id": new_id(), "group_key": group_key, "delivery_id": did}],
            )
        made.append(did)
        touched.add(dest)
    if touched:
        yield Notify(frozenset(touched))
    return made


# -- erasure --------------------------------------------------------------------------------
def forget(
    address: str, dry_run: bool, after: str, batch: int
) -> Op[tuple[ForgetReport, str | None]]:
    """Erase (or count) one batch of the events of ``address``; returns the next cursor.

    Plain deliveries, attempts, group items, fingerprints and the events go; a grouped
    delivery that carries only these events goes too; one that also carries other
    people's events stays for them, with the address masked in its stored texts.
    """
    key = address_key(address)
    ids = [r[0] for r in (yield _rows("events_of_address", hwid=key, after=after, limit=batch))]
    if not ids:
        return ForgetReport(), None
    plain = yield _rows("plain_deliveries_of_events", ids=ids)
    items = yield _rows("items_of_events", ids=ids)
    grouped = yield _rows("grouped_deliveries_of_events", ids=ids)
    whole = [(did, state) for did, total, mine, state in grouped if int(total) == int(mine)]
    shared = [did for did, total, mine, _ in grouped if int(total) != int(mine)]
    doomed = [did for did, _ in plain] + [did for did, _ in whole]
    [(attempts,)] = yield _rows("count_attempts_of", ids=doomed)
    [(prints,)] = yield _rows("count_fingerprints_of", ids=ids)
    report = ForgetReport(
        events=len(ids),
        deliveries=len(doomed),
        cancelled=sum(1 for _, state in [*plain, *whole] if state == "pending"),
        group_items=len(items),
        attempts=int(attempts),
        fingerprints=int(prints),
        shared_deliveries=len(shared),
    )
    if not dry_run:
        gone = [{"id": did} for did in doomed]
        yield _many("delete_attempts_of", gone)
        yield _many("delete_delivery", gone)
        yield _many("delete_item", [{"id": item_id} for item_id, _ in items])
        yield _many("repoint_grouped_delivery", [{"id": did} for did in shared])
        for did in shared:
            yield from _mask_texts(did, address)
        yield _execute("forget_fingerprints", ids=ids)
        yield _execute("forget_events", ids=ids)
        needle = msgspec.json.encode(key).decode()[1:-1]
        yield _execute("forget_groups", needle=needle)
    return report, ids[-1] if len(ids) == batch else None


def _mask_texts(delivery_id: str, address: str) -> Op[None]:
    """Mask ``address`` (any case) in what a kept grouped delivery has stored."""
    pattern = re.compile(re.escape(address), re.IGNORECASE)
    changed = []
    for attempt_id, error, response in (yield _rows("attempt_texts_of", id=delivery_id)):
        new_error, new_response = _masked(pattern, error), _masked(pattern, response)
        if (new_error, new_response) != (error, response):
            changed.append({"id": attempt_id, "error": new_error, "response": new_response})
    if changed:
        yield _many("set_attempt_texts", changed)
    [(error,)] = (yield _rows("delivery_error", id=delivery_id)) or [(None,)]
    if error is not None and pattern.search(error):
        yield _execute("set_delivery_error", id=delivery_id, error=_masked(pattern, error))


def _masked(pattern: re.Pattern[str], text: str | None) -> str | None:
    return None if text is None else pattern.sub(MASK, text)


# -- destination health ---------------------------------------------------------------------
def destination_states() -> Op[list[DestinationState]]:
    """Every destination's shared state (the ones never paused or opened have no row)."""
    rows = yield _rows("destination_states")
    return [
        DestinationState(
            name,
            bool(paused),
            reason,
            paused_at,
            circuit,
            circuit_reason,
            opened_at,
            reopen_at,
            cooldown,
            closed_at,
            probe_owner,
            probe_until,
            held_since,
            float(updated_at),
        )
        for (
            name,
            paused,
            reason,
            paused_at,
            circuit,
            circuit_reason,
            opened_at,
            reopen_at,
            cooldown,
            closed_at,
            probe_owner,
            probe_until,
            held_since,
            updated_at,
        ) in rows
    ]


def _locked(name: str, now: float) -> Op[tuple[Any, ...]]:
    """The destination's row (made if missing), locked for this transaction."""
    yield _execute("ensure_destination", name=name, now=now)
    [row] = yield _rows("destination_for_update", name=name)
    return tuple(row)


def _unhold(name: str, held_since: float | None, now: float) -> Op[None]:
    """The hold is over: budgets move forward by its length; instances hear of it."""
    if held_since is not None:
        yield _execute("shift_budgets", destination=name, held_since=held_since, now=now)
    yield Notify(frozenset({STATE_CHANGED + name}))


def pause(name: str, reason: str | None, now: float) -> Op[bool]:
    """Hold a destination (every instance); False when it was already paused."""
    yield from _locked(name, now)
    changed = yield _execute("pause_destination", name=name, reason=reason, now=now)
    yield Notify(frozenset({STATE_CHANGED + name}))
    return bool(changed)


def resume(name: str, now: float) -> Op[bool]:
    """Release a pause; False when it was not paused. The backlog drains at once."""
    paused, circuit, held_since, _, _ = yield from _locked(name, now)
    if not paused:
        return False
    yield _execute("resume_destination", name=name, now=now)
    yield from _unhold(name, held_since if circuit == "closed" else None, now)
    return True


def open_circuit(name: str, reason: str, cooldown: float, now: float) -> Op[bool]:
    """Closed -> open; True for the one caller whose update did it."""
    yield _execute("ensure_destination", name=name, now=now)
    changed = yield _execute("open_circuit", name=name, reason=reason, cooldown=cooldown, now=now)
    return bool(changed)


def claim_probe(name: str, owner: str, until: float, now: float) -> Op[bool]:
    """Open past its cooldown -> half-open, probed by ``owner`` (one instance).

    The time held so far is credited now (budgets move forward, the hold restarts):
    the probe's own outcome must not be judged against a budget the hold used up.
    """
    paused, _, held_since, _, _ = yield from _locked(name, now)
    changed = yield _execute("claim_probe", name=name, owner=owner, until=until, now=now)
    if not changed:
        return False
    if held_since is not None and not paused:
        yield _execute("shift_budgets", destination=name, held_since=held_since, now=now)
        yield _execute("restart_hold", name=name, now=now)
    yield Notify(frozenset({STATE_CHANGED + name}))
    return True


def close_circuit(name: str, owner: str, now: float) -> Op[bool]:
    """The probe got through: closed, and the backlog drains (budgets moved forward)."""
    paused, circuit, held_since, _, probe_owner = yield from _locked(name, now)
    if circuit != "half-open" or probe_owner != owner:
        return False
    yield _execute("close_circuit", name=name, owner=owner, now=now)
    yield from _unhold(name, None if paused else held_since, now)
    return True


def reopen_circuit(name: str, owner: str, reason: str, cooldown: float, now: float) -> Op[bool]:
    """The probe failed: open again, for ``cooldown``."""
    changed = yield _execute(
        "reopen_circuit", name=name, owner=owner, reason=reason, cooldown=cooldown, now=now
    )
    if changed:
        yield Notify(frozenset({STATE_CHANGED + name}))
    return bool(changed)


def health_window(destination: str, since: float) -> Op[tuple[int, int]]:
    """Attempts since ``since`` and how many of them counted against the destination."""
    [(attempts, failed)] = yield _rows("health_window", destination=destination, since=since)
    return int(attempts), int(failed)


def activity(destination: str, since: float, errors_since: float) -> Op[Activity]:
    """A destination's attempts since ``since``: count, successes, p95; its last failure."""
    [(attempts, succeeded)] = yield _rows(
        "destination_activity", destination=destination, since=since
    )
    p95 = None
    if attempts:
        rank = min(int(attempts) - 1, int(int(attempts) * 0.95))
        [(p95,)] = yield _rows("duration_at_rank", destination=destination, since=since, rank=rank)
    failure = yield _rows("last_failure", destination=destination, since=errors_since)
    error, at, status = failure[0] if failure else (None, None, None)
    return Activity(int(attempts), int(succeeded), p95, error, at, status)


def dead_letters_notice(name: str, now: float, every: float) -> Op[int | None]:
    """The dead-letter count if a notice is due (none sent for ``every`` seconds), else None."""
    yield _execute("ensure_destination", name=name, now=now)
    due = yield _execute("note_dead_letters", name=name, now=now, before=now - every)
    if not due:
        return None
    [(dead,)] = yield _rows("dead_count", destination=name)
    return int(dead)


# -- the console's reads --------------------------------------------------------------------
def per_minute(since: float) -> Op[MinuteCounts]:
    """Events received, and attempts by destination and outcome, per minute since ``since``."""
    events = {int(m): int(n) for m, n in (yield _rows("minute_events", since=since))}
    rows = yield _rows("minute_attempts", since=since)
    return MinuteCounts(events, {(int(m), d, o): int(n) for m, d, o, n in rows})


def dead_groups(destination: str | None, limit: int) -> Op[list[DeadGroup]]:
    """Dead letters grouped by destination and last error, the largest groups first."""
    rows = yield _rows("dead_groups", destination=destination, limit=limit)
    return [DeadGroup(d, e, int(n), float(a), float(b)) for d, e, n, a, b in rows]


def dead_count(destination: str | None, error: str | None) -> Op[int]:
    """How many dead letters a filter (destination, exact last error; None = any) matches."""
    [(n,)] = yield _rows("dead_count_matching", destination=destination, error=error)
    return int(n)


def dead_matching(destination: str | None, error: str | None, limit: int) -> Op[list[DeadLetter]]:
    """The newest dead letters a filter matches."""
    rows = yield _rows("dead_matching", destination=destination, error=error, limit=limit)
    return _dead_letters(rows)


def dead_ids(destination: str | None, error: str | None, limit: int) -> Op[list[str]]:
    """Up to ``limit`` ids of dead letters a filter matches (in no particular order)."""
    rows = yield _rows("dead_ids", destination=destination, error=error, limit=limit)
    return [r[0] for r in rows]
