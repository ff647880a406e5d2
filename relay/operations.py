"""What an operator can ask of the relay, one function per operation.

The command line (`relay events`, `relay dlq`, `relay forget`), the admin API and
the console are three thin faces over these functions: each face parses its
input, calls one of them, and renders the JSON-able document it returns. So the
three cannot disagree about what an event's history is, or what a replay does.
"""

from __future__ import annotations

import difflib
import time
from typing import Any

import msgspec

from . import circuit
from .config import RelayConfig
from .health import queue_notice
from .masking import mask_hwid
from .model import DeliveryState
from .notices import Kind
from .queue import DeadLetter, EventFilter, ForgetReport, Queue, StoredEvent
from .queue.records import DeliveryView
from .units import iso

#: Most events one listing answers with; more is a page further (``next``).
MAX_PAGE = 500


class NotFound(LookupError):
    """No such event (the faces answer 404 or exit 1)."""


def _hwid(value: Any, mask: bool) -> Any:
    return mask_hwid(value) if mask else value


def _body(event: StoredEvent, mask: bool) -> Any:
    """The event as received (exact integers kept), its hwid masked unless asked not to."""
    try:
        body = event.decoded()
    except msgspec.DecodeError:
        return event.body.decode("utf-8", "replace")
    if mask and isinstance(body, dict) and "hwid" in body:
        body = {**body, "hwid": mask_hwid(body["hwid"])}
    return body


def _delivery(view: DeliveryView) -> dict[str, Any]:
    return {
        "id": view.id,
        "destination": view.destination,
        "route": view.route,
        "state": str(view.state),
        "attempts": view.attempt_count,
        "status_code": view.status_code,
        "last_error": view.last_error,
        "updated_at": iso(view.updated_at),
        **({"group": msgspec.json.decode(view.group_key)} if view.group_key else {}),
        **({"waiting_in_group": True} if view.waiting else {}),
    }


def event_summary(event: StoredEvent, mask: bool) -> dict[str, Any]:
    """One line of `relay events list` / ``GET /api/v1/events``."""
    body = event.decoded() if event.body[:1] == b"{" else {}
    return {
        "id": event.id,
        "received_at": iso(event.received_at),
        "event_name": body.get("event_name") if isinstance(body, dict) else None,
        "hwid": _hwid(body.get("hwid"), mask) if isinstance(body, dict) else None,
        "deliveries": [_delivery(d) for d in event.deliveries],
    }


def event_document(event: StoredEvent, mask: bool) -> dict[str, Any]:
    """`relay events show --json` and ``GET /api/v1/events/{id}``: one event, every attempt."""
    return {
        "event": {
            "id": event.id,
            "received_at": iso(event.received_at),
            "body": _body(event, mask),
        },
        "deliveries": [
            {
                **_delivery(d),
                "attempts": [
                    {
                        "n": a.n,
                        "at": iso(a.at),
                        "duration_ms": round(a.duration_ms, 1),
                        "status_code": a.status_code,
                        "outcome": a.outcome,
                        "error": a.error,
                        "response": a.response,
                        "request": {"method": a.method, "url": a.url},
                    }
                    for a in d.attempts
                ],
            }
            for d in event.deliveries
        ],
    }


async def list_events(
    queue: Queue, flt: EventFilter, limit: int, cursor: str | None, *, mask: bool
) -> dict[str, Any]:
    """Stored events, newest first: ``{"events": [...], "next": cursor-or-null}``."""
    page = await queue.events(flt, max(1, min(limit, MAX_PAGE)), cursor)
    return {"events": [event_summary(e, mask) for e in page.events], "next": page.next}


async def show_event(queue: Queue, event_id: str, *, mask: bool) -> dict[str, Any]:
    """One event with its deliveries and their attempts; :class:`NotFound` if none."""
    event = await queue.event(event_id)
    if event is None:
        raise NotFound(f"no stored event {event_id!r}")
    return event_document(event, mask)


async def resend_event(
    queue: Queue, event_id: str, destination: str | None, now: float | None = None
) -> dict[str, Any]:
    """Send an event again (any state), new delivery ids and a fresh attempt budget."""
    made = await queue.resend(event_id, destination, time.time() if now is None else now)
    if made is None:
        raise NotFound(f"no stored event {event_id!r}")
    if not made and destination is not None:
        raise NotFound(f"event {event_id!r} has no delivery to {destination!r}")
    return {"event_id": event_id, "deliveries": made}


async def forget_address(queue: Queue, address: str, *, dry_run: bool) -> dict[str, Any]:
    """Erase (or, in a dry run, count) every stored trace of one address."""
    report: ForgetReport = await queue.forget(address, dry_run)
    return {
        "dry_run": dry_run,
        "events": report.events,
        "deliveries": report.deliveries,
        "cancelled": report.cancelled,
        "group_items": report.group_items,
        "attempts": report.attempts,
        "fingerprints": report.fingerprints,
        "shared_deliveries": report.shared_deliveries,
    }


def dead_letter(d: DeadLetter) -> dict[str, Any]:
    return {
        "id": d.id,
        "destination": d.destination,
        "event_id": d.event_id,
        "event_name": d.event_name,
        "route": d.route,
        "attempts": d.attempts,
        "status_code": d.status_code,
        "last_error": d.last_error,
        "updated_at": iso(d.updated_at),
    }


async def dead_letters(
    queue: Queue, destination: str | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """Dead deliveries, oldest first."""
    return [dead_letter(d) for d in await queue.dead_letters(destination, limit)]


async def replay_dead(
    queue: Queue, ids: list[str] | None, destination: str | None, now: float | None = None
) -> int:
    """Dead deliveries back to pending with a fresh budget (``ids=None``: all)."""
    return await queue.replay(ids, destination, time.time() if now is None else now)


#: The window of `relay destinations list`'s success rate and p95.
ACTIVITY_WINDOW = 300.0
#: How far back the last error of a destination is looked for.
LAST_ERROR_WINDOW = 86400.0


async def destinations(
    queue: Queue, config: RelayConfig, now: float | None = None
) -> list[dict[str, Any]]:
    """Every configured destination: state, counts, recent success rate and p95, last error."""
    now = time.time() if now is None else now
    states = await queue.destination_states()
    depth = await queue.depth(now)
    out = []
    for name, dest in config.destinations.items():
        state = states.get(name)
        seen = await queue.activity(name, now - ACTIVITY_WINDOW, now - LAST_ERROR_WINDOW)
        out.append(
            {
                "name": name,
                "type": dest.kind,
                "state": str(circuit.shown(state, dest.enabled)),
                "disabled_reason": dest.disabled_reason or None,
                "paused_reason": state.paused_reason if state and state.paused else None,
                "circuit_reason": state.circuit_reason if state else None,
                "reopen_at": iso(state.reopen_at) if state and state.reopen_at else None,
                "pending": depth.counts.get((name, "pending"), 0),
                "retrying": depth.counts.get((name, "retrying"), 0),
                "dead": depth.counts.get((name, "dead"), 0),
                "attempts_5m": seen.attempts,
                "success_rate_5m": (
                    round(seen.succeeded / seen.attempts, 4) if seen.attempts else None
                ),
                "p95_ms_5m": None if seen.p95_ms is None else round(seen.p95_ms, 1),
                "last_error": seen.last_error,
                "last_error_at": iso(seen.last_error_at) if seen.last_error_at else None,
                "config": dest.summary(config.masker),
            }
        )
    return out


async def pause_destination(
    queue: Queue, config: RelayConfig, name: str, reason: str | None
) -> dict[str, Any]:
    """Hold a destination for every instance (events keep being queued for it)."""
    _known(config, name)
    reason = (reason or "").strip()[:500] or None
    changed = await queue.pause(name, reason, time.time())
    if changed:
        states = await queue.destination_states()
        await queue_notice(queue, config, Kind.PAUSED, name, reason, states.get(name))
    return {"destination": name, "state": "paused", "changed": changed}


async def resume_destination(queue: Queue, config: RelayConfig, name: str) -> dict[str, Any]:
    """Release a pause: the backlog drains at the destination's rate limit and concurrency."""
    _known(config, name)
    changed = await queue.resume(name, time.time())
    states = await queue.destination_states()
    state = states.get(name)
    if changed:
        await queue_notice(queue, config, Kind.RESUMED, name, None, state)
    dest = config.destinations[name]
    return {
        "destination": name,
        "state": str(circuit.shown(state, dest.enabled)),
        "changed": changed,
    }


def _known(config: RelayConfig, name: str) -> None:
    if name not in config.destinations:
        hint = difflib.get_close_matches(name, list(config.destinations), n=1)
        raise NotFound(
            f"no destination {name!r} in the config"
            + (f" (did you mean {hint[0]!r}?)" if hint else "")
        )


def state_filter(text: str | None) -> DeliveryState | None:
    """A ``--state`` / ``?state=`` value, or ValueError naming the valid ones."""
    if text is None or text == "":
        return None
    try:
        return DeliveryState(text)
    except ValueError:
        valid = ", ".join(s.value for s in DeliveryState)
        raise ValueError(f"unknown state {text!r}: use one of {valid}") from None
