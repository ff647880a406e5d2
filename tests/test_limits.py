"""Per-destination rate limits and concurrency, and the metrics that show them."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from .helpers import config_text, eventually, running_app
from .sink import Answer, Sink
from .store import deliveries_of


async def test_rate_limit_spaces_requests(
    tmp_path: Path, sink: Sink, bounced: dict[str, Any]
) -> None:
    text = config_text(
        tmp_path / "q.db",
        f"""
        destinations:
          crm: {{type: http, url: "{sink.url}", rate_limit: 5/s}}
        routes:
          - {{name: all, to: [crm]}}
        """,
    )
    async with running_app(text) as client:
        for i in range(10):
            await client.post("/webhooks/pushwoosh", json=dict(bounced, user_id=str(i)))
        got = sink.wait_for(10, timeout=10)
    # When each attempt left the limiter, as its history row says: the sink's arrival
    # times add each request's own delay (the first ones open connections), which on a
    # loaded machine hid up to 0.2 s of the spacing.
    conn = sqlite3.connect(tmp_path / "q.db")
    try:
        started = sorted(t for (t,) in conn.execute("SELECT started_at FROM attempts"))
    finally:
        conn.close()
    assert len(started) == 10
    # 10 requests at 5/s with a burst of 3: at least (10 - 3) / 5 = 1.4 s.
    assert started[-1] - started[0] >= 1.35
    times = sorted(g.at for g in got)
    for i in range(len(times)):
        in_window = [t for t in times if times[i] <= t < times[i] + 1.0]
        assert len(in_window) <= 5 + 3


async def test_slack_defaults_to_one_per_second(
    tmp_path: Path, sink: Sink, bounced: dict[str, Any]
) -> None:
    text = config_text(
        tmp_path / "q.db",
        f"""
        destinations:
          alerts: {{type: slack, url: "{sink.url}/services/T/B/X"}}
        routes:
          - {{name: all, to: [alerts]}}
        """,
    )
    async with running_app(text) as client:
        for i in range(5):
            await client.post("/webhooks/pushwoosh", json=dict(bounced, user_id=str(i)))
        got = sink.wait_for(5, timeout=30)  # a loaded machine may be slow, never faster
    times = sorted(g.at for g in got)
    assert times[-1] - times[0] >= 1.8  # burst of 3, then 1/s


async def test_concurrency_caps_requests_in_flight(
    tmp_path: Path, sink: Sink, bounced: dict[str, Any]
) -> None:
    sink.default = Answer(200, delay=0.5)
    text = config_text(
        tmp_path / "q.db",
        f"""
        destinations:
          crm: {{type: http, url: "{sink.url}", concurrency: 2}}
        routes:
          - {{name: all, to: [crm]}}
        """,
    )
    async with running_app(text) as client:
        for i in range(6):
            await client.post("/webhooks/pushwoosh", json=dict(bounced, user_id=str(i)))
        got = sink.wait_for(6, timeout=10)
    times = sorted(g.at for g in got)
    for i in range(len(times) - 2):
        assert times[i + 2] - times[i] >= 0.45  # never three within one response time


async def test_metrics_expose_contract_series(
    tmp_path: Path, sink: Sink, bounced: dict[str, Any]
) -> None:
    db = tmp_path / "q.db"
    sink.script = [Answer(404)]
    text = config_text(
        db,
        f"""
        destinations:
          crm: {{type: http, url: "{sink.url}"}}
          later: {{type: http, url: "{sink.url}", enabled: false}}
        routes:
          - {{name: all, to: [crm]}}
        """,
    )
    async with running_app(text) as client:
        await client.post("/webhooks/pushwoosh", json=bounced)
        await client.post("/webhooks/pushwoosh", json=dict(bounced, user_id="2"))
        await client.post("/webhooks/pushwoosh", content=b"not json")
        queue = client.app.state.runtime.queue

        async def settled() -> bool:
            return sorted(str(d.state) for d in await deliveries_of(queue)) == ["dead", "succeeded"]

        await eventually(settled)
        r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'relay_events_received_total{outcome="accepted"} 2.0' in text
    assert 'relay_events_received_total{outcome="rejected"} 1.0' in text
    assert 'relay_events_received_total{outcome="duplicate"} 0.0' in text
    assert 'relay_deliveries_total{destination="crm",outcome="succeeded"} 1.0' in text
    assert 'relay_deliveries_total{destination="crm",outcome="dead"} 1.0' in text
    assert 'relay_delivery_duration_seconds_count{destination="crm"} 2.0' in text
    assert 'relay_queue_depth{destination="crm",state="dead"} 1.0' in text
    assert 'relay_queue_depth{destination="crm",state="pending"} 0.0' in text
    assert 'relay_queue_oldest_pending_age_seconds{destination="crm"} 0.0' in text


async def test_outcome_counters_add_up_over_batches_of_mixed_outcomes(
    tmp_path: Path, sink: Sink, bounced: dict[str, Any]
) -> None:
    """Outcomes are written, and counted, a batch at a time: the counters still say
    exactly what came of every attempt (a 503 is retried, then succeeds)."""
    db = tmp_path / "q.db"
    seen_503: set[str] = set()

    def answer(got: Any) -> Answer:
        user = got.json()["user_id"]
        if user.endswith("0"):
            return Answer(404)
        if user.endswith("1") and user not in seen_503:
            seen_503.add(user)
            return Answer(503, {"Retry-After": "0"})
        return Answer(200)

    sink.respond = answer
    text = config_text(
        db,
        f"""
        destinations:
          crm: {{type: http, url: "{sink.url}", concurrency: 8}}
        routes:
          - {{name: all, to: [crm]}}
        """,
    )
    async with running_app(text) as client:
        for i in range(40):
            await client.post("/webhooks/pushwoosh", json=dict(bounced, user_id=f"u{i}"))
        queue = client.app.state.runtime.queue

        async def settled() -> bool:
            states = [str(d.state) for d in await deliveries_of(queue)]
            return len(states) == 40 and "pending" not in states

        await eventually(settled, timeout=20)
        expected = [
            'relay_deliveries_total{destination="crm",outcome="succeeded"} 36.0',
            'relay_deliveries_total{destination="crm",outcome="dead"} 4.0',
            'relay_deliveries_total{destination="crm",outcome="retrying"} 4.0',
            'relay_attempts_total{destination="crm",outcome="succeeded"} 36.0',
            'relay_attempts_total{destination="crm",outcome="retry"} 4.0',
            'relay_attempts_total{destination="crm",outcome="dead"} 4.0',
            'relay_delivery_duration_seconds_count{destination="crm"} 44.0',
        ]

        async def counted() -> bool:  # counted just after each batch is committed
            lines = set((await client.get("/metrics")).text.splitlines())
            return all(line in lines for line in expected)

        await eventually(counted, timeout=5)
