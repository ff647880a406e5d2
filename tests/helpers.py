"""Helpers to run the real app in-process on a real queue."""

from __future__ import annotations

import asyncio
import inspect
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient

from relay.app import create_app
from relay.config import parse_config


def config_text(db: Path | str, body: str, *, server: str = "") -> str:
    """A config with a fast-polling queue plus ``body`` (destinations, routes).

    ``db`` is a SQLite file path or a queue URL (the ``queue_url`` fixture's).
    """
    url = db if isinstance(db, str) else f"sqlite:///{db}"
    return (
        f"server:\n  dedupe_window: 0\n{textwrap.indent(textwrap.dedent(server), '  ')}\n"
        f'queue:\n  url: "{url}"\n  poll_interval: 100ms\n' + textwrap.dedent(body)
    )


@asynccontextmanager
async def running_app(
    text: str, env: dict[str, str] | None = None
) -> AsyncIterator[AsyncTestClient[Any]]:
    config = parse_config(text, "relay.yaml", env or {})
    app = create_app(config)
    async with AsyncTestClient(app) as client:
        yield client


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    deadline = time.time() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"condition not met in {timeout}s: last value {value!r}")
        await asyncio.sleep(0.05)
