"""SIGKILL with groups open loses no event and puts none in two grouped deliveries."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from .process import Server, relay, wait
from .sink import Answer, Sink
from .store import store


def write(tmp_path: Path, url: str) -> Path:
    cfg = tmp_path / "relay.yaml"
    cfg.write_text(f"""
server: {{dedupe_window: 0}}
queue: {{url: "sqlite:///{tmp_path}/q.db", poll_interval: 100ms, heartbeat: 200ms}}
destinations:
  crm: {{type: http, url: "{url}", timeout: 30s, concurrency: 4}}
routes:
  - name: digest
    when: {{event_name: Email Bounced}}
    to: [crm]
    group: {{by: [campaign_id], wait: 1s, interval: 1s, max_events: 7}}
""")
    return cfg


def test_sigkill_with_groups_open(tmp_path: Path, bounced: dict[str, Any]) -> None:
    with Sink() as sink:
        sink.default = Answer(200, delay=30)  # the first process never finishes a send
        cfg = write(tmp_path, sink.url)
        first = Server(tmp_path, cfg)
        sent: list[str] = []

        def post(batch: int) -> None:
            events = [
                dict(bounced, hwid=f"u{batch}-{i}@x.org", campaign_id=batch % 3) for i in range(25)
            ]
            assert first.post(events).status_code == 200
            sent.extend(e["hwid"] for e in events)

        post(0)
        post(1)
        sink.wait_for(2)  # groups flushed into deliveries that are now in flight
        post(2)
        post(3)  # these wait for the interval: their groups are open
        first.kill()
        with store(tmp_path / "q.db") as stored:
            open_items = sum(d.waiting for d in stored.deliveries())
            sink.default = Answer(200)
            second = Server(tmp_path, cfg)
            try:
                wait(lambda: set(stored.states()) == {"succeeded"}, timeout=20)
            finally:
                assert second.stop() == 0
    by_delivery: dict[str, set[str]] = defaultdict(set)
    for r in sink.received:
        body = json.loads(r.body)
        assert body["count"] == len(body["events"]) <= 7
        by_delivery[r.headers["idempotency-key"]] |= {e["hwid"] for e in body["events"]}
    seen: dict[str, str] = {}
    for delivery, hwids in by_delivery.items():
        for hwid in hwids:
            assert hwid not in seen, f"{hwid} in two grouped deliveries"
            seen[hwid] = delivery
    assert sorted(seen) == sorted(sent)
    assert open_items > 0


def test_route_and_check_understand_groups(tmp_path: Path) -> None:
    cfg = tmp_path / "relay.yaml"
    cfg.write_text("""
destinations:
  log: {type: log}
routes:
  - name: digest
    to: [log]
    group: {by: [campaign_id, campaing], wait: 5m, interval: 30s}
""")
    checked = relay("check", "--config", str(cfg), cwd=tmp_path)
    assert checked.returncode == 0
    assert "routes[0].group.by[1]" in checked.stderr and "campaign_id" in checked.stderr
    event = Path(__file__).parent.parent / "examples" / "email-bounced.json"
    routed = json.loads(relay("route", "--config", str(cfg), str(event), cwd=tmp_path).stdout)
    group = routed["deliveries"][0]["group"]
    assert group["key"] == {"campaign_id": 961234, "campaing": None}
    cfg.write_text(cfg.read_text().replace("wait: 5m", "wait: 0"))
    bad = relay("check", "--config", str(cfg), cwd=tmp_path)
    assert bad.returncode == 1 and "relay.yaml:7: routes[0].group.wait" in bad.stderr
    cfg.write_text(cfg.read_text().replace("wait: 0", "wait: -5s"))
    assert (
        "relay.yaml:7: routes[0].group.wait"
        in relay("check", "--config", str(cfg), cwd=tmp_path).stderr
    )
