"""Each serving instance's view of its destinations' health, and the changes it makes.

The state (paused by an operator; the circuit: closed, open, half-open) lives in
the queue, so every instance and every restart sees the same, and exactly one
instance makes each change (the queue's conditional updates decide who). Each
instance caches it, refreshed every half second and whenever a change is
announced, so a pause from `relay destinations pause` holds within a second.
The rules are :mod:`relay.circuit`'s; this module does the I/O: it evaluates the
failure rate after failed attempts, claims and settles the half-open probe,
logs the transitions it sees, sets the state gauge, and queues the notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from . import circuit, notices
from .circuit import Mode
from .config import RelayConfig
from .destinations import Destination
from .logs import get_logger
from .metrics import Metrics
from .outcome import Dead, Outcome
from .queue import DestinationState, Queue
from .settings import Circuit

log = get_logger("relay.health")

#: How often the cached state is read again (a change is also announced at once).
REFRESH_EVERY = 0.5
#: An instance evaluates a destination's failure rate at most this often.
EVALUATE_EVERY = 0.25
#: ... and asks whether a dead-letter notice is due at most this often.
DEAD_CHECK_EVERY = 10.0

_LOGGED = {
    ("paused", True): "destination.paused",
    ("paused", False): "destination.resumed",
    ("circuit", "open"): "destination.circuit_opened",
    ("circuit", "half-open"): "destination.circuit_half_open",
    ("circuit", "closed"): "destination.circuit_closed",
}


class Health:
    """See the module docstring; one per serving process."""

    def __init__(self, queue: Queue, config: Callable[[], RelayConfig], metrics: Metrics) -> None:
        self.queue = queue
        self.config = config
        self.metrics = metrics
        self.states: dict[str, DestinationState] = {}
        self.loaded = False
        self.changed = asyncio.Event()
        self._evaluated: dict[str, float] = {}
        self._dead_checked: dict[str, float] = {}

    # -- the cache --------------------------------------------------------------------------
    def mode(self, name: str, now: float) -> Mode:
        return circuit.mode(self.states.get(name), self.queue.owner, now)

    def state(self, name: str) -> DestinationState | None:
        return self.states.get(name)

    async def refresh(self) -> None:
        """Read the shared state; log what changed since the last read; set the gauge."""
        new = await self.queue.destination_states()
        if self.loaded:
            for name in sorted(set(new) | set(self.states)):
                self._log_changes(self.states.get(name), new.get(name), name)
        self.states, self.loaded = new, True
        self._gauge()

    def _log_changes(
        self, old: DestinationState | None, new: DestinationState | None, name: str
    ) -> None:
        before = old or DestinationState(name)
        after = new or DestinationState(name)
        if before.paused != after.paused:
            log.warning(
                _LOGGED[("paused", after.paused)],
                destination=name,
                reason=after.paused_reason if after.paused else None,
            )
        if before.circuit != after.circuit:
            log.warning(
                _LOGGED[("circuit", after.circuit)],
                destination=name,
                reason=after.circuit_reason,
                cooldown_s=after.cooldown,
            )

    def _gauge(self) -> None:
        config = self.config()
        for name, dest in config.destinations.items():
            current = circuit.shown(self.states.get(name), dest.enabled)
            for state in circuit.State:
                self.metrics.destination_state.labels(name, str(state)).set(
                    1 if state is current else 0
                )

    async def run(self, wake: Callable[[list[str] | None], None]) -> None:
        """Refresh every half second or when woken; wake the workers after a change."""
        while True:
            self.changed.clear()
            before = self.states
            try:
                await self.refresh()
            except Exception as exc:  # the queue is down: keep the last known state
                log.warning("health.refresh_failed", error=str(exc))
            changed = [
                n for n in set(before) | set(self.states) if before.get(n) != self.states.get(n)
            ]
            if changed:
                wake(changed)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), REFRESH_EVERY)

    # -- the probe ----------------------------------------------------------------------------
    async def claim_probe(self, name: str, lease_seconds: float) -> bool:
        """Try to become the instance that probes ``name`` (open past its cooldown)."""
        now = time.time()
        won = await self.queue.claim_probe(name, now + lease_seconds, now)
        if won:
            await self.refresh()
        return won

    # -- after every attempt ------------------------------------------------------------------
    async def after_attempt(self, dest: Destination, outcome: Outcome, probe: bool) -> None:
        """Move the circuit on what an attempt showed; queue a dead-letter notice if due."""
        breaker = dest.spec.breaker()
        if probe and breaker is not None:
            await self._settle_probe(dest, outcome, breaker)
        elif breaker is not None and outcome.destination_failure:
            await self._evaluate(dest, breaker)
        if isinstance(outcome, Dead):
            await self._dead_letter(dest.name)

    async def _settle_probe(self, dest: Destination, outcome: Outcome, breaker: Circuit) -> None:
        name, now = dest.name, time.time()
        state = self.states.get(name)
        if outcome.destination_failure:
            cooldown = circuit.next_cooldown(state.cooldown if state else None, breaker)
            reason = f"the probe failed: {_short(outcome)}"
            if await self.queue.reopen_circuit(name, reason, cooldown, now):
                await self.refresh()
            return
        if await self.queue.close_circuit(name, now):
            await self.refresh()
            await self.notify(notices.Kind.CIRCUIT_CLOSED, name, "the probe got through")

    async def _evaluate(self, dest: Destination, breaker: Circuit) -> None:
        name, now = dest.name, time.time()
        state = self.states.get(name)
        if state is not None and state.circuit != "closed":
            return
        if now - self._evaluated.get(name, 0.0) < EVALUATE_EVERY:
            return
        self._evaluated[name] = now
        since = circuit.window_start(state, breaker, now)
        attempts, failures = await self.queue.health_window(name, since)
        if not circuit.should_open(attempts, failures, breaker):
            return
        reason = circuit.open_reason(attempts, failures, breaker)
        if await self.queue.open_circuit(name, reason, float(breaker.cooldown), now):
            await self.refresh()
            await self.notify(notices.Kind.CIRCUIT_OPENED, name, reason)

    async def _dead_letter(self, name: str) -> None:
        now = time.time()
        if now - self._dead_checked.get(name, 0.0) < DEAD_CHECK_EVERY:
            return
        self._dead_checked[name] = now
        dead = await self.queue.dead_letters_notice(name, now, notices.DEAD_LETTER_EVERY)
        if dead is not None:
            await self.notify(notices.Kind.DEAD_LETTERS, name, f"{dead} dead deliveries")

    # -- notices ------------------------------------------------------------------------------
    async def notify(self, kind: notices.Kind, name: str, reason: str | None) -> None:
        """Queue a notice about ``name`` for the alerts destinations (never for ``name``)."""
        await queue_notice(self.queue, self.config(), kind, name, reason, self.states.get(name))


async def queue_notice(
    queue: Queue,
    config: RelayConfig,
    kind: notices.Kind,
    name: str,
    reason: str | None,
    state: DestinationState | None,
) -> None:
    """Build and queue one notice; the operations (pause, resume) call this too."""
    now = time.time()
    if not notices.recipients(config, name):
        return
    depth = await queue.depth(now)
    dest = config.destinations.get(name)
    shown = circuit.shown(state, dest.enabled if dest is not None else True)
    document = notices.notice(
        kind,
        name,
        str(shown),
        reason,
        now,
        depth.counts.get((name, "pending"), 0),
        depth.counts.get((name, "dead"), 0),
    )
    event = notices.as_event(config, document)
    if event is not None:
        await queue.enqueue([event], 0, now)
        log.info(
            "notice.queued", type=str(kind), destination=name, to=notices.recipients(config, name)
        )


def _short(outcome: Outcome) -> str:
    error = getattr(outcome, "error", None)
    return str(error)[:200] if error else type(outcome).__name__
