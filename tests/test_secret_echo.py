"""A destination that echoes the request's credentials never makes the relay show them.

Issue 9, item 5: many APIs answer "invalid token Bearer abc..." with the credential
they were given. Whatever a destination sends back is masked before it is stored, so
no reader of the queue (`relay dlq list`, `relay events show`, the console) and no log
line sees a configured secret: header values, the inbound token, the signing secret, a
secret query value or password in a destination's URL, a Slack webhook's secret path.
The sink here echoes every header and the URL it was called with, first in a 500
(retried) and then in a 400 (dead), so each secret reaches the error, the stored answer
and the log line of both outcomes.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from relay.destinations import mask_url
from relay.masking import url_secrets, webhook_secrets

from .process import Server, clean_env, relay, wait
from .sink import Answer, Received, Sink
from .store import store

INBOUND_TOKEN = "inbound-token-4c2a9e71"
CRM_TOKEN = "crm-bearer-7d41c09e2b"
CRM_HEADER_KEY = "crm-header-key-58be03"
CRM_URL_KEY = "crm-url-key-a9f27c51"
BASIC_USER = "relay-user"
BASIC_PASSWORD = "basic-pass-e3d8b471"
SLACK_SECRET = "xoxsecret6f0b2d94"
SLACK_PATH = f"/services/T0SECRET1/B0SECRET2/{SLACK_SECRET}"
SIGNING = "whsec_" + base64.b64encode(b"signing-key-for-echo-test-01").decode()

SECRETS = {
    "inbound token": INBOUND_TOKEN,
    "bearer token": CRM_TOKEN,
    "header value": CRM_HEADER_KEY,
    "url query value": CRM_URL_KEY,
    "url password": BASIC_PASSWORD,
    "basic credential": base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode(),
    "slack path": SLACK_PATH,
    "slack path secret": SLACK_SECRET,
    "signing secret": SIGNING,
    "signing key": SIGNING.removeprefix("whsec_"),
}
#: Headers that hold no configured secret; the rest (credentials) are echoed first, where
#: even the 200 characters an error quotes hold them.
PLAIN = {
    *("host", "user-agent", "accept", "accept-encoding", "connection", "content-length"),
    *("content-type", "idempotency-key", "webhook-id", "webhook-timestamp", "webhook-signature"),
}


def echo(request: Received, attempts: Counter[str]) -> Answer:
    """The first attempt of a delivery gets a 500, the next a 400: both echo everything."""
    key = request.headers.get("idempotency-key", "")
    attempts[key] += 1
    credentials = [v for k, v in request.headers.items() if k not in PLAIN]
    scheme, _, basic = request.headers.get("authorization", "").partition(" ")
    if scheme == "Basic":  # "invalid password for user:pass", as some APIs put it
        credentials.append(base64.b64decode(basic).decode())
    url = f"http://{request.headers['host']}{request.path}"
    text = f"invalid credentials for {request.path} at {url}: {' '.join(credentials)}; "
    body = text + json.dumps({"headers": request.headers, "url": url, "path": request.path})
    return Answer(500 if attempts[key] == 1 else 400, body=body.encode())


def config(tmp_path: Path, sink: Sink, queue_url: str) -> Path:
    host = sink.url.removeprefix("http://")
    cfg = tmp_path / "relay.yaml"
    cfg.write_text(f"""
server: {{token: "${{INBOUND_TOKEN}}", dedupe_window: 0, shutdown_grace: 2s}}
queue: {{url: "{queue_url}", poll_interval: 100ms}}
logging: {{level: info, format: json}}
destinations:
  crm:
    type: http
    url: "{sink.url}/crm?api_key=${{CRM_URL_KEY}}&region=eu"
    headers: {{Authorization: "Bearer ${{CRM_TOKEN}}", X-Api-Key: "${{CRM_HEADER_KEY}}"}}
    signing_secret: "${{SIGNING}}"
    retry: {{max_attempts: 3, initial_delay: 100ms, max_delay: 100ms}}
  basic:
    type: http
    url: "http://{BASIC_USER}:${{BASIC_PASSWORD}}@{host}/basic"
    retry: {{max_attempts: 3, initial_delay: 100ms, max_delay: 100ms}}
  alerts:
    type: slack
    url: "${{SLACK_WEBHOOK_URL}}"
    rate_limit: 50/s
    retry: {{max_attempts: 3, initial_delay: 100ms, max_delay: 100ms}}
routes:
  - {{name: everywhere, to: [crm, basic, alerts]}}
""")
    return cfg


def leaks(text: str | bytes) -> list[str]:
    """Which secrets ``text`` holds."""
    data = text.encode() if isinstance(text, str) else text
    return [name for name, secret in SECRETS.items() if secret.encode() in data]


def test_no_secret_a_destination_echoes_is_shown_or_stored(
    tmp_path: Path, bounced: dict[str, Any], queue_url: str
) -> None:
    env = clean_env(
        INBOUND_TOKEN=INBOUND_TOKEN,
        CRM_TOKEN=CRM_TOKEN,
        CRM_HEADER_KEY=CRM_HEADER_KEY,
        CRM_URL_KEY=CRM_URL_KEY,
        BASIC_PASSWORD=BASIC_PASSWORD,
        SIGNING=SIGNING,
    )
    attempts: Counter[str] = Counter()
    with Sink() as sink, store(queue_url) as stored:
        sink.respond = lambda request: echo(request, attempts)
        env["SLACK_WEBHOOK_URL"] = sink.url + SLACK_PATH
        cfg = config(tmp_path, sink, queue_url)
        server = Server(tmp_path, cfg, env=env)
        try:
            r = server.post(bounced, params={"token": INBOUND_TOKEN})
            assert r.status_code == 200, r.text
            [event_id] = r.json()["ids"]
            wait(lambda: stored.states() == ["dead", "dead", "dead"])
        finally:
            assert server.stop() == 0
        received = list(sink.received)

    # The sink did echo every secret the relay sends: the test is not vacuous.
    assert len(received) == 6
    echoed = set(leaks(b"".join(echo(r, Counter()).body for r in received)))
    assert echoed == set(SECRETS) - {"inbound token", "signing secret", "signing key"}

    def run(*args: str) -> str:
        done = relay(*args, "--config", str(cfg), cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr

    table = run("dlq", "list")
    lines = run("dlq", "list", "--json")
    shown = run("events", "show", event_id, "--json")
    listed = run("events", "list", "--json")
    text = run("events", "show", event_id)
    for name, output in [
        ("dlq list", table),
        ("dlq list --json", lines),
        ("events show --json", shown),
        ("events list --json", listed),
        ("events show", text),
        ("the log", server.output()),
    ]:
        assert leaks(output) == [], f"{name} shows {leaks(output)}:\n{output}"

    # What was shown is the masked answer, not nothing.
    letters = [json.loads(line) for line in lines.splitlines()]
    assert sorted(d["destination"] for d in letters) == ["alerts", "basic", "crm"]
    assert all(d["last_error"].startswith("HTTP 400: invalid credentials ") for d in letters)
    assert all("***" in d["last_error"] for d in letters)
    doc = json.loads(shown)
    answers = [a for d in doc["deliveries"] for a in d["attempts"]]
    assert sorted(a["status_code"] for a in answers) == [400, 400, 400, 500, 500, 500]
    assert all("***" in a["response"] and "***" in a["error"] for a in answers)
    logged = [x for x in server.lines() if x["event"] in ("delivery.retrying", "delivery.dead")]
    assert Counter(x["event"] for x in logged) == {"delivery.retrying": 3, "delivery.dead": 3}

    if queue_url.startswith("sqlite:"):
        # Every byte the queue keeps on disk, the write-ahead log folded in first.
        db = Path(queue_url.removeprefix("sqlite:///"))
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        files = sorted(db.parent.glob(db.name + "*"))
        assert db in files
        for file in files:
            assert leaks(file.read_bytes()) == [], file


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        ("https://crm.example/h", set()),
        ("https://crm.example/h?v=2&mode=eu", set()),  # too short to be worth masking anywhere
        ("https://crm.example/h?api_key=a%2Fb%2Bc1&v=2", {"a%2Fb%2Bc1", "a/b+c1"}),
        (
            "https://relay:p%40ss-word@crm.example/h",
            {"p%40ss-word", "p@ss-word", base64.b64encode(b"relay:p@ss-word").decode()},
        ),
    ],
)
def test_the_secrets_of_a_url(url: str, secrets: set[str]) -> None:
    assert url_secrets(url) == secrets


def test_a_slack_webhook_is_secret_whole_and_in_parts() -> None:
    url = "https://hooks.slack.com/services/T0/B0/abcdefgh12"
    assert webhook_secrets(url) == {url, "/services/T0/B0/abcdefgh12", "abcdefgh12"}
    assert mask_url(url, webhook_secrets(url)) == "https://hooks.slack.com/***"
