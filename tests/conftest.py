"""Shared fixtures: sample events and config files written to a temp dir."""

from __future__ import annotations

import contextlib
import json
import logging
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from relay.queue import Queue, open_queue

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def load_example(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text())


@pytest.fixture
def bounced() -> dict[str, Any]:
    return load_example("email-bounced.json")  # type: ignore[no-any-return]


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write a dedented config text to tmp_path/relay.yaml and return its path."""

    def write(text: str, name: str = "relay.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write


@pytest.fixture
def sink() -> Any:
    from .sink import Sink

    with Sink() as s:
        yield s


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Commands run in-process (`relay.cli.main`) set up logging for a process; undo it,
    so the next test sees structlog's defaults (every level, for capture_logs)."""
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers[:] = []


URL_KEY = pytest.StashKey[str]()
OpenInstance = Callable[[], Awaitable[Queue]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Queue]:
    """An opened queue (joined, as a serving relay's) on a fresh store of each backend."""
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'queue.db'}"
        else:
            from . import pg

            url = await stack.enter_async_context(pg.fresh_schema())
        request.node.stash[URL_KEY] = url
        q = open_queue(url)
        await q.open()
        await q.join()
        stack.push_async_callback(q.close)
        yield q


@pytest.fixture
async def instances(queue: Queue, request: pytest.FixtureRequest) -> AsyncIterator[OpenInstance]:
    """Open another instance (another relay process, as far as the store can tell)."""
    url = request.node.stash[URL_KEY]
    opened: list[Queue] = []

    async def open_instance() -> Queue:
        q = open_queue(url)
        await q.open()
        await q.join()
        opened.append(q)
        return q

    yield open_instance
    for q in opened:
        await q.close()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL schema (for the PostgreSQL-only tests)."""
    from . import pg

    async with pg.fresh_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A fresh queue store of each backend, as the URL a config names."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'queue.db'}"
        return
    from . import pg

    async with pg.fresh_schema() as url:
        yield url
