"""The Sender on both transports, against a real local server."""

from __future__ import annotations

import socket

import httpx
import pytest

from relay.destinations import OutboundRequest
from relay.http_client import Sender

from .sink import Answer, Sink


@pytest.fixture(params=["aiohttp", "httpx"])
def sender(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Sender:
    monkeypatch.setenv("RELAY_HTTP_TRANSPORT", request.param)
    return Sender()


async def test_answers_and_snippets(sender: Sender, sink: Sink) -> None:
    sink.script = [Answer(201), Answer(503, {"Retry-After": "3"}, body=b"  busy, try later  ")]
    request = OutboundRequest("PUT", sink.url + "/x?y=1", {"X-A": "b"}, b'{"n":1}')
    ok = await sender.send(request, 5)
    busy = await sender.send(request, 5)
    await sender.aclose()
    assert (ok.status, ok.snippet) == (201, "")
    assert (busy.status, busy.snippet, busy.headers["retry-after"]) == (503, "busy, try later", "3")
    got = sink.received[0]
    assert (got.method, got.path, got.headers["x-a"], got.body) == (
        "PUT",
        "/x?y=1",
        "b",
        b'{"n":1}',
    )


async def test_timeout_is_an_httpx_timeout(sender: Sender, sink: Sink) -> None:
    sink.script = [Answer(200, delay=2)]
    with pytest.raises(httpx.TimeoutException):
        await sender.send(OutboundRequest("POST", sink.url, {}, b"{}"), 0.5)
    await sender.aclose()


async def test_refused_is_an_httpx_error(sender: Sender) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(httpx.HTTPError):
        await sender.send(OutboundRequest("POST", f"http://127.0.0.1:{port}/", {}, b"{}"), 2)
    await sender.aclose()
