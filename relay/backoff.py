"""When to try a failed delivery again, or whether to give up.

Pure. The delay grows exponentially from ``initial_delay`` with jitter (so a
recovering destination is not hit by every delivery at once), never beyond
``max_delay``; a ``Retry-After`` from the destination wins. Giving up happens
at ``max_attempts`` or when the next try would fall past ``max_age``.
"""

from __future__ import annotations

from dataclasses import dataclass

import tenacity

from .settings import Retry


@dataclass(frozen=True, slots=True)
class Decision:
    """Retry after ``delay`` seconds, or give up (``delay is None``) for ``reason``."""

    delay: float | None
    reason: str = ""


def _wait(policy: Retry, attempt: int) -> float:
    # tenacity computes multiplier * 2**(n-1) + uniform(0, jitter), capped at max.
    strategy = tenacity.wait_exponential_jitter(
        multiplier=policy.initial_delay, max=policy.max_delay, jitter=policy.initial_delay
    )
    state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    return float(strategy(state))


def decide(
    policy: Retry, attempts: int, budget_start: float, now: float, retry_after: float | None = None
) -> Decision:
    """What to do after the ``attempts``-th failed attempt."""
    if attempts >= policy.max_attempts:
        return Decision(None, f"gave up after {attempts} attempts")
    delay = retry_after if retry_after is not None else _wait(policy, attempts)
    if now + delay - budget_start > policy.max_age:
        return Decision(None, f"gave up: next attempt would pass max_age {policy.max_age:g}s")
    return Decision(delay)
