"""The Sender on both transports, against real local servers, friendly and hostile.

The mapping table at the end builds the libraries' own exceptions for the
failures a local server cannot stage (phases of timeouts, unreachable hosts, TLS).
Memory is measured with tracemalloc in this process (the relay's side and the
raw server, whose own buffers are bounded by ``drain``); the raw server counts
what it got into the socket before the relay hung up.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import tracemalloc
from collections.abc import AsyncIterator

import aiohttp
import httpx
import pytest

from relay.destinations import OutboundRequest
from relay.errors import (
    ConnectFailed,
    ConnectionReset,
    ProtocolViolation,
    RequestInvalid,
    SendFailed,
    SendTimeout,
    TimeoutPhase,
)
from relay.http_client import ANSWER_CAP, DRAIN_LIMIT, Sender, failure

from .rawserver import (
    Connection,
    RawServer,
    read_request,
    respond,
    stream_forever,
    wait_hung_up,
    write,
)
from .sink import Answer, Sink

TRANSPORTS = ["aiohttp", "httpx"]
CONCURRENCY = 8
#: Far below what the endless servers offer (up to 1 GiB per connection).
MEMORY_BOUND = 16 * 2**20
SOCKET_BOUND = 64 * 2**20


@pytest.fixture(params=TRANSPORTS)
async def sender(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Sender]:
    monkeypatch.setenv("RELAY_HTTP_TRANSPORT", request.param)
    sender = Sender()
    yield sender
    await sender.aclose()


def post(url: str) -> OutboundRequest:
    return OutboundRequest("POST", url, {"Content-Type": "application/json"}, b'{"n":1}')


async def test_answers_are_plain_values(sender: Sender, sink: Sink) -> None:
    sink.script = [
        Answer(201, {"X-Id": "7"}, body=b""),
        Answer(503, {"Retry-After": "3"}, body=b"  busy, try later  "),
    ]
    request = OutboundRequest("PUT", sink.url + "/x?y=1", {"X-A": "b"}, b'{"n":1}')
    ok = await sender.send(request, 5)
    busy = await sender.send(request, 5)
    assert (ok.status, ok.body, ok.truncated, ok.headers["x-id"]) == (201, b"", False, "7")
    assert (busy.status, busy.body, busy.truncated) == (503, b"  busy, try later  ", False)
    assert type(busy.headers) is dict and busy.headers["retry-after"] == "3"
    assert all(name == name.lower() for name in busy.headers)
    assert busy.excerpt(6) == "  busy"
    got = sink.received[0]
    assert (got.method, got.path, got.headers["x-a"], got.body) == (
        "PUT",
        "/x?y=1",
        "b",
        b'{"n":1}',
    )


@pytest.mark.parametrize("status", [500, 200])
async def test_an_endless_answer_is_cut_at_the_cap(sender: Sender, status: int) -> None:
    """Eight attempts at once against bodies that never end: bounded memory, prompt end."""
    chunk = b"<html>" + b"x" * 65530

    async def endless(r: asyncio.StreamReader, w: asyncio.StreamWriter, c: Connection) -> None:
        await read_request(r, c)
        await write(w, c, b"HTTP/1.1 %d Whatever\r\nContent-Type: text/html\r\n\r\n" % status)
        await stream_forever(w, c, chunk)

    async with RawServer(endless) as server:
        tracemalloc.start()
        try:
            answers = await asyncio.gather(
                *(sender.send(post(server.url), 30) for _ in range(CONCURRENCY))
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        await asyncio.wait_for(asyncio.gather(*(c.hung_up.wait() for c in server.connections)), 10)
    for answer in answers:
        assert answer.status == status and answer.truncated
        assert answer.body == (chunk * 2)[:ANSWER_CAP]
        assert answer.interrupted == ""  # cut by the cap, not by the 30 s deadline
    assert peak < MEMORY_BOUND
    assert len(server.connections) == CONCURRENCY
    assert all(c.sent < SOCKET_BOUND for c in server.connections)


async def test_a_slow_drip_body_ends_at_the_deadline(sender: Sender) -> None:
    async def drip(r: asyncio.StreamReader, w: asyncio.StreamWriter, c: Connection) -> None:
        await read_request(r, c)
        await write(w, c, b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        while True:
            await write(w, c, b"x")
            await asyncio.sleep(0.02)

    async with RawServer(drip) as server:
        answer = await sender.send(post(server.url), 0.5)
    assert (answer.status, answer.truncated) == (200, True)
    assert 0 < len(answer.body) < ANSWER_CAP
    assert answer.interrupted == "no complete answer within 0.5s"


@pytest.mark.parametrize(
    ("length", "connections"), [(ANSWER_CAP + 1000, 1), (ANSWER_CAP + 4 * DRAIN_LIMIT, 2)]
)
async def test_a_small_rest_is_drained_to_keep_the_connection(
    sender: Sender, length: int, connections: int
) -> None:
    """Past the cap, a rest known to be small is read and dropped; a big one closes."""
    body = b"y" * length

    async def answers(r: asyncio.StreamReader, w: asyncio.StreamWriter, c: Connection) -> None:
        while await read_request(r, c):
            await write(w, c, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % length + body)

    async with RawServer(answers) as server:
        first = await sender.send(post(server.url), 5)
        second = await sender.send(post(server.url), 5)
    assert first == second
    assert (first.body, first.truncated) == (body[:ANSWER_CAP], True)
    assert len(server.connections) == connections


async def test_a_reset_before_the_answer_is_a_reset(sender: Sender) -> None:
    async with RawServer(respond(b"HTTP/1.1 200 OK\r\nContent-", "reset", 0.1)) as server:
        with pytest.raises(ConnectionReset) as caught:
            await sender.send(post(server.url), 5)
    assert caught.value.reason == "connection reset by peer"
    assert caught.value.retryable


async def test_a_reset_mid_body_keeps_the_status(sender: Sender) -> None:
    """Once the status line is in, the destination has answered; the body is marked cut."""
    head = b"HTTP/1.1 500 Oops\r\nContent-Length: 1000\r\n\r\nstack trace"
    async with RawServer(respond(head, "reset", 0.2)) as server:
        answer = await sender.send(post(server.url), 5)
    assert (answer.status, answer.body, answer.truncated) == (500, b"stack trace", True)
    assert answer.interrupted == "connection reset by peer"


async def test_a_close_without_an_answer_is_a_reset(sender: Sender) -> None:
    async with RawServer(respond(b"", "close")) as server:
        with pytest.raises(ConnectionReset) as caught:
            await sender.send(post(server.url), 5)
    assert caught.value.reason == "connection closed by peer"


async def test_no_answer_is_a_timeout(sender: Sender) -> None:
    async with RawServer(respond(b"")) as server:
        with pytest.raises(SendTimeout) as caught:
            await sender.send(post(server.url), 0.3)
    assert (caught.value.phase, caught.value.seconds) == (TimeoutPhase.OVERALL, 0.3)
    assert caught.value.reason == "no complete answer within 0.3s"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff garbage\r\n\r\n", "not an HTTP answer"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n", "oversized answer headers"),
    ],
    ids=["garbage", "oversized-header"],
)
async def test_garbage_is_a_protocol_violation(sender: Sender, answer: bytes, reason: str) -> None:
    async with RawServer(respond(answer)) as server:
        with pytest.raises(ProtocolViolation) as caught:
            await sender.send(post(server.url), 5)
    assert caught.value.reason.startswith(reason)


async def test_endless_headers_are_a_protocol_violation(sender: Sender) -> None:
    async def headers(r: asyncio.StreamReader, w: asyncio.StreamWriter, c: Connection) -> None:
        await read_request(r, c)
        await write(w, c, b"HTTP/1.1 200 OK\r\n")
        await stream_forever(w, c, b"X-More: yes\r\n" * 1000)

    async with RawServer(headers) as server:
        with pytest.raises(ProtocolViolation):
            await sender.send(post(server.url), 5)
        await asyncio.wait_for(server.connections[0].hung_up.wait(), 10)
    assert server.connections[0].sent < SOCKET_BOUND


async def test_a_refused_port_is_a_connect_failure(sender: Sender) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectFailed) as caught:
        await sender.send(post(f"http://127.0.0.1:{port}/"), 2)
    assert caught.value.reason == "connect refused"


async def test_a_tls_failure_is_a_connect_failure(sender: Sender) -> None:
    async def plain(r: asyncio.StreamReader, w: asyncio.StreamWriter, c: Connection) -> None:
        await r.read(100)  # the TLS ClientHello, answered in plain HTTP
        await write(w, c, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await wait_hung_up(r)

    async with RawServer(plain) as server:
        with pytest.raises(ConnectFailed) as caught:
            await sender.send(post(server.url.replace("http:", "https:")), 5)
    assert caught.value.reason == "TLS failed: wrong version number"


async def test_an_unknown_host_is_a_connect_failure(sender: Sender) -> None:
    # `.invalid` never resolves (RFC 6761).
    with pytest.raises(ConnectFailed) as caught:
        await sender.send(post("http://relay-test.invalid/"), 5)
    assert caught.value.reason == "DNS lookup failed"


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("ftp://example.com/", {}),
        (None, {"X-A": "split\r\nX-Evil: 1"}),
        (None, {"X-A": "café Evil"}),
    ],
    ids=["scheme", "header-injection", "non-ascii"],
)
async def test_an_unsendable_request_is_final(
    sender: Sender, sink: Sink, url: str | None, headers: dict[str, str]
) -> None:
    with pytest.raises(RequestInvalid) as caught:
        await sender.send(OutboundRequest("POST", url or sink.url, headers, b"{}"), 2)
    assert not caught.value.retryable
    assert "Evil" not in caught.value.reason  # header values are secrets: never quoted
    assert sink.received == []


async def test_failures_are_relay_errors_only(sender: Sender) -> None:
    """Nothing of httpx or aiohttp escapes: the cause is kept for a traceback, no more."""
    with pytest.raises(SendFailed) as caught:
        await sender.send(post("http://127.0.0.1:1/"), 2)
    assert type(caught.value).__module__ == "relay.errors"


def raised(exc: Exception, cause: BaseException | None = None) -> Exception:
    """``exc`` as a transport raises it: with its cause and traceback."""
    try:
        raise exc from cause
    except Exception as caught:
        return caught


@pytest.mark.parametrize(
    ("exc", "kind", "reason"),
    [
        (httpx.ConnectTimeout(""), SendTimeout, "no connection within 10s"),
        (httpx.WriteTimeout(""), SendTimeout, "request not sent within 10s"),
        (httpx.ReadTimeout(""), SendTimeout, "no answer within 10s"),
        (httpx.PoolTimeout(""), SendTimeout, "no free connection within 10s"),
        (TimeoutError(), SendTimeout, "no complete answer within 10s"),
        (aiohttp.ConnectionTimeoutError(), SendTimeout, "no connection within 10s"),
        (aiohttp.SocketTimeoutError(), SendTimeout, "no answer within 10s"),
        # httpx-aiohttp calls a closed connection a ConnectTimeout; its cause says better.
        (
            raised(httpx.ConnectTimeout("x"), aiohttp.ServerDisconnectedError()),
            ConnectionReset,
            "connection closed by peer",
        ),
        (
            raised(httpx.ConnectTimeout("x"), aiohttp.ClientOSError(errno.ECONNRESET, "reset")),
            ConnectionReset,
            "connection reset by peer",
        ),
        (aiohttp.ClientOSError(errno.ENETUNREACH, "x"), ConnectFailed, "network unreachable"),
        (
            raised(httpx.ConnectError("x"), OSError(errno.EHOSTUNREACH, "No route to host")),
            ConnectFailed,
            "host unreachable",
        ),
        (BrokenPipeError(), ConnectionReset, "connection closed by peer"),
        (RuntimeError("odd\nthing"), SendFailed, "RuntimeError: odd thing"),
    ],
)
def test_every_transport_failure_is_named(
    exc: BaseException, kind: type[SendFailed], reason: str
) -> None:
    got = failure(exc, 10)
    assert (type(got), got.reason) == (kind, reason)
