"""`relay serve --role`: a receiver process and a worker process share one queue."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from .process import Server
from .sink import Sink
from .test_e2e import write


def test_a_receiver_and_a_worker_split_the_work(
    tmp_path: Path, bounced: dict[str, Any], queue_url: str
) -> None:
    with Sink() as sink:
        cfg = write(tmp_path, sink.url, url=queue_url)
        worker = Server(tmp_path, cfg, extra=("--role", "worker"))
        receiver = Server(tmp_path, cfg, extra=("--role", "receiver"))
        try:
            for i in range(40):
                assert receiver.post(dict(bounced, user_id=str(i))).status_code == 200
            sink.wait_for(40)
            # The worker has no webhook path: a POST there is refused, not queued.
            refused = httpx.post(f"{worker.url}/webhooks/pushwoosh", json=bounced, timeout=5)
            assert refused.status_code == 404
            assert refused.headers["content-type"].startswith("application/json")
            # Health, readiness and metrics stay on both.
            for server in (worker, receiver):
                assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200
                assert httpx.get(f"{server.url}/metrics", timeout=5).status_code == 200
        finally:
            assert receiver.stop() == 0
            assert worker.stop() == 0
    users = sorted(json.loads(r.body)["user_id"] for r in sink.received)
    assert users == sorted(str(i) for i in range(40))  # each delivered exactly once
    rx, wk = receiver.lines(), worker.lines()
    assert len([x for x in rx if x["event"] == "event.received"]) == 40
    assert not [x for x in rx if x["event"].startswith("delivery.")]
    assert len([x for x in wk if x["event"] == "delivery.succeeded"]) == 40
    assert not [x for x in wk if x["event"] == "event.received"]
    assert [x["delivering"] for x in rx if x["event"] == "relay.started"] == [False]
    assert [x["delivering"] for x in wk if x["event"] == "relay.started"] == [True]


def test_an_idle_worker_on_sqlite_hears_of_another_process_events_at_once(
    tmp_path: Path, bounced: dict[str, Any]
) -> None:
    """No NOTIFY on SQLite: the worker notices the receiver's commits, not its next poll."""
    with Sink() as sink:
        cfg = tmp_path / "relay.yaml"
        cfg.write_text(f"""
server: {{dedupe_window: 0, shutdown_grace: 2s}}
queue: {{url: "sqlite:///{tmp_path}/q.db", poll_interval: 60s}}
destinations:
  crm: {{type: http, url: "{sink.url}"}}
routes:
  - {{name: all, to: [crm]}}
""")
        worker = Server(tmp_path, cfg, extra=("--role", "worker"))
        receiver = Server(tmp_path, cfg, extra=("--role", "receiver"))
        try:
            time.sleep(1.0)  # the worker has found nothing and sleeps its 60 s poll
            started = time.monotonic()
            for i in range(5):
                assert receiver.post(dict(bounced, user_id=str(i))).status_code == 200
            sink.wait_for(5, timeout=10)
            assert time.monotonic() - started < 5  # far below the 60 s poll
        finally:
            assert receiver.stop() == 0
            assert worker.stop() == 0


def test_an_unknown_role_is_a_one_line_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "relay", "serve", "--role", "both"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "--role" in out.stderr and "Traceback" not in out.stderr
