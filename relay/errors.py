"""Errors the relay raises on purpose, each carrying what a person needs to fix it.

This module imports nothing from the relay so every layer can raise these.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar


class RelayError(Exception):
    """Base of every error the relay reports as one clear line instead of a traceback."""


class SpecError(RelayError):
    """A problem at a path of the config document (``routes[1].when.event_name``).

    Pure code (rules, templates) raises it knowing only the path; the config
    loader adds the file and the line, turning it into a :class:`ConfigError`.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Problem:
    """One located config problem: ``file:line: path: message``."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(RelayError):
    """The config cannot be used; ``problems`` lists every located reason."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class CliError(RelayError):
    """A mistake on the command line or in its inputs; exit with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class QueueUnavailable(RelayError):
    """The queue cannot take writes right now (disk full, database down)."""


class QueueURLInvalid(RelayError):
    """``queue.url`` names no backend we have, or parameters it cannot take."""


class RenderError(RelayError):
    """A template failed at send time: the delivery is dead, the relay goes on."""


class SendFailed(RelayError):
    """An attempt got no answer from the destination; ``reason`` says why in a few words.

    Only the sender raises these: it maps every transport failure (httpx, aiohttp,
    OSError, timeouts) onto this hierarchy, so nothing above it knows which HTTP
    library ran. ``reason`` is short and fit for a log line ("connect refused").
    A plain ``SendFailed`` is a failure the sender could not name more precisely.
    """

    #: Whether another attempt may get through; only a request that cannot be sent is final.
    retryable: ClassVar[bool] = True

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConnectFailed(SendFailed):
    """No connection: refused, DNS lookup failed, unreachable, TLS handshake failed."""


class ConnectionReset(SendFailed):
    """The destination reset or closed the connection before it answered."""


class TimeoutPhase(enum.StrEnum):
    """What an attempt was waiting for when its time ran out."""

    CONNECT = "connect"
    WRITE = "write"
    READ = "read"
    POOL = "pool"
    OVERALL = "overall"


_TIMEOUT_REASON = {
    TimeoutPhase.CONNECT: "no connection within {}s",
    TimeoutPhase.WRITE: "request not sent within {}s",
    TimeoutPhase.READ: "no answer within {}s",
    TimeoutPhase.POOL: "no free connection within {}s",
    TimeoutPhase.OVERALL: "no complete answer within {}s",
}


class SendTimeout(SendFailed):
    """The attempt ran out of time; ``phase`` says waiting for what, ``seconds`` how long."""

    def __init__(self, phase: TimeoutPhase, seconds: float) -> None:
        super().__init__(_TIMEOUT_REASON[phase].format(f"{seconds:g}"))
        self.phase = phase
        self.seconds = seconds


class ProtocolViolation(SendFailed):
    """The destination sent something that is not HTTP, or headers over the parser's limits."""


class RequestInvalid(SendFailed):
    """The request itself cannot be sent (a header value the wire forbids): never retried."""

    retryable: ClassVar[bool] = False


class Rejected(RelayError):
    """The receiver refuses a request: an HTTP status (4xx), a reason for people, extra fields.

    Raised anywhere on the receiving path and rendered in one place (:mod:`relay.app`),
    which answers ``{"error": reason, **extra}``, counts it and logs ``event.rejected``.
    """

    def __init__(self, status: int, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.extra = extra


class BodyInvalid(Rejected):
    """The body is not JSON at all (400)."""

    def __init__(self, reason: str) -> None:
        super().__init__(400, reason)


class EventInvalid(Rejected):
    """The body breaks the event schema (422).

    ``errors`` maps each JSON path to its reason, as many as a report holds;
    ``omitted`` counts the errors beyond them.
    """

    REASON = "event does not match the Pushwoosh webhook schema"

    def __init__(self, errors: dict[str, str], omitted: int = 0) -> None:
        extra: dict[str, Any] = {"errors": errors}
        if omitted:
            extra["errors_omitted"] = omitted
        super().__init__(422, self.REASON, **extra)
        self.errors = errors
        self.omitted = omitted

    def __str__(self) -> str:
        listed = "; ".join(f"{p}: {m}" for p, m in self.errors.items())
        return f"{listed}; and {self.omitted} more" if self.omitted else listed


class AdminRefused(RelayError):
    """The console or admin API refuses a request: an HTTP status (4xx) and a reason for people.

    Raised by :mod:`relay.console` and :mod:`relay.api` wherever a request is found wanting
    (no access, bad filter, unknown destination, ...) and rendered by each face's own
    handler: JSON ``{"error": reason}`` for the API, a page for the console.
    ``retry_after`` (seconds) is sent as ``Retry-After`` (a 429 after failed logins).
    """

    def __init__(self, status: int, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after
