"""Retry schedule: exponential with jitter, bounded, Retry-After wins, budget ends it."""

from __future__ import annotations

import pytest

from relay.backoff import decide
from relay.settings import Retry
from relay.units import Duration

POLICY = Retry(
    max_attempts=6, max_age=Duration(3600), initial_delay=Duration(1), max_delay=Duration(20)
)


@pytest.mark.parametrize(
    ("attempt", "low", "high"), [(1, 1, 2), (2, 2, 3), (3, 4, 5), (4, 8, 9), (5, 16, 17)]
)
def test_exponential_with_jitter_within_bounds(attempt: int, low: float, high: float) -> None:
    delays = {decide(POLICY, attempt, 0, 0).delay for _ in range(50)}
    assert all(d is not None and low <= d <= min(high, 20) for d in delays)
    assert len(delays) > 1  # jittered


def test_never_beyond_max_delay() -> None:
    policy = Retry(
        max_attempts=100, max_age=Duration(10**6), initial_delay=Duration(1), max_delay=Duration(20)
    )
    assert all((decide(policy, n, 0, 0).delay or 0) <= 20 for n in range(1, 100))


def test_retry_after_wins_over_backoff() -> None:
    assert decide(POLICY, 1, 0, 0, retry_after=120).delay == 120


def test_gives_up_at_max_attempts() -> None:
    d = decide(POLICY, 6, 0, 0)
    assert d.delay is None and "6 attempts" in d.reason


def test_gives_up_past_max_age() -> None:
    d = decide(POLICY, 2, budget_start=0, now=3590, retry_after=60)
    assert d.delay is None and "max_age" in d.reason
    assert decide(POLICY, 2, budget_start=0, now=3000, retry_after=60).delay == 60
