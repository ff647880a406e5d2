"""The admin API (/api/v1) against the real app, a real SQLite queue and a real destination.

Every endpoint: its document, its filters and pages, its refusals (always JSON with a
reason, never a 500), the admin token, and the CSRF rule for a console session.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient
from structlog.testing import capture_logs

from relay.app import create_app
from relay.config import parse_config

from .helpers import config_text, eventually
from .sink import Answer, Sink

ADMIN = "admin-token-4f1e9a77c2"
SECRET = "crm-secret-0123456789"
BEARER = {"Authorization": f"Bearer {ADMIN}"}
ENDPOINTS = [
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/events/0123abcd"),
    ("POST", "/api/v1/events/0123abcd/replay"),
    ("GET", "/api/v1/dead-letters"),
    ("POST", "/api/v1/dead-letters/replay"),
    ("GET", "/api/v1/destinations"),
    ("POST", "/api/v1/destinations/crm/pause"),
    ("POST", "/api/v1/destinations/crm/resume"),
    ("POST", "/api/v1/route"),
]


def config_for(db: Path, sink_url: str) -> str:
    return config_text(
        db,
        f"""
logging: {{mask_hwid: true}}
destinations:
  crm:
    type: http
    url: "{sink_url}/hook"
    headers: {{Authorization: "Bearer {SECRET}"}}
    retry: {{max_attempts: 1}}
  log: {{type: log}}
routes:
  - name: bounces
    when: {{event_name: Email Bounced}}
    to: [crm]
  - {{name: everything, to: [log]}}
""",
        server=f'admin_token: "{ADMIN}"',
    )


@pytest.fixture
async def sink_server() -> AsyncIterator[Sink]:
    with Sink() as sink:
        yield sink


@pytest.fixture
async def api(tmp_path: Path, sink_server: Sink) -> AsyncIterator[AsyncTestClient[Any]]:
    text = config_for(tmp_path / "q.db", sink_server.url)
    (tmp_path / "relay.yaml").write_text(text)
    app = create_app(parse_config(text, str(tmp_path / "relay.yaml"), {}))
    async with AsyncTestClient(app) as client:
        yield client


def event(name: str, hwid: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_name": name,
        "message_code": "M-1",
        "platform": "Email",
        "application_code": "A-1",
        "hwid": hwid,
        "user_id": extra.pop("user_id", "u1"),
        "timestamp": 1723798230,
        **extra,
    }


async def send(client: AsyncTestClient[Any], *events: dict[str, Any]) -> list[str]:
    r = await client.post("/webhooks/pushwoosh", json=list(events))
    assert r.status_code == 200, r.text
    ids: list[str] = r.json()["ids"]
    return ids


async def settled(client: AsyncTestClient[Any], n: int) -> list[dict[str, Any]]:
    """Wait until ``n`` events have every delivery settled; the listing."""

    async def check() -> list[dict[str, Any]] | None:
        events = (await client.get("/api/v1/events?limit=500", headers=BEARER)).json()["events"]
        states = [d["state"] for e in events for d in e["deliveries"]]
        done = len(events) >= n and all(s in ("succeeded", "dead") for s in states)
        return events if done else None

    result: list[dict[str, Any]] = await eventually(check)
    return result


def assert_json_error(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    reason = r.json()["error"]
    for word in words:
        assert word in reason, reason


# -- access ---------------------------------------------------------------------------------
async def test_every_endpoint_needs_the_admin_token(api: AsyncTestClient[Any]) -> None:
    with capture_logs() as logs:
        for i, (method, path) in enumerate(ENDPOINTS):
            r = await api.request(method, path)
            assert_json_error(r, 401, "Bearer")
            assert r.headers["www-authenticate"].startswith("Bearer")
            if i < 5:  # more wrong tokens would lock this client out (next test)
                wrong = await api.request(
                    method, path, headers={"Authorization": "Bearer guess-123"}
                )
                assert_json_error(wrong, 401, "wrong admin token")
    failures = [line for line in logs if line["event"] == "admin.auth_failed"]
    assert len(failures) == 5 and all(f["client"] and f["path"] for f in failures)
    assert "guess-123" not in repr(logs) and ADMIN not in repr(logs)


async def test_repeated_wrong_tokens_are_slowed_down(api: AsyncTestClient[Any]) -> None:
    for _ in range(5):
        await api.get("/api/v1/events", headers={"Authorization": "Bearer nope"})
    r = await api.get("/api/v1/events", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    locked = await api.get("/api/v1/events", headers=BEARER)
    assert_json_error(locked, 429, "too many failed attempts")
    assert int(locked.headers["retry-after"]) >= 1


async def test_security_headers_on_every_answer(api: AsyncTestClient[Any]) -> None:
    for r in (
        await api.get("/api/v1/events", headers=BEARER),
        await api.get("/api/v1/events"),
        await api.get("/api/v1/events/nope", headers=BEARER),
    ):
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'none'" in r.headers["content-security-policy"]
        assert r.headers["cache-control"] == "no-store"
    # the receiver's answers are not the API's business: unchanged
    received = await api.post("/webhooks/pushwoosh", json=event("Email Opened", "a@b.c"))
    assert "x-frame-options" not in received.headers


async def test_a_session_cookie_alone_cannot_change_anything(api: AsyncTestClient[Any]) -> None:
    login = await api.post(
        "/console/login", data={"token": ADMIN, "next": "/console"}, follow_redirects=False
    )
    assert login.status_code == 303 and "relay_session" in api.cookies
    assert (
        await api.get("/api/v1/destinations")
    ).status_code == 200  # reading: the cookie is enough
    r = await api.post("/api/v1/destinations/crm/pause")
    assert_json_error(r, 403, "X-CSRF-Token", "cookie alone")
    page = (await api.get("/console/destinations")).text
    csrf = json.loads(re.search(r"hx-headers='([^']*)'", page).group(1))["X-CSRF-Token"]  # type: ignore[union-attr]
    r = await api.post("/api/v1/destinations/crm/pause", headers={"X-CSRF-Token": csrf + "x"})
    assert r.status_code == 403
    r = await api.post("/api/v1/destinations/crm/pause", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["state"] == "paused"


# -- events ---------------------------------------------------------------------------------
async def test_events_are_listed_filtered_and_paged(
    api: AsyncTestClient[Any], sink_server: Sink
) -> None:
    sink_server.default = Answer(400, body=f"bad token {SECRET}".encode())
    await send(
        api,
        event("Email Bounced", "Ann@Example.com", user_id="7", campaign_id=961234),
        event("Email Bounced", "bob@example.com"),
        event("Email Opened", "carl@example.com"),
        event("Email Opened", "dora@example.com"),
    )
    await asyncio.sleep(0.01)  # ids order events by the millisecond they came in
    await send(api, event("Email Sent", "<img src=x onerror=alert(1)>"))
    events = await settled(api, 5)
    assert events[0]["event_name"] == "Email Sent"  # newest first
    assert set(events[0]) == {"id", "received_at", "event_name", "hwid", "deliveries"}

    async def listing(query: str) -> dict[str, Any]:
        r = await api.get(f"/api/v1/events?{query}", headers=BEARER)
        assert r.status_code == 200, r.text
        page: dict[str, Any] = r.json()
        return page

    dead = await listing("destination=crm&state=dead")
    assert len(dead["events"]) == 2 and dead["next"] is None
    ann = await listing("hwid=ANN@example.COM")
    assert [e["hwid"] for e in ann["events"]] == ["An***@Example.com"]
    assert (await listing("hwid=ann@example.com&unmask=true"))["events"][0][
        "hwid"
    ] == "Ann@Example.com"
    assert len((await listing("event_name=Email+Opened"))["events"]) == 2
    assert len((await listing("user_id=7"))["events"]) == 1
    assert len((await listing("campaign_id=961234"))["events"]) == 1
    assert len((await listing("since=1h"))["events"]) == 5
    assert (await listing("until=2001-01-01T00:00Z"))["events"] == []
    assert (await listing("destination=&state="))["events"] != []  # empty means any

    seen: list[str] = []
    cursor = None
    while True:
        page = await listing("limit=2" + (f"&before={cursor}" if cursor else ""))
        seen += [e["id"] for e in page["events"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == [e["id"] for e in events]


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("state=bogus", ["unknown state 'bogus'", "dead"]),
        ("since=yesterday", ["since", "expected a time"]),
        ("until=1e300", ["until", "between 1970 and 9999"]),
        ("limit=0", ["limit", "1 to 500"]),
        ("limit=501", ["limit"]),
        ("limit=ten", ["whole number"]),
        ("before=../../etc", ["cursor"]),
        ("event-name=x", ["unknown parameter 'event-name'"]),
        ("hwid=a&hwid=b", ["more than once"]),
        ("hwid=" + "x" * 3000, ["longer than"]),
        ("unmask=maybe", ["unmask"]),
    ],
)
async def test_bad_listing_parameters_are_400s_that_say_why(
    api: AsyncTestClient[Any], query: str, words: list[str]
) -> None:
    assert_json_error(await api.get(f"/api/v1/events?{query}", headers=BEARER), 400, *words)


async def test_one_event_is_the_cli_document(
    api: AsyncTestClient[Any], sink_server: Sink, tmp_path: Path
) -> None:
    sink_server.default = Answer(400, body=f"bad token {SECRET}".encode())
    [event_id] = await send(api, event("Email Bounced", "jane@example.com", campaign_id=2**64 - 1))
    await settled(api, 1)
    r = await api.get(f"/api/v1/events/{event_id}", headers=BEARER)
    assert r.status_code == 200
    doc = r.json()
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "relay",
            "events",
            "show",
            event_id,
            "--json",
            "--config",
            str(tmp_path / "relay.yaml"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )
    assert cli.returncode == 0, cli.stderr
    assert doc == json.loads(cli.stdout)
    assert doc["event"]["body"]["hwid"] == "ja***@example.com"
    assert '"campaign_id":18446744073709551615' in r.text  # exact, no float round trip
    crm = next(d for d in doc["deliveries"] if d["destination"] == "crm")
    [attempt] = crm["attempts"]
    assert attempt["status_code"] == 400 and attempt["outcome"] == "dead"
    assert SECRET not in r.text and "***" in attempt["response"]
    unmasked = (await api.get(f"/api/v1/events/{event_id}?unmask=1", headers=BEARER)).json()
    assert unmasked["event"]["body"]["hwid"] == "jane@example.com"
    assert_json_error(await api.get("/api/v1/events/nope", headers=BEARER), 404, "no stored event")
    assert_json_error(
        await api.get(f"/api/v1/events/{event_id}?x=1", headers=BEARER), 400, "unknown"
    )


async def test_an_event_is_replayed_to_one_or_all_destinations(
    api: AsyncTestClient[Any], sink_server: Sink
) -> None:
    sink_server.default = Answer(500)
    sink_server.script = [Answer(400)]
    [event_id] = await send(api, event("Email Bounced", "x@example.com"))
    await settled(api, 1)
    sink_server.default = Answer(200)
    r = await api.post(
        f"/api/v1/events/{event_id}/replay", headers=BEARER, json={"destination": "crm"}
    )
    assert r.status_code == 200 and r.json()["event_id"] == event_id
    [made] = r.json()["deliveries"]

    async def succeeded() -> bool:
        doc = (await api.get(f"/api/v1/events/{event_id}", headers=BEARER)).json()
        return any(d["id"] == made and d["state"] == "succeeded" for d in doc["deliveries"])

    await eventually(succeeded)
    everywhere = await api.post(f"/api/v1/events/{event_id}/replay", headers=BEARER)
    assert len(everywhere.json()["deliveries"]) == 2  # crm and log
    assert_json_error(
        await api.post(
            f"/api/v1/events/{event_id}/replay", headers=BEARER, json={"destination": "nope"}
        ),
        404,
        "no delivery to 'nope'",
    )
    assert_json_error(await api.post("/api/v1/events/nope/replay", headers=BEARER), 404)
    assert_json_error(
        await api.post(f"/api/v1/events/{event_id}/replay", headers=BEARER, content=b"{oops"),
        400,
        "malformed",
    )
    assert_json_error(
        await api.post(f"/api/v1/events/{event_id}/replay", headers=BEARER, json={"to": "crm"}),
        400,
        "unknown field",
    )


# -- dead letters ---------------------------------------------------------------------------
async def test_dead_letters_are_reported_and_replayed_by_filter(
    api: AsyncTestClient[Any], sink_server: Sink
) -> None:
    sink_server.script = [Answer(400, body=b"no such contact")] * 3 + [Answer(404, body=b"gone")]
    await send(api, *(event("Email Bounced", f"p{i}@example.com") for i in range(4)))
    await settled(api, 4)
    report = (await api.get("/api/v1/dead-letters", headers=BEARER)).json()
    assert report["count"] == 4
    groups = {(g["destination"], g["error"]): g["count"] for g in report["groups"]}
    assert groups == {
        ("crm", "HTTP 400: no such contact (not retryable)"): 3,
        ("crm", "HTTP 404: gone (not retryable)"): 1,
    }
    assert {d["event_name"] for d in report["dead_letters"]} == {"Email Bounced"}
    some = (await api.get("/api/v1/dead-letters?limit=1&destination=crm", headers=BEARER)).json()
    assert some["count"] == 4 and len(some["dead_letters"]) == 1

    sink_server.default = Answer(200)
    body = {"destination": "crm", "error": "HTTP 400: no such contact (not retryable)"}
    counted = await api.post(
        "/api/v1/dead-letters/replay", headers=BEARER, json={**body, "dry_run": True}
    )
    assert counted.json() == {"would_replay": 3}
    assert (await api.post("/api/v1/dead-letters/replay", headers=BEARER, json=body)).json() == {
        "replayed": 3
    }
    left = (await api.get("/api/v1/dead-letters", headers=BEARER)).json()["dead_letters"]
    assert [d["last_error"] for d in left] == ["HTTP 404: gone (not retryable)"]
    r = await api.post(
        "/api/v1/dead-letters/replay", headers=BEARER, json={"ids": [left[0]["id"], "0a1b"]}
    )
    assert r.json() == {"replayed": 1}
    await eventually(lambda: len(sink_server.received) >= 8)

    for bad, words in [
        ({}, ["give ids"]),
        ({"ids": []}, ["ids"]),
        ({"ids": ["x"] * 1001}, ["1000"]),
        ({"ids": ["x"], "dry_run": True}, ["dry_run"]),
        ({"all": "yes"}, ["Expected `bool`"]),
        ({"destination": 5}, ["Expected `str | null`"]),
    ]:
        assert_json_error(
            await api.post("/api/v1/dead-letters/replay", headers=BEARER, json=bad), 400, *words
        )
    assert_json_error(
        await api.get("/api/v1/dead-letters?limit=5000", headers=BEARER), 400, "limit"
    )
    assert (
        await api.post("/api/v1/dead-letters/replay", headers=BEARER, json={"all": True})
    ).json() == {"replayed": 0}


# -- destinations ---------------------------------------------------------------------------
async def test_destinations_are_listed_paused_and_resumed(api: AsyncTestClient[Any]) -> None:
    listed = (await api.get("/api/v1/destinations", headers=BEARER)).json()["destinations"]
    crm = next(d for d in listed if d["name"] == "crm")
    assert crm["state"] == "active" and crm["type"] == "http"
    assert crm["config"]["headers"]["Authorization"] == "***" and SECRET not in json.dumps(listed)
    with capture_logs() as logs:
        r = await api.post(
            "/api/v1/destinations/crm/pause", headers=BEARER, json={"reason": "CRM maintenance"}
        )
    assert r.json() == {"destination": "crm", "state": "paused", "changed": True}
    [audit] = [line for line in logs if line["event"] == "admin.action"]
    assert audit["action"] == "pause" and audit["by"] == "api" and audit["destination"] == "crm"
    crm = next(
        d
        for d in (await api.get("/api/v1/destinations", headers=BEARER)).json()["destinations"]
        if d["name"] == "crm"
    )
    assert crm["state"] == "paused" and crm["paused_reason"] == "CRM maintenance"
    again = await api.post("/api/v1/destinations/crm/pause", headers=BEARER)
    assert again.json()["changed"] is False
    resumed = await api.post("/api/v1/destinations/crm/resume", headers=BEARER)
    assert resumed.json() == {"destination": "crm", "state": "active", "changed": True}
    assert_json_error(
        await api.post("/api/v1/destinations/crn/pause", headers=BEARER), 404, "did you mean 'crm'"
    )
    assert_json_error(await api.post("/api/v1/destinations/crn/resume", headers=BEARER), 404)
    assert_json_error(
        await api.post("/api/v1/destinations/crm/pause", headers=BEARER, json={"reason": 5}),
        400,
        "Expected",
    )


# -- the dry run ----------------------------------------------------------------------------
async def test_the_dry_run_shows_routes_and_masked_requests(
    api: AsyncTestClient[Any], bounced: dict[str, Any], sink_server: Sink
) -> None:
    r = await api.post("/api/v1/route", headers=BEARER, json=bounced)
    assert r.status_code == 200
    doc = r.json()
    assert doc["routes"] == ["bounces", "everything"]
    crm = next(d for d in doc["deliveries"] if d["destination"] == "crm")
    assert crm["request"]["headers"]["Authorization"] == "***" and SECRET not in r.text
    assert crm["request"]["body"]["hwid"] == bounced["hwid"]
    batch = await api.post("/api/v1/route", headers=BEARER, json=[bounced, bounced])
    assert isinstance(batch.json(), list) and len(batch.json()) == 2
    assert_json_error(
        await api.post("/api/v1/route", headers=BEARER, content=b"not json"), 400, "JSON"
    )
    assert_json_error(
        await api.post("/api/v1/route", headers=BEARER, json={"hwid": 1}), 422, "event_name"
    )
    big = json.dumps([bounced] * 200).encode()
    assert_json_error(await api.post("/api/v1/route", headers=BEARER, content=big), 413, "at most")
    assert sink_server.received == []  # nothing was sent, nothing queued
    assert (await api.get("/api/v1/events", headers=BEARER)).json()["events"] == []


async def test_the_api_is_in_the_openapi_document(api: AsyncTestClient[Any]) -> None:
    paths = (await api.get("/schema/openapi.json")).json()["paths"]
    for method, path in ENDPOINTS:
        templated = re.sub(r"/0123abcd", "/{event_id}", path).replace("/crm/", "/{name}/")
        assert method.lower() in paths[templated], templated
    params = {p["name"] for p in paths["/api/v1/events"]["get"]["parameters"]}
    assert {
        "destination",
        "state",
        "event_name",
        "hwid",
        "since",
        "until",
        "limit",
        "before",
    } <= params
    assert not any(p.startswith("/console") for p in paths)
