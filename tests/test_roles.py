"""`relay serve --role`: a receiver process and a worker process share one queue."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from .process import Server, wait
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


def test_workers_split_into_receivers_and_workers_unless_told(
    tmp_path: Path, bounced: dict[str, Any]
) -> None:
    with Sink() as sink:
        cfg = write(tmp_path, sink.url)
        for extra, delivering in (
            (("--workers", "2"), [False, True]),
            (("--workers", "3"), [False, False, True]),
            (("--workers", "2", "--role", "all"), [True, True]),
        ):
            sink.received.clear()
            server, count = Server(tmp_path, cfg, extra=extra), len(delivering)
            try:
                wait(lambda s=server, n=count: _started(s) == n)
                for i in range(20):
                    assert server.post(dict(bounced, user_id=str(i))).status_code == 200
                sink.wait_for(20)
                time.sleep(0.3)
                if delivering.count(True) == 1:  # the split worker serves on a loopback port
                    [own] = [
                        x for x in server.lines() if x["event"] == "relay.listening" and "role" in x
                    ]
                    assert own["host"] == "127.0.0.1" and own["role"] == "worker"
                    worker = f"http://127.0.0.1:{own['port']}"
                    assert httpx.get(f"{worker}/readyz", timeout=5).is_success
                    assert b"relay_deliveries" in httpx.get(f"{worker}/metrics", timeout=5).content
            finally:
                assert server.stop() == 0
            lines = server.lines()
            started = [x["delivering"] for x in lines if x["event"] == "relay.started"]
            assert sorted(started) == delivering, extra
            assert len(sink.received) == 20, extra  # each delivered once
            assert "Traceback" not in server.output()


def _started(server: Server) -> int:
    return len([x for x in server.lines() if x["event"] == "relay.started"])


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
