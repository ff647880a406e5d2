"""The HTTP receiver end to end: the real app, its lifespan and a real queue.

Every answer is checked against what is durably in the queue afterwards, read
back through the app's own queue interface, never a backend's tables (CONTRACT
sections 3, 4, 7 and dedupe of 8). Tests about what is stored run on both
backends (:data:`both_backends`); the others on a SQLite file.
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
from relay.model import MAX_REPORTED_ERRORS, DeliveryState
from relay.queue import StoredEvent

from .queuekit import stored_events
from .store import deliveries_of, store

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
  url: "{url}"
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
def make_config(url: str, max_body: int = MAX_BODY, **server: Any) -> RelayConfig:
    lines = "\n".join(f"  {key}: {value}" for key, value in server.items())
    text = CONFIG.format(max_body=max_body, server=lines, url=url)
    return parse_config(text, "relay.yaml", env={})


def make_app(url: str, **server: Any) -> Litestar:
    return create_app(make_config(url, **server), run_workers=False)


#: For a test about what is stored: run it on each backend (the ``queue_url`` fixture).
both_backends = pytest.mark.usefixtures("queue_url")


@pytest.fixture
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The queue the app runs on: each backend's under :data:`both_backends`, else SQLite."""
    if "queue_url" in request.fixturenames:
        return str(request.getfixturevalue("queue_url"))
    path = tmp_path / "data" / "relay.db"  # a directory the relay has to create
    assert path.is_absolute()  # sqlite:////abs/path.db
    return f"sqlite:///{path}"


@pytest.fixture
def serve(url: str) -> Callable[..., Any]:
    """``with serve(**server_settings) as client:`` runs the app, lifespan included."""

    @contextmanager
    def run(**server: Any) -> Iterator[TestClient[Litestar]]:
        with TestClient(make_app(url, **server)) as client:
            yield client

    return run


@pytest.fixture
def client(serve: Callable[..., Any]) -> Iterator[TestClient[Litestar]]:
    with serve() as c:
        yield c


def count(client: TestClient[Litestar], what: str) -> int:
    """How many ``events`` or ``deliveries`` the app's queue holds."""
    read = {"events": stored_events, "deliveries": deliveries_of}[what]
    return len(client.blocking_portal.call(read, runtime(client).queue))


def event_in(client: TestClient[Litestar], event_id: str) -> StoredEvent:
    """One stored event with its deliveries, read through the app's queue."""
    found = client.blocking_portal.call(runtime(client).queue.event, event_id)
    assert found is not None, f"event {event_id} is not in the queue"
    return found


def deliveries(client: TestClient[Litestar], event_id: str) -> dict[str, str]:
    """destination -> route of the deliveries of one event."""
    found = event_in(client, event_id).deliveries
    assert all(d.state == DeliveryState.PENDING for d in found)
    out = {d.destination: d.route for d in found}
    assert len(out) == len(found), "more than one delivery per (event, destination)"
    return out


def stored(client: TestClient[Litestar], event_id: str) -> bytes:
    return event_in(client, event_id).body


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
@both_backends
def test_one_event_is_committed_with_its_deliveries(client: TestClient[Litestar]) -> None:
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
    assert json.loads(stored(client, event_id)) == event
    # fan-out: two routes, `archive` reached by both but delivered once (first route wins)
    assert deliveries(client, event_id) == {
        "crm": "sent-to-crm",
        "archive": "sent-to-crm",
        "slack-ops": "email-archive",
    }
    assert count(client, "events") == 1
    assert count(client, "deliveries") == 3


@both_backends
def test_an_array_is_committed_event_by_event(client: TestClient[Litestar]) -> None:
    batch = load_example("batch.json")
    r = post(client, batch)
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 3
    assert len(body["ids"]) == len(set(body["ids"])) == 3
    for event, event_id in zip(batch, body["ids"], strict=True):  # ids in body order
        assert json.loads(stored(client, event_id)) == event
    sent, delivered, opened = body["ids"]
    assert set(deliveries(client, sent)) == {"crm", "archive", "slack-ops"}
    assert deliveries(client, delivered) == {
        "archive": "email-archive",
        "slack-ops": "email-archive",
    }
    assert deliveries(client, opened) == {"archive": "email-archive", "slack-ops": "email-archive"}
    assert count(client, "events") == 3
    assert count(client, "deliveries") == 7


def test_stop_ends_the_matching(client: TestClient[Litestar]) -> None:
    r = post(client, example("email-bounced.json"))
    assert r.status_code == 200
    (event_id,) = r.json()["ids"]
    # `email-archive` would match too (platform Email) but comes after a `stop: true` route
    assert deliveries(client, event_id) == {"slack-ops": "bounces-only-ops"}


def test_no_route_matched_is_accepted_with_no_delivery(client: TestClient[Litestar]) -> None:
    with capture_logs() as logs:
        r = post(client, example("push-ios.json"))
    assert r.status_code == 200
    assert r.json()["accepted"] == 1
    (event_id,) = r.json()["ids"]
    assert count(client, "events") == 1
    assert deliveries(client, event_id) == {}
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
    client: TestClient[Litestar], content_type: str | None
) -> None:
    event = example("email-opened.json")
    headers = {"Content-Type": content_type} if content_type else {}
    r = client.post(PATH, content=json.dumps(event).encode(), headers=headers)
    if content_type is None:
        assert "content-type" not in r.request.headers
    assert r.status_code == 200, r.text
    (event_id,) = r.json()["ids"]
    assert json.loads(stored(client, event_id)) == event


# -- 3. unknown fields and exact integers --------------------------------------------------
@both_backends
def test_unknown_fields_are_kept_untouched(client: TestClient[Litestar]) -> None:
    event = example("push-ios.json")
    event["x_custom"] = {"nested": [1, 2.5, 'é ✓ "q"', None, True, {"k": []}]}
    event["x_huge"] = 2**70  # beyond uint64, still an exact integer
    event["x_min"] = -(2**63)
    event["zz_last"] = "order kept"
    r = post(client, event)
    assert r.status_code == 200
    (event_id,) = r.json()["ids"]
    raw = stored(client, event_id)
    back = json.loads(raw)
    assert back == event
    assert list(back) == list(event)  # key order kept
    assert back["x_huge"] == 2**70 and type(back["x_huge"]) is int
    assert back["x_min"] == -(2**63)


@both_backends
def test_uint64_max_message_id_is_stored_exactly(client: TestClient[Litestar]) -> None:
    event = example("push-ios.json")
    assert event["message_id"] == UINT64_MAX
    event["campaign_id"] = UINT64_MAX
    r = post(client, event)
    assert r.status_code == 200
    raw = stored(client, r.json()["ids"][0])
    assert b"18446744073709551615" in raw  # no float round trip (1.8446744073709552e19)
    back = json.loads(raw)
    assert type(back["message_id"]) is int and back["message_id"] == UINT64_MAX
    assert type(back["campaign_id"]) is int and back["campaign_id"] == UINT64_MAX


def test_optional_fields_may_be_null_or_missing(client: TestClient[Litestar]) -> None:
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
    assert json.loads(stored(client, r.json()["ids"][1])) == nulls


def test_unknown_event_name_is_valid(client: TestClient[Litestar]) -> None:
    event = {**example("email-sent.json"), "event_name": "Email Link Clicked"}
    r = post(client, event)
    assert r.status_code == 200
    # not `sent-to-crm`, but `email-archive` (platform Email)
    assert set(deliveries(client, r.json()["ids"][0])) == {"archive", "slack-ops"}


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
    client: TestClient[Litestar], name: str
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
    assert count(client, "events") == 0
    assert count(client, "deliveries") == 0
    (line,) = rejected(logs)
    assert line["status"] == status
    assert line["reason"]
    assert line["log_level"] == "warning"
    assert not [e for e in logs if e["event"] == "event.received"]


@both_backends
def test_array_is_all_or_nothing(client: TestClient[Litestar]) -> None:
    batch = load_example("batch.json")
    batch[1] = {**batch[1], "timestamp": "yesterday"}
    r = post(client, batch)
    assert r.status_code == 422
    assert set(r.json()["errors"]) == {"$[1].timestamp"}
    assert count(client, "events") == 0
    assert count(client, "deliveries") == 0
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
    serve: Callable[..., Any], item: bytes, per_item: int
) -> None:
    """1 MB of ``{}`` holds 2.4 million errors: the 422 names 50 and counts the rest."""
    items = (MIB - 2) // (len(item) + 1)
    body = b"[" + b",".join([item] * items) + b"]"
    with capture_logs() as logs, serve(max_body=MIB) as client:
        r = client.post(PATH, content=body)
        assert count(client, "events") == 0
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


def test_a_bug_on_the_receiving_path_is_a_logged_503_not_a_500(
    client: TestClient[Litestar], monkeypatch: pytest.MonkeyPatch
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
    assert count(client, "events") == 0


# -- 413 ------------------------------------------------------------------------------------
def _padded(size: int) -> bytes:
    """A valid event padded with whitespace to exactly ``size`` bytes."""
    raw = json.dumps(load_example("email-sent.json")).encode()
    return raw + b" " * (size - len(raw))


def test_body_at_the_limit_is_accepted(client: TestClient[Litestar]) -> None:
    r = post(client, _padded(MAX_BODY))
    assert r.status_code == 200
    assert count(client, "events") == 1


def test_body_over_the_limit_with_content_length_is_413(client: TestClient[Litestar]) -> None:
    with capture_logs() as logs:
        r = post(client, _padded(MAX_BODY + 1))
    assert r.request.headers["content-length"] == str(MAX_BODY + 1)
    assert r.status_code == 413
    assert r.json()["error"]
    assert count(client, "events") == 0
    (line,) = rejected(logs)
    assert line["status"] == 413 and line["reason"]


def test_body_over_the_limit_chunked_is_413(client: TestClient[Litestar]) -> None:
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
    assert count(client, "events") == 0
    (line,) = rejected(logs)
    assert line["status"] == 413 and line["reason"]


def test_chunked_body_under_the_limit_is_accepted(client: TestClient[Litestar]) -> None:
    body = json.dumps(load_example("batch.json")).encode()
    r = client.post(PATH, content=iter([body[:100], body[100:]]))
    assert r.status_code == 200
    assert r.json()["accepted"] == 3


@pytest.mark.parametrize("reloaded", [100, 100_000])
def test_max_body_bytes_is_the_startup_one_after_a_reload(
    client: TestClient[Litestar], url: str, reloaded: int
) -> None:
    # server.max_body_bytes is restart-only (relay.reload.RESTART_ONLY): a reload changing it
    # must neither half-apply it nor make the 413 name a limit that is not enforced
    runtime(client).config = make_config(url, max_body=reloaded)
    assert post(client, _padded(1000)).status_code == 200
    for body in (_padded(MAX_BODY + 1), iter([_padded(MAX_BODY + 1)])):
        r = client.post(PATH, content=body)
        assert r.status_code == 413
        assert str(MAX_BODY) in r.json()["error"]


def test_token_set_by_a_reload_is_required(client: TestClient[Litestar], url: str) -> None:
    runtime(client).config = make_config(url, token=TOKEN)
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
    serve: Callable[..., Any], params: dict[str, str], headers: dict[str, str]
) -> None:
    with capture_logs() as logs, serve(token=TOKEN) as client:
        r = post(client, load_example("email-sent.json"), params=params, headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]
        # the token is checked before the body is even looked at
        r = post(client, b"not json", params=params, headers=headers)
        assert r.status_code == 401
        assert count(client, "events") == 0
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
    serve: Callable[..., Any], params: dict[str, str], headers: dict[str, str]
) -> None:
    with capture_logs() as logs, serve(token=TOKEN) as client:
        r = post(client, load_example("email-sent.json"), params=params, headers=headers)
        assert r.status_code == 200
        assert r.json()["accepted"] == 1
        # with the right token, the other checks still apply
        r = post(client, b"{", params=params, headers=headers)
        assert r.status_code == 400
        assert count(client, "events") == 1
    assert TOKEN not in repr(logs)


def test_no_token_configured_accepts_any(client: TestClient[Litestar]) -> None:
    r = post(client, load_example("email-sent.json"), params={"token": "whatever"})
    assert r.status_code == 200


# -- 5. queue unavailable: 503, never 2xx --------------------------------------------------
def _close(rt: Runtime) -> Callable[[], Any]:
    async def close() -> None:
        await rt.queue.close()

    return close


@both_backends
@pytest.mark.parametrize("breaker", [_close])
def test_queue_unavailable_is_503_and_readyz_says_so(
    client: TestClient[Litestar], url: str, breaker: Callable[..., Any]
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
    with store(url) as queue:  # the app's own queue is closed: read it as another process
        assert len(queue.events()) == 1
        assert len(queue.deliveries()) == 3
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
@both_backends
def test_same_body_twice_is_a_duplicate(client: TestClient[Litestar]) -> None:
    body = json.dumps(load_example("email-sent.json")).encode()
    first = post(client, body)
    assert first.status_code == 200
    with capture_logs() as logs:
        second = post(client, body)
    assert second.status_code == 200
    assert second.json() == {"accepted": 0, "ids": first.json()["ids"], "duplicates": 1}
    assert count(client, "events") == 1
    assert count(client, "deliveries") == 3
    assert not [e for e in logs if e["event"] == "event.received"]
    assert [e["event_id"] for e in logs if e["event"] == "event.duplicate"] == first.json()["ids"]
    # a different event is not a duplicate
    other = post(client, {**load_example("email-sent.json"), "timestamp": 1723798299})
    assert other.json()["accepted"] == 1
    assert count(client, "deliveries") == 6


@both_backends
def test_same_batch_twice_is_three_duplicates(client: TestClient[Litestar]) -> None:
    body = json.dumps(load_example("batch.json")).encode()
    first = post(client, body)
    assert first.json()["accepted"] == 3
    second = post(client, body)
    assert second.status_code == 200
    assert second.json() == {"accepted": 0, "ids": first.json()["ids"], "duplicates": 3}
    assert count(client, "events") == 3
    assert count(client, "deliveries") == 7


@both_backends
def test_batch_with_one_seen_event_accepts_the_rest(client: TestClient[Litestar]) -> None:
    sent, delivered, opened = load_example("batch.json")
    first = post(client, delivered)
    r = post(client, [sent, delivered, opened])
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 2
    assert body["duplicates"] == 1
    assert body["ids"][1] == first.json()["ids"][0]
    assert count(client, "events") == 3


@both_backends
def test_concurrent_identical_bodies_make_one_event(client: TestClient[Litestar]) -> None:
    body = json.dumps(load_example("email-sent.json")).encode()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(client, body), range(24)))
    assert all(r.status_code == 200 for r in answers)
    assert sum(r.json()["accepted"] for r in answers) == 1
    assert sum(r.json().get("duplicates", 0) for r in answers) == 23
    assert len({r.json()["ids"][0] for r in answers}) == 1
    assert count(client, "events") == 1
    assert count(client, "deliveries") == 3


@both_backends
def test_dedupe_window_zero_accepts_both(serve: Callable[..., Any]) -> None:
    body = json.dumps(load_example("email-sent.json")).encode()
    with serve(dedupe_window=0) as client:
        first = post(client, body)
        second = post(client, body)
        assert count(client, "events") == 2
        assert count(client, "deliveries") == 6
    assert first.json()["accepted"] == second.json()["accepted"] == 1
    assert "duplicates" not in second.json()
    assert first.json()["ids"] != second.json()["ids"]
    # Nothing was remembered as seen: with the window back on, the body is new.
    with serve() as client:
        third = post(client, body)
    assert third.json()["accepted"] == 1 and "duplicates" not in third.json()


@both_backends
def test_dedupe_survives_a_restart(serve: Callable[..., Any]) -> None:
    body = json.dumps(load_example("email-bounced.json")).encode()
    with serve() as client:
        first = post(client, body)
    with serve() as client:
        second = post(client, body)
        assert count(client, "deliveries") == 1
    assert second.json() == {"accepted": 0, "ids": first.json()["ids"], "duplicates": 1}


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
