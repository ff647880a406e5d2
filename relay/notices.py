"""The relay's own notices: circuit opened or closed, paused or resumed, dead letters growing.

A notice is queued like any event (durable, retried) with one delivery to each
``alerts.to`` destination, never to the destination it is about (whose own
trouble is the news, and whose failing circuit must not notice itself). The
reserved route ``@alerts`` (no configured route can have that name) marks them,
so a worker sends the notice itself, not the destination's event templates.
Pure: building the notice; :mod:`relay.health` and the operations enqueue it.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from .config import RelayConfig
from .model import NewDelivery, NewEvent, new_id
from .units import iso

ROUTE = "@alerts"
#: At most one dead-letter notice per destination per this many seconds.
DEAD_LETTER_EVERY = 600.0


class Kind(enum.StrEnum):
    CIRCUIT_OPENED = "relay.circuit_opened"
    CIRCUIT_CLOSED = "relay.circuit_closed"
    PAUSED = "relay.paused"
    RESUMED = "relay.resumed"
    DEAD_LETTERS = "relay.dead_letters"


def notice(
    kind: Kind,
    destination: str,
    state: str,
    reason: str | None,
    at: float,
    pending: int,
    dead: int,
) -> dict[str, Any]:
    """The notice document (an http destination receives exactly this as its body)."""
    return {
        "type": str(kind),
        "destination": destination,
        "state": state,
        "reason": reason,
        "at": iso(at),
        "pending": pending,
        "dead": dead,
    }


def recipients(config: RelayConfig, about: str) -> list[str]:
    """Where a notice about ``about`` goes: every enabled alerts.to destination but it."""
    alerts = config.settings.alerts
    if alerts is None:
        return []
    return [
        name
        for name in dict.fromkeys(alerts.to)
        if name != about and name in config.destinations and config.destinations[name].enabled
    ]


def as_event(config: RelayConfig, document: dict[str, Any]) -> NewEvent | None:
    """The queue record of a notice, or None when nobody is to receive it."""
    to = recipients(config, document["destination"])
    if not to:
        return None
    return NewEvent(
        id=new_id(),
        body=msgspec.json.encode(document),
        deliveries=tuple(NewDelivery(new_id(), name, ROUTE) for name in to),
        fields={"event_name": document["type"]},
    )
