"""Long CPU-bound work in slices, so that one large body cannot freeze the event loop.

The receiver's pure steps (walk, validate, route, encode, log) are generators
that ``yield`` between small units of work; they know nothing of asyncio.
:func:`finish` runs such a generator straight through (the CLI's dry run);
:func:`run_sliced` gives the event loop a turn whenever a slice has run for
:data:`SLICE` seconds, so ``/healthz`` and other requests wait for one slice,
not for a whole body. A thread would not help: the work is pure Python and
holds the GIL, and it would still compete with the loop for it.

Imports nothing from the relay, so pure modules can use it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from typing import TypeVar, cast

T = TypeVar("T")

#: Work that pauses with a bare ``yield`` and returns its result.
Steps = Generator[None, None, T]

#: The longest a slice runs before the event loop gets a turn, in seconds.
SLICE = 0.005


def finish(steps: Steps[T]) -> T:
    """Run ``steps`` to the end without pausing."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return cast(T, done.value)


async def run_sliced(steps: Steps[T], budget: float = SLICE) -> T:
    """Run ``steps`` on the event loop, letting other tasks run every ``budget`` seconds."""
    clock = time.perf_counter
    deadline = clock() + budget
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return cast(T, done.value)
        if clock() >= deadline:
            await asyncio.sleep(0)
            deadline = clock() + budget
