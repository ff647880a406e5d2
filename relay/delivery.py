"""Delivery workers: lease due deliveries, send them, record the outcome.

The one place that knows both the queue and the destinations. Each
destination gets its own worker with its own concurrency and rate limit, so a
slow or failing destination never delays another. A worker only leases what
it can start now, so a lease never waits behind a full pipe; an attempt's
fate is written back to the queue (succeeded, retry at T, dead), never kept
in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import msgspec
from aiolimiter import AsyncLimiter

from .backoff import decide
from .config import RelayConfig
from .destinations import Destination, template_context
from .errors import Permanent, RenderError, Retryable, SendFailed
from .http_client import Sender
from .logs import get_logger
from .metrics import Metrics
from .model import Leased
from .outcome import ERROR_CHARS
from .queue import Queue

log = get_logger("relay.delivery")


def _limiter(dest: Destination) -> AsyncLimiter | None:
    rate = dest.spec.rate_limit
    if rate is None:
        return None
    # Allow a short burst (Slack tolerates "short bursts" above 1/s) but the same average.
    burst = max(1.0, min(3.0, rate * 3))
    return AsyncLimiter(burst, burst / rate)


class DestinationWorker:
    """Sends the deliveries of one destination."""

    def __init__(self, name: str, dispatcher: Dispatcher) -> None:
        self.name = name
        self.d = dispatcher
        self.wakeup = asyncio.Event()
        self.inflight: set[asyncio.Task[None]] = set()
        self.limiter: AsyncLimiter | None = None
        self._limiter_for: Destination | None = None
        self._next_flush_check = 0.0
        self.task: asyncio.Task[None] | None = None

    def destination(self) -> Destination | None:
        return self.d.config().destinations.get(self.name)

    def _slot_free(self, dest: Destination) -> int:
        return dest.spec.concurrency - len(self.inflight)

    async def run(self) -> None:
        while not self.d.stopping:
            dest = self.destination()
            if dest is None or not dest.enabled:
                self.wakeup.clear()
                await self._sleep(self.d.poll_interval())
                continue
            if dest is not self._limiter_for:
                self.limiter, self._limiter_for = _limiter(dest), dest
            free = self._slot_free(dest)
            # Lease in chunks, not one row per finished request: each lease is a write.
            if free <= 0 or (self.inflight and free < max(1, dest.spec.concurrency // 4)):
                await asyncio.wait(self.inflight, return_when=asyncio.FIRST_COMPLETED)
                continue
            # Cleared before looking, so a wake-up that lands while we look is not lost.
            self.wakeup.clear()
            await self._flush_groups()
            now = time.time()
            lease_s = self.d.lease_seconds(dest)
            try:
                batch = await self.d.queue.lease(self.name, free, lease_s, now)
            except Exception as exc:
                log.warning("queue.lease_failed", destination=self.name, error=str(exc))
                self.wakeup.clear()
                await self._sleep(self.d.poll_interval())
                continue
            for item in batch:
                task = asyncio.create_task(self._attempt(dest, item))
                self.inflight.add(task)
                task.add_done_callback(self.inflight.discard)
            if len(batch) < free:
                await self._sleep(await self._idle_for())

    async def _flush_groups(self) -> None:
        """Due groups become deliveries; checked at most every 100 ms (and on every wakeup)."""
        now = time.time()
        if now < self._next_flush_check:
            return
        self._next_flush_check = now + 0.1
        max_events = {
            r.name: r.group.max_events for r in self.d.config().table.routes if r.group is not None
        }
        try:
            made = await self.d.queue.flush_groups(self.name, max_events, now)
        except Exception as exc:
            log.warning("queue.flush_failed", destination=self.name, error=str(exc))
            return
        for key, count in made:
            log.info("group.flushed", destination=self.name, group_key=_key(key), events=count)

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
        """Until woken (new work, reload, stop) or ``seconds`` pass; then check groups."""
        self._next_flush_check = 0.0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wakeup.wait(), timeout=seconds)

    async def _attempt(self, dest: Destination, item: Leased) -> None:
        try:
            await self._send(dest, item)
        except Exception as exc:  # the queue failed while recording: the lease will expire
            log.error(
                "delivery.record_failed",
                delivery_id=item.id,
                destination=self.name,
                error=f"{type(exc).__name__}: {exc}",
            )

    async def _send(self, dest: Destination, item: Leased) -> None:
        if self.limiter is not None:
            await self.limiter.acquire()
        fields: dict[str, Any] = {
            "delivery_id": item.id,
            "event_id": item.event_id,
            "destination": self.name,
            "attempt": item.attempts,
        }
        if item.group_key is not None:
            fields["group_key"] = _key(item.group_key)
            fields["events"] = max(1, len(item.events))
        started = time.perf_counter()
        status: int | None = None
        try:
            request = dest.build(self.d.context_for(item), item.id)
            if not dest.sends:
                log.info(
                    "delivery.logged",
                    **fields,
                    request=request.display(dest.secrets, dest.secret_headers),
                )
            else:
                answer = await self.d.sender.send(request, float(dest.spec.timeout))
                status = answer.status
                dest.judge(status, answer.headers, answer.excerpt(ERROR_CHARS))
        except RenderError as exc:
            await self._dead(fields, str(exc), None, started)
        except Permanent as exc:
            await self._dead(fields, str(exc), exc.status_code, started)
        except Retryable as exc:
            await self._failed(
                dest, item, fields, str(exc), exc.status_code, exc.retry_after, started
            )
        except SendFailed as exc:  # the sender's mapped transport failures
            if exc.retryable:
                await self._failed(dest, item, fields, exc.reason, None, None, started)
            else:
                await self._dead(fields, exc.reason, None, started)
        except Exception as exc:  # a bug on the way to sending: retry, the lease is held
            await self._failed(
                dest, item, fields, f"{type(exc).__name__}: {exc}", None, None, started
            )
        else:
            await self.d.queue.succeed(item.id, status, time.time())
            self._report("succeeded", fields, status, started)

    async def _failed(
        self,
        dest: Destination,
        item: Leased,
        fields: dict[str, Any],
        error: str,
        status: int | None,
        retry_after: float | None,
        started: float,
    ) -> None:
        now = time.time()
        decision = decide(dest.spec.retry, item.attempts, item.created_at, now, retry_after)
        if decision.delay is None:
            await self._dead(fields, f"{error} ({decision.reason})", status, started)
            return
        await self.d.queue.retry(item.id, now + decision.delay, error, status, now)
        self._report(
            "retrying", fields, status, started, error=error, retry_in_s=round(decision.delay, 3)
        )

    async def _dead(
        self, fields: dict[str, Any], error: str, status: int | None, started: float
    ) -> None:
        await self.d.queue.bury(fields["delivery_id"], error, status, time.time())
        self._report("dead", fields, status, started, error=error)

    def _report(
        self, outcome: str, fields: dict[str, Any], status: int | None, started: float, **extra: Any
    ) -> None:
        """Metrics and the `delivery.<outcome>` log line of a recorded attempt."""
        elapsed = time.perf_counter() - started
        self.d.metrics.deliveries.labels(self.name, outcome).inc()
        self.d.metrics.duration.labels(self.name).observe(elapsed)
        getattr(log, _LEVEL[outcome])(
            f"delivery.{outcome}",
            **fields,
            status_code=status,
            duration_ms=round(elapsed * 1000, 1),
            **extra,
        )


#: Log level per outcome (looked up at call time: the logger is configured after import).
_LEVEL = {"succeeded": "info", "retrying": "warning", "dead": "error"}


def _key(key: str) -> dict[str, Any]:
    decoded: dict[str, Any] = msgspec.json.decode(key)
    return decoded


class Dispatcher:
    """Runs one :class:`DestinationWorker` per configured destination."""

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
        self.stopping = False
        self.workers: dict[str, DestinationWorker] = {}

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

    def start(self) -> None:
        self.queue.on_new_work(lambda destination: self.wake([destination]))
        self.sync()

    def sync(self) -> None:
        """Start workers for destinations that appeared (start and reload)."""
        for name in self.config().destinations:
            if name not in self.workers:
                worker = DestinationWorker(name, self)
                worker.task = asyncio.create_task(worker.run(), name=f"worker:{name}")
                self.workers[name] = worker

    def wake(self, destinations: list[str] | None = None) -> None:
        for name, worker in self.workers.items():
            if destinations is None or name in destinations:
                worker.wakeup.set()

    async def stop(self, grace: float) -> None:
        """Stop leasing; let attempts in flight finish for ``grace`` seconds; cancel the rest.

        Cancelled attempts stay leased in the queue and come back after restart.
        """
        self.stopping = True
        self.wake()
        loops = [w.task for w in self.workers.values() if w.task is not None]
        inflight = [t for w in self.workers.values() for t in w.inflight]
        if inflight:
            _, pending = await asyncio.wait(inflight, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("shutdown.grace_exceeded", cancelled=len(pending))
                await asyncio.gather(*pending, return_exceptions=True)
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
