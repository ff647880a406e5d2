"""`relay events` and `relay forget` as an operator runs them, next to a running relay.

The README's worked example, on both backends: a CRM answers 400, the dead
event is found with `events list --state dead`, read with `events show`, the CRM
is fixed, and the event is sent again with `events replay`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .process import Server, relay, wait
from .sink import Answer, Sink
from .store import store

SECRET = "crm-token-0123456789"


def write(tmp_path: Path, sink_url: str, queue_url: str) -> Path:
    cfg = tmp_path / "relay.yaml"
    cfg.write_text(f"""
server: {{dedupe_window: 0, shutdown_grace: 2s}}
queue: {{url: "{queue_url}", poll_interval: 100ms, heartbeat: 200ms}}
logging: {{mask_hwid: true}}
destinations:
  crm:
    type: http
    url: "{sink_url}/hooks"
    headers: {{Authorization: "Bearer {SECRET}"}}
    retry: {{max_attempts: 3, initial_delay: 100ms, max_delay: 200ms}}
routes:
  - {{name: engagement-to-crm, to: [crm]}}
""")
    return cfg


def run(cfg: Path, *args: str) -> Any:
    done = relay(*args, "--config", str(cfg), cwd=cfg.parent)
    assert "Traceback" not in done.stderr
    return done


def test_find_read_fix_and_replay_a_dead_event(
    tmp_path: Path, bounced: dict[str, Any], queue_url: str
) -> None:
    with Sink() as sink, store(queue_url) as stored:
        echo = f"invalid token Bearer {SECRET} for contact".encode()
        sink.default = Answer(400, body=echo)
        cfg = write(tmp_path, sink.url, queue_url)
        server = Server(tmp_path, cfg)
        try:
            victim = dict(bounced, hwid="Jane.Doe@example.com")
            [event_id] = server.post(victim).json()["ids"]
            server.post(dict(bounced, hwid="other@example.com"))
            wait(lambda: stored.states().count("dead") == 2)

            listed = run(cfg, "events", "list", "--state", "dead", "--hwid", "jane.doe@EXAMPLE.com")
            assert listed.returncode == 0
            assert event_id in listed.stdout and "crm: dead (1)" in listed.stdout
            assert "Jane.Doe@example.com" not in listed.stdout  # masked as in logs
            assert "Ja***@example.com" in listed.stdout
            page = json.loads(
                run(cfg, "events", "list", "--json", "--state", "dead", "--unmask").stdout
            )
            assert {e["hwid"] for e in page["events"]} == {
                "Jane.Doe@example.com",
                "other@example.com",
            }
            assert page["next"] is None

            shown = json.loads(run(cfg, "events", "show", event_id, "--json").stdout)
            assert shown["event"]["id"] == event_id
            assert shown["event"]["body"]["hwid"] == "Ja***@example.com"
            assert shown["event"]["body"]["campaign_id"] == bounced["campaign_id"]
            [delivery] = shown["deliveries"]
            assert (delivery["destination"], delivery["route"], delivery["state"]) == (
                "crm",
                "engagement-to-crm",
                "dead",
            )
            [attempt] = delivery["attempts"]
            assert (attempt["n"], attempt["status_code"], attempt["outcome"]) == (1, 400, "dead")
            assert attempt["response"] == "invalid token *** for contact"
            assert SECRET not in json.dumps(shown)
            text = run(cfg, "events", "show", event_id).stdout
            assert "HTTP 400" in text and "answer: invalid token *** for contact" in text

            sink.default = Answer(200)  # the CRM is fixed
            resent = run(cfg, "events", "replay", event_id)
            assert resent.returncode == 0 and "1 new deliveries" in resent.stdout
            wait(lambda: "succeeded" in stored.states())
            after = json.loads(run(cfg, "events", "show", event_id, "--json").stdout)
            assert sorted(d["state"] for d in after["deliveries"]) == ["dead", "succeeded"]
            keys = [
                r.headers["idempotency-key"]
                for r in sink.received
                if r.json()["hwid"] == "Jane.Doe@example.com"
            ]
            # The resend is a new delivery: a new Idempotency-Key.
            assert len(keys) == len(set(keys)) == 2
        finally:
            assert server.stop() == 0


def test_forget_while_serving(tmp_path: Path, bounced: dict[str, Any], queue_url: str) -> None:
    with Sink() as sink, store(queue_url) as stored:
        cfg = write(tmp_path, sink.url, queue_url)
        server = Server(tmp_path, cfg)
        try:
            for _ in range(3):
                server.post(dict(bounced, hwid="Forget.Me@example.com"))
            server.post(dict(bounced, hwid="keep@example.com"))
            wait(lambda: stored.states() == ["succeeded"] * 4)

            dry = run(cfg, "forget", "forget.me@example.com")
            assert dry.returncode == 0
            assert "would erase: 3 events, 3 deliveries, 3 attempts" in dry.stdout
            assert len(stored.events(hwid="forget.me@example.com")) == 3

            done = run(cfg, "forget", "FORGET.ME@example.com", "--yes")
            assert done.returncode == 0 and done.stdout.startswith("erased: 3 events")
            assert stored.events(hwid="forget.me@example.com") == []
            assert len(stored.events()) == 1
        finally:
            assert server.stop() == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("events", "show", "no-such-id"), "no stored event 'no-such-id'"),
        (("events", "replay", "no-such-id"), "no stored event 'no-such-id'"),
        (("events", "list", "--state", "exploded"), "unknown state 'exploded'"),
        (("events", "list", "--since", "yesterday-ish"), "expected a time like 1h"),
        (("events", "list", "--limit", "0"), "limit 0 is not in 1-500"),
        (("events", "list", "--limit", "99999999999999999999"), "is not in 1-500"),
        (("forget", "   "), "give the address to forget"),
    ],
)
def test_mistakes_are_one_line(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    cfg = tmp_path / "relay.yaml"
    cfg.write_text(f"queue: {{url: 'sqlite:///{tmp_path}/q.db'}}\n")
    done = run(cfg, *args)
    assert done.returncode in (1, 2)
    assert needle in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_an_empty_store_lists_nothing(tmp_path: Path) -> None:
    cfg = tmp_path / "relay.yaml"
    cfg.write_text(f"queue: {{url: 'sqlite:///{tmp_path}/q.db'}}\n")
    assert run(cfg, "events", "list").stdout.strip() == "no stored events match"
    assert json.loads(run(cfg, "events", "list", "--json").stdout) == {"events": [], "next": None}
    assert "would erase: 0 events" in run(cfg, "forget", "nobody@example.com").stdout
