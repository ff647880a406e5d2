"""Errors the relay raises on purpose, each carrying what a person needs to fix it.

This module imports nothing from the relay so every layer can raise these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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


class QueueUnavailable(RelayError):
    """The queue cannot take writes right now (disk full, database down)."""


class RenderError(RelayError):
    """A template failed at send time: the delivery is dead, the relay goes on."""


class Retryable(RelayError):
    """A delivery attempt failed in a way that a later attempt may fix."""

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


class Permanent(RelayError):
    """A delivery attempt failed in a way that retrying cannot fix."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


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
