"""What an attempt's result means for its delivery: succeeded, retry at T, or dead.

The one place that turns "what happened" (an :class:`Answer`, a
:class:`~relay.errors.SendFailed`, a :class:`~relay.errors.RenderError`) into what
the queue must record, as in Alertmanager where notifiers only say retry-or-not
and one stage owns the schedule. Pure: the clock, the retry policy and the
secret masker are passed in, so every rule here is a table test (CONTRACT
section 6). The texts it produces go to logs, dead letters and the attempt
history, so each one passes through the caller's ``mask`` before it leaves.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import ClassVar

from .backoff import decide
from .errors import RenderError, SendFailed
from .model import AttemptOutcome, storable
from .settings import Retry

#: Statuses besides 5xx worth another attempt (CONTRACT section 6); every other non-2xx is final.
RETRYABLE_STATUS = frozenset({408, 425, 429})
#: Characters of an answer's body quoted in the error text of a failed attempt.
ERROR_CHARS = 200
#: A `Retry-After` longer than this (about 68 years) is read as this: still past any budget.
MAX_RETRY_AFTER = float(2**31)
_DELAY_SECONDS = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,9})?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


@dataclass(frozen=True, slots=True)
class Answer:
    """A destination's answer, of which at most the sender's cap was read.

    ``headers`` has lower-case names (repeated fields joined with ``", "``).
    ``truncated`` says the body holds less than the destination sent or meant to
    send: the cap was reached, or reading stopped early for the reason in
    ``interrupted`` (a reset, the deadline). The status stands either way: once
    the status line arrived the destination has given its verdict.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes = b""
    truncated: bool = False
    interrupted: str = ""

    def excerpt(self, chars: int) -> str:
        """The first ``chars`` characters of the body as UTF-8, undecodable bytes (and NUL,
        which no text column takes) replaced."""
        return storable(self.body.decode("utf-8", "replace")[:chars])


@dataclass(frozen=True, slots=True)
class Succeeded:
    """A 2xx: the delivery is done."""

    status: int
    kind: ClassVar[AttemptOutcome] = AttemptOutcome.SUCCEEDED

    @property
    def destination_failure(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class RetryAt:
    """Try again at ``at`` (``delay`` seconds after the attempt ended).

    ``retry_after`` is the destination's ``Retry-After`` when it set the delay.
    """

    at: float
    delay: float
    error: str
    status: int | None = None
    retry_after: float | None = None
    kind: ClassVar[AttemptOutcome] = AttemptOutcome.RETRY

    @property
    def destination_failure(self) -> bool:
        """Every retryable failure counts against the destination's health."""
        return True


@dataclass(frozen=True, slots=True)
class Dead:
    """Given up: ``error`` is the last attempt's, ``reason`` why there is no other.

    ``destination_failure`` is true when the destination failed (the budget ran
    out on retryable failures) and false when this one delivery was refused (a
    4xx, a request that cannot be rendered or sent): that is the delivery's
    problem, not the destination's.
    """

    error: str
    status: int | None
    reason: str
    destination_failure: bool
    kind: ClassVar[AttemptOutcome] = AttemptOutcome.DEAD

    @property
    def summary(self) -> str:
        """``error (reason)``, the one line for a dead letter."""
        return f"{self.error} ({self.reason})"


Outcome = Succeeded | RetryAt | Dead


def retryable_status(status: int) -> bool:
    """408, 425, 429 and 5xx are worth another attempt; any other non-2xx is final."""
    return status in RETRYABLE_STATUS or 500 <= status <= 599


def one_line(text: str) -> str:
    """Control characters and runs of whitespace become one space, for a log line."""
    return " ".join(_CONTROL.sub(" ", text).split())


def status_error(status: int, body: str) -> str:
    """``HTTP <status>: <first ERROR_CHARS characters of the body, one line>``."""
    detail = one_line(body)[:ERROR_CHARS].rstrip()
    return f"HTTP {status}: {detail}" if detail else f"HTTP {status}"


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Parse ``Retry-After``: delay seconds or an HTTP date (RFC 9110 section 10.2.3).

    ``None`` for anything else (a negative number, garbage), so the backoff decides.
    A date in the past means now; a huge value is kept huge (up to
    :data:`MAX_RETRY_AFTER`) so that it ends the delivery's budget honestly.
    """
    if not value or len(value) > 64:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # asctime dates carry no zone; HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER)


def classify(
    result: Answer | SendFailed | RenderError,
    policy: Retry,
    *,
    attempts: int,
    budget_start: float,
    now: float,
    mask: Callable[[str], str],
) -> Outcome:
    """What the queue records for an attempt.

    ``attempts`` counts the attempts made, this one included; ``budget_start``
    is when the delivery's budget began (accepted or replayed) and ``now`` when
    this attempt ended. ``mask`` hides secrets in every text of the outcome.
    """
    if isinstance(result, Answer):
        status = result.status
        if 200 <= status <= 299:
            return Succeeded(status)
        # Masked whole before it is cut, so a cut cannot split a secret past the masker.
        error = mask(status_error(status, mask(result.excerpt(len(result.body)))))
        if not retryable_status(status):
            return Dead(error, status, mask("not retryable"), destination_failure=False)
        retry_after = retry_after_seconds(result.headers.get("retry-after"), now)
        return _retry(policy, attempts, budget_start, now, error, status, retry_after, mask)
    if isinstance(result, SendFailed):
        error = mask(result.reason)
        if not result.retryable:
            return Dead(error, None, mask("the request cannot be sent"), destination_failure=False)
        return _retry(policy, attempts, budget_start, now, error, None, None, mask)
    reason = "the request could not be rendered"
    return Dead(mask(one_line(str(result))), None, mask(reason), destination_failure=False)


def _retry(
    policy: Retry,
    attempts: int,
    budget_start: float,
    now: float,
    error: str,
    status: int | None,
    retry_after: float | None,
    mask: Callable[[str], str],
) -> RetryAt | Dead:
    decision = decide(policy, attempts, budget_start, now, retry_after)
    if decision.delay is None:
        return Dead(error, status, mask(decision.reason), destination_failure=True)
    return RetryAt(now + decision.delay, decision.delay, error, status, retry_after)
