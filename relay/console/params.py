"""Query parameters of the console and the admin API, read once for both faces.

Both take the event filters under the names of `relay events list`'s flags
(``destination``, ``state``, ``event_name``, ``hwid``, ``user_id``, ``campaign_id``,
``since``, ``until``) and answer a mistake with a 400 naming it: an unknown or
repeated parameter (a typo must not silently widen a search), a bad state or time,
a limit out of range, a value too long to be real.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from .. import operations
from ..errors import AdminRefused
from ..queue import EventFilter
from ..units import parse_instant

EVENT_FILTERS = (
    "destination",
    "state",
    "event_name",
    "hwid",
    "user_id",
    "campaign_id",
    "since",
    "until",
)
EVENT_PARAMS = (*EVENT_FILTERS, "limit", "before", "unmask")
DEAD_FILTERS = ("destination", "error")
DEAD_PARAMS = (*DEAD_FILTERS, "limit")
#: No filter value of a real event is longer; a longer one is a mistake or an attack.
MAX_VALUE = 2000
#: A dry run is for trying an event or a few, not for rendering a whole batch.
MAX_DRY_RUN_BYTES = 64 * 1024
#: Times a person can mean: from 1970 to the end of year 9999.
LATEST = 253402300799.0
_ID = re.compile(r"^[0-9a-f]{1,32}$")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def bad(reason: str) -> AdminRefused:
    return AdminRefused(400, reason)


def single(pairs: Iterable[tuple[str, str]], allowed: Iterable[str]) -> dict[str, str]:
    """Each allowed parameter at most once, none unknown, none too long; empty = absent."""
    names = tuple(allowed)
    out: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in pairs:
        if name not in names:
            raise bad(f"unknown parameter {name[:100]!r}: use {', '.join(names)}")
        if name in seen:
            raise bad(f"parameter {name!r} given more than once")
        seen.add(name)
        if len(value) > MAX_VALUE:
            raise bad(f"parameter {name!r} is longer than {MAX_VALUE} characters")
        if value.strip():
            out[name] = value.strip()
    return out


def limit_of(text: str | None, default: int, most: int) -> int:
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise bad(f"limit must be a whole number from 1 to {most}; got {text[:50]!r}") from None
    if not 1 <= value <= most:
        raise bad(f"limit must be from 1 to {most}; got {value}")
    return value


def flag(name: str, text: str | None) -> bool:
    value = (text or "").lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise bad(f"{name} must be true or false; got {value[:50]!r}")


def instant(name: str, text: str | None, now: float) -> float | None:
    if text is None:
        return None
    try:
        value = parse_instant(text, now)
    except (ValueError, OverflowError) as exc:
        raise bad(f"{name}: {exc}") from None
    if not (math.isfinite(value) and 0 <= value <= LATEST):
        raise bad(f"{name}: {text[:50]!r} is not a time between 1970 and 9999")
    return value


def cursor(text: str | None) -> str | None:
    if text is not None and not _ID.match(text):
        raise bad("before must be the `next` cursor of a previous page")
    return text


@dataclass(frozen=True, slots=True)
class EventQuery:
    filter: EventFilter
    limit: int
    before: str | None
    unmask: bool
    given: dict[str, str]  # the filters as given, for links that keep them

    def link(self, **changes: str | None) -> str:
        """The query string of these filters with ``changes`` (None drops a parameter)."""
        values: dict[str, str | None] = {**self.given, **changes}
        return urlencode({k: v for k, v in values.items() if v})


def event_query(
    pairs: Iterable[tuple[str, str]], now: float, default_limit: int = 50
) -> EventQuery:
    """The events listing's filters, page and masking, or AdminRefused(400)."""
    given = single(pairs, EVENT_PARAMS)
    try:
        state = operations.state_filter(given.get("state"))
    except ValueError as exc:
        raise bad(str(exc)) from None
    since = instant("since", given.get("since"), now)
    until = instant("until", given.get("until"), now)
    flt = EventFilter(
        destination=given.get("destination"),
        state=state,
        event_name=given.get("event_name"),
        hwid=given.get("hwid"),
        user_id=given.get("user_id"),
        campaign_id=given.get("campaign_id"),
        since=since,
        until=until,
    )
    return EventQuery(
        flt,
        limit_of(given.get("limit"), default_limit, operations.MAX_PAGE),
        cursor(given.get("before")),
        flag("unmask", given.get("unmask")),
        {k: v for k, v in given.items() if k in EVENT_FILTERS},
    )


@dataclass(frozen=True, slots=True)
class DeadQuery:
    destination: str | None
    error: str | None  # a last error exactly as stored; None = any
    limit: int


def dead_query(pairs: Iterable[tuple[str, str]], default_limit: int = 100) -> DeadQuery:
    """The dead-letter filter: a destination and an exact last error (each optional)."""
    given = single(pairs, DEAD_PARAMS)
    return DeadQuery(
        given.get("destination"),
        given.get("error"),
        limit_of(given.get("limit"), default_limit, 1000),
    )


def text_field(data: Mapping[str, object], name: str, most: int = MAX_VALUE) -> str | None:
    """An optional text field of a posted form or JSON object."""
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad(f"{name} must be text")
    if len(value) > most:
        raise bad(f"{name} is longer than {most} characters")
    return value
