"""The receiving half, minus HTTP: body bytes -> validated events -> queue rows.

Pure apart from the clock and ids: the Litestar handler in :mod:`relay.app`
does the I/O. Each event is re-encoded once with msgspec, which keeps unknown
fields, key order and exact integers, and that byte string is what is stored,
fingerprinted for dedupe, and forwarded by default.

Every body is hostile: each failure is a :class:`BodyInvalid` (400, from
:mod:`relay.strict_json`) or an :class:`EventInvalid` (422), and the per-event
work comes as :mod:`relay.slices` steps so the app can run it without freezing
its event loop.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from .errors import BodyInvalid, EventInvalid, RenderError
from .model import Grouping, NewDelivery, NewEvent, new_id, search_fields, storable, validation
from .routing import CompiledRoute, Plan, RouteTable
from .slices import Steps, finish
from .strict_json import decoding

_ENCODER = msgspec.json.Encoder()
#: Characters of an ``order_by`` key kept (an address fits many times over).
MAX_ORDER_KEY = 512


@dataclass(frozen=True, slots=True)
class Prepared:
    """An event ready for the queue, with what routing decided (for the log line)."""

    record: NewEvent
    event: dict[str, Any]
    plan: Plan


def preparation(body: bytes, table: RouteTable, dedupe: bool) -> Steps[list[Prepared]]:
    """Decode, validate (raising :class:`EventInvalid`) and route every event of a body."""
    events = yield from validation((yield from decoding(body)))
    out = []
    for event in events:
        out.append(_prepared(event, table, dedupe))
        yield
    return out


def prepare(body: bytes, table: RouteTable, dedupe: bool) -> list[Prepared]:
    """:func:`preparation` in one go."""
    return finish(preparation(body, table, dedupe))


def _prepared(event: dict[str, Any], table: RouteTable, dedupe: bool) -> Prepared:
    plan = table.plan(event)
    raw = _ENCODER.encode(event)
    record = NewEvent(
        id=new_id(),
        body=raw,
        deliveries=tuple(
            NewDelivery(new_id(), dest, route.name, grouping(route, event), order_key(route, event))
            for dest, route in plan.targets
        ),
        fingerprint=hashlib.sha256(raw).digest() if dedupe else None,
        fields=search_fields(event),
    )
    return Prepared(record, event, plan)


def order_key(route: CompiledRoute, event: dict[str, Any]) -> str | None:
    """The route's ``order_by`` key for this event, or None (not ordered).

    A key that cannot be rendered (the event lacks a field the template needs)
    leaves the event unordered rather than refusing it: the event is still valid.
    A key longer than :data:`MAX_ORDER_KEY` is cut (cut keys may share a line).
    """
    if route.order_by is None:
        return None
    try:
        return storable(route.order_by.render({"event": event})[:MAX_ORDER_KEY])
    except RenderError:
        return None


def group_key(fields: Sequence[str], event: Mapping[str, Any]) -> dict[str, Any]:
    """The ``group.by`` fields of an event (missing ones are null: their own group)."""
    return {name: event.get(name) for name in fields}


def grouping(route: CompiledRoute, event: Mapping[str, Any]) -> Grouping | None:
    """Where a grouped route holds this event; None for a plain route."""
    if route.group is None:
        return None
    key = _ENCODER.encode(group_key(route.group.by, event)).decode()
    return Grouping(key, float(route.group.wait), float(route.group.interval))


def token_ok(expected: str, query: Mapping[str, str], authorization: str | None) -> bool:
    """``?token=`` or ``Authorization: Bearer``, compared in constant time."""
    if not expected:
        return True
    given = query.get("token")
    if given is None and authorization:
        scheme, _, value = authorization.partition(" ")
        given = value.strip() if scheme.lower() == "bearer" else None
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


__all__ = ["BodyInvalid", "EventInvalid", "Prepared", "preparation", "prepare", "token_ok"]
