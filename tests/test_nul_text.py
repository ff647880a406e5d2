"""NUL characters from outside (an event's field, a destination's answer) on both queues.

JSON strings may hold U+0000 and a destination may answer any bytes; PostgreSQL's text
type refuses NUL. Such an event must be accepted and such an answer recorded, on either
backend, not answered 503 or retried for ever because its outcome cannot be written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from relay.model import search_fields, storable
from relay.outcome import Answer as Reply

from .process import Server, relay, wait
from .sink import Answer, Sink
from .test_e2e import write


def test_storable_text_has_no_nul() -> None:
    assert storable("a\x00b") == "a\ufffdb"
    assert storable("plain") == "plain"
    fields = search_fields({"hwid": "x\x00@y.com", "user_id": "\x00", "event_name": "E"})
    assert not any("\x00" in (v or "") for v in fields.values())
    assert Reply(500, {}, b"bad\x00thing").excerpt(100) == "bad\ufffdthing"


def test_nul_in_an_event_and_in_an_answer(
    tmp_path: Path, bounced: dict[str, Any], queue_url: str
) -> None:
    with Sink() as sink:
        sink.default = Answer(500, body=b"bad\x00thing")
        cfg = write(
            tmp_path,
            sink.url,
            url=queue_url,
            retry="{max_attempts: 2, initial_delay: 100ms, max_delay: 200ms}",
        )
        server = Server(tmp_path, cfg)
        try:
            odd = dict(bounced, hwid="a\x00b@example.com", user_id="u\x00")
            assert server.post(odd).status_code == 200
            assert server.post(dict(bounced, user_id="plain")).status_code == 200
            wait(lambda: len([x for x in server.lines() if x["event"] == "delivery.dead"]) == 2)
        finally:
            assert server.stop() == 0
    lines = server.lines()
    assert not [x for x in lines if x["event"] in ("delivery.record_failed", "queue.unavailable")]
    out = relay("dlq", "list", "--json", "--config", str(cfg), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    dead = [json.loads(line) for line in out.stdout.splitlines()]  # one object per line
    assert len(dead) == 2
    assert all("bad\ufffdthing" in d["last_error"] for d in dead)
    listed = relay("events", "list", "--json", "--config", str(cfg), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)["events"]) == 2
