"""The receiving half, minus HTTP: body bytes -> validated events -> queue rows.

Pure apart from the clock and ids: the Litestar handler in :mod:`relay.app`
does the I/O. Each event is re-encoded once with msgspec, which keeps unknown
fields, key order and exact integers, and that byte string is what is stored,
fingerprinted for dedupe, and forwarded by default.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from .errors import BodyInvalid, EventInvalid
from .model import Grouping, NewDelivery, NewEvent, new_id, validate_events
from .routing import CompiledRoute, Plan, RouteTable

_ENCODER = msgspec.json.Encoder()
_KEY_END = re.compile(rb'"[ \t\r\n]*:')
_DECODER = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class Prepared:
    """An event ready for the queue, with what routing decided (for the log line)."""

    record: NewEvent
    event: dict[str, Any]
    plan: Plan


def decode(body: bytes) -> Any:
    """JSON whatever the Content-Type says; 400 for anything that is not JSON."""
    if not body.strip():
        raise BodyInvalid("empty body: expected a JSON event object or array")
    try:
        decoded = _DECODER.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # invalid UTF-8 is not JSON either
        raise BodyInvalid(f"body is not valid JSON: {exc}") from None
    except msgspec.ValidationError as exc:  # 1e999: a number no JSON parser can hold
        raise BodyInvalid(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BodyInvalid("body is not valid JSON: nested too deeply") from None
    if len(_KEY_END.findall(body)) != _count_keys(decoded):
        _reject_duplicate_keys(body)
    return decoded


def _count_keys(value: Any) -> int:
    """Keys in decoded JSON.

    Every key of the body ends with ``"`` and ``:`` (:data:`_KEY_END`); strings
    containing that add matches, duplicate keys add matches, nothing removes one.
    So as many matches as decoded keys proves there is no duplicate, and any
    other count sends the body to the exact check.
    """
    if isinstance(value, dict):
        return len(value) + sum(
            _count_keys(v) for v in value.values() if isinstance(v, dict | list)
        )
    if isinstance(value, list):
        return sum(_count_keys(v) for v in value if isinstance(v, dict | list))
    return 0


def _no_duplicates(pairs: list[tuple[str, Any]]) -> None:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise BodyInvalid(f"body is not valid JSON: duplicate key {key[:100]!r}")
        seen.add(key)


def _reject_duplicate_keys(body: bytes) -> None:
    """RFC 8259 leaves duplicate keys undefined; parsers disagree on which wins, so refuse.

    msgspec silently keeps the last one; this second, stdlib pass only looks at keys.
    """
    json.loads(body, object_pairs_hook=_no_duplicates)


def prepare(body: bytes, table: RouteTable, dedupe: bool) -> list[Prepared]:
    """Decode, validate (raising :class:`EventInvalid`) and route every event of a body."""
    events = validate_events(decode(body))
    out = []
    for event in events:
        plan = table.plan(event)
        raw = _ENCODER.encode(event)
        record = NewEvent(
            id=new_id(),
            body=raw,
            deliveries=tuple(
                NewDelivery(new_id(), dest, route.name, grouping(route, event))
                for dest, route in plan.targets
            ),
            fingerprint=hashlib.sha256(raw).digest() if dedupe else None,
        )
        out.append(Prepared(record, event, plan))
    return out


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


__all__ = ["BodyInvalid", "EventInvalid", "Prepared", "decode", "prepare", "token_ok"]
