"""Request building and answer judging per destination type (respx: no network)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx

from relay.config import parse_config
from relay.destinations import mask_url

CONFIG = """
destinations:
  crm:
    type: http
    url: https://crm.example.com/v1/events?api_key=k-123456
    method: PATCH
    headers: {Authorization: "Bearer tok-abcdef", Content-Type: application/vnd.crm+json}
    body: {email: "{{ event.hwid }}", id: "{{ event.message_id }}", when: "{{ event.timestamp }}"}
  mirror: {type: http, url: "https://mirror.example.com/in"}
  alerts: {type: slack, url: "https://hooks.slack.com/services/T1/B2/secretpart"}
  log: {type: log}
"""


@pytest.fixture
def config() -> Any:
    return parse_config(CONFIG, "relay.yaml", {})


def context(event: dict[str, Any]) -> dict[str, Any]:
    return {"event": event, "raw": json.dumps(event).encode(), "destination": "x", "now": 0}


async def send(config: Any, name: str, event: dict[str, Any]) -> httpx.Request:
    request = config.destinations[name].build(context(event), "dlv-1")
    async with respx.mock(assert_all_called=True) as mock:
        route = mock.route(method=request.method, url=request.url).respond(200)
        async with httpx.AsyncClient() as client:
            await client.request(
                request.method, request.url, headers=request.headers, content=request.body
            )
        sent: httpx.Request = route.calls.last.request
    return sent


async def test_http_request_building(config: Any, bounced: dict[str, Any]) -> None:
    event = dict(bounced, message_id=18446744073709551615)
    sent = await send(config, "crm", event)
    assert sent.method == "PATCH"
    assert str(sent.url) == "https://crm.example.com/v1/events?api_key=k-123456"
    assert sent.headers["authorization"] == "Bearer tok-abcdef"
    assert sent.headers["content-type"] == "application/vnd.crm+json"  # configured wins
    assert sent.headers["idempotency-key"] == "dlv-1"
    assert sent.headers["user-agent"].startswith("pushwoosh-relay/")
    assert sent.content == (
        b'{"email":"no-such-user@example.org","id":18446744073709551615,"when":1723798230}'
    )


async def test_http_default_body_is_the_event_as_received(
    config: Any, bounced: dict[str, Any]
) -> None:
    event = dict(bounced, extra={"nested": [1, 2]})
    sent = await send(config, "mirror", event)
    assert sent.method == "POST" and json.loads(sent.content) == event
    assert sent.headers["content-type"] == "application/json"


async def test_slack_request_building(config: Any, bounced: dict[str, Any]) -> None:
    sent = await send(config, "alerts", dict(bounced, payload="<!channel> & co"))
    body = json.loads(sent.content)
    assert "blocks" in body and "text" in body
    assert "<!channel>" not in sent.content.decode()
    assert "&lt;!channel&gt; &amp; co" in sent.content.decode()


def test_display_masks_secrets(config: Any, bounced: dict[str, Any]) -> None:
    dest = config.destinations["crm"]
    shown = dest.build(context(bounced), "d").display(config.secrets, dest.secret_headers)
    assert shown["url"] == "https://crm.example.com/v1/events?api_key=***"
    assert shown["headers"]["Authorization"] == "***"
    assert "tok-abcdef" not in json.dumps(shown)
    slack = config.destinations["alerts"]
    shown = slack.build(context(bounced), "d").display(config.secrets | slack.secrets, frozenset())
    assert shown["url"] == "https://hooks.slack.com/***"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("https://user:pw@host.example/p?a=1&b=2", "https://user:***@host.example/p?a=***&b=***"),
        ("https://host.example/plain", "https://host.example/plain"),
        ("", ""),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
