"""Delivery workers: lease due deliveries, send them, record what happened.

The one place that knows both the queue and the destinations. Each destination
gets its own lane (concurrency, rate limit, lease loop), so a slow or failing
destination never delays another. An attempt is three steps kept apart: send
(build the request, hand it to the :class:`~relay.http_client.Sender`), classify
(pure, :func:`relay.outcome.classify`: succeeded, retry at T, dead) and record
(:class:`Recorder`, the one place that writes the outcome, its history row,
metrics and the log line). An attempt's fate lives in the queue, never in
memory. Due groups become deliveries in a loop of their own (:class:`GroupFlusher`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from aiolimiter import AsyncLimiter

from . import notices
from .circuit import Mode
from .config import RelayConfig
from .destinations import Destination, OutboundRequest, mask_url, template_context
from .errors import RenderError, SendFailed
from .health import Health
from .http_client import Sender
from .logs import get_logger
from .masking import SecretMasker
from .metrics import Metrics
from .model import AttemptOutcome, DeliveryState, Leased, storable
from .outcome import Answer, Dead, Outcome, RetryAt, Succeeded, classify
from .queue import Queue
from .queue.core import GROUPS_OPENED, STATE_CHANGED
from .queue.records import AttemptRecord, Settlement

log = get_logger("relay.delivery")

#: Characters of a destination's answer kept in the attempt history, and in a log line.
HISTORY_CHARS = 2048
LOG_CHARS = 200
#: Outcomes waiting to be written, per slot of concurrency, before leasing pauses.
SETTLING_PER_SLOT = 4
#: Deliveries leased ahead of the free slots, per slot of concurrency (none when the
#: destination is rate-limited: its sends wait for the limiter, not for the queue).
READ_AHEAD = 1
#: Fewer outcomes than this waiting: give others SETTLE_LINGER seconds to join the batch.
SETTLE_GATHER = 16
SETTLE_LINGER = 0.003
#: Outcomes written in one queue operation, at most.
MAX_SETTLE = 512
#: Seconds shutdown waits for outcomes being written, even when the grace is spent.
SETTLE_GRACE = 5.0
#: Log level and metric label per outcome (looked up at call time: logging is set up later).
_LEVEL = {"succeeded": "info", "retrying": "warning", "dead": "error"}
_STATE = {
    AttemptOutcome.SUCCEEDED: DeliveryState.SUCCEEDED,
    AttemptOutcome.RETRY: DeliveryState.PENDING,
    AttemptOutcome.DEAD: DeliveryState.DEAD,
}
_LOG_OUTCOME = {
    AttemptOutcome.SUCCEEDED: "succeeded",
    AttemptOutcome.RETRY: "retrying",
    AttemptOutcome.DEAD: "dead",
}


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one attempt did: when, for how long, what was sent and what came back."""

    item: Leased
    started_at: float  # wall clock, for the history
    duration: float  # seconds, monotonic
    request: OutboundRequest | None
    answer: Answer | None
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class _Written:
    """An attempt's outcome as the queue stores it, and what its log line shows."""

    settlement: Settlement
    status: int | None
    error: str | None
    response: str | None


def _record_failed(delivery_id: str, destination: str, exc: BaseException) -> None:
    """The queue failed while recording: the lease will expire and the delivery return."""
    log.error(
        "delivery.record_failed",
        delivery_id=delivery_id,
        destination=destination,
        error=f"{type(exc).__name__}: {exc}",
    )


class Recorder:
    """Writes an attempt's outcome: the queue (state + history row), metrics, log line.

    Every text that came from a destination is masked with the config's secrets
    before it is stored or logged (CONTRACT section 10).
    """

    def __init__(self, queue: Queue, metrics: Metrics, config: Callable[[], RelayConfig]) -> None:
        self.queue = queue
        self.metrics = metrics
        self.config = config
        self._metric_series: dict[tuple[str, str, AttemptOutcome], tuple[Any, Any, Any]] = {}

    def masker(self) -> SecretMasker:
        return self.config().masker

    async def record(self, dest: Destination, attempt: Attempt) -> None:
        """Write one attempt's outcome now (a probe's: the circuit waits on it)."""
        written = self._settlement(dest, attempt)
        await self.queue.settle(written.settlement)
        self._report(dest.name, attempt, written)

    async def record_many(self, items: Sequence[tuple[Destination, Attempt]]) -> list[bool]:
        """Write many outcomes in one queue operation; whether each was written.

        If the batch fails, each is written alone, so one bad outcome fails alone.
        """
        written = [self._settlement(dest, attempt) for dest, attempt in items]
        try:
            await self.queue.settle_many([w.settlement for w in written])
            ok = [True] * len(items)
        except Exception:
            if len(items) == 1:
                raise
            ok = [await self._settle_alone(w) for w in written]
        tally: collections.Counter[tuple[Any, Any]] = collections.Counter()
        for (dest, attempt), w, done in zip(items, written, ok, strict=True):
            if done:
                self._report(dest.name, attempt, w, tally)
        for (deliveries, attempts), n in tally.items():  # one lock each per batch, not per item
            deliveries.inc(n)
            attempts.inc(n)
        return ok

    async def _settle_alone(self, written: _Written) -> bool:
        try:
            await self.queue.settle(written.settlement)
        except Exception as exc:
            _record_failed(written.settlement.delivery_id, written.settlement.destination, exc)
            return False
        return True

    def _settlement(self, dest: Destination, attempt: Attempt) -> _Written:
        item, outcome = attempt.item, attempt.outcome
        mask = self.masker()
        now = time.time()
        kind = outcome.kind
        status = outcome.status if dest.sends else None  # `log` sends nothing: no HTTP status
        error = _error(outcome)
        error = storable(error) if error is not None else None  # a library may quote bytes
        response = None
        if attempt.answer is not None and attempt.answer.body:
            response = mask(attempt.answer.excerpt(len(attempt.answer.body)))[:HISTORY_CHARS]
        request = attempt.request
        history = AttemptRecord(
            n=item.attempts,
            started_at=attempt.started_at,
            duration_ms=round(attempt.duration * 1000, 3),
            outcome=kind,
            status_code=status,
            error=error,
            response=response,
            method=None if request is None else request.method,
            url=None if request is None else mask(mask_url(request.url, dest.secrets)),
            failed=outcome.destination_failure,
        )
        settlement = Settlement(
            item.id,
            item.destination,
            _STATE[kind],
            outcome.at if isinstance(outcome, RetryAt) else now,
            now,
            history,
            error,
            status,
        )
        return _Written(settlement, status, error, response)

    def _series(self, name: str, label: str, kind: AttemptOutcome) -> tuple[Any, Any, Any]:
        """The labelled metrics of one outcome, looked up once (``labels()`` takes a lock)."""
        key = (name, label, kind)
        series = self._metric_series.get(key)
        if series is None:
            m = self.metrics
            series = self._metric_series[key] = (
                m.deliveries.labels(name, label),
                m.attempts.labels(name, str(kind)),
                m.duration.labels(name),
            )
        return series

    def _report(
        self,
        name: str,
        attempt: Attempt,
        written: _Written,
        tally: collections.Counter[tuple[Any, Any]] | None = None,
    ) -> None:
        """Metrics and the log line of one outcome; ``tally`` collects the counters'
        increments for the caller to add at once."""
        item, outcome = attempt.item, attempt.outcome
        status, error, response = written.status, written.error, written.response
        label = _LOG_OUTCOME[outcome.kind]
        deliveries, attempts, duration = self._series(name, label, outcome.kind)
        if tally is None:
            deliveries.inc()
            attempts.inc()
        else:
            tally[deliveries, attempts] += 1
        duration.observe(attempt.duration)
        fields: dict[str, Any] = {
            "delivery_id": item.id,
            "event_id": item.event_id,
            "destination": name,
            "attempt": item.attempts,
            "status_code": status,
            "duration_ms": round(attempt.duration * 1000, 1),
        }
        if item.group_key is not None:
            fields["group_key"] = _key(item.group_key)
            fields["events"] = max(1, len(item.events))
        if error is not None:
            fields["error"] = error
            if response:
                fields["response_excerpt"] = response[:LOG_CHARS]
            if attempt.answer is not None and attempt.answer.interrupted:
                fields["answer_interrupted"] = attempt.answer.interrupted
        if isinstance(outcome, RetryAt):
            fields["retry_in_s"] = round(outcome.delay, 3)
        getattr(log, _LEVEL[label])(f"delivery.{label}", **fields)


def _error(outcome: Outcome) -> str | None:
    if isinstance(outcome, Succeeded):
        return None
    if isinstance(outcome, Dead):
        return outcome.summary
    return outcome.error


def _key(key: str) -> dict[str, Any]:
    decoded: dict[str, Any] = msgspec.json.decode(key)
    return decoded


def _limiter(dest: Destination) -> AsyncLimiter | None:
    rate = dest.spec.rate_limit
    if rate is None:
        return None
    # Allow a short burst (Slack tolerates "short bursts" above 1/s) but the same average.
    burst = max(1.0, min(3.0, rate * 3))
    return AsyncLimiter(burst, burst / rate)


class Settler:
    """Writes the outcomes of sent attempts in batches, off the attempts' path.

    An attempt's slot is a request in flight to its destination; once the answer is in,
    the slot is free and the outcome joins the batch. One write is in flight at a time
    and takes every outcome that arrived meanwhile, so the queue commits many outcomes
    per transaction, and the event loop pays one future per batch, not per delivery.
    Until written, a delivery stays leased: nothing sends it again.
    """

    def __init__(self, recorder: Recorder, health: Health) -> None:
        self.recorder = recorder
        self.health = health
        self._pending: list[tuple[Destination, Attempt, Callable[[], None]]] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, dest: Destination, attempt: Attempt, done: Callable[[], None]) -> None:
        """Queue an outcome; ``done`` is called once it is written (or failed)."""
        self._pending.append((dest, attempt, done))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        try:
            while self._pending:
                if len(self._pending) < SETTLE_GATHER:
                    # Let a few more outcomes join: a commit costs about the same for 2
                    # rows as for 30 (the same pages are written), and nothing waits on it.
                    await asyncio.sleep(SETTLE_LINGER)
                batch, self._pending = self._pending[:MAX_SETTLE], self._pending[MAX_SETTLE:]
                try:
                    await self._write_batch(batch)
                finally:
                    for _, _, done in batch:
                        done()
        finally:
            self._task = None

    async def _write_batch(
        self, batch: list[tuple[Destination, Attempt, Callable[[], None]]]
    ) -> None:
        try:
            written = await self.recorder.record_many([(d, a) for d, a, _ in batch])
        except Exception as exc:
            for _, attempt, _ in batch:
                _record_failed(attempt.item.id, attempt.item.destination, exc)
            return
        for (dest, attempt, _), ok in zip(batch, written, strict=True):
            if not ok:
                continue
            try:
                await self.health.after_attempt(dest, attempt.outcome, False)
            except Exception as exc:
                log.warning("health.update_failed", destination=dest.name, error=str(exc))

    async def drain(self, timeout: float) -> None:
        """Until every queued outcome is written, at most ``timeout`` seconds."""
        task = self._task
        if task is None:
            return
        done, _ = await asyncio.wait([task], timeout=timeout)
        if not done:  # the queue is stuck: these stay leased and are sent again later
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class DestinationWorker:
    """One destination's lane: leases what it can start now and sends it.

    While the destination is held (paused, or its circuit open) it leases nothing;
    past the cooldown it tries to become the probe and then leases one delivery.

    Leases are taken ahead of the slots (:data:`READ_AHEAD`) by a lease of their own
    beside the sends, so a slot that frees starts the next delivery at once instead of
    waiting for a write of the queue; what was leased ahead and not sent when the
    destination is held, disabled or the relay stops is handed back, attempt uncounted.
    """

    def __init__(self, name: str, dispatcher: Dispatcher) -> None:
        self.name = name
        self.d = dispatcher
        self.wakeup = asyncio.Event()
        self.inflight: set[asyncio.Task[None]] = set()
        # Attempts sent whose outcome is not written yet (see Settler).
        self.unsettled = 0
        self.settled = asyncio.Event()
        self.limiter: AsyncLimiter | None = None
        self._limiter_for: Destination | None = None
        self.task: asyncio.Task[None] | None = None
        self.probe: str | None = None  # the delivery id of our half-open probe in flight
        # Every delivery we hold a lease on: in flight, unsettled, or leased ahead.
        self.inflight_ids: set[str] = set()
        # A lease call failed: it may still have committed. Until our stray leases are
        # handed back, they would wait for the lease to expire.
        self.stray = False
        # Leased ahead, not started yet: (lease ends at, wall clock; the delivery).
        self.ready: collections.deque[tuple[float, Leased]] = collections.deque()
        self.leasing: asyncio.Task[None] | None = None
        # The last lease came back short: the queue has nothing due before this
        # (monotonic) unless new work is announced (``pokes`` counts announcements).
        self.dry_until = 0.0
        self.pokes = 0

    def destination(self) -> Destination | None:
        return self.d.config().destinations.get(self.name)

    def poke(self) -> None:
        """New work may be due: look at once, even if the last lease came back short."""
        self.pokes += 1
        self.dry_until = 0.0
        self.wakeup.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()  # once: each lookup is a getpid(2) on 3.11
        while not self.d.stopping:
            # Cleared before looking, so a wake-up that lands while we look is not lost.
            self.wakeup.clear()
            dest = self.destination()
            if dest is None or not dest.enabled:
                await self.hand_back()
                await self._sleep(self.d.poll_interval())
                continue
            if dest is not self._limiter_for:
                self.limiter, self._limiter_for = _limiter(dest), dest
            mode = self.d.health.mode(self.name, time.time())
            if mode is Mode.CLAIM:
                await self.hand_back()
                claimed = await self._claim(dest)
                mode = Mode.PROBE if claimed else Mode.HOLD
            if mode is Mode.HOLD or (mode is Mode.PROBE and self.probe is not None):
                await self.hand_back()
                await self._sleep(self._held_for())
                continue
            concurrency = dest.spec.concurrency
            if self.unsettled >= SETTLING_PER_SLOT * concurrency:
                # The queue writes outcomes slower than the destination answers: wait.
                self.settled.clear()
                await self.settled.wait()
                continue
            if mode is Mode.PROBE:
                await self._lease_probe(loop, dest)
                continue
            self._start_ready(loop, dest, concurrency - len(self.inflight))
            self._lease_ahead(loop, dest)
            dry = self.dry_until - time.monotonic()
            if dry > 0 and not self.ready and self.leasing is None:
                await self._sleep(dry)  # nothing due: until then, or new work
            else:
                await self.wakeup.wait()  # a slot freed, a lease came back, new work

    def _start_ready(self, loop: asyncio.AbstractEventLoop, dest: Destination, free: int) -> None:
        """Start what was leased ahead, as many as there are free slots."""
        while free > 0 and (item := self._pop_ready(dest)) is not None:
            self._start(loop, dest, item)
            free -= 1

    def _pop_ready(self, dest: Destination) -> Leased | None:
        """The next delivery leased ahead that is still ours to send, if any."""
        now = time.time()
        while self.ready:
            until, item = self.ready.popleft()
            if now + dest.spec.timeout < until:
                return item
            # Its lease would run out mid-send (the queue was slow to take outcomes):
            # it is due again for anyone, and no longer ours to send.
            self.inflight_ids.discard(item.id)
        return None

    def _start(self, loop: asyncio.AbstractEventLoop, dest: Destination, item: Leased) -> None:
        task = loop.create_task(self._slot(loop, dest, item))
        self.inflight.add(task)
        task.add_done_callback(self._slot_freed)

    async def _slot(self, loop: asyncio.AbstractEventLoop, dest: Destination, item: Leased) -> None:
        """One slot: this delivery, then what was leased ahead, while sending may go on.

        A slot that takes its next delivery itself starts it at once. Handed back
        through the run loop, each delivery cost a task, a done callback and a
        wake-up, and the slot stood empty until the run loop's turn came.
        """
        following: tuple[Destination, Leased] | None = (dest, item)
        while following is not None:
            dest, item = following
            await self._attempt(dest, item)
            following = self._next_for_slot(loop)

    def _next_for_slot(self, loop: asyncio.AbstractEventLoop) -> tuple[Destination, Leased] | None:
        """What a slot that just finished sends next, checked as the run loop checks it;
        None: the slot ends, and the run loop decides (a hold, a probe, a reload, the
        limit of outcomes waiting to be written)."""
        if self.d.stopping or not self.ready or self.probe is not None:
            return None
        dest = self.destination()
        if dest is None or not dest.enabled or dest is not self._limiter_for:
            return None
        spec = dest.spec
        if (
            len(self.inflight) > spec.concurrency
            or self.unsettled >= SETTLING_PER_SLOT * spec.concurrency
            or self.d.health.mode(self.name, time.time()) is not Mode.SEND
        ):
            return None
        item = self._pop_ready(dest)
        if item is None:
            return None
        self._lease_ahead(loop, dest)
        return dest, item

    def _slot_freed(self, task: asyncio.Task[None]) -> None:
        self.inflight.discard(task)
        self.wakeup.set()

    def _lease_ahead(self, loop: asyncio.AbstractEventLoop, dest: Destination) -> None:
        """Start a lease beside the sends if enough slots (and read-ahead) are empty.

        Leases come in chunks, not one row per finished request: each lease is a write.
        """
        if self.leasing is not None or time.monotonic() < self.dry_until:
            return
        spec = dest.spec
        ahead = 0 if spec.rate_limit else READ_AHEAD * spec.concurrency
        want = spec.concurrency + ahead - len(self.inflight) - len(self.ready)
        if want <= 0 or ((self.inflight or self.ready) and want < max(1, spec.concurrency // 4)):
            return
        self.leasing = loop.create_task(self._lease(dest, want))

    async def _lease(self, dest: Destination, want: int) -> None:
        pokes = self.pokes
        try:
            seconds = self.d.lease_seconds(dest)
            until = time.time() + seconds  # the queue's own lease ends a little later
            batch = await self._take(want, seconds)
            if batch is None:
                self.dry_until = time.monotonic() + self.d.poll_interval()
                return
            for item in batch:
                self.inflight_ids.add(item.id)
                self.ready.append((until, item))
            if len(batch) < want:
                idle = await self._idle_for()
                if self.pokes == pokes:  # nothing announced meanwhile
                    self.dry_until = time.monotonic() + idle
        finally:
            self.leasing = None
            self.wakeup.set()

    async def _take(self, limit: int, seconds: float) -> list[Leased] | None:
        """One lease of up to ``limit`` deliveries; None if the queue failed."""
        try:
            if self.stray:
                await self.d.queue.release_stray(self.name, list(self.inflight_ids))
                self.stray = False
            return await self.d.queue.lease(self.name, limit, seconds, time.time())
        except Exception as exc:
            self.stray = True
            log.warning("queue.lease_failed", destination=self.name, error=str(exc))
            return None

    async def _lease_probe(self, loop: asyncio.AbstractEventLoop, dest: Destination) -> None:
        """We are the half-open probe: one delivery, whose outcome decides the circuit."""
        await self.hand_back()  # the probe goes alone: nothing leased ahead of it
        if self.inflight:  # attempts from before the circuit opened: let them end first
            await asyncio.wait(self.inflight, return_when=asyncio.FIRST_COMPLETED)
            return
        batch = await self._take(1, self.d.lease_seconds(dest))
        if batch is None:
            await self._sleep(self.d.poll_interval())
            return
        if not batch:
            await self._sleep(await self._idle_for())
            return
        self.probe = batch[0].id
        self.inflight_ids.add(batch[0].id)
        self._start(loop, dest, batch[0])

    async def hand_back(self) -> None:
        """Return what was leased ahead and never sent; its attempt is not counted."""
        if self.leasing is not None:
            await asyncio.wait([self.leasing])
        if not self.ready:
            return
        ids = [item.id for _, item in self.ready]
        self.ready.clear()
        try:
            await self.d.queue.release_unsent(self.name, ids)
        except Exception as exc:  # the next lease hands them back (release_stray)
            self.stray = True
            log.warning("queue.release_failed", destination=self.name, error=str(exc))
        finally:
            self.inflight_ids.difference_update(ids)

    async def _claim(self, dest: Destination) -> bool:
        try:
            return await self.d.health.claim_probe(self.name, self.d.lease_seconds(dest))
        except Exception as exc:
            log.warning("queue.probe_claim_failed", destination=self.name, error=str(exc))
            return False

    def _held_for(self) -> float:
        """How long to wait while held: until the cooldown ends, at most a poll interval."""
        poll = self.d.poll_interval()
        state = self.d.health.state(self.name)
        if state is not None and state.circuit == "open" and state.reopen_at is not None:
            return max(0.0, min(poll, state.reopen_at - time.time()))
        return poll

    async def _idle_for(self) -> float:
        poll = self.d.poll_interval()
        try:
            due = await self.d.queue.next_due(self.name)
        except Exception:
            return poll
        if due is None:
            return poll
        return max(0.0, min(poll, due - time.time()))

    async def _sleep(self, seconds: float) -> None:
        """Until woken (new work, reload, stop) or ``seconds`` pass."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wakeup.wait(), timeout=seconds)

    async def _attempt(self, dest: Destination, item: Leased) -> None:
        """Send one delivery; its outcome is written after the slot is given back.

        The slot is the destination's concurrency: a request in flight to it. Writing the
        outcome is the queue's work (committed with others in one transaction), and
        waiting for it would leave the destination idle for a commit per request. A
        probe's outcome decides the circuit, so it is written before the slot frees.
        """
        probe = item.id == self.probe
        self.inflight_ids.add(item.id)
        try:
            attempt = await self._send(dest, item)
        except Exception as exc:  # a bug, not the destination: the lease will expire
            self.inflight_ids.discard(item.id)
            _record_failed(item.id, self.name, exc)
            return
        except BaseException:
            self.inflight_ids.discard(item.id)
            raise
        if probe:
            await self._record_probe(dest, attempt)
            return
        self.unsettled += 1
        self.d.settler.add(dest, attempt, lambda: self._settled(item.id))

    def _settled(self, delivery_id: str) -> None:
        self.inflight_ids.discard(delivery_id)
        self.unsettled -= 1
        self.settled.set()

    async def _record_probe(self, dest: Destination, attempt: Attempt) -> None:
        item = attempt.item
        try:
            await self.d.recorder.record(dest, attempt)
            await self.d.health.after_attempt(dest, attempt.outcome, True)
        except Exception as exc:
            _record_failed(item.id, self.name, exc)
        finally:
            self.inflight_ids.discard(item.id)
            self.probe = None
            self.wakeup.set()

    async def _send(self, dest: Destination, item: Leased) -> Attempt:
        """Build and send one attempt, and classify what came of it."""
        if self.limiter is not None:
            await self.limiter.acquire()
        started_at, started = time.time(), time.perf_counter()
        request: OutboundRequest | None = None
        answer: Answer | None = None
        result: Answer | SendFailed | RenderError
        try:
            if item.route == notices.ROUTE:  # one of the relay's own notices
                request = dest.build_notice(item.event(), item.id)
            else:
                request = dest.build(self.d.context_for(item), item.id)
            if dest.sends:
                answer = result = await self.d.sender.send(request, float(dest.spec.timeout))
            else:
                log.info(
                    "delivery.logged",
                    delivery_id=item.id,
                    event_id=item.event_id,
                    destination=self.name,
                    request=request.display(dest.secrets, dest.secret_headers),
                )
                result = Answer(200, {})
        except (RenderError, SendFailed) as exc:
            result = exc
        outcome = classify(
            result,
            dest.spec.retry,
            attempts=item.attempts,
            budget_start=item.created_at,
            now=time.time(),
            mask=self.d.recorder.masker(),
        )
        duration = time.perf_counter() - started
        return Attempt(item, started_at, duration, request, answer, outcome)


class GroupFlusher:
    """Turns due groups into deliveries, for every destination, in a loop of its own.

    It sleeps until the earliest group is due (at most ``poll_interval``), or until
    woken because new events opened a group, then wakes the destinations it fed.
    """

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.d = dispatcher
        self.wakeup = asyncio.Event()

    async def run(self) -> None:
        while not self.d.stopping:
            self.wakeup.clear()
            now = time.time()
            try:
                due = await self.d.queue.group_flush_times()
            except Exception as exc:
                log.warning("queue.flush_failed", error=str(exc))
                due = {}
            for destination, at in sorted(due.items()):
                if at <= now:
                    await self._flush(destination, now)
            later = [at for at in due.values() if at > now]
            wait = min([self.d.poll_interval(), *(at - time.time() for at in later)])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), timeout=max(0.0, wait))

    async def _flush(self, destination: str, now: float) -> None:
        max_events = {
            r.name: r.group.max_events for r in self.d.config().table.routes if r.group is not None
        }
        try:
            made = await self.d.queue.flush_groups(destination, max_events, now)
        except Exception as exc:
            log.warning("queue.flush_failed", destination=destination, error=str(exc))
            return
        for key, count in made:
            log.info("group.flushed", destination=destination, group_key=_key(key), events=count)
        if made:
            self.d.wake([destination])


class Dispatcher:
    """Runs one :class:`DestinationWorker` per configured destination, and the flusher."""

    def __init__(
        self,
        queue: Queue,
        config: Callable[[], RelayConfig],
        sender: Sender,
        metrics: Metrics,
    ) -> None:
        self.queue = queue
        self.config = config
        self.sender = sender
        self.metrics = metrics
        self.recorder = Recorder(queue, metrics, config)
        self.health = Health(queue, config, metrics)
        self.settler = Settler(self.recorder, self.health)
        self.stopping = False
        self.workers: dict[str, DestinationWorker] = {}
        self.flusher = GroupFlusher(self)
        self._flusher_task: asyncio.Task[None] | None = None
        self._health_task: asyncio.Task[None] | None = None

    def poll_interval(self) -> float:
        return float(self.config().settings.queue.poll_interval)

    def lease_seconds(self, dest: Destination) -> float:
        """Long enough for a rate-limited wait plus the request, never shorter than configured."""
        spec = dest.spec
        queued = spec.concurrency / spec.rate_limit if spec.rate_limit else 0.0
        return max(float(self.config().settings.queue.lease), spec.timeout * 2 + queued + 5)

    def context_for(self, item: Leased) -> dict[str, Any]:
        """What templates see for a leased delivery."""
        if item.group_key is None:
            return template_context(
                [item.event()], item.destination, time.time(), raw=item.event_body
            )
        return template_context(
            item.all_events(), item.destination, time.time(), group_key=_key(item.group_key)
        )

    async def start(self) -> None:
        """Read the destinations' shared state first, then start the workers."""
        self.queue.on_new_work(self._announced)
        try:
            await self.health.refresh()
        except Exception as exc:  # the workers hold off nothing until the state is read
            log.warning("health.refresh_failed", error=str(exc))
        self._health_task = asyncio.create_task(self.health.run(self.wake), name="health")
        self._flusher_task = asyncio.create_task(self.flusher.run(), name="group-flusher")
        self.sync()

    def _announced(self, destination: str) -> None:
        """New work for ``destination`` ("" = any), or its changed state ("@" + name).

        Only new grouped items ("+" + name), changed states and "any" wake the group
        flusher too: it reads the queue when woken, which would otherwise be one more
        read per committed batch of ungrouped events.
        """
        if destination.startswith(STATE_CHANGED):
            self.health.changed.set()
            destination = destination.removeprefix(STATE_CHANGED)
        elif destination.startswith(GROUPS_OPENED):
            destination = destination.removeprefix(GROUPS_OPENED)
        elif destination:
            self.wake([destination], groups=False)
            return
        self.wake([destination] if destination else None)

    def sync(self) -> None:
        """Start workers for destinations that appeared (start and reload)."""
        for name in self.config().destinations:
            if name not in self.workers:
                worker = DestinationWorker(name, self)
                worker.task = asyncio.create_task(worker.run(), name=f"worker:{name}")
                self.workers[name] = worker

    def wake(self, destinations: list[str] | None = None, *, groups: bool = True) -> None:
        """New work for these destinations (None: all); ``groups``: groups may have opened
        too (the flusher reads the queue when woken: not for every ungrouped event)."""
        if groups:
            self.flusher.wakeup.set()
        for name, worker in self.workers.items():
            if destinations is None or name in destinations:
                worker.poke()

    async def stop(self, grace: float) -> None:
        """Stop leasing; let attempts in flight finish for ``grace`` seconds; cancel the rest.

        Cancelled attempts stay leased in the queue and come back after restart.
        """
        self.stopping = True
        self.wake()
        loops = [w.task for w in self.workers.values() if w.task is not None]
        loops += [t for t in (self._flusher_task, self._health_task) if t is not None]
        deadline = time.monotonic() + grace
        inflight = [t for w in self.workers.values() for t in w.inflight]
        if inflight:
            _, pending = await asyncio.wait(inflight, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("shutdown.grace_exceeded", cancelled=len(pending))
                await asyncio.gather(*pending, return_exceptions=True)
        # Leased ahead and never sent: due again now, for the next start or another instance.
        await asyncio.gather(
            *(w.hand_back() for w in self.workers.values()), return_exceptions=True
        )
        # Outcomes being written: a few milliseconds each, owed even past the grace (an
        # unwritten success would be sent again after the restart).
        await self.settler.drain(max(SETTLE_GRACE, deadline - time.monotonic()))
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
