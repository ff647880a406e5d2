"""The console's vendored and packaged files: the htmx we pinned, shipped with the wheel."""

from __future__ import annotations

import fnmatch
import hashlib
import tomllib

from relay.console.render import STATIC, TEMPLATES

from .conftest import ROOT

HTMX_VERSION = "2.0.11"
HTMX_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"


def test_htmx_is_the_pinned_release_with_its_licence() -> None:
    script = (STATIC / "htmx.min.js").read_bytes()
    assert hashlib.sha256(script).hexdigest() == HTMX_SHA256, "update VENDORED.md and this test"
    assert f'version:"{HTMX_VERSION}"'.encode() in script
    assert "Zero-Clause BSD" in (STATIC / "htmx.LICENSE").read_text()
    vendored = (STATIC / "VENDORED.md").read_text()
    assert HTMX_VERSION in vendored and HTMX_SHA256 in vendored


def test_templates_and_static_files_are_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["relay"]
    package = ROOT / "relay"
    files = [*TEMPLATES.iterdir(), *STATIC.iterdir()]
    assert len(files) > 10
    for path in files:
        relative = path.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative
