"""Hostile input: no body makes the receiver answer 5xx or die.

hypothesis throws arbitrary bytes and JSON-ish values at the real app (real
SQLite queue); schemathesis generates requests from the app's own OpenAPI
schema, valid and invalid.
"""

from __future__ import annotations

import json
import math
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
from structlog.testing import capture_logs

from relay import strict_json
from relay.app import create_app
from relay.config import parse_config
from relay.errors import BodyInvalid
from relay.slices import finish
from relay.strict_json import MAX_DEPTH, decode

FUZZ_MAX_BODY = 65536
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
        b"[" * 900 + b"1e999" + b"]" * 900,  # msgspec's reason names the whole path
        b"[" * 900 + b"1" * 5000 + b"]" * 900,
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
    assert len(r.content) < 1024


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


# -- duplicate keys: the fast count and the exact check agree with the stdlib ---------------
#: Keys that stress the fast count: quotes, colons and backslashes where a key ends.
keys = st.sampled_from(["a", "b", 'q":', "c d", "\\", "x\\", ":", " :", '\\":', "\\\\", '" :'])
spaces = st.sampled_from(["", " ", "\n", "\t ", "  "])
leaf_values = st.sampled_from(["x", 'y":', 1, None, ":tada:", " : ", '\\"', "\\", 'a\\":b'])


@st.composite
def json_text(draw: Any, depth: int = 0) -> str:
    """JSON objects written by hand: repeated keys, odd whitespace, quotes inside strings."""
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        key = json.dumps(draw(keys))
        if depth < 2 and draw(st.booleans()):
            value = draw(json_text(depth + 1))
        else:
            value = json.dumps(draw(leaf_values))
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


def refused(body: bytes) -> bool:
    try:
        decode(body)
    except BodyInvalid:
        return True
    return False


@settings(max_examples=400, deadline=None)
@given(text=json_text())
def test_duplicate_key_detection_is_exact(text: str) -> None:
    assert refused(text.encode()) == has_duplicates(text)


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(json_text(), min_size=1, max_size=6), chunk=st.integers(1, 64))
def test_duplicate_keys_in_arrays_and_across_scan_chunks(texts: list[str], chunk: int) -> None:
    text = "[" + ",".join(texts) + "]"
    body = text.encode()
    # the key-end count is the same however the body is cut into chunks
    whole = finish(strict_json._counting_key_ends(body, chunk=len(body) + 1))
    assert finish(strict_json._counting_key_ends(body, chunk=chunk)) == whole
    assert refused(body) == has_duplicates(text)


# -- nesting: a documented limit, a 400 with a reason, never a 500 -------------------------
MINIMAL = json.loads((Path(__file__).parent.parent / "examples/minimal.json").read_text())


def nested(depth: int, kinds: str = "[") -> str:
    """``depth`` containers, one inside the other, cycling through ``kinds``."""
    opens = "".join('{"k":' if kinds[i % len(kinds)] == "{" else "[" for i in range(depth))
    closes = "".join("}" if kinds[i % len(kinds)] == "{" else "]" for i in reversed(range(depth)))
    return opens + "0" + closes


def in_event(inner: str) -> bytes:
    """``inner`` as the value of an unknown field of a valid event (one more level)."""
    return (json.dumps(MINIMAL)[:-1] + ', "x_custom": ' + inner + "}").encode()


@pytest.mark.parametrize("kinds", ["[", "{", "[{"])
@pytest.mark.parametrize("depth", [MAX_DEPTH, MAX_DEPTH + 1, 200, 800, 1000, 3000, 9000])
def test_deep_nesting_in_an_unknown_field_is_a_400_with_a_reason(
    client: TestClient[Litestar], depth: int, kinds: str
) -> None:
    body = in_event(nested(depth - 1, kinds))  # the event object is the first level
    with capture_logs() as logs:
        r = client.post("/webhooks/pushwoosh", content=body)
    if depth <= MAX_DEPTH:
        assert r.status_code == 200, r.text
        return
    assert r.status_code == 400, r.text
    assert r.json() == {"error": f"body nests deeper than {MAX_DEPTH} levels"}
    (line,) = [e for e in logs if e["event"] == "event.rejected"]
    assert line["status"] == 400 and str(MAX_DEPTH) in line["reason"]


@settings(max_examples=60, deadline=None)
@given(
    depth=st.integers(1, 4000),
    kinds=st.text(alphabet="[{", min_size=1, max_size=5),
    where=st.sampled_from(["top", "event", "array-item"]),
)
def test_any_nesting_is_classified_by_its_depth_alone(
    client: TestClient[Litestar], depth: int, kinds: str, where: str
) -> None:
    inner = nested(depth, kinds)
    if where == "top":
        body, total = inner.encode(), depth
    elif where == "event":
        body, total = in_event(inner), depth + 1
    else:
        body, total = b"[" + in_event(inner) + b"]", depth + 2
    r = client.post("/webhooks/pushwoosh", content=body)
    if total > MAX_DEPTH:
        assert (r.status_code, r.json()["error"]) == (400, strict_json.TOO_DEEP)
    else:
        assert r.status_code == (422 if where == "top" else 200), r.text


# -- any body at all: 2xx or 4xx with a JSON reason; a 4xx exactly when it is not JSON -------
def reference_refuses(body: bytes) -> tuple[bool, bool]:
    """(a strict stdlib reading refuses it, it holds what msgspec is stricter about).

    Refused: not UTF-8, not JSON, NaN/Infinity, duplicate keys, deeper than the limit.
    msgspec also refuses lone surrogates, floats that overflow and the longest integers.
    """
    stricter = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal stricter
        names = [k for k, _ in items]
        if len(names) != len(set(names)):
            raise ValueError("duplicate key")
        stricter = stricter or any(_surrogate(k) for k in names)
        return dict(items)

    def constant(name: str) -> Any:
        raise ValueError(name)

    if not body.strip():
        return True, False
    try:
        value = json.loads(body.decode(), object_pairs_hook=pairs, parse_constant=constant)
    except (ValueError, RecursionError):
        return True, False
    depth, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            depth = max(depth, level)
            stack.extend(
                (v, level + 1) for v in (item.values() if isinstance(item, dict) else item)
            )
        elif isinstance(item, str):
            stricter = stricter or _surrogate(item)
        elif isinstance(item, float):
            stricter = stricter or math.isinf(item)
        elif isinstance(item, int):
            stricter = stricter or abs(item) >= 10**4299  # msgspec: 4300 characters at most
    return depth > MAX_DEPTH, stricter


def _surrogate(text: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in text)


def _string(draw: Any) -> bytes:
    plain = draw(st.text(max_size=8))
    return draw(
        st.sampled_from(
            [
                json.dumps(plain).encode(),
                json.dumps(plain, ensure_ascii=False).encode("utf-8", "surrogatepass"),
                b'"nul\\u0000inside"',
                b'"raw nul \x00"',
                b'"bad utf-8 \xff\xfe"',
                b'"cut \xc3"',
                b'"encoded surrogate \xed\xa0\x80"',
                b'"lone \\ud800 surrogate"',
                b'":starts with a colon"',
                b'" :spaced"',
                b'"escaped \\" quote \\":"',
                b'"backslashes \\\\\\\\"',
            ]
        )
    )


def _number(draw: Any) -> bytes:
    return draw(
        st.sampled_from(
            [
                str(draw(st.integers(-(2**70), 2**70))).encode(),
                b"1" + b"0" * draw(st.integers(4000, 6000)),
                b"-" + b"9" * 4300,
                b"1e999",
                b"-1e-999",
                b"1.5E+3",
                b"NaN",
                b"-Infinity",
                b"0123",
                b"18446744073709551616",
            ]
        )
    )


@st.composite
def hostile(draw: Any, depth: int = 0) -> bytes:
    """A JSON-ish value written by hand, mostly valid, with every kind of trouble in reach."""
    ws = draw(st.sampled_from([b"", b" ", b"\n\t", b"\r\n  "]))
    kind = draw(
        st.sampled_from(["scalar", "string", "number", "object", "array"][: 5 - (depth > 3) * 2])
    )
    if kind == "scalar":
        return ws + draw(st.sampled_from([b"null", b"true", b"false", b"nul", b"True"]))
    if kind == "string":
        return ws + _string(draw)
    if kind == "number":
        return ws + _number(draw)
    items = draw(st.lists(hostile(depth + 1), max_size=4))
    if kind == "array":
        return ws + b"[" + b",".join(items) + b"]" + ws
    names = draw(
        st.lists(
            st.sampled_from(["a", "a", "hwid", "timestamp", ":", "x\\"]),
            min_size=len(items),
            max_size=len(items),
        )
    )
    pairs = [json.dumps(n).encode() + ws + b":" + v for n, v in zip(names, items, strict=True)]
    return b"{" + b",".join(pairs) + b"}"


@st.composite
def hostile_bodies(draw: Any) -> bytes:
    """Events with hostile extras, arrays of them, bare values; sometimes cut, padded or bloated."""
    extras = draw(
        st.lists(
            st.tuples(st.sampled_from(["x", "y", "x", "payload", "timestamp"]), hostile()),
            max_size=3,
        )
    )
    event = json.dumps(MINIMAL)[:-1].encode()
    for name, value in extras:
        event += b', "' + name.encode() + b'": ' + value
    event += b"}"
    shape = draw(st.sampled_from(["event", "array", "value", "deep", "bloated"]))
    if shape == "event":
        body = event
    elif shape == "array":
        body = b"[" + b",".join([event] * draw(st.integers(1, 5))) + b"]"
    elif shape == "value":
        body = draw(hostile())
    elif shape == "deep":
        depth = draw(st.integers(MAX_DEPTH - 3, 1500))
        body = b"[" * depth + event + b"]" * depth
    else:  # near and over max_body_bytes
        body = b"[" + b",".join([event] * draw(st.integers(100, 400))) + b"]"
    mutation = draw(st.sampled_from(["none"] * 6 + ["cut", "insert", "bom", "trailing"]))
    at = draw(st.integers(0, len(body)))
    if mutation == "cut":
        body = body[:at]
    elif mutation == "insert":
        body = body[:at] + draw(st.binary(min_size=1, max_size=3)) + body[at:]
    elif mutation == "bom":
        body = b"\xef\xbb\xbf" + body
    elif mutation == "trailing":
        body += draw(st.sampled_from([b"x", b"\x00", b"}", b",", b" {}"]))
    return body


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=hostile_bodies())
def test_any_body_is_answered_2xx_or_a_logged_4xx(
    client: TestClient[Litestar], body: bytes
) -> None:
    with capture_logs() as logs:
        r = client.post("/webhooks/pushwoosh", content=body)
    answer = r.json()
    assert not [e for e in logs if e["event"] == "receiver.failed"], logs
    refuses, stricter = reference_refuses(body)
    if len(body) > FUZZ_MAX_BODY:
        assert r.status_code == 413
    elif refuses:
        assert r.status_code == 400, (body[:200], r.text)
    elif not stricter:
        assert r.status_code in (200, 422), (body[:200], r.text)
    assert r.status_code in (200, 400, 413, 422), r.text
    if r.status_code == 200:
        assert answer["accepted"] + answer.get("duplicates", 0) == len(answer["ids"]) >= 1
        return
    assert isinstance(answer["error"], str) and answer["error"]
    assert len(r.content) < 4096
    (line,) = [e for e in logs if e["event"] == "event.rejected"]
    assert line["status"] == r.status_code and line["reason"] == answer["error"]
