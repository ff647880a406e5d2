"""PostgreSQL for tests: each test gets a fresh schema of its own, dropped afterwards.

The server is ``$RELAY_TEST_POSTGRES_URL`` (default: the local ``test`` database).
When it does not answer, PostgreSQL tests are skipped with the reason, unless
``RELAY_REQUIRE_POSTGRES=1`` (CI sets it): then they fail, so a CI run can never
turn green by skipping the backend it is meant to check.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NoReturn
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest

POSTGRES_URL = os.environ.get(
    "RELAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRED = os.environ.get("RELAY_REQUIRE_POSTGRES") == "1"
PROBE_TIMEOUT = 3

# The answer of the first probe, reused: a dead server costs one timeout, not one per test.
_probed: dict[str, str | None] = {}


def unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it when PostgreSQL is required."""
    if REQUIRED:
        pytest.fail(
            f"{reason} (RELAY_REQUIRE_POSTGRES=1: PostgreSQL tests may not be skipped)",
            pytrace=False,
        )
    pytest.skip(reason)


async def _probe() -> str | None:
    """Why PostgreSQL cannot be used for tests, or None when it can."""
    if POSTGRES_URL not in _probed:
        try:
            import psycopg
        except ImportError:
            _probed[POSTGRES_URL] = "psycopg is not installed: pip install -e '.[test]' installs it"
            return _probed[POSTGRES_URL]
        try:
            conn = await psycopg.AsyncConnection.connect(
                POSTGRES_URL, connect_timeout=PROBE_TIMEOUT
            )
            await conn.close()
            _probed[POSTGRES_URL] = None
        except psycopg.Error as exc:
            reason = " ".join(str(exc).split())
            _probed[POSTGRES_URL] = (
                f"PostgreSQL at {_where(POSTGRES_URL)} does not answer "
                f"(set RELAY_TEST_POSTGRES_URL): {reason}"
            )
    return _probed[POSTGRES_URL]


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5432}{parts.path}"


def with_schema(url: str, schema: str) -> str:
    """``url`` with the relay's ``schema`` query parameter set."""
    parts = urlsplit(url)
    query = f"{parts.query}&" if parts.query else ""
    return urlunsplit(parts._replace(query=query + urlencode({"schema": schema})))


async def connect(schema: str | None = None) -> Any:
    """An autocommit connection to the test server, ``schema`` first on its search_path."""
    import psycopg

    options: dict[str, Any] = {"options": f"-c search_path={schema}"} if schema else {}
    return await psycopg.AsyncConnection.connect(
        POSTGRES_URL, autocommit=True, connect_timeout=PROBE_TIMEOUT, **options
    )


@asynccontextmanager
async def fresh_schema() -> AsyncIterator[str]:
    """A new empty schema on the test server; yields the queue URL that uses it."""
    reason = await _probe()
    if reason is not None:
        unavailable(reason)
    schema = f"relay_test_{uuid.uuid4().hex[:12]}"
    async with await connect() as conn:
        await conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_schema(POSTGRES_URL, schema)
    finally:
        async with await connect() as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def schema_of(url: str) -> str:
    """The schema a URL made by :func:`fresh_schema` uses."""
    return url.rsplit("schema=", 1)[1]
