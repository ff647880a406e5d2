"""classify: CONTRACT section 6 as a table, Retry-After in every form, budgets, masking."""

from __future__ import annotations

import calendar
from collections.abc import Callable
from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.errors import (
    ConnectFailed,
    ConnectionReset,
    ProtocolViolation,
    RenderError,
    RequestInvalid,
    SendFailed,
    SendTimeout,
    TimeoutPhase,
)
from relay.model import AttemptOutcome
from relay.outcome import (
    ERROR_CHARS,
    MAX_RETRY_AFTER,
    Answer,
    Dead,
    RetryAt,
    Succeeded,
    classify,
    retry_after_seconds,
)
from relay.settings import Retry
from relay.units import Duration

NOW = 1_700_000_000.0
POLICY = Retry(
    max_attempts=5, max_age=Duration(3600), initial_delay=Duration(1), max_delay=Duration(60)
)


def plain(text: str) -> str:
    return text


def outcome(
    result: Answer | SendFailed | RenderError,
    *,
    attempts: int = 1,
    budget_start: float = NOW - 10,
    mask: Callable[[str], str] = plain,
) -> Succeeded | RetryAt | Dead:
    return classify(
        result,
        POLICY,
        attempts=attempts,
        budget_start=budget_start,
        now=NOW,
        mask=mask,
    )


def answer(status: int, body: bytes = b"", **headers: str) -> Answer:
    return Answer(status, {k.replace("_", "-"): v for k, v in headers.items()}, body)


def test_outcome_kinds_are_the_contracts() -> None:
    assert [k.value for k in AttemptOutcome] == ["succeeded", "retry", "dead"]
    assert (Succeeded.kind, RetryAt.kind, Dead.kind) == tuple(AttemptOutcome)


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_succeeds(status: int) -> None:
    assert outcome(answer(status)) == Succeeded(status)
    assert not outcome(answer(status)).destination_failure


def test_a_truncated_2xx_is_still_a_success() -> None:
    cut = Answer(200, {}, b"x" * 4096, truncated=True, interrupted="connection reset by peer")
    assert outcome(cut) == Succeeded(200)


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses_retry(status: int) -> None:
    got = outcome(answer(status, b"busy"))
    assert isinstance(got, RetryAt)
    assert (got.status, got.error, got.retry_after) == (status, f"HTTP {status}: busy", None)
    assert 1 <= got.delay <= 2 and got.at == NOW + got.delay  # the first backoff step
    assert got.destination_failure


@pytest.mark.parametrize(
    "status", [100, 101, 300, 301, 304, 400, 401, 403, 404, 410, 422, 600, 999]
)
def test_other_statuses_are_dead_at_once(status: int) -> None:
    got = outcome(answer(status, b"no such hook"))
    assert got == Dead(f"HTTP {status}: no such hook", status, "not retryable", False)
    assert got.summary == f"HTTP {status}: no such hook (not retryable)"


def test_the_error_quotes_the_body_on_one_line() -> None:
    body = b"<html>\r\n\t<h1>Bad\x1b[31m  gateway</h1>\n" + b"z" * 500
    got = outcome(answer(502, body))
    assert isinstance(got, RetryAt)
    assert got.error.startswith("HTTP 502: <html> <h1>Bad [31m gateway</h1> zzz")
    assert len(got.error) == len("HTTP 502: ") + ERROR_CHARS
    assert outcome(answer(503)).error == "HTTP 503"  # type: ignore[union-attr]
    assert outcome(answer(503, b"\xff\xfe ok")).error == "HTTP 503: \ufffd\ufffd ok"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (ConnectFailed("connect refused"), "connect refused"),
        (ConnectionReset("connection reset by peer"), "connection reset by peer"),
        (SendTimeout(TimeoutPhase.OVERALL, 10), "no complete answer within 10s"),
        (SendTimeout(TimeoutPhase.CONNECT, 2.5), "no connection within 2.5s"),
        (ProtocolViolation("oversized answer headers"), "oversized answer headers"),
        (SendFailed("OSError: odd"), "OSError: odd"),
    ],
)
def test_send_failures_retry(failure: SendFailed, error: str) -> None:
    got = outcome(failure)
    assert isinstance(got, RetryAt)
    assert (got.error, got.status, got.retry_after) == (error, None, None)
    assert got.destination_failure


def test_an_unsendable_request_is_dead_and_not_the_destinations_fault() -> None:
    got = outcome(RequestInvalid("the request cannot be sent: a header is not ASCII"))
    assert got == Dead(
        "the request cannot be sent: a header is not ASCII",
        None,
        "the request cannot be sent",
        False,
    )


def test_a_render_error_is_dead() -> None:
    got = outcome(RenderError("body.email: 'event' has no attribute 'mail'\nline 2"))
    assert got == Dead(
        "body.email: 'event' has no attribute 'mail' line 2",
        None,
        "the request could not be rendered",
        False,
    )


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        (formatdate(NOW + 60, usegmt=True), 60.0),  # IMF-fixdate
        ("Sunday, 06-Nov-94 08:49:37 GMT", 0.0),  # RFC 850, in the past: now
        (
            "Thu Nov 14 22:14:20 2030",
            calendar.timegm((2030, 11, 14, 22, 14, 20)) - NOW,
        ),  # asctime, read as GMT
        ("99999999999999999999", MAX_RETRY_AFTER),  # huge: kept huge, bounded
        ("-5", None),  # negative: not delay-seconds
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
        ("inf", None),
        ("1e9", None),
        ("0x10", None),
        ("\u0661\u0662", None),  # Arabic-Indic digits are not DIGIT
        ("1" * 100, None),  # past the length any real header has
        ("Mon, 99 Foo 99999 99:99:99 GMT", None),
    ],
)
def test_retry_after_forms(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value, NOW) == (
        seconds if seconds is None else pytest.approx(seconds)
    )


@given(st.text(max_size=80))
def test_retry_after_never_raises(value: str) -> None:
    seconds = retry_after_seconds(value, NOW)
    assert seconds is None or 0 <= seconds <= MAX_RETRY_AFTER


def test_retry_after_sets_the_delay() -> None:
    got = outcome(answer(429, retry_after="30"))
    assert isinstance(got, RetryAt)
    assert (got.delay, got.at, got.retry_after) == (30.0, NOW + 30, 30.0)
    dated = outcome(answer(503, retry_after=formatdate(NOW + 90, usegmt=True)))
    assert isinstance(dated, RetryAt) and dated.delay == pytest.approx(90, abs=1)


@pytest.mark.parametrize("value", ["soon", "-5", "nan", ""])
def test_a_bad_retry_after_falls_back_to_backoff(value: str) -> None:
    got = outcome(answer(429, retry_after=value))
    assert isinstance(got, RetryAt)
    assert got.retry_after is None and 1 <= got.delay <= 2


def test_a_retry_after_past_the_budget_ends_it() -> None:
    got = outcome(answer(503, b"maintenance", retry_after="99999999999999999999"))
    assert got == Dead(
        "HTTP 503: maintenance",
        503,
        "gave up: next attempt would pass max_age 3600s",
        True,
    )


def test_retry_after_on_a_final_status_changes_nothing() -> None:
    assert isinstance(outcome(answer(404, retry_after="5")), Dead)
    assert outcome(answer(200, retry_after="5")) == Succeeded(200)


def test_max_attempts_ends_the_budget() -> None:
    assert isinstance(outcome(answer(500), attempts=4), RetryAt)
    got = outcome(answer(500, b"down"), attempts=5)
    assert got == Dead("HTTP 500: down", 500, "gave up after 5 attempts", True)
    assert got.summary == "HTTP 500: down (gave up after 5 attempts)"
    timed_out = outcome(SendTimeout(TimeoutPhase.OVERALL, 10), attempts=5)
    assert timed_out == Dead(
        "no complete answer within 10s", None, "gave up after 5 attempts", True
    )


def test_max_age_ends_the_budget() -> None:
    assert isinstance(outcome(answer(500), budget_start=NOW - 3000), RetryAt)
    got = outcome(answer(500), budget_start=NOW - 3599)
    assert isinstance(got, Dead) and "max_age" in got.reason and got.destination_failure


SECRET = "sk_live_0123456789abcdef"


def mask_secret(text: str) -> str:
    return text.replace(SECRET, "***")


def texts(got: Succeeded | RetryAt | Dead) -> list[str]:
    return [got.error, got.reason] if isinstance(got, Dead) else [getattr(got, "error", "")]


@pytest.mark.parametrize("position", [0, 50, ERROR_CHARS - 10, ERROR_CHARS - 1, 4000])
def test_the_mask_sees_the_whole_secret_before_any_cut(position: int) -> None:
    """A secret across the 200-character cut must not leave half of itself behind."""
    body = ("a" * position + SECRET + " rest").encode()
    for status in (401, 503):
        got = outcome(answer(status, body), mask=mask_secret)
        assert all(SECRET[:8] not in text for text in texts(got))


@given(
    st.integers(100, 999),
    st.text(max_size=300),
    st.integers(0, 300),
    st.sampled_from([None, "3", "soon", "Thu, 01 Jan 2099 00:00:00 GMT"]),
    st.integers(1, 8),
)
def test_no_secret_leaves_classify(
    status: int, text: str, position: int, retry_after: str | None, attempts: int
) -> None:
    body = (text[:position] + SECRET + text[position:]).encode()
    headers = {"retry-after": retry_after} if retry_after else {}
    got = outcome(Answer(status, headers, body), attempts=attempts, mask=mask_secret)
    kind = (
        AttemptOutcome.SUCCEEDED
        if 200 <= status <= 299
        else AttemptOutcome.RETRY
        if status in (408, 425, 429) or 500 <= status <= 599
        else AttemptOutcome.DEAD
    )
    assert got.kind == kind or (kind is AttemptOutcome.RETRY and isinstance(got, Dead))
    assert got.destination_failure == (kind is AttemptOutcome.RETRY)
    assert all(SECRET not in t and SECRET[:8] not in t for t in texts(got))
    for failure in (ConnectionReset(f"reset {SECRET}"), RenderError(f"bad {SECRET}")):
        assert all(SECRET not in t for t in texts(outcome(failure, mask=mask_secret)))
