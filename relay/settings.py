"""The config file's schema, as frozen msgspec types.

One set of types both validates `relay.yaml` (unknown keys rejected) and
generates the JSON Schema that `relay schema` prints for editors, so the two
cannot drift apart. Semantic checks (references, templates, rules) live in
:mod:`relay.config`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from .units import Duration, Percent, Rate

Port = Annotated[int, Meta(ge=0, le=65535)]
Name = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


class _Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Every config object rejects keys it does not know: a typo must not pass silently."""


class Server(_Strict, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: Port = 8080
    path: Annotated[str, Meta(pattern=r"^/")] = "/webhooks/pushwoosh"
    token: str = ""
    max_body_bytes: Annotated[int, Meta(ge=1)] = 1024 * 1024
    dedupe_window: Duration = Duration(86400.0)
    shutdown_grace: Duration = Duration(10.0)
    allow_ips: list[str] = []
    trusted_proxies: list[str] = []
    # Slow, idle and too many clients (relay.http_protocol); 0 turns a head/body deadline off.
    header_timeout: Duration = Duration(10.0)
    body_timeout: Duration = Duration(30.0)
    keepalive_timeout: Duration = Duration(5.0)
    max_connections: Annotated[int, Meta(ge=1)] = 2048


class Queue(_Strict, frozen=True, kw_only=True):
    url: str = "sqlite:///data/relay.db"
    retention: Duration = Duration(7 * 86400.0)
    #: Dead letters (and their attempts) are kept this long unless replayed.
    dead_retention: Duration = Duration(30 * 86400.0)
    poll_interval: Duration = Duration(1.0)
    lease: Duration = Duration(60.0)
    #: How often an instance says it is alive; one silent for 5 heartbeats is dead and
    #: its leases come back.
    heartbeat: Duration = Duration(2.0)


class Logging(_Strict, frozen=True, kw_only=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"
    mask_hwid: bool = True


class Retry(_Strict, frozen=True, kw_only=True):
    max_attempts: Annotated[int, Meta(ge=1)] = 12
    max_age: Duration = Duration(86400.0)
    initial_delay: Duration = Duration(1.0)
    max_delay: Duration = Duration(600.0)


class Circuit(_Strict, frozen=True, kw_only=True):
    """When a destination is failing for everyone, stop trying for a while (issue 11).

    Closed -> open when, within ``window``, at least ``min_attempts`` attempts were made
    and at least ``failure_rate`` of them failed (retryable failures; a 4xx that kills one
    delivery is not the destination's failure). Open: no attempts, no budget spent.
    After ``cooldown``, one delivery probes; success closes, failure reopens with the
    cooldown doubled up to ``max_cooldown``.
    """

    failure_rate: Percent = Percent(0.5)
    min_attempts: Annotated[int, Meta(ge=1, le=1_000_000)] = 20
    window: Duration = Duration(60.0)
    cooldown: Duration = Duration(30.0)
    max_cooldown: Duration = Duration(600.0)


#: ``circuit: off`` (YAML reads a bare off as false) switches the breaker off.
CircuitSetting = Circuit | Literal["off"] | bool


class _Destination(_Strict, tag_field="type", frozen=True, kw_only=True):
    timeout: Duration = Duration(10.0)
    retry: Retry = Retry()
    rate_limit: Rate | None = None
    concurrency: Annotated[int, Meta(ge=1, le=1000)] = 8
    enabled: bool = True
    circuit: CircuitSetting = Circuit()

    def breaker(self) -> Circuit | None:
        """The circuit breaker's settings, or None when it is off."""
        if isinstance(self.circuit, Circuit):
            return self.circuit
        return Circuit() if self.circuit is True else None


class SlackDestination(_Destination, tag="slack", frozen=True, kw_only=True):
    """A Slack incoming webhook; ``text`` and ``blocks`` are templates."""

    url: str
    text: str | None = None
    blocks: list[Any] | None = None
    # Slack allows 1 message per second per incoming webhook:
    # https://api.slack.com/apis/rate-limits#incoming-webhooks
    rate_limit: Rate | None = Rate(1.0)


class HttpDestination(_Destination, tag="http", frozen=True, kw_only=True):
    """Any HTTP endpoint; ``body`` is a structure template (default: the event as received)."""

    url: str
    method: Method = "POST"
    headers: dict[str, str] = {}
    body: Any = msgspec.UNSET
    signing_secret: str | None = None


class LogDestination(_Destination, tag="log", frozen=True, kw_only=True):
    """Writes the would-be request into the structured log: a safe default target."""

    body: Any = msgspec.UNSET
    circuit: CircuitSetting = "off"  # writing a log line does not fail for hours


Destination = SlackDestination | HttpDestination | LogDestination


class Group(_Strict, frozen=True, kw_only=True):
    by: list[str] = []
    wait: Duration = Duration(30.0)
    interval: Duration = Duration(300.0)
    max_events: Annotated[int, Meta(ge=1, le=100_000)] = 500


class Route(_Strict, frozen=True, kw_only=True):
    name: Name
    when: dict[str, Any] | None = None
    to: Annotated[list[Name], Meta(min_length=1)]
    stop: bool = False
    group: Group | None = None
    #: A template: deliveries with the same key go to each destination one at a time,
    #: in acceptance order.
    order_by: Annotated[str, Meta(min_length=1, max_length=1000)] | None = None


class Alerts(_Strict, frozen=True, kw_only=True):
    """Destinations that receive the relay's own notices (circuit, pause, dead letters)."""

    to: Annotated[list[Name], Meta(min_length=1)]


class Reload(_Strict, frozen=True, kw_only=True):
    """Consent, in the new file, to a reload that weakens the running relay (refused otherwise)."""

    # Refused by default because a file saved half-way or a lost line must not switch off
    # authentication or routing; each key names one weakening the operator means.
    allow_removing_token: Annotated[
        bool, Meta(description="accept a reload that drops the running server.token")
    ] = False
    allow_removing_allow_ips: Annotated[
        bool, Meta(description="accept a reload that empties the running server.allow_ips")
    ] = False
    allow_no_routes: Annotated[
        bool, Meta(description="accept a config with no route (and do not warn about it)")
    ] = False


class Config(_Strict, frozen=True, kw_only=True):
    server: Server = Server()
    queue: Queue = Queue()
    logging: Logging = Logging()
    destinations: dict[Name, Destination] = {}
    routes: list[Route] = []
    alerts: Alerts | None = None
    reload: Reload = Reload()
