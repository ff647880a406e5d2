"""Delivery against a real local HTTP server: retries, Retry-After, dead letters, replay."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from .helpers import config_text, eventually, running_app
from .sink import Answer, Sink
from .store import deliveries_of, store


def http_config(db: Path, url: str, extra: str = "", route_extra: str = "") -> str:
    return config_text(
        db,
        f"""
        destinations:
          crm:
            type: http
            url: {url}
            timeout: 1s
            retry: {{max_attempts: 5, max_age: 1h, initial_delay: 100ms, max_delay: 200ms}}
        {extra}
        routes:
          - name: all
            to: [crm]
        {route_extra}
        """,
    )


async def states(client: Any) -> list[tuple[Any, ...]]:
    """(state, attempts, last status) of every delivery in the app's queue."""
    queue = client.app.state.runtime.queue
    return [(str(d.state), d.attempt_count, d.status_code) for d in await deliveries_of(queue)]


async def retried(client: Any) -> bool:
    """At least two attempts were made."""
    return bool((await states(client))[0][1] >= 2)


def settled(client: Any, expected: list[tuple[Any, ...]]) -> Callable[[], Awaitable[bool]]:
    """A check for :func:`eventually`: the deliveries' states are ``expected``."""

    async def check() -> bool:
        return await states(client) == expected

    return check


async def test_500_500_429_retry_after_then_200(
    tmp_path: Path, sink: Sink, bounced: dict[str, Any]
) -> None:
    db = tmp_path / "q.db"
    sink.script = [Answer(500), Answer(503), Answer(429, {"Retry-After": "1"}), Answer(200)]
    with capture_logs() as logs:
        async with running_app(http_config(db, sink.url)) as client:
            r = await client.post("/webhooks/pushwoosh", json=bounced)
            assert r.status_code == 200
            got = await eventually(lambda: len(sink.received) >= 4 and sink.received)
            await eventually(settled(client, [("succeeded", 4, 200)]))
    assert [g.method for g in got] == ["POST"] * 4
    keys = {g.headers["idempotency-key"] for g in got}
    with store(db) as stored:
        assert keys == {d.id for d in stored.deliveries()}
    assert all(g.headers["user-agent"].startswith("pushwoosh-relay/") for g in got)
    assert all(g.json() == bounced for g in got)  # default body: the event as received
    assert got[3].at - got[2].at >= 0.95  # Retry-After: 1 honoured
    assert got[1].at - got[0].at < 0.9  # backoff from initial_delay, not Retry-After
    retrying = [e for e in logs if e["event"] == "delivery.retrying"]
    assert [e["status_code"] for e in retrying] == [500, 503, 429]
    assert [e["attempt"] for e in retrying] == [1, 2, 3]
    assert retrying[2]["retry_in_s"] == 1.0
    for e in retrying:
        assert {
            "delivery_id",
            "event_id",
            "destination",
            "attempt",
            "status_code",
            "duration_ms",
            "error",
            "retry_in_s",
        } <= set(e)
    done = [e for e in logs if e["event"] == "delivery.succeeded"]
    assert len(done) == 1 and done[0]["attempt"] == 4 and done[0]["status_code"] == 200
    assert done[0]["destination"] == "crm" and done[0]["duration_ms"] >= 0


async def test_retry_after_http_date(tmp_path: Path, sink: Sink, bounced: dict[str, Any]) -> None:
    import time
    from email.utils import formatdate

    db = tmp_path / "q.db"
    sink.script = [Answer(503, {"Retry-After": formatdate(time.time() + 2, usegmt=True)})]
    async with running_app(http_config(db, sink.url)) as client:
        await client.post("/webhooks/pushwoosh", json=bounced)
        got = await eventually(lambda: len(sink.received) >= 2 and sink.received)
    assert got[1].at - got[0].at >= 0.9


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
async def test_other_4xx_is_dead_at_once(
    tmp_path: Path, sink: Sink, bounced: dict[str, Any], status: int
) -> None:
    db = tmp_path / "q.db"
    sink.script = [Answer(status, body=b"no such hook")]
    with capture_logs() as logs:
        async with running_app(http_config(db, sink.url)) as client:
            await client.post("/webhooks/pushwoosh", json=bounced)
            await eventually(settled(client, [("dead", 1, status)]))
    dead = [e for e in logs if e["event"] == "delivery.dead"]
    assert len(dead) == 1 and dead[0]["status_code"] == status
    assert f"HTTP {status}" in dead[0]["error"] and "no such hook" in dead[0]["error"]
    assert len(sink.received) == 1


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
async def test_retryable_statuses(
    tmp_path: Path, sink: Sink, bounced: dict[str, Any], status: int
) -> None:
    db = tmp_path / "q.db"
    sink.script = [Answer(status)]
    async with running_app(http_config(db, sink.url)) as client:
        await client.post("/webhooks/pushwoosh", json=bounced)
        await eventually(settled(client, [("succeeded", 2, 200)]))


async def test_404_dead_then_replayed(tmp_path: Path, sink: Sink, bounced: dict[str, Any]) -> None:
    import time

    db = tmp_path / "q.db"
    sink.script = [Answer(404)]
    async with running_app(http_config(db, sink.url)) as client:
        app = client.app
        queue = app.state.runtime.queue
        await client.post("/webhooks/pushwoosh", json=bounced)
        await eventually(settled(client, [("dead", 1, 404)]))
        dead = await queue.dead_letters()
        assert [(d.destination, d.event_name, d.attempts) for d in dead] == [
            ("crm", "Email Bounced", 1)
        ]
        assert "HTTP 404" in dead[0].last_error
        assert await queue.replay([dead[0].id], None, time.time()) == 1
        await eventually(settled(client, [("succeeded", 1, 200)]))
    assert len(sink.received) == 2
    assert (
        sink.received[0].headers["idempotency-key"] == sink.received[1].headers["idempotency-key"]
    )


async def test_gives_up_after_max_attempts(
    tmp_path: Path, sink: Sink, bounced: dict[str, Any]
) -> None:
    db = tmp_path / "q.db"
    sink.default = Answer(500)
    with capture_logs() as logs:
        async with running_app(http_config(db, sink.url)) as client:
            await client.post("/webhooks/pushwoosh", json=bounced)
            await eventually(settled(client, [("dead", 5, 500)]))
    dead = [e for e in logs if e["event"] == "delivery.dead"]
    assert "gave up after 5 attempts" in dead[0]["error"]
    assert len(sink.received) == 5


async def test_connection_refused_and_timeout_are_retried(
    tmp_path: Path, sink: Sink, bounced: dict[str, Any]
) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed = s.getsockname()[1]
    s.close()
    db = tmp_path / "q.db"
    with capture_logs() as logs:
        async with running_app(http_config(db, f"http://127.0.0.1:{closed}/")) as client:
            await client.post("/webhooks/pushwoosh", json=bounced)
            await eventually(lambda: retried(client))
    errors = [e["error"] for e in logs if e["event"] == "delivery.retrying"]
    assert errors and all(e == "connect refused" for e in errors)

    db2 = tmp_path / "q2.db"
    sink.script = [Answer(200, delay=1.5)]
    with capture_logs() as logs:
        async with running_app(http_config(db2, sink.url)) as client:
            await client.post("/webhooks/pushwoosh", json=bounced)
            await eventually(settled(client, [("succeeded", 2, 200)]))
    first = next(e["error"] for e in logs if e["event"] == "delivery.retrying")
    assert first == "no complete answer within 1s"


async def test_render_error_at_send_time_is_dead_not_a_crash(
    tmp_path: Path, sink: Sink, bounced: dict[str, Any]
) -> None:
    db = tmp_path / "q.db"
    text = config_text(
        db,
        f"""
        destinations:
          crm:
            type: http
            url: {sink.url}
            body: {{email: "{{{{ event.hwid }}}}", x: "{{{{ event.custom_field.upper() }}}}"}}
        routes:
          - name: all
            to: [crm]
        """,
    )
    with capture_logs() as logs:
        async with running_app(text) as client:
            await client.post("/webhooks/pushwoosh", json=bounced)
            await eventually(settled(client, [("dead", 1, None)]))
            ok = dict(bounced, custom_field="vip")
            await client.post("/webhooks/pushwoosh", json=ok)
            got = sink.wait_for(1)
    assert got[0].json() == {"email": bounced["hwid"], "x": "VIP"}
    dead = [e for e in logs if e["event"] == "delivery.dead"]
    assert "destinations.crm.body.x" in dead[0]["error"]


async def test_body_template_keeps_uint64_and_headers(tmp_path: Path, sink: Sink) -> None:
    db = tmp_path / "q.db"
    event = json.loads((Path(__file__).parent.parent / "examples/push-ios.json").read_text())
    text = config_text(
        db,
        f"""
        destinations:
          crm:
            type: http
            url: {sink.url}/hook?key=abc
            method: PUT
            headers: {{Authorization: "Bearer s3cret-token", X-Team: growth}}
            body:
              id: "{{{{ event.message_id }}}}"
              label: "msg {{{{ event.message_id }}}}"
              nested: ["{{{{ event.timestamp }}}}", 7]
        routes:
          - name: all
            to: [crm]
        """,
    )
    async with running_app(text) as client:
        await client.post("/webhooks/pushwoosh", content=json.dumps(event))
        got = sink.wait_for(1)
    assert got[0].method == "PUT" and got[0].path == "/hook?key=abc"
    assert got[0].headers["authorization"] == "Bearer s3cret-token"
    assert got[0].headers["x-team"] == "growth"
    assert b'"id":18446744073709551615' in got[0].body
    assert got[0].json() == {
        "id": 18446744073709551615,
        "label": "msg 18446744073709551615",
        "nested": [1723798222, 7],
    }


async def test_slack_payload_escapes_event_text(
    tmp_path: Path, sink: Sink, bounced: dict[str, Any]
) -> None:
    db = tmp_path / "q.db"
    text = config_text(
        db,
        f"""
        destinations:
          alerts:
            type: slack
            url: {sink.url}/services/T0/B0/XYZ
            rate_limit: 100/s
          custom:
            type: slack
            url: {sink.url}/services/T0/B0/ABC
            text: "<!here> {{{{ event.event_name }}}} for {{{{ event.payload }}}}"
        routes:
          - name: all
            to: [alerts, custom]
        """,
    )
    hostile = dict(bounced, payload="<!channel> <http://evil|click> & co")
    async with running_app(text) as client:
        await client.post("/webhooks/pushwoosh", json=hostile)
        got = sink.wait_for(2)
    by_path = {g.path: g.json() for g in got}
    custom = by_path["/services/T0/B0/ABC"]
    assert custom == {
        "text": "<!here> Email Bounced for &lt;!channel&gt; &lt;http://evil|click&gt; &amp; co"
    }
    default = json.dumps(by_path["/services/T0/B0/XYZ"])
    assert "<!channel>" not in default and "<http://evil" not in default
    assert "blocks" in by_path["/services/T0/B0/XYZ"]


async def test_slow_destination_does_not_delay_another(
    tmp_path: Path, bounced: dict[str, Any]
) -> None:
    db = tmp_path / "q.db"
    with Sink() as slow, Sink() as fast:
        slow.default = Answer(200, delay=3)
        text = config_text(
            db,
            f"""
            destinations:
              slow: {{type: http, url: "{slow.url}", concurrency: 1, timeout: 10s}}
              fast: {{type: http, url: "{fast.url}"}}
            routes:
              - name: all
                to: [slow, fast]
            """,
        )
        async with running_app(text) as client:
            import time

            start = time.time()
            for i in range(5):
                r = await client.post("/webhooks/pushwoosh", json=dict(bounced, user_id=str(i)))
                assert r.status_code == 200
            fast.wait_for(5, timeout=2)
            assert time.time() - start < 2
            assert len(slow.received) == 1


async def test_deliveries_of_a_removed_destination_are_kept_and_reported(
    tmp_path: Path, bounced: dict[str, Any]
) -> None:
    db = tmp_path / "q.db"
    text = http_config(db, "http://127.0.0.1:9/", extra="")
    async with running_app(text.replace("routes:", "  logonly: {type: log}\nroutes:")) as client:
        await client.post("/webhooks/pushwoosh", json=bounced)
    without = config_text(
        db,
        """
        destinations:
          logonly: {type: log}
        routes:
          - {name: all, to: [logonly]}
        """,
    )
    with capture_logs() as logs:
        async with running_app(without):
            pass
    stranded = [e for e in logs if e["event"] == "queue.unknown_destination"]
    assert stranded and stranded[0]["destination"] == "crm" and stranded[0]["deliveries"] == 1
    with store(db) as stored:
        assert stored.states() in (["pending"], ["retrying"])  # kept, not dropped
