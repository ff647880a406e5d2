"""Hostile input: no body makes the receiver answer 5xx or die.

hypothesis throws arbitrary bytes and JSON-ish values at the real app (real
SQLite queue); schemathesis generates requests from the app's own OpenAPI
schema, valid and invalid.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient

from relay.app import create_app
from relay.config import parse_config

CONFIG = """
server: {{dedupe_window: 0, max_body_bytes: 65536}}
queue: {{url: "sqlite:///{db}"}}
destinations:
  log: {{type: log}}
  crm: {{type: http, url: "http://127.0.0.1:9/", body: {{x: "{{{{ event.hwid }}}}"}}}}
routes:
  - {{name: all, to: [log]}}
  - {{name: crm, when: {{event_name: {{regex: "^Email"}}, message_id: {{gt: 5}}}}, to: [crm]}}
"""


def make_app(db: Path) -> Litestar:
    return create_app(parse_config(CONFIG.format(db=db), "relay.yaml", {}), run_workers=False)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient[Litestar]]:
    with tempfile.TemporaryDirectory() as tmp, TestClient(make_app(Path(tmp) / "q.db")) as c:
        yield c


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=20,
)

event_like = st.fixed_dictionaries(
    {},
    optional={
        k: json_values
        for k in (
            "event_name",
            "message_code",
            "platform",
            "application_code",
            "hwid",
            "user_id",
            "timestamp",
            "message_id",
            "campaign_id",
            "payload",
        )
    },
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=2048))
def test_arbitrary_bytes_never_5xx(client: TestClient[Litestar], body: bytes) -> None:
    r = client.post("/webhooks/pushwoosh", content=body)
    assert r.status_code in (200, 400, 422), r.text
    r.json()


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=event_like | st.lists(event_like, max_size=3) | json_values)
def test_json_values_never_5xx(client: TestClient[Litestar], body: Any) -> None:
    r = client.post("/webhooks/pushwoosh", content=json.dumps(body))
    assert r.status_code in (200, 400, 422), r.text  # 400: json.dumps writes Infinity
    assert "error" in r.json() or "accepted" in r.json()


@pytest.mark.parametrize(
    "body",
    [
        b'{"event_name": NaN}',
        b'{"timestamp": Infinity}',
        b"[-Infinity]",
        b'{"a": 1, "a": 2}',
        b'{"event_name": "x", "event_name": "y"}',
        b"[" * 5000 + b"]" * 5000,
        b'{"a":' * 3000 + b"1" + b"}" * 3000,
        b'{"timestamp": 1e999}',
        b"\xff\xfe{}",
        b'{"hwid": "\xed\xa0\x80"}',
        b'"\\ud800"',
        b"\x00",
        b"{",
        b"null",
        b"[]",
    ],
)
def test_named_hostile_bodies_are_4xx(client: TestClient[Litestar], body: bytes) -> None:
    r = client.post("/webhooks/pushwoosh", content=body)
    assert 400 <= r.status_code < 500, (body[:40], r.status_code, r.text)
    assert "error" in r.json()


def test_huge_numbers_are_kept_or_refused_not_crashed(client: TestClient[Litestar]) -> None:
    event = json.loads((Path(__file__).parent.parent / "examples/minimal.json").read_text())
    r = client.post("/webhooks/pushwoosh", content=json.dumps(dict(event, extra=10**40)))
    assert r.status_code == 200
    r = client.post("/webhooks/pushwoosh", content=json.dumps(dict(event, timestamp=10**40)))
    assert r.status_code == 422 and "$.timestamp" in r.json()["errors"]


_tmp = tempfile.mkdtemp()
schema = schemathesis.openapi.from_asgi("/schema/openapi.json", make_app(Path(_tmp) / "q.db"))


@schema.include(path_regex="webhooks").parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_schemathesis_receiver(case: Any) -> None:
    response = case.call()
    assert response.status_code < 500, response.text


keys = st.sampled_from(["a", "b", 'q":', "c d"])
spaces = st.sampled_from(["", " ", "\n", "\t ", "  "])


@st.composite
def json_text(draw: Any, depth: int = 0) -> str:
    """JSON objects written by hand: repeated keys, odd whitespace, quotes inside strings."""
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        key = json.dumps(draw(keys))
        if depth < 2 and draw(st.booleans()):
            value = draw(json_text(depth + 1))
        else:
            value = json.dumps(draw(st.sampled_from(["x", 'y":', 1, None])))
        parts.append(f"{key}{draw(spaces)}:{draw(spaces)}{value}")
    return "{" + ",".join(parts) + "}"


def has_duplicates(text: str) -> bool:
    found = False

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal found
        names = [k for k, _ in pairs]
        found = found or len(names) != len(set(names))
        return dict(pairs)

    json.loads(text, object_pairs_hook=hook)
    return found


@settings(max_examples=400, deadline=None)
@given(text=json_text())
def test_duplicate_key_detection_is_exact(text: str) -> None:
    from relay.receiver import BodyInvalid, decode

    try:
        decode(text.encode())
        refused = False
    except BodyInvalid:
        refused = True
    assert refused == has_duplicates(text)
