"""Headless Chromium for the console's browser tests, driven by Playwright.

Playwright's own browser download is not used: the tests drive the system's
Chromium (``$RELAY_TEST_CHROMIUM``, default Debian's ``/usr/bin/chromium``). When
it or Playwright is missing the browser tests skip with the reason, unless
``RELAY_REQUIRE_BROWSER=1`` (CI sets it): then they fail, so a CI run cannot turn
green by skipping them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, NoReturn

import pytest

CHROMIUM = os.environ.get("RELAY_TEST_CHROMIUM", "/usr/bin/chromium")
REQUIRED = os.environ.get("RELAY_REQUIRE_BROWSER") == "1"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Screenshots and other artifacts of a run (git-ignored).
ARTIFACTS = Path(__file__).resolve().parent.parent / ".artifacts" / "console"


def unavailable(reason: str) -> NoReturn:
    if REQUIRED:
        pytest.fail(
            f"{reason} (RELAY_REQUIRE_BROWSER=1: browser tests may not be skipped)", pytrace=False
        )
    pytest.skip(reason)


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed: pip install -e '.[test]' installs it"
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return (
            f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set RELAY_TEST_CHROMIUM)"
        )
    return None


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
