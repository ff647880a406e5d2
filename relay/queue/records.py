"""What goes into the queue and what comes out of it, as small frozen values.

These are the queue's vocabulary, shared by its core (what to say to the
database), its callers (receiver, workers, `relay events`, the console) and
its tests. Pure: no I/O, no SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..model import AttemptOutcome, DeliveryState, NewEvent


@dataclass(frozen=True, slots=True)
class Accepted:
    """What the queue did with one event: stored, or a duplicate of ``event_id``."""

    event_id: str
    duplicate: bool


@dataclass(frozen=True, slots=True)
class EnqueueRequest:
    """One caller's events, merged with other callers' into one transaction."""

    events: tuple[NewEvent, ...]
    dedupe_window: float
    now: float


@dataclass(frozen=True, slots=True)
class LeaseRequest:
    """Up to ``limit`` due deliveries of ``destination``, leased until ``until``."""

    destination: str
    limit: int
    until: float


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt as the history keeps it; texts are masked by the caller before this."""

    n: int
    started_at: float
    duration_ms: float
    outcome: AttemptOutcome
    status_code: int | None = None
    error: str | None = None
    response: str | None = None
    method: str | None = None
    url: str | None = None
    #: Counts against the destination's health (the circuit breaker): a retryable failure.
    failed: bool = False


@dataclass(frozen=True, slots=True)
class Settlement:
    """An attempt's result: the delivery's next state and the attempt's record.

    ``state`` is PENDING for a retry due at ``available_at``. The queue applies it only
    if the delivery is still pending and leased by ``owner``; the attempt is recorded
    either way, as long as the delivery exists.
    """

    delivery_id: str
    destination: str
    state: DeliveryState
    available_at: float
    now: float
    attempt: AttemptRecord
    error: str | None = None
    status_code: int | None = None


@dataclass(frozen=True, slots=True)
class Depth:
    """Deliveries per (destination, state) and the age of the oldest pending one.

    ``pending`` counts every unsettled delivery; ``retrying`` is the part of it that
    has failed at least once.
    """

    counts: dict[tuple[str, str], int]
    oldest_pending_age: dict[str, float]
    open_groups: dict[str, int] = field(default_factory=dict)


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
    status_code: int | None = None
    route: str = ""


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """What pruning may delete: rows settled or seen before these times."""

    succeeded_before: float
    dead_before: float
    events_before: float
    fingerprints_before: float


@dataclass(frozen=True, slots=True)
class EventFilter:
    """`relay events list` filters; ``None`` means any."""

    destination: str | None = None
    state: DeliveryState | None = None
    event_name: str | None = None
    hwid: str | None = None
    user_id: str | None = None
    campaign_id: str | None = None
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True, slots=True)
class AttemptView:
    n: int
    at: float
    duration_ms: float
    outcome: str
    status_code: int | None
    error: str | None
    response: str | None
    method: str | None
    url: str | None


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """One event's delivery to one destination (its group item while the group waits)."""

    id: str
    destination: str
    route: str
    state: DeliveryState
    attempt_count: int
    last_error: str | None
    status_code: int | None
    updated_at: float
    group_key: str | None = None
    attempts: tuple[AttemptView, ...] = ()
    waiting: bool = False  # still an item of its group: the group has not gone out yet


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: str
    received_at: float
    body: bytes
    deliveries: tuple[DeliveryView, ...]

    def decoded(self) -> Any:
        """The body as JSON, exact integers kept."""
        return msgspec.json.decode(self.body)


@dataclass(frozen=True, slots=True)
class EventPage:
    events: tuple[StoredEvent, ...]
    next: str | None  # the cursor of the next page, or None on the last one


@dataclass(frozen=True, slots=True)
class ForgetReport:
    """What `relay forget` erased (or would erase, in a dry run)."""

    events: int = 0
    deliveries: int = 0
    cancelled: int = 0  # of those deliveries, the ones that were still pending
    group_items: int = 0
    attempts: int = 0
    fingerprints: int = 0
    shared_deliveries: int = 0  # grouped deliveries kept for others, the address masked

    def __add__(self, other: ForgetReport) -> ForgetReport:
        return ForgetReport(*(a + b for a, b in zip(_counts(self), _counts(other), strict=True)))


def _counts(report: ForgetReport) -> tuple[int, ...]:
    return (
        report.events,
        report.deliveries,
        report.cancelled,
        report.group_items,
        report.attempts,
        report.fingerprints,
        report.shared_deliveries,
    )


@dataclass(frozen=True, slots=True)
class DestinationState:
    """One destination's shared state: paused by an operator, and its circuit."""

    name: str
    paused: bool = False
    paused_reason: str | None = None
    paused_at: float | None = None
    circuit: str = "closed"  # closed | open | half-open
    circuit_reason: str | None = None
    opened_at: float | None = None
    reopen_at: float | None = None
    cooldown: float | None = None
    closed_at: float | None = None
    probe_owner: str | None = None
    probe_until: float | None = None
    held_since: float | None = None
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Activity:
    """A destination's recent attempts: how many, how many succeeded, p95, last failure."""

    attempts: int
    succeeded: int
    p95_ms: float | None
    last_error: str | None
    last_error_at: float | None
    last_status: int | None
