"""The relay's data: a validated Pushwoosh event, a delivery and its states.

Pure: no I/O. The event stays the dict Pushwoosh sent (unknown fields and exact
integers kept, so we forward it untouched); validation only checks that the
fields of the documented webhook body have the right types, and reports every
offending field path at once so a sender can fix them all in one go.
"""

from __future__ import annotations

import enum
import random
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .errors import EventInvalid
from .slices import Steps, finish

INT64 = (-(2**63), 2**63 - 1)
UINT64 = (0, 2**64 - 1)

#: Field -> (kind, required), from Pushwoosh's webhook integration body (CONTRACT section 4).
#: kind is ``str`` or an inclusive integer range. Optional fields may also be null.
EVENT_FIELDS: dict[str, tuple[type[str] | tuple[int, int], bool]] = {
    "event_name": (str, True),
    "message_code": (str, True),
    "platform": (str, True),
    "application_code": (str, True),
    "hwid": (str, True),
    "user_id": (str, True),
    "timestamp": (INT64, True),
    "message_id": (UINT64, False),
    "campaign_id": (UINT64, False),
    "payload": (str, False),
    "journey_title": (str, False),
    "journey_point_title": (str, False),
}

#: The event names Pushwoosh documents for its webhook integration; others are valid too.
DOCUMENTED_EVENT_NAMES = ("Email Sent", "Email Delivered", "Email Bounced", "Email Opened")


class DeliveryState(enum.StrEnum):
    """A delivery's state (CONTRACT section 11).

    The queue stores pending, succeeded and dead; ``retrying`` is a pending delivery
    that has failed at least once, and is what listings show for it.
    """

    PENDING = "pending"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    DEAD = "dead"


#: States a delivery never leaves by itself (only a replay or a resend moves it on).
TERMINAL = frozenset({DeliveryState.SUCCEEDED, DeliveryState.DEAD})


class AttemptOutcome(enum.StrEnum):
    """What one attempt came to (CONTRACT section 11)."""

    SUCCEEDED = "succeeded"
    RETRY = "retry"
    DEAD = "dead"


#: A 422 names at most this many offending paths and counts the rest, so that its size
#: (a few KB) does not grow with the body: 1 MB of ``{}`` holds two million errors.
MAX_REPORTED_ERRORS = 50

_MISSING = object()


class _Report:
    """The field errors of one body: the first ones with their paths, the rest only counted.

    Paths and messages are only built for errors that will be shown, so the cost of
    validating a body follows its size, never its number of errors.
    """

    __slots__ = ("errors", "omitted")

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}
        self.omitted = 0

    def add(self, index: int | None, name: str | None, message: str) -> None:
        if len(self.errors) >= MAX_REPORTED_ERRORS:
            self.omitted += 1
            return
        path = "$" if index is None else f"$[{index}]"
        self.errors[path if name is None else f"{path}.{name}"] = message

    def raise_if_any(self) -> None:
        if self.errors:
            raise EventInvalid(self.errors, self.omitted)


def _check(obj: Any, index: int | None, report: _Report) -> None:
    """Report every problem of one event (``$`` or ``$[index]``)."""
    if type(obj) is not dict:
        report.add(index, None, f"expected an event object, got {_json_type(obj)}")
        return
    for name, (kind, required) in EVENT_FIELDS.items():
        value = obj.get(name, _MISSING)
        if value is _MISSING:
            if required:
                report.add(index, name, "required field is missing")
            continue
        problem = _type_problem(value, kind, required)
        if problem:
            report.add(index, name, problem)


def _type_problem(value: Any, kind: type[str] | tuple[int, int], required: bool) -> str | None:
    if value is None and not required:
        return None
    if kind is str:
        return None if isinstance(value, str) else f"expected string, got {_json_type(value)}"
    low, high = kind  # type: ignore[misc]
    if type(value) is not int:  # bool is an int subclass; floats would lose precision
        return f"expected integer, got {_json_type(value)}"
    if not low <= value <= high:
        return f"integer out of range [{low}, {high}]"
    return None


def _json_type(obj: Any) -> str:
    names = {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "integer",
        float: "number",
        type(None): "null",
    }
    return names.get(type(obj), type(obj).__name__)


def validation(decoded: Any) -> Steps[list[dict[str, Any]]]:
    """The events of a decoded body (one object or an array of objects), in slices.

    Raises :class:`EventInvalid` naming the first :data:`MAX_REPORTED_ERRORS` bad
    paths and counting the rest; an array is all-or-nothing.
    """
    report = _Report()
    if type(decoded) is list:
        if not decoded:
            raise EventInvalid({"$": "empty array: expected at least one event"})
        for i, item in enumerate(decoded):
            _check(item, i, report)
            if not i % 32:
                yield
        report.raise_if_any()
        return decoded
    if type(decoded) is dict:
        _check(decoded, None, report)
        report.raise_if_any()
        return [decoded]
    kind = _json_type(decoded)
    raise EventInvalid({"$": f"expected an event object or an array of events, got {kind}"})


def validate_events(decoded: Any) -> list[dict[str, Any]]:
    """:func:`validation` in one go."""
    return finish(validation(decoded))


def address_key(hwid: str) -> str:
    """How an address is matched (``relay forget``, ``--hwid``): case-insensitively."""
    return hwid.lower()


def storable(text: str) -> str:
    """``text`` as any queue can store it: NUL, valid in JSON strings and in answers but
    refused by PostgreSQL's text type, becomes U+FFFD (the event's own bytes are kept
    whole; this is for the columns that index or quote it)."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def search_fields(event: dict[str, Any]) -> dict[str, str | None]:
    """The fields `relay events list` filters on, as the queue indexes them.

    ``campaign_id`` becomes decimal text: a uint64 fits no signed integer column.
    """

    def text(name: str) -> str | None:
        value = event.get(name)
        if value is None or isinstance(value, dict | list):
            return None
        return storable(str(value)) if not isinstance(value, bool) else None

    hwid = text("hwid")
    return {
        "event_name": text("event_name"),
        "hwid": address_key(hwid) if hwid is not None else None,
        "user_id": text("user_id"),
        "campaign_id": text("campaign_id"),
    }


def new_id() -> str:
    """A unique, time-ordered id for events and deliveries: 12 hex of milliseconds, 20 random.

    Time order keeps inserts at the end of the queue's indexes, so a backlog of a
    million rows does not slow ingest down (random keys scatter writes over the
    whole B-tree). 80 random bits per millisecond make collisions practically
    impossible; `random` is reseeded in forked children.
    """
    return f"{time.time_ns() // 1_000_000:012x}{random.getrandbits(80):020x}"


def id_at(seconds: float) -> str:
    """The prefix that every id made at ``seconds`` (and none made before) sorts at or after.

    Ids are time-ordered, so "received between" is an id range on a primary key.
    """
    return f"{max(0, int(seconds * 1000)):012x}"


@dataclass(frozen=True, slots=True)
class Grouping:
    """Where a grouped route holds an event until its group goes out (CONTRACT section 9).

    ``key`` is the canonical JSON of the ``group.by`` fields; ``wait`` and
    ``interval`` are the route's timings when the event arrived.
    """

    key: str
    wait: float
    interval: float


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A delivery to create with its event: one per (event, destination).

    With ``group`` it is not a delivery yet but an item of that group; the
    queue turns the group's items into deliveries of at most ``max_events``.
    """

    id: str
    destination: str
    route: str
    group: Grouping | None = None
    #: Deliveries of one destination with the same key go one at a time, in order.
    order_key: str | None = None


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An accepted event as the queue stores it: raw JSON bytes, never re-interpreted."""

    id: str
    body: bytes
    deliveries: tuple[NewDelivery, ...]
    fingerprint: bytes | None = None
    #: :func:`search_fields` of the event: indexed so `relay events list` can filter.
    fields: dict[str, str | None] = field(default_factory=dict)


@dataclass(slots=True)
class Leased:
    """A delivery taken by a worker: everything needed to send one attempt."""

    id: str
    event_id: str
    destination: str
    route: str
    attempts: int  # including the one about to be made
    created_at: float  # start of the retry budget (reset by replay)
    event_body: bytes
    events: list[bytes] = field(default_factory=list)  # grouped deliveries: every event's body
    group_key: str | None = None  # canonical JSON of the key mapping

    def event(self) -> dict[str, Any]:
        decoded: dict[str, Any] = msgspec.json.decode(self.event_body)
        return decoded

    def all_events(self) -> list[dict[str, Any]]:
        """The events of a grouped delivery, oldest first (one event otherwise)."""
        return [msgspec.json.decode(b) for b in self.events] if self.events else [self.event()]
