"""Building blocks for queue tests: events as the receiver makes them, attempts as workers
record them, and what is stored, read through the queue's own interface."""

from __future__ import annotations

from typing import Any

import msgspec

from relay.model import (
    AttemptOutcome,
    DeliveryState,
    Grouping,
    Leased,
    NewDelivery,
    NewEvent,
    new_id,
    search_fields,
)
from relay.queue import Accepted, Cutoffs, EventFilter, Queue, Settlement
from relay.queue.records import AttemptRecord


def event(
    *destinations: str,
    body: bytes | None = None,
    fingerprint: bytes | None = None,
    name: str = "Email Bounced",
) -> NewEvent:
    body = body if body is not None else msgspec.json.encode({"event_name": name, "hwid": new_id()})
    return NewEvent(
        new_id(),
        body,
        tuple(NewDelivery(new_id(), d, f"to-{d}") for d in destinations),
        fingerprint,
        fields_of(body),
    )


def fields_of(body: bytes) -> dict[str, str | None]:
    """What the receiver indexes of a body (nothing for one that is not an object)."""
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return {}
    return search_fields(decoded) if isinstance(decoded, dict) else {}


def grouped(
    key: str = '{"campaign_id":1}',
    *,
    route: str = "digest",
    wait: float = 30,
    interval: float = 300,
    also: tuple[str, ...] = (),
    n: int = 0,
) -> NewEvent:
    """An event whose crm delivery joins group ``key`` of ``route`` (plus plain ``also``)."""
    body = msgspec.json.encode({"event_name": "Email Bounced", "n": n})
    item = NewDelivery(new_id(), "crm", route, Grouping(key, wait, interval))
    plain = (NewDelivery(new_id(), d, f"to-{d}") for d in also)
    return NewEvent(new_id(), body, (item, *plain), None, fields_of(body))


def numbers(bodies: list[bytes]) -> list[int]:
    return [msgspec.json.decode(b)["n"] for b in bodies]


async def put(queue: Queue, *events: NewEvent, now: float, window: float = 0.0) -> list[Accepted]:
    return await queue.enqueue(list(events), window, now)


def settlement(
    d: Leased,
    state: DeliveryState,
    now: float,
    *,
    error: str | None = None,
    status: int | None = None,
    at: float | None = None,
) -> Settlement:
    """An attempt on ``d`` as a worker records it."""
    outcome = {
        DeliveryState.SUCCEEDED: AttemptOutcome.SUCCEEDED,
        DeliveryState.PENDING: AttemptOutcome.RETRY,
        DeliveryState.DEAD: AttemptOutcome.DEAD,
    }[state]
    failed = state is DeliveryState.PENDING  # as classify() has it: every retry counts
    attempt = AttemptRecord(
        d.attempts, now, 1.5, outcome, status, error, "answer", "POST", "u", failed
    )
    return Settlement(
        d.id, d.destination, state, now if at is None else at, now, attempt, error, status
    )


async def settle(queue: Queue, d: Leased, state: DeliveryState, now: float, **how: Any) -> None:
    """Record an attempt on ``d`` as a worker would (``how``: as :func:`settlement` takes)."""
    await queue.settle(settlement(d, state, now, **how))


async def succeed(queue: Queue, d: Leased, now: float, status: int = 200) -> None:
    await settle(queue, d, DeliveryState.SUCCEEDED, now, status=status)


async def retry(
    queue: Queue,
    d: Leased,
    at: float,
    now: float,
    error: str = "HTTP 503",
    status: int | None = 503,
) -> None:
    await settle(queue, d, DeliveryState.PENDING, now, error=error, status=status, at=at)


async def bury(
    queue: Queue, d: Leased, now: float, error: str = "HTTP 400", status: int | None = 400
) -> None:
    await settle(queue, d, DeliveryState.DEAD, now, error=error, status=status)


async def stored_events(queue: Queue) -> set[str]:
    """Ids of every stored event, through the queue's own listing."""
    page = await queue.events(EventFilter(), limit=10_000)
    return {e.id for e in page.events}


async def stored_deliveries(queue: Queue) -> set[str]:
    """Ids of every delivery (or waiting group item) of the stored events."""
    page = await queue.events(EventFilter(), limit=10_000)
    return {d.id for e in page.events for d in e.deliveries}


def cutoffs(before: float) -> Cutoffs:
    return Cutoffs(before, before, before, before)
