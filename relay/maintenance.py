"""Keep the queue healthy: heartbeats, dead instances' leases, retention.

Every instance writes a heartbeat; leases of instances whose heartbeat went stale
come back at once. Pruning runs in small batches with a pause between them, so it
never holds the single SQLite writer (or PostgreSQL locks) long enough to slow the
receiver.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .config import RelayConfig
from .logs import get_logger
from .queue import Cutoffs, Queue

log = get_logger("relay.maintenance")


def cutoffs(config: RelayConfig, now: float) -> Cutoffs:
    """What retention lets go at ``now``."""
    q = config.settings.queue
    return Cutoffs(
        succeeded_before=now - float(q.retention),
        dead_before=now - float(q.dead_retention),
        events_before=now - float(q.retention),
        # Fingerprints are only useful inside the dedupe window.
        fingerprints_before=now - float(config.settings.server.dedupe_window),
    )


async def prune_once(
    queue: Queue, config: RelayConfig, now: float | None = None, batch: int = 1000
) -> int:
    """Prune until nothing old is left; returns rows deleted (largest kind per batch)."""
    limits = cutoffs(config, time.time() if now is None else now)
    total = 0
    while True:
        n = await queue.prune(limits, batch)
        total += n
        if n < batch:
            return total
        await asyncio.sleep(0.05)


async def run(queue: Queue, config: Callable[[], RelayConfig], prune_every: float = 60.0) -> None:
    """Heartbeat and take back dead instances' leases every heartbeat; prune every minute."""
    next_prune = 0.0
    while True:
        try:
            await queue.heartbeat()
            released = await queue.release_orphans()
            if released:
                log.warning("queue.leases_released", deliveries=released)
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + prune_every
                n = await prune_once(queue, config())
                if n:
                    log.info("queue.pruned", rows=n)
        except Exception as exc:  # retried next round
            log.warning("queue.maintenance_failed", error=str(exc))
        await asyncio.sleep(queue.heartbeat_every)
