"""Grouped deliveries (digests and batches) with real time, a real queue and a real sink."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from .helpers import config_text, eventually, running_app
from .sink import Sink


def grouped(
    db: Path | str,
    sink: Sink,
    *,
    by: str = "[campaign_id]",
    wait: str = "1s",
    interval: str = "3s",
    max_events: int = 500,
    dest: str = "",
) -> str:
    return config_text(
        db,
        (
            dest
            or f"""
        destinations:
          crm: {{type: http, url: "{sink.url}/batch"}}
        """
        )
        + f"""
        routes:
          - name: bounce-digest
            when: {{event_name: Email Bounced}}
            to: [{"alerts" if dest else "crm"}]
            group: {{by: {by}, wait: {wait}, interval: {interval}, max_events: {max_events}}}
        """,
    )


def bounce(bounced: dict[str, Any], i: int, campaign: int = 1) -> dict[str, Any]:
    return dict(bounced, hwid=f"user{i}@example.org", campaign_id=campaign, user_id=str(i))


async def test_wait_then_interval_then_split(
    queue_url: str, sink: Sink, bounced: dict[str, Any]
) -> None:
    db = queue_url
    async with running_app(grouped(db, sink, max_events=3)) as client:
        first = time.time()
        r = await client.post("/webhooks/pushwoosh", json=[bounce(bounced, i) for i in range(7)])
        assert r.status_code == 200 and r.json()["accepted"] == 7
        got = await eventually(lambda: len(sink.received) >= 3 and sink.received)
        # Not before `wait`, and within a second after it.
        assert all(1.0 <= g.at - first <= 2.0 for g in got)
        bodies = [g.json() for g in got]
        assert sorted(b["count"] for b in bodies) == [1, 3, 3]
        assert all(b["group"] == {"campaign_id": 1} for b in bodies)
        hwids = [e["hwid"] for b in bodies for e in b["events"]]
        assert sorted(hwids) == sorted(f"user{i}@example.org" for i in range(7))

        # A later event of the same group waits for `interval` after the last flush.
        flushed_at = max(g.at for g in got)
        await client.post("/webhooks/pushwoosh", json=bounce(bounced, 99))
        later = await eventually(lambda: len(sink.received) >= 4 and sink.received[3])
        assert later.at - flushed_at >= 2.9
        assert later.json()["count"] == 1


async def test_groups_by_key_and_defaults_for_slack(
    queue_url: str, sink: Sink, bounced: dict[str, Any]
) -> None:
    db = queue_url
    dest = f"""
        destinations:
          alerts: {{type: slack, url: "{sink.url}/services/T/B/X", rate_limit: 50/s}}
        """
    events = [bounce(bounced, i, campaign=100 + i % 2) for i in range(30)]
    events[0]["hwid"] = "<!channel>@evil.example"
    with capture_logs() as logs:
        async with running_app(grouped(db, sink, dest=dest)) as client:
            await client.post("/webhooks/pushwoosh", json=events)
            got = await eventually(lambda: len(sink.received) >= 2 and sink.received)
            await eventually(
                lambda: sum(1 for e in logs if e["event"] == "delivery.succeeded") == 2
            )
    texts = [json.dumps(g.json()) for g in got]
    assert all("15 \\u00d7 Email Bounced" in t for t in texts), texts  # 15 x Email Bounced
    assert any("campaign_id" in t and "100" in t for t in texts)
    assert any("and 5 more" in t for t in texts)
    assert all("<!channel>" not in t for t in texts)
    ok = [e for e in logs if e["event"] == "delivery.succeeded"]
    assert sorted(e["group_key"]["campaign_id"] for e in ok) == [100, 101]
    assert all(e["events"] == 15 for e in ok)


async def test_templates_see_events_and_group(
    queue_url: str, sink: Sink, bounced: dict[str, Any]
) -> None:
    db = queue_url
    dest = f"""
        destinations:
          alerts:
            type: http
            url: "{sink.url}/hubspot"
            body:
              inputs: "{{{{ events | map(attribute='hwid') | map('lower') | list }}}}"
              campaign: "{{{{ group.key.campaign_id }}}}"
              count: "{{{{ group.count }}}}"
              first: "{{{{ event.user_id }}}}"
        """
    async with running_app(grouped(db, sink, dest=dest, wait="500ms")) as client:
        await client.post("/webhooks/pushwoosh", json=[bounce(bounced, i) for i in range(3)])
        got = sink.wait_for(1)
    assert got[0].json() == {
        "inputs": [f"user{i}@example.org" for i in range(3)],
        "campaign": 1,
        "count": 3,
        "first": "0",
    }


async def test_metrics_count_open_groups(
    queue_url: str, sink: Sink, bounced: dict[str, Any]
) -> None:
    db = queue_url
    async with running_app(grouped(db, sink, wait="30s")) as client:
        both = [bounce(bounced, 1, 5), bounce(bounced, 2, 6)]
        await client.post("/webhooks/pushwoosh", json=both)
        text = (await client.get("/metrics")).text
    assert 'relay_open_groups{destination="crm"} 2.0' in text


async def test_hubspot_style_batch_body_from_the_readme(
    queue_url: str, sink: Sink, bounced: dict[str, Any]
) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    body = readme.split("    body: >-\n", 1)[1].split("\nroutes:", 1)[0]
    text = config_text(
        queue_url,
        f"""
routes:
  - name: batches
    to: [alerts]
    group: {{wait: 300ms, interval: 1s, max_events: 100}}
destinations:
  alerts:
    type: http
    url: "{sink.url}/batch/upsert"
    headers: {{Content-Type: application/json}}
    body: >-
{body}
""",
    )
    async with running_app(text) as client:
        events = [bounce(bounced, i) for i in range(3)]
        events[1]["hwid"] = 'quote"and<tag>@x.org'
        await client.post("/webhooks/pushwoosh", json=events)
        got = sink.wait_for(1)
    assert got[0].headers["content-type"] == "application/json"
    assert got[0].json() == {
        "inputs": [
            {
                "idProperty": "email",
                "id": e["hwid"],
                "properties": {"last_email_event": "Email Bounced"},
            }
            for e in events
        ]
    }
