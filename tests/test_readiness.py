"""`/readyz` means "a write would succeed now", and agrees with what the receiver answers.

A real full disk (a small tmpfs, as root), and a real PostgreSQL behind a proxy
whose link is cut: the database goes silent, as in a network partition.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from . import pg
from .process import Server, wait
from .sink import Sink
from .tcpproxy import Proxy


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MB tmpfs of our own, so filling it harms nothing else."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the full-disk test runs as root in CI)")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem refuses another byte."""
    filler = directory / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as f:
        chunk = b"\0" * 65536
        while True:
            f.write(chunk)
            f.flush()
    with contextlib.suppress(OSError), filler.open("ab") as f:  # the last partial block
        while True:
            f.write(b"\0")
            f.flush()
    return filler


def config(tmp_path: Path, queue_url: str, sink_url: str) -> Path:
    cfg = tmp_path / "relay.yaml"
    cfg.write_text(f"""
server: {{dedupe_window: 0}}
queue: {{url: "{queue_url}", poll_interval: 100ms}}
destinations:
  crm: {{type: http, url: "{sink_url}"}}
routes:
  - {{name: all, to: [crm]}}
""")
    return cfg


def test_a_full_disk_is_503_on_both_and_nothing_acknowledged_is_lost(
    tmp_path: Path, small_disk: Path, bounced: dict[str, Any]
) -> None:
    with Sink() as sink:
        cfg = config(tmp_path, f"sqlite:///{small_disk}/q.db", sink.url)
        server = Server(tmp_path, cfg)
        try:
            accepted = [server.post(dict(bounced, user_id=f"before-{i}")) for i in range(5)]
            assert all(r.status_code == 200 for r in accepted)
            sink.wait_for(5)
            assert httpx.get(server.url + "/readyz").status_code == 200

            filler = fill(small_disk)
            answers = []
            for i in range(10):  # never alternating: both say 503 every time
                r = server.post(dict(bounced, user_id=f"during-{i}"))
                ready = httpx.get(server.url + "/readyz", timeout=5)
                answers.append((r.status_code, ready.status_code))
                assert "error" in r.json() and ready.json()["status"] == "unavailable"
            assert answers == [(503, 503)] * 10
            assert "disk" in ready.json()["error"]

            filler.unlink()
            wait(lambda: httpx.get(server.url + "/readyz").status_code == 200, timeout=10)
            after = server.post(dict(bounced, user_id="after"))
            assert after.status_code == 200
            sink.wait_for(6)
        finally:
            assert server.stop() == 0
    delivered = sorted(r.json()["user_id"] for r in sink.received)
    assert delivered == sorted([f"before-{i}" for i in range(5)] + ["after"])


@pytest.mark.postgres
async def test_readyz_answers_quickly_while_postgres_is_silent(
    tmp_path: Path, bounced: dict[str, Any]
) -> None:
    async with pg.fresh_schema() as url:
        proxied = url.replace("127.0.0.1:5432", "127.0.0.1:{port}")
        with Proxy(("127.0.0.1", 5432)) as proxy, Sink() as sink:
            cfg = config(tmp_path, proxied.format(port=proxy.port), sink.url)
            server = Server(tmp_path, cfg)
            try:
                assert server.post(bounced).status_code == 200
                assert httpx.get(server.url + "/readyz").status_code == 200

                proxy.cut()
                for _ in range(3):
                    started = time.monotonic()
                    ready = httpx.get(server.url + "/readyz", timeout=30)
                    assert ready.status_code == 503
                    assert time.monotonic() - started < 3.0
                started = time.monotonic()
                refused = server.post(dict(bounced, user_id="during"))
                assert refused.status_code == 503
                assert time.monotonic() - started < 8.0  # bounded, never a hang

                proxy.restore()
                wait(lambda: httpx.get(server.url + "/readyz").status_code == 200, timeout=20)
                assert server.post(dict(bounced, user_id="after")).status_code == 200
                sink.wait_for(2, timeout=15)
            finally:
                assert server.stop() == 0
