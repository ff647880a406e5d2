"""The HTTP receiver end to end: the real app, its lifespan and a real SQLite file.

Every answer is checked against what is durably in the queue afterwards, read
back with the stdlib ``sqlite3`` (CONTRACT sections 3, 4, 7 and dedupe of 8).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from structlog.testing import capture_logs

from relay.app import Runtime, create_app
from relay.config import RelayConfig, parse_config
from relay.model import MAX_REPORTED_ERRORS

from .helpers import rows

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text())


PATH = "/webhooks/pushwoosh"
MAX_BODY = 8192
MIB = 1024 * 1024
TOKEN = "tok-3f9a1c7e5b2d"
UINT64_MAX = 2**64 - 1

CONFIG = """\
server:
  max_body_bytes: {max_body}
{server}
queue:
  url: sqlite:///{db}
destinations:
  slack-ops: {{type: log}}
  crm: {{type: log}}
  archive: {{type: log}}
routes:
  - name: bounces-only-ops
    when: {{event_name: Email Bounced}}
    to: [slack-ops]
    stop: true
  - name: sent-to-crm
    when: {{event_name: Email Sent}}
    to: [crm, archive]
  - name: email-archive
    when: {{platform: Email}}
    to: [archive, slack-ops]
"""


# -- helpers --------------------------------------------------------------------------------
def make_config(db: Path, max_body: int = MAX_BODY, **server: Any) -> RelayConfig:
    lines = "\n".join(f"  {key}: {value}" for key, value in server.items())
    text = CONFIG.format(max_body=max_body, server=lines, db=db)
    return parse_config(text, "relay.yaml", env={})


def make_app(db: Path, **server: Any) -> Litestar:
    return create_app(make_config(db, **server), run_workers=False)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "relay.db"
    assert path.is_absolute()  # sqlite:////abs/path.db
    return path


@pytest.fixture
def serve(db: Path) -> Callable[..., Any]:
    """``with serve(**server_settings) as client:`` runs the app, lifespan included."""

    @contextmanager
    def run(**server: Any) -> Iterator[TestClient[Litestar]]:
        with TestClient(make_app(db, **server)) as client:
            yield client

    return run


@pytest.fixture
def client(serve: Callable[..., Any]) -> Iterator[TestClient[Litestar]]:
    with serve() as c:
        yield c


def count(db: Path, table: str) -> int:
    return int(rows(db, f"SELECT COUNT(*) FROM {table}")[0][0])


def deliveries(db: Path, event_id: str) -> dict[str, str]:
    """destination -> route of the deliveries of one event."""
    found = rows(
        db, "SELECT destination, route, state FROM deliveries WHERE event_id = ?", event_id
    )
    assert all(state == "pending" for _, _, state in found)
    out = {dest: route for dest, route, _ in found}
    assert len(out) == len(found), "more than one delivery per (event, destination)"
    return out


def stored(db: Path, event_id: str) -> bytes:
    body = rows(db, "SELECT body FROM events WHERE id = ?", event_id)[0][0]
    return bytes(body)


def post(client: TestClient[Litestar], body: Any, **kwargs: Any) -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(PATH, content=content, **kwargs)


def runtime(client: TestClient[Litestar]) -> Runtime:
    rt: Runtime = client.app.state.runtime
    return rt


def example(name: str) -> dict[str, Any]:
    return copy.deepcopy(load_example(name))


def rejected(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "event.rejected"]


# -- 1. accepted events are committed, with one delivery per (event, destination) ----------
def test_one_event_is_committed_with_its_deliveries(client: TestClient[Litestar], db: Path) -> None:
    event = example("email-sent.json")
    r = post(client, event)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["accepted"] == 1
    assert len(body["ids"]) == 1
    assert "duplicates" not in body
    (event_id,) = body["ids"]
    # read back after the answer: already durable, from another connection
    assert json.loads(stored(db, event_id)) == event
    # fan-out: two routes, `archive` reached by both but delivered once (first route wins)
    assert deliveries(db, event_id) == {
        "crm": "sent-to-crm",
        "archive": "sent-to-crm",
        "slack-ops": "email-archive",
    }
    assert count(db, "events") == 1
    assert count(db, "deliveries") == 3


def test_an_array_is_committed_event_by_event(client: TestClient[Litestar], db: Path) -> None:
    batch = load_example("batch.json")
    r = post(client, batch)
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 3
    assert len(body["ids"]) == len(set(body["ids"])) == 3
    for event, event_id in zip(batch, body["ids"], strict=True):  # ids in body order
        assert json.loads(stored(db, event_id)) == event
    sent, delivered, opened = body["ids"]
    assert set(deliveries(db, sent)) == {"crm", "archive", "slack-ops"}
    assert deliveries(db, delivered) == {"archive": "email-archive", "slack-ops": "email-archive"}
    assert deliveries(db, opened) == {"archive": "email-archive", "slack-ops": "email-archive"}
    assert count(db, "events") == 3
    assert count(db, "deliveries") == 7


def test_stop_ends_the_matching(client: TestClient[Litestar], db: Path) -> None:
    r = post(client, example("email-bounced.json"))
    assert r.status_code == 200
    (event_id,) = r.json()["ids"]
    # `email-archive` would match too (platform Email) but comes after a `stop: true` route
    assert deliveries(db, event_id) == {"slack-ops": "bounces-only-ops"}


def test_no_route_matched_is_accepted_with_no_delivery(
    client: TestClient[Litestar], db: Path
) -> None:
    with capture_logs() as logs:
        r = post(client, example("push-ios.json"))
    assert r.status_code == 200
    assert r.json()["accepted"] == 1
    (event_id,) = r.json()["ids"]
    assert count(db, "events") == 1
    assert deliveries(db, event_id) == {}
    received = [e for e in logs if e["event"] == "event.received"]
    assert received[0]["routes"] == []
    assert received[0]["deliveries"] == 0


# -- 2. the body is JSON whatever the Content-Type says -------------------------------------
@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/octet-stream",
        "application/json; charset=utf-8",
        None,
    ],
)
def test_body_is_json_whatever_the_content_type(
    client: TestClient[Litestar], db: Path, content_type: str | None
) -> None:
    event = example("email-opened.json")
    headers = {"Content-Type": content_type} if content_type else {}
    r = client.post(PATH, content=json.dumps(event).encode(), headers=headers)
    if content_type is None:
        assert "content-type" not in r.request.headers
    assert r.status_code == 200, r.text
    (event_id,) = r.json()["ids"]
    assert json.loads(stored(db, event_id)) == event


# -- 3. unknown fields and exact integers --------------------------------------------------
def test_unknown_fields_are_kept_untouched(client: TestClient[Litestar], db: Path) -> None:
    event = example("push-ios.json")
    event["x_custom"] = {"nested": [1, 2.5, 'é ✓ "q"', None, True, {"k": []}]}
    event["x_huge"] = 2**70  # beyond uint64, still an exact integer
    event["x_min"] = -(2**63)
    event["zz_last"] = "order kept"
    r = post(client, event)
    assert r.status_code == 200
    (event_id,) = r.json()["ids"]
    raw = stored(db, event_id)
    back = json.loads(raw)
    assert back == event
    assert list(back) == list(event)  # key order kept
    assert back["x_huge"] == 2**70 and type(back["x_huge"]) is int
    assert back["x_min"] == -(2**63)


def test_uint64_max_message_id_is_stored_exactly(client: TestClient[Litestar], db: Path) -> None:
    event = example("push-ios.json")
    assert event["message_id"] == UINT64_MAX
    event["campaign_id"] = UINT64_MAX
    r = post(client, event)
    assert r.status_code == 200
    raw = stored(db, r.json()["ids"][0])
    assert b"18446744073709551615" in raw  # no float round trip (1.8446744073709552e19)
    back = json.loads(raw)
    assert type(back["message_id"]) is int and back["message_id"] == UINT64_MAX
    assert type(back["campaign_id"]) is int and back["campaign_id"] == UINT64_MAX


def test_optional_fields_may_be_null_or_missing(client: TestClient[Litestar], db: Path) -> None:
    minimal = example("minimal.json")
    nulls = {
        **minimal,
        "message_id": None,
        "campaign_id": None,
        "payload": None,
        "journey_title": None,
        "journey_point_title": None,
    }
    r = post(client, [minimal, nulls])
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 2
    assert json.loads(stored(db, r.json()["ids"][1])) == nulls


def test_unknown_event_name_is_valid(client: TestClient[Litestar], db: Path) -> None:
    event = {**example("email-sent.json"), "event_name": "Email Link Clicked"}
    r = post(client, event)
    assert r.status_code == 200
    # not `sent-to-crm`, but `email-archive` (platform Email)
    assert set(deliveries(db, r.json()["ids"][0])) == {"archive", "slack-ops"}


# -- 4. every 4xx path ---------------------------------------------------------------------
def _with(**fields: Any) -> dict[str, Any]:
    return {**load_example("email-sent.json"), **fields}


def _without(*names: str) -> dict[str, Any]:
    return {k: v for k, v in load_example("email-sent.json").items() if k not in names}


REQUIRED = (
    "event_name",
    "message_code",
    "platform",
    "application_code",
    "hwid",
    "user_id",
    "timestamp",
)

#: id -> (body, status, exact set of error paths for a 422)
BAD_BODIES: dict[str, tuple[bytes, int, set[str] | None]] = {
    "not-json": (b"event_name=Email+Sent", 400, None),
    "truncated": (b'{"event_name": "Email Sent"', 400, None),
    "trailing-garbage": (b'{"event_name": "Email Sent"} x', 400, None),
    "trailing-comma": (b'[{"event_name": "a"},]', 400, None),
    "invalid-utf8": (b'{"event_name": "\xff\xfe"}', 400, None),
    "nan": (b"NaN", 400, None),
    "empty": (b"", 400, None),
    "whitespace-only": (b" \r\n\t ", 400, None),
    "top-level-string": (b'"Email Sent"', 422, {"$"}),
    "top-level-number": (b"42", 422, {"$"}),
    "top-level-null": (b"null", 422, {"$"}),
    "top-level-bool": (b"true", 422, {"$"}),
    "empty-array": (b"[]", 422, {"$"}),
    "array-of-non-objects": (b'[1, "x"]', 422, {"$[0]", "$[1]"}),
    "empty-object": (b"{}", 422, {f"$.{name}" for name in REQUIRED}),
    "missing-hwid": (json.dumps(_without("hwid")).encode(), 422, {"$.hwid"}),
    "required-null": (json.dumps(_with(user_id=None)).encode(), 422, {"$.user_id"}),
    "timestamp-bool": (json.dumps(_with(timestamp=True)).encode(), 422, {"$.timestamp"}),
    "timestamp-float": (json.dumps(_with(timestamp=1723798222.0)).encode(), 422, {"$.timestamp"}),
    "timestamp-string": (json.dumps(_with(timestamp="1723798222")).encode(), 422, {"$.timestamp"}),
    "timestamp-over-int64": (json.dumps(_with(timestamp=2**63)).encode(), 422, {"$.timestamp"}),
    "message-id-string": (
        json.dumps(_with(message_id="2000013258")).encode(),
        422,
        {"$.message_id"},
    ),
    "message-id-2**64": (json.dumps(_with(message_id=2**64)).encode(), 422, {"$.message_id"}),
    "campaign-id-negative": (json.dumps(_with(campaign_id=-1)).encode(), 422, {"$.campaign_id"}),
    "campaign-id-bool": (json.dumps(_with(campaign_id=False)).encode(), 422, {"$.campaign_id"}),
    "payload-object": (json.dumps(_with(payload={"a": 1})).encode(), 422, {"$.payload"}),
    "event-name-number": (json.dumps(_with(event_name=7)).encode(), 422, {"$.event_name"}),
    "several-at-once": (
        json.dumps(
            _with(timestamp=False, message_id="1", campaign_id=-5, hwid=["a"], journey_title=3)
        ).encode(),
        422,
        {"$.timestamp", "$.message_id", "$.campaign_id", "$.hwid", "$.journey_title"},
    ),
    "array-bad-items": (
        json.dumps([_with(), _with(timestamp=1.5), _without("event_name"), "x"]).encode(),
        422,
        {"$[1].timestamp", "$[2].event_name", "$[3]"},
    ),
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_body_is_rejected_and_nothing_is_queued(
    client: TestClient[Litestar], db: Path, name: str
) -> None:
    body, status, paths = BAD_BODIES[name]
    with capture_logs() as logs:
        r = client.post(PATH, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    answer = r.json()
    assert isinstance(answer["error"], str) and answer["error"]
    if paths is not None:
        assert set(answer["errors"]) == paths
        assert all(isinstance(m, str) and m for m in answer["errors"].values())
    assert count(db, "events") == 0
    assert count(db, "deliveries") == 0
    (line,) = rejected(logs)
    assert line["status"] == status
    assert line["reason"]
    assert line["log_level"] == "warning"
    assert not [e for e in logs if e["event"] == "event.received"]


def test_array_is_all_or_nothing(client: TestClient[Litestar], db: Path) -> None:
    batch = load_example("batch.json")
    batch[1] = {**batch[1], "timestamp": "yesterday"}
    r = post(client, batch)
    assert r.status_code == 422
    assert set(r.json()["errors"]) == {"$[1].timestamp"}
    assert count(db, "events") == 0
    assert count(db, "deliveries") == 0
    assert count(db, "fingerprints") == 0
    # ... and the good items of it are not remembered as seen: fixed, all three go in
    r = post(client, load_example("batch.json"))
    assert r.json() == {"accepted": 3, "ids": r.json()["ids"]}


def test_error_messages_say_what_is_wrong(client: TestClient[Litestar]) -> None:
    r = post(client, _with(timestamp=True, message_id=2**64))
    errors = r.json()["errors"]
    assert "boolean" in errors["$.timestamp"]
    assert "range" in errors["$.message_id"]
    r = post(client, _without("hwid"))
    assert "missing" in r.json()["errors"]["$.hwid"]


@pytest.mark.parametrize(
    ("item", "per_item"),
    [(b"{}", len(REQUIRED)), (b"1", 1), (b'{"timestamp":"x","hwid":null}', len(REQUIRED))],
    ids=["empty-objects", "numbers", "bad-fields"],
)
def test_the_error_report_is_capped_whatever_the_body(
    serve: Callable[..., Any], db: Path, item: bytes, per_item: int
) -> None:
    """1 MB of ``{}`` holds 2.4 million errors: the 422 names 50 and counts the rest."""
    items = (MIB - 2) // (len(item) + 1)
    body = b"[" + b",".join([item] * items) + b"]"
    with capture_logs() as logs, serve(max_body=MIB) as client:
        r = client.post(PATH, content=body)
    assert r.status_code == 422
    assert len(r.content) < 4096  # a few KB, however many errors
    answer = r.json()
    assert answer["error"] == "event does not match the Pushwoosh webhook schema"
    assert len(answer["errors"]) == MAX_REPORTED_ERRORS
    assert answer["errors_omitted"] == items * per_item - MAX_REPORTED_ERRORS
    first = next(iter(answer["errors"]))
    assert first.startswith("$[0]")  # in body order: the sender fixes them front to back
    (line,) = rejected(logs)
    assert line["status"] == 422 and len(repr(line)) < 1000  # the log line is not the report
    assert count(db, "events") == 0


def test_a_bug_on_the_receiving_path_is_a_logged_503_not_a_500(
    client: TestClient[Litestar], db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The safety net: no body produces one (tests/test_fuzz.py), but a bug must not be a 500."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("a bug")
        yield  # a generator, like the real steps

    monkeypatch.setattr("relay.app.preparation", broken)
    with capture_logs() as logs:
        r = post(client, example("email-sent.json"))
    assert r.status_code == 503
    assert r.json() == {"error": "internal error; the event was not accepted"}
    (line,) = [e for e in logs if e["event"] == "receiver.failed"]
    assert line["log_level"] == "error"
    assert "ZeroDivisionError: a bug" in line["error"]
    assert isinstance(line["exc_info"], ZeroDivisionError)  # rendered as a traceback
    assert not rejected(logs)
    assert count(db, "events") == 0


# -- 413 ------------------------------------------------------------------------------------
def _padded(size: int) -> bytes:
    """A valid event padded with whitespace to exactly ``size`` bytes."""
    raw = json.dumps(load_example("email-sent.json")).encode()
    return raw + b" " * (size - len(raw))


def test_body_at_the_limit_is_accepted(client: TestClient[Litestar], db: Path) -> None:
    r = post(client, _padded(MAX_BODY))
    assert r.status_code == 200
    assert count(db, "events") == 1


def test_body_over_the_limit_with_content_length_is_413(
    client: TestClient[Litestar], db: Path
) -> None:
    with capture_logs() as logs:
        r = post(client, _padded(MAX_BODY + 1))
    assert r.request.headers["content-length"] == str(MAX_BODY + 1)
    assert r.status_code == 413
    assert r.json()["error"]
    assert count(db, "events") == 0
    (line,) = rejected(logs)
    assert line["status"] == 413 and line["reason"]


def test_body_over_the_limit_chunked_is_413(client: TestClient[Litestar], db: Path) -> None:
    body = _padded(MAX_BODY * 3)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    with capture_logs() as logs:
        r = client.post(PATH, content=chunks())
    assert "content-length" not in r.request.headers
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert r.status_code == 413
    assert r.json()["error"]
    assert count(db, "events") == 0
    (line,) = rejected(logs)
    assert line["status"] == 413 and line["reason"]


def test_chunked_body_under_the_limit_is_accepted(client: TestClient[Litestar], db: Path) -> None:
    body = json.dumps(load_example("batch.json")).encode()
    r = client.post(PATH, content=iter([body[:100], body[100:]]))
    assert r.status_code == 200
    assert r.json()["accepted"] == 3


@pytest.mark.parametrize("reloaded", [100, 100_000])
def test_max_body_bytes_is_the_startup_one_after_a_reload(
    client: TestClient[Litestar], db: Path, reloaded: int
) -> None:
    # server.max_body_bytes is restart-only (relay.reload.RESTART_ONLY): a reload changing it
    # must neither half-apply it nor make the 413 name a limit that is not enforced
    runtime(client).config = make_config(db, max_body=reloaded)
    assert post(client, _padded(1000)).status_code == 200
    for body in (_padded(MAX_BODY + 1), iter([_padded(MAX_BODY + 1)])):
        r = client.post(PATH, content=body)
        assert r.status_code == 413
        assert str(MAX_BODY) in r.json()["error"]


def test_token_set_by_a_reload_is_required(client: TestClient[Litestar], db: Path) -> None:
    runtime(client).config = make_config(db, token=TOKEN)
    assert post(client, load_example("email-sent.json")).status_code == 401
    r = post(client, load_example("email-sent.json"), params={"token": TOKEN})
    assert r.status_code == 200


# -- 401 ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ({}, {}),
        ({"token": "wrong-token-value"}, {}),
        ({"token": ""}, {}),
        ({"token": TOKEN[:-1]}, {}),
        ({"token": TOKEN + "x"}, {}),
        ({}, {"Authorization": "Bearer wrong-token-value"}),
        ({}, {"Authorization": "Bearer"}),
        ({}, {"Authorization": TOKEN}),
        ({}, {"Authorization": f"Basic {TOKEN}"}),
        ({}, {"X-Token": TOKEN}),
    ],
    ids=[
        "missing",
        "wrong-query",
        "empty-query",
        "prefix",
        "longer",
        "wrong-bearer",
        "bearer-no-value",
        "no-scheme",
        "basic",
        "other-header",
    ],
)
def test_missing_or_wrong_token_is_401(
    serve: Callable[..., Any], db: Path, params: dict[str, str], headers: dict[str, str]
) -> None:
    with capture_logs() as logs, serve(token=TOKEN) as client:
        r = post(client, load_example("email-sent.json"), params=params, headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]
        # the token is checked before the body is even looked at
        r = post(client, b"not json", params=params, headers=headers)
        assert r.status_code == 401
    assert count(db, "events") == 0
    lines = rejected(logs)
    assert [e["status"] for e in lines] == [401, 401]
    assert all(e["reason"] for e in lines)
    assert TOKEN not in repr(logs)
    assert "wrong-token-value" not in repr(logs)


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ({"token": TOKEN}, {}),
        ({}, {"Authorization": f"Bearer {TOKEN}"}),
        ({}, {"Authorization": f"bearer {TOKEN}"}),
    ],
    ids=["query", "bearer", "bearer-lowercase"],
)
def test_right_token_is_accepted(
    serve: Callable[..., Any], db: Path, params: dict[str, str], headers: dict[str, str]
) -> None:
    with capture_logs() as logs, serve(token=TOKEN) as client:
        r = post(client, load_example("email-sent.json"), params=params, headers=headers)
        assert r.status_code == 200
        assert r.json()["accepted"] == 1
        # with the right token, the other checks still apply
        r = post(client, b"{", params=params, headers=headers)
        assert r.status_code == 400
    assert count(db, "events") == 1
    assert TOKEN not in repr(logs)


def test_no_token_configured_accepts_any(client: TestClient[Litestar]) -> None:
    r = post(client, load_example("email-sent.json"), params={"token": "whatever"})
    assert r.status_code == 200


# -- 5. queue unavailable: 503, never 2xx --------------------------------------------------
def _close(rt: Runtime) -> Callable[[], Any]:
    async def close() -> None:
        await rt.queue.close()

    return close


@pytest.mark.parametrize("breaker", [_close])
def test_queue_unavailable_is_503_and_readyz_says_so(
    client: TestClient[Litestar], db: Path, breaker: Callable[..., Any]
) -> None:
    assert client.get("/readyz").status_code == 200
    assert post(client, example("email-sent.json")).status_code == 200
    client.blocking_portal.call(breaker(runtime(client)))
    with capture_logs() as logs:
        single = post(client, example("email-opened.json"))
        batch = post(client, load_example("batch.json"))
        ready = client.get("/readyz")
        health = client.get("/healthz")
    for r in (single, batch):
        assert r.status_code == 503
        assert r.json()["error"]
        assert "ids" not in r.json()
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert health.status_code == 200
    assert count(db, "events") == 1
    assert count(db, "deliveries") == 3
    assert [e["event"] for e in logs if e["event"].startswith("event.")] == []
    assert len([e for e in logs if e["event"] == "queue.unavailable"]) == 2


def test_healthz_and_readyz_when_fine(client: TestClient[Litestar]) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready"}


# -- 6. dedupe -----------------------------------------------------------------------------
def test_same_body_twice_is_a_duplicate(client: TestClient[Litestar], db: Path) -> None:
    body = json.dumps(load_example("email-sent.json")).encode()
    first = post(client, body)
    assert first.status_code == 200
    with capture_logs() as logs:
        second = post(client, body)
    assert second.status_code == 200
    assert second.json() == {"accepted": 0, "ids": first.json()["ids"], "duplicates": 1}
    assert count(db, "events") == 1
    assert count(db, "deliveries") == 3
    assert not [e for e in logs if e["event"] == "event.received"]
    assert [e["event_id"] for e in logs if e["event"] == "event.duplicate"] == first.json()["ids"]
    # a different event is not a duplicate
    other = post(client, {**load_example("email-sent.json"), "timestamp": 1723798299})
    assert other.json()["accepted"] == 1
    assert count(db, "deliveries") == 6


def test_same_batch_twice_is_three_duplicates(client: TestClient[Litestar], db: Path) -> None:
    body = json.dumps(load_example("batch.json")).encode()
    first = post(client, body)
    assert first.json()["accepted"] == 3
    second = post(client, body)
    assert second.status_code == 200
    assert second.json() == {"accepted": 0, "ids": first.json()["ids"], "duplicates": 3}
    assert count(db, "events") == 3
    assert count(db, "deliveries") == 7


def test_batch_with_one_seen_event_accepts_the_rest(client: TestClient[Litestar], db: Path) -> None:
    sent, delivered, opened = load_example("batch.json")
    first = post(client, delivered)
    r = post(client, [sent, delivered, opened])
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 2
    assert body["duplicates"] == 1
    assert body["ids"][1] == first.json()["ids"][0]
    assert count(db, "events") == 3


def test_concurrent_identical_bodies_make_one_event(client: TestClient[Litestar], db: Path) -> None:
    body = json.dumps(load_example("email-sent.json")).encode()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(client, body), range(24)))
    assert all(r.status_code == 200 for r in answers)
    assert sum(r.json()["accepted"] for r in answers) == 1
    assert sum(r.json().get("duplicates", 0) for r in answers) == 23
    assert len({r.json()["ids"][0] for r in answers}) == 1
    assert count(db, "events") == 1
    assert count(db, "deliveries") == 3


def test_dedupe_window_zero_accepts_both(serve: Callable[..., Any], db: Path) -> None:
    body = json.dumps(load_example("email-sent.json")).encode()
    with serve(dedupe_window=0) as client:
        first = post(client, body)
        second = post(client, body)
    assert first.json()["accepted"] == second.json()["accepted"] == 1
    assert "duplicates" not in second.json()
    assert first.json()["ids"] != second.json()["ids"]
    assert count(db, "events") == 2
    assert count(db, "deliveries") == 6
    assert count(db, "fingerprints") == 0


def test_dedupe_survives_a_restart(serve: Callable[..., Any], db: Path) -> None:
    body = json.dumps(load_example("email-bounced.json")).encode()
    with serve() as client:
        first = post(client, body)
    with serve() as client:
        second = post(client, body)
    assert second.json() == {"accepted": 0, "ids": first.json()["ids"], "duplicates": 1}
    assert count(db, "deliveries") == 1


# -- 7. logs -------------------------------------------------------------------------------
def test_event_received_log_line(client: TestClient[Litestar]) -> None:
    with capture_logs() as logs:
        r = post(client, load_example("batch.json"))
    received = [e for e in logs if e["event"] == "event.received"]
    assert [e["event_id"] for e in received] == r.json()["ids"]
    sent, delivered, _ = received
    assert sent == {
        "event": "event.received",
        "log_level": "info",
        "event_id": r.json()["ids"][0],
        "event_name": "Email Sent",
        "routes": ["sent-to-crm", "email-archive"],
        "deliveries": 3,
    }
    assert delivered["event_name"] == "Email Delivered"
    assert delivered["routes"] == ["email-archive"]
    assert delivered["deliveries"] == 2
    assert not rejected(logs)


def test_event_received_for_a_stop_route(client: TestClient[Litestar]) -> None:
    with capture_logs() as logs:
        post(client, load_example("email-bounced.json"))
    (line,) = [e for e in logs if e["event"] == "event.received"]
    assert line["event_name"] == "Email Bounced"
    assert line["routes"] == ["bounces-only-ops"]
    assert line["deliveries"] == 1
