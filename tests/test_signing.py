"""Outbound Standard Webhooks signatures, verified with the spec's reference library."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from relay.config import parse_config
from relay.errors import ConfigError

from .helpers import config_text, running_app
from .sink import Sink

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


async def test_signed_request_verifies_with_reference_library(
    tmp_path: Path, sink: Sink, bounced: dict[str, Any]
) -> None:
    text = config_text(
        tmp_path / "q.db",
        f"""
        destinations:
          crm: {{type: http, url: "{sink.url}", signing_secret: "{SECRET}"}}
        routes:
          - {{name: all, to: [crm]}}
        """,
    )
    async with running_app(text) as client:
        await client.post("/webhooks/pushwoosh", json=bounced)
        got = sink.wait_for(1)[0]
    headers = {k: v for k, v in got.headers.items() if k.startswith("webhook-")}
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == got.headers["idempotency-key"]
    payload = Webhook(SECRET).verify(got.body, headers)
    assert payload == bounced
    tampered = got.body.replace(b"Bounced", b"Opened!")
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"another-key-of-32-bytes-long!!!!").decode()).verify(
            got.body, headers
        )


@pytest.mark.parametrize("secret", ["plain-secret", "whsec_***not base64***", "whsec_c2hvcnQ="])
def test_bad_signing_secret_is_a_config_error(secret: str) -> None:
    text = f"""destinations:
  crm:
    type: http
    url: https://crm.example/hook
    signing_secret: "{secret}"
"""
    with pytest.raises(ConfigError) as err:
        parse_config(text, "relay.yaml", {})
    problem = err.value.problems[0]
    assert problem.line == 5 and problem.path == "destinations.crm.signing_secret"
