"""Prometheus metrics (CONTRACT section 8), in a registry of their own per app.

A private registry keeps several apps in one process (tests, `--workers`)
from colliding on prometheus-client's global one. Queue depth is read from
the queue at scrape time, so it is right across processes and instances.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .queue import Depth

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "relay_events_received", "Events received by outcome.", ["outcome"], registry=r
        )
        self.deliveries = Counter(
            "relay_deliveries",
            "Delivery attempts by outcome.",
            ["destination", "outcome"],
            registry=r,
        )
        self.attempts = Counter(
            "relay_attempts",
            "Delivery attempts by outcome (succeeded, retry, dead).",
            ["destination", "outcome"],
            registry=r,
        )
        self.duration = Histogram(
            "relay_delivery_duration_seconds",
            "Time of one delivery attempt.",
            ["destination"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.depth = Gauge(
            "relay_queue_depth",
            "Deliveries in the queue by state.",
            ["destination", "state"],
            registry=r,
        )
        self.oldest = Gauge(
            "relay_queue_oldest_pending_age_seconds",
            "Age of the oldest pending delivery.",
            ["destination"],
            registry=r,
        )
        self.open_groups = Gauge(
            "relay_open_groups", "Groups holding events not yet sent.", ["destination"], registry=r
        )
        self.destination_state = Gauge(
            "relay_destination_state",
            "1 for each destination's current state (active, paused, open, half-open, disabled).",
            ["destination", "state"],
            registry=r,
        )
        self.reloads = Counter(
            "relay_config_reloads", "Config reloads by outcome.", ["outcome"], registry=r
        )
        # The receiver's counters, looked up once (labels() takes a lock and a dict lookup).
        self.accepted = self.events.labels("accepted")
        self.duplicates = self.events.labels("duplicate")
        self.rejected = self.events.labels("rejected")

    def set_depth(self, depth: Depth, destinations: list[str]) -> None:
        for dest in destinations:
            for state in ("pending", "dead"):
                self.depth.labels(dest, state).set(depth.counts.get((dest, state), 0))
            self.oldest.labels(dest).set(depth.oldest_pending_age.get(dest, 0.0))
            self.open_groups.labels(dest).set(depth.open_groups.get(dest, 0))
        for (dest, state), n in depth.counts.items():
            self.depth.labels(dest, state).set(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
