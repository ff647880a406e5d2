"""Shared fixtures: sample events and config files written to a temp dir."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A fresh queue store of each backend, as the URL a config names."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'queue.db'}"
        return
    from . import pg

    async with pg.fresh_schema() as url:
        yield url
