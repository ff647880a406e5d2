"""A whole run's log never holds a configured secret, and hwid is masked by default."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import httpx

from .process import Server, clean_env
from .sink import Answer, Sink

TOKEN = "tok-7f3a9c1e55"
SLACK_PATH = "/services/T0SECRET/B0SECRET/xoxsecretpath123"
CRM_KEY = "crm-api-key-0042"
SIGNING = "whsec_" + base64.b64encode(b"signing-key-0123456789abcdef").decode()


def test_no_secret_in_the_log_of_a_run(tmp_path: Path, bounced: dict[str, Any]) -> None:
    with Sink() as sink:
        sink.script = [Answer(500, body=f"echo {CRM_KEY}".encode()), Answer(404)]
        cfg = tmp_path / "relay.yaml"
        cfg.write_text(f"""
server: {{token: "${{RELAY_TOKEN}}", dedupe_window: 0}}
queue: {{url: "sqlite:///{tmp_path}/q.db", poll_interval: 100ms}}
destinations:
  log: {{type: log}}
  alerts: {{type: slack, url: "${{SLACK_WEBHOOK_URL}}", rate_limit: 50/s}}
  crm:
    type: http
    url: "{sink.url}/crm?api_key=${{CRM_KEY}}"
    headers: {{Authorization: "Bearer ${{CRM_KEY}}", X-Api-Key: "${{CRM_KEY}}"}}
    signing_secret: "${{SIGNING}}"
    retry: {{initial_delay: 100ms, max_delay: 200ms}}
routes:
  - {{name: all, to: [log, alerts, crm]}}
""")
        env = clean_env(
            RELAY_TOKEN=TOKEN,
            SLACK_WEBHOOK_URL=sink.url + SLACK_PATH,
            CRM_KEY=CRM_KEY,
            SIGNING=SIGNING,
        )
        server = Server(tmp_path, cfg, env=env)
        try:
            assert server.post(bounced, params={"token": TOKEN}).status_code == 200
            assert (
                server.post(bounced, headers={"Authorization": f"Bearer {TOKEN}x"}).status_code
                == 401
            )
            assert server.post(bounced, params={"token": TOKEN + "x"}).status_code == 401
            httpx.get(f"{server.url}/nope?token={TOKEN}")
            sink.wait_for(3)  # one 500 (retried: echoes a secret), one 404 (dead), one 200
            time.sleep(0.5)
        finally:
            assert server.stop() == 0
    output = server.output()
    for secret in (
        TOKEN,
        SLACK_PATH,
        "xoxsecretpath123",
        CRM_KEY,
        SIGNING,
        SIGNING.removeprefix("whsec_"),
    ):
        assert secret not in output, secret
    lines = server.lines()
    names = {line["event"] for line in lines}
    assert {
        "delivery.logged",
        "delivery.succeeded",
        "delivery.retrying",
        "delivery.dead",
        "event.rejected",
    } <= names
    logged = next(x for x in lines if x["event"] == "delivery.logged")
    assert logged["request"]["body"]["hwid"] == "no***@example.org"
    assert bounced["hwid"] not in output
