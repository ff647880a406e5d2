"""Keep the queue bounded: prune old succeeded deliveries, their events and old fingerprints.

Small batches with a pause between them, so pruning never holds the single
SQLite writer (or PostgreSQL locks) long enough to slow the receiver.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .config import RelayConfig
from .logs import get_logger
from .queue import Queue

log = get_logger("relay.maintenance")


async def prune_once(
    queue: Queue, config: RelayConfig, now: float | None = None, batch: int = 1000
) -> int:
    """Prune until nothing old is left; returns rows deleted (largest table per batch)."""
    now = time.time() if now is None else now
    settings = config.settings
    settled_before = now - float(settings.queue.retention)
    # Fingerprints are only useful inside the dedupe window.
    fingerprints_before = now - float(settings.server.dedupe_window)
    total = 0
    while True:
        n = await queue.prune(settled_before, fingerprints_before, batch)
        total += n
        if n < batch:
            return total
        await asyncio.sleep(0.05)


async def run(
    queue: Queue,
    config: Callable[[], RelayConfig],
    prune_every: float = 60.0,
    orphans_every: float = 5.0,
) -> None:
    """Release dead processes' leases every few seconds; prune every minute."""
    next_prune = 0.0
    while True:
        try:
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
        await asyncio.sleep(orphans_every)
