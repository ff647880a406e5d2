"""The circuit breaker's and the pause's rules, pure: what a destination's state allows.

A destination is *held* while an operator paused it or its circuit is open: no
attempt is made and no budget is spent (the queue moves budgets forward when the
hold ends). After the cooldown one instance claims the half-open probe and sends
one delivery: its success closes the circuit, its failure reopens it with the
cooldown doubled up to ``max_cooldown`` (Martin Fowler's CircuitBreaker; the
states follow Hystrix and resilience4j). The I/O lives in :mod:`relay.health`.
"""

from __future__ import annotations

import enum

from .queue.records import DestinationState
from .settings import Circuit


class Mode(enum.Enum):
    """What a worker may do now for a destination."""

    SEND = "send"  # lease as many as concurrency allows
    HOLD = "hold"  # lease nothing
    CLAIM = "claim"  # the cooldown is over: try to become the probe
    PROBE = "probe"  # we are the probe: lease one delivery


class State(enum.StrEnum):
    """A destination's state as operators see it (CONTRACT section 12)."""

    ACTIVE = "active"
    PAUSED = "paused"
    OPEN = "open"
    HALF_OPEN = "half-open"
    DISABLED = "disabled"


def mode(state: DestinationState | None, owner: str, now: float) -> Mode:
    """What the instance ``owner`` may do for a destination in ``state`` at ``now``."""
    if state is None:
        return Mode.SEND
    if state.paused:
        return Mode.HOLD
    if state.circuit == "open":
        return Mode.CLAIM if state.reopen_at is not None and state.reopen_at <= now else Mode.HOLD
    if state.circuit == "half-open":
        if state.probe_owner == owner:
            return Mode.PROBE
        expired = state.probe_until is None or state.probe_until < now
        return Mode.CLAIM if expired else Mode.HOLD
    return Mode.SEND


def shown(state: DestinationState | None, enabled: bool) -> State:
    """The state `relay destinations list`, the console and the metrics show."""
    if not enabled:
        return State.DISABLED
    if state is None:
        return State.ACTIVE
    if state.paused:
        return State.PAUSED
    if state.circuit == "open":
        return State.OPEN
    if state.circuit == "half-open":
        return State.HALF_OPEN
    return State.ACTIVE


def should_open(attempts: int, failures: int, breaker: Circuit) -> bool:
    """Enough attempts in the window, and a failure rate at or above the threshold."""
    return attempts >= breaker.min_attempts and failures >= breaker.failure_rate * attempts


def next_cooldown(current: float | None, breaker: Circuit) -> float:
    """After a failed probe: twice the last cooldown, at most ``max_cooldown``."""
    if current is None:
        return float(breaker.cooldown)
    return float(min(current * 2, breaker.max_cooldown))


def window_start(state: DestinationState | None, breaker: Circuit, now: float) -> float:
    """Attempts counted for opening: within the window, and after the circuit last closed
    (the failures that opened it must not open it again at once)."""
    start = now - float(breaker.window)
    if state is not None and state.closed_at is not None:
        start = max(start, state.closed_at)
    return start


def open_reason(attempts: int, failures: int, breaker: Circuit) -> str:
    return (
        f"{failures} of {attempts} attempts failed within {breaker.window:g}s "
        f"(threshold {breaker.failure_rate * 100:g}%)"
    )
