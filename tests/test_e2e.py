"""The installed relay run from outside: SIGKILL and restart, dlq while serving, SIGTERM."""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from .process import ROOT, Server, relay, wait
from .sink import Answer, Sink
from .store import store


def write(
    tmp_path: Path,
    sink_url: str,
    *,
    concurrency: int = 4,
    timeout: str = "30s",
    retry: str = "{max_attempts: 5, initial_delay: 200ms, max_delay: 500ms}",
    url: str | None = None,
) -> Path:
    cfg = tmp_path / "relay.yaml"
    url = url or f"sqlite:///{tmp_path}/q.db"
    cfg.write_text(f"""
server: {{dedupe_window: 0, shutdown_grace: 2s}}
queue: {{url: "{url}", poll_interval: 200ms, heartbeat: 200ms}}
destinations:
  crm: {{type: http, url: "{sink_url}", timeout: {timeout}, concurrency: {concurrency},
         retry: {retry}}}
routes:
  - {{name: all, to: [crm]}}
""")
    return cfg


def test_sigkill_with_deliveries_pending_loses_nothing(
    tmp_path: Path, bounced: dict[str, Any], queue_url: str
) -> None:
    with Sink() as sink, store(queue_url) as stored:
        sink.default = Answer(200, delay=30)  # first process: every attempt hangs in flight
        cfg = write(tmp_path, sink.url, concurrency=4, url=queue_url)
        first = Server(tmp_path, cfg)
        ids = []
        for i in range(20):
            r = first.post(dict(bounced, user_id=str(i)))
            assert r.status_code == 200
            ids += r.json()["ids"]
        sink.wait_for(4)  # 4 in flight, 16 waiting
        first.kill()  # SIGKILL: no chance to clean up
        assert stored.states() == ["pending"] * 20

        sink.default = Answer(200)
        second = Server(tmp_path, cfg)
        try:
            wait(lambda: stored.states() == ["succeeded"] * 20)
        finally:
            assert second.stop() == 0
        assert {e.id for e in stored.events()} == set(ids)
    delivered = {json.loads(r.body)["user_id"] for r in sink.received if r.body}
    assert delivered == {str(i) for i in range(20)}


def test_dlq_list_and_replay_while_serving(
    tmp_path: Path, bounced: dict[str, Any], queue_url: str
) -> None:
    with Sink() as sink, store(queue_url) as stored:
        sink.script = [Answer(404, body=b"gone")]
        cfg = write(tmp_path, sink.url, url=queue_url)
        server = Server(tmp_path, cfg)
        try:
            assert server.post(bounced).status_code == 200
            wait(lambda: stored.states() == ["dead"])
            listed = relay("dlq", "list", "--config", str(cfg), cwd=tmp_path)
            assert listed.returncode == 0, listed.stderr
            assert "crm" in listed.stdout and "Email Bounced" in listed.stdout
            assert "HTTP 404" in listed.stdout
            as_json = relay(
                "dlq", "list", "--json", "--destination", "crm", "--config", str(cfg), cwd=tmp_path
            )
            letter = json.loads(as_json.stdout.splitlines()[0])
            assert letter["attempts"] == 1 and letter["event_name"] == "Email Bounced"
            none = relay(
                "dlq", "list", "--destination", "other", "--config", str(cfg), cwd=tmp_path
            )
            assert "no dead deliveries" in none.stdout
            replayed = relay(
                "dlq", "replay", "--id", letter["id"], "--config", str(cfg), cwd=tmp_path
            )
            assert replayed.returncode == 0 and "replayed 1" in replayed.stdout
            start = time.time()
            sink.wait_for(2, timeout=5)
            assert time.time() - start < 5
            wait(lambda: stored.states() == ["succeeded"])
            assert relay(
                "dlq", "replay", "--all", "--config", str(cfg), cwd=tmp_path
            ).stdout.startswith("replayed 0")
        finally:
            assert server.stop() == 0


def test_dlq_errors_are_one_line(tmp_path: Path) -> None:
    bad = relay("dlq", "replay", cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    cfg = tmp_path / "relay.yaml"
    cfg.write_text("queue: {url: 'sqlite:////proc/no/such/dir/q.db'}\n")
    broken = relay("dlq", "list", "--config", str(cfg), cwd=tmp_path)
    assert broken.returncode == 1 and "Traceback" not in broken.stderr
    assert len(broken.stderr.strip().splitlines()) == 1


def test_sigterm_exits_zero_leaving_the_rest_queued(
    tmp_path: Path, bounced: dict[str, Any]
) -> None:
    with Sink() as sink:
        sink.default = Answer(200, delay=20)  # hangs past shutdown_grace (2s)
        cfg = write(tmp_path, sink.url, concurrency=1)
        server = Server(tmp_path, cfg)
        for i in range(3):
            assert server.post(dict(bounced, user_id=str(i))).status_code == 200
        sink.wait_for(1)
        start = time.time()
        assert server.stop(signal.SIGTERM) == 0
        assert time.time() - start < 8
        with store(tmp_path / "q.db") as stored:
            assert stored.states() == ["pending"] * 3
            # ... and none is still leased: all three are due again now.
            assert len(stored.call(lambda: stored.queue.lease("crm", 10, 30, time.time()))) == 3


def test_quickstart_shipped_config(tmp_path: Path) -> None:
    """README's first command: the shipped config, no environment, a sample bounce posted."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    server = Server(tmp_path)
    try:
        body = (ROOT / "examples" / "email-bounced.json").read_bytes()
        r = server.post(body, headers={"Content-Type": "text/plain"})
        assert r.status_code == 200 and r.json()["accepted"] == 1
        event_id = r.json()["ids"][0]
        wait(lambda: any(line.get("event") == "delivery.succeeded" for line in server.lines()))
    finally:
        assert server.stop() == 0
    lines = server.lines()
    received = [x for x in lines if x["event"] == "event.received"]
    assert received[0]["event_id"] == event_id and received[0]["event_name"] == "Email Bounced"
    assert "bounces-to-slack" in received[0]["routes"]
    logged = [x for x in lines if x["event"] == "delivery.logged"]
    assert logged[0]["request"]["body"]["event_name"] == "Email Bounced"
    assert (tmp_path / "data" / "relay.db").exists()
    assert all({"event", "level", "timestamp"} <= set(x) for x in lines), lines


def test_two_worker_processes_share_port_and_queue(tmp_path: Path, bounced: dict[str, Any]) -> None:
    with Sink() as sink:
        cfg = write(tmp_path, sink.url, concurrency=4)
        server = Server(tmp_path, cfg, extra=("--workers", "2"))
        try:
            for i in range(60):
                assert server.post(dict(bounced, user_id=str(i))).status_code == 200
            sink.wait_for(60)
            time.sleep(0.5)
        finally:
            assert server.stop() == 0
    users = sorted(json.loads(r.body)["user_id"] for r in sink.received)
    assert users == sorted(str(i) for i in range(60))  # each delivered exactly once
    lines = server.lines()
    # Two processes share stdout: every line must still be whole JSON.
    assert [x for x in lines if x["event"] == "<not json>"] == []
    started = [x for x in lines if x["event"] == "relay.started"]
    assert len(started) == 2
    assert "Traceback" not in server.output()


def test_a_killed_worker_process_is_replaced(tmp_path: Path, bounced: dict[str, Any]) -> None:
    import os
    import subprocess

    with Sink() as sink:
        cfg = write(tmp_path, sink.url)
        server = Server(tmp_path, cfg, extra=("--workers", "2"))
        try:
            wait(lambda: len([x for x in server.lines() if x["event"] == "relay.started"]) == 2)
            children = subprocess.run(
                ["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True
            ).stdout.split()
            assert len(children) == 2
            os.kill(int(children[0]), signal.SIGKILL)
            wait(lambda: any(x["event"] == "relay.worker_died" for x in server.lines()))
            wait(lambda: len([x for x in server.lines() if x["event"] == "relay.started"]) == 3)
            for i in range(10):
                assert server.post(dict(bounced, user_id=str(i))).status_code == 200
            sink.wait_for(10)
        finally:
            assert server.stop() == 0
