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


class Status(enum.StrEnum):
    """A delivery's state in the queue."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    DEAD = "dead"


TERMINAL = frozenset({Status.SUCCEEDED, Status.DEAD})


def _field_errors(obj: Any, prefix: str) -> dict[str, str]:
    if not isinstance(obj, dict):
        return {prefix: f"expected an event object, got {_json_type(obj)}"}
    errors: dict[str, str] = {}
    for name, (kind, required) in EVENT_FIELDS.items():
        if name not in obj:
            if required:
                errors[f"{prefix}.{name}"] = "required field is missing"
            continue
        problem = _type_problem(obj[name], kind, required)
        if problem:
            errors[f"{prefix}.{name}"] = problem
    return errors


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


def validate_events(decoded: Any) -> list[dict[str, Any]]:
    """Return the list of events in a decoded body (one object or an array of objects).

    Raises :class:`EventInvalid` naming every bad path; an array is all-or-nothing.
    """
    if isinstance(decoded, list):
        if not decoded:
            raise EventInvalid({"$": "empty array: expected at least one event"})
        errors: dict[str, str] = {}
        for i, item in enumerate(decoded):
            errors.update(_field_errors(item, f"$[{i}]"))
        if errors:
            raise EventInvalid(errors)
        return decoded
    if isinstance(decoded, dict):
        errors = _field_errors(decoded, "$")
        if errors:
            raise EventInvalid(errors)
        return [decoded]
    kind = _json_type(decoded)
    raise EventInvalid({"$": f"expected an event object or an array of events, got {kind}"})


def new_id() -> str:
    """A unique, time-ordered id for events and deliveries: 12 hex of milliseconds, 20 random.

    Time order keeps inserts at the end of the queue's indexes, so a backlog of a
    million rows does not slow ingest down (random keys scatter writes over the
    whole B-tree). 80 random bits per millisecond make collisions practically
    impossible; `random` is reseeded in forked children.
    """
    return f"{time.time_ns() // 1_000_000:012x}{random.getrandbits(80):020x}"


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


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An accepted event as the queue stores it: raw JSON bytes, never re-interpreted."""

    id: str
    body: bytes
    deliveries: tuple[NewDelivery, ...]
    fingerprint: bytes | None = None


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


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A delivery that was given up, as `relay dlq list` shows it."""

    id: str
    destination: str
    event_id: str
    event_name: str
    attempts: int
    last_error: str
    updated_at: float
