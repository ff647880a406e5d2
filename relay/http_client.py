"""Sending one request: aiohttp's client, or httpx's transport, without a client layer.

The default sends with an ``aiohttp.ClientSession`` directly: a drain's profile
showed the httpx layer on top of it (building ``httpx.Request``s, converting
headers and streams through ``httpx-aiohttp``) costing a quarter of each
delivery's CPU, and httpx's own transport spends a whole core at a few hundred
requests per second (encode/httpx#3215). ``RELAY_HTTP_TRANSPORT=httpx`` sends
through httpx's transport instead (to compare, or where aiohttp is unwanted);
neither goes through ``AsyncClient``, whose cookie, redirect, auth and URL
merging work a relay never needs.

This is the boundary where the HTTP libraries end. Of any answer at most
:data:`ANSWER_CAP` bytes are read, by streaming, and the rest is discarded by
closing the connection, so memory stays bounded whatever a destination sends
(CONTRACT section 10). One overall deadline per attempt bounds slow-drip
answers that per-phase timeouts would let through. Every failure of the
transports (httpx, aiohttp, OSError, timeouts) leaves as a
:class:`~relay.errors.SendFailed`, so nothing above this module catches httpx
or aiohttp types (httpx's ``map_exceptions`` at its transport boundary is the model).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import socket
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Protocol, cast

import aiohttp
import httpx
import yarl
from aiohttp import http_exceptions

from .destinations import OutboundRequest
from .errors import (
    ConnectFailed,
    ConnectionReset,
    ProtocolViolation,
    RequestInvalid,
    SendFailed,
    SendTimeout,
    TimeoutPhase,
)
from .outcome import Answer

LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=200, keepalive_expiry=30)
#: Bytes of any answer read; the attempt history keeps the first 2 KB, errors 200 characters.
ANSWER_CAP = 4096
#: Past the cap, a rest known (Content-Length) to be at most this is read and dropped, so
#: the connection can be kept alive; anything bigger or of unknown size closes it instead.
DRAIN_LIMIT = 64 * 1024
#: Bytes asked of the socket at a time while reading an answer.
CHUNK = 16 * 1024
#: Seconds a response's close may take once the answer is in hand.
CLOSE_GRACE = 1.0
#: Characters of a library's own message kept in a reason, which only a person reads.
_MESSAGE_CHARS = 120


class _Exchange(Protocol):
    """One answer being read, whichever library sent the request."""

    status: int

    def headers(self) -> dict[str, str]:
        """Lower-case names, repeated fields joined with ", "."""

    def chunks(self) -> AsyncGenerator[bytes, None]:
        """The body as it arrives, undecoded."""

    async def close(self, complete: bool) -> None:
        """Hand the connection back (``complete``: the body was read to its end) or
        close it, discarding the rest unread."""


class _Opener(Protocol):
    async def open(self, outbound: OutboundRequest, timeout: float) -> _Exchange: ...

    async def aclose(self) -> None: ...


class Sender:
    """Sends an :class:`OutboundRequest`: an :class:`Answer`, or :class:`SendFailed` raised."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        """``transport``: send through this httpx transport; by default aiohttp (or httpx's
        own transport with ``RELAY_HTTP_TRANSPORT=httpx``)."""
        self._opener: _Opener
        if transport is not None:
            self._opener = _HttpxOpener(transport)
        elif os.environ.get("RELAY_HTTP_TRANSPORT", "aiohttp") == "httpx":
            self._opener = _HttpxOpener(httpx.AsyncHTTPTransport(limits=LIMITS))
        else:
            self._opener = _AiohttpOpener()

    async def send(self, outbound: OutboundRequest, timeout: float) -> Answer:
        """One attempt, all of it (connect, send, headers, capped body) within ``timeout``.

        Once the status line is in, the destination has answered: a body that
        breaks off or outlasts the deadline makes the answer ``truncated``, not a failure.
        One deadline covers it all: each ``asyncio.timeout`` costs a timer and, on
        Python 3.11, two ``getpid(2)`` calls, which show in a drain's profile.
        """
        answer = _AnswerReader(timeout)
        try:
            async with asyncio.timeout(timeout):
                with map_exceptions(timeout):
                    answer.exchange = await self._opener.open(outbound, timeout)
                await answer.read()
        except TimeoutError as exc:
            if answer.exchange is None:
                raise SendTimeout(TimeoutPhase.OVERALL, timeout) from exc
            answer.interrupt(exc)  # the status stands; the body is what came in time
        finally:
            if answer.exchange is not None:
                await _close(answer.exchange, answer.complete)
        return answer.answer()

    async def aclose(self) -> None:
        await self._opener.aclose()


class _AiohttpOpener:
    """One ``aiohttp.ClientSession`` for every destination of this process, made on the
    first request (it belongs to the running loop)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, yarl.URL] = {}

    def _url(self, url: str) -> yarl.URL:
        """Parsed once per destination URL, normalised as httpx does (what earlier
        versions sent): parsing was a tenth of a drain's CPU."""
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) > 1000:
                self._urls.clear()
            parsed = self._urls[url] = yarl.URL(str(httpx.URL(url)))
        return parsed

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=LIMITS.max_connections or 0,
                keepalive_timeout=LIMITS.keepalive_expiry,
                ssl=httpx.create_ssl_context(),  # certifi's roots, SSL_CERT_FILE honoured
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def open(self, outbound: OutboundRequest, timeout: float) -> _Exchange:
        url = self._url(outbound.url)
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"scheme {url.scheme!r}")
        for name, value in outbound.headers.items():
            if not (name.isascii() and value.isascii()):
                (name + value).encode("ascii")  # UnicodeEncodeError: "a header is not ASCII"
        response = await self._session_now().request(
            outbound.method,
            url,
            headers=outbound.headers,
            data=outbound.body or None,
            allow_redirects=False,
            auto_decompress=False,
            # Only what the destination's config says: no guessed Content-Type, and no
            # compressed answers (the history keeps their first bytes as text).
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            timeout=_client_timeout(timeout),
        )
        return _AiohttpExchange(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


_SKIP_AUTO_HEADERS = frozenset({"Content-Type", "Accept-Encoding"})


@functools.lru_cache(maxsize=64)
def _client_timeout(seconds: float) -> aiohttp.ClientTimeout:
    """aiohttp's per-phase timeouts for a destination's timeout (made once per value);
    the overall deadline is :meth:`Sender.send`'s."""
    return aiohttp.ClientTimeout(
        total=None, connect=seconds, sock_connect=seconds, sock_read=seconds
    )


class _AiohttpExchange:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status

    def headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in self._response.headers.items():
            key = name.lower()
            out[key] = f"{out[key]}, {value}" if key in out else value
        return out

    def chunks(self) -> AsyncGenerator[bytes, None]:
        return _iterate(self._response.content.iter_chunked(CHUNK))

    async def close(self, complete: bool) -> None:
        if complete:
            self._response.release()
        else:
            self._response.close()


async def _iterate(chunks: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    async for chunk in chunks:
        yield chunk


class _HttpxOpener:
    """Requests handed straight to an httpx transport, without ``AsyncClient``."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self.transport = transport
        self._urls: dict[str, httpx.URL] = {}

    def _url(self, url: str) -> httpx.URL:
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) > 1000:
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    async def open(self, outbound: OutboundRequest, timeout: float) -> _Exchange:
        request = httpx.Request(
            outbound.method,
            self._url(outbound.url),
            headers=outbound.headers,
            content=outbound.body,
            extensions={"timeout": httpx.Timeout(timeout).as_dict()},
        )
        return _HttpxExchange(await self.transport.handle_async_request(request))

    async def aclose(self) -> None:
        await self.transport.aclose()


class _HttpxExchange:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code

    def headers(self) -> dict[str, str]:
        return dict(self._response.headers)  # lower-case names, repeated fields joined

    def chunks(self) -> AsyncGenerator[bytes, None]:
        return cast(AsyncGenerator[bytes, None], self._response.aiter_raw())

    async def close(self, complete: bool) -> None:
        await self._response.aclose()


async def _close(exchange: _Exchange, complete: bool) -> None:
    """Release the connection, or close it when its body was not read to the end."""
    # The answer is in hand: a close that fails or hangs costs only the connection.
    with contextlib.suppress(Exception):
        if complete:  # read to the end: releasing hands the connection back, no I/O
            await exchange.close(True)
            return
        async with asyncio.timeout(CLOSE_GRACE):
            await exchange.close(False)


class _AnswerReader:
    """Status, headers and at most :data:`ANSWER_CAP` bytes of one answer's body."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.exchange: _Exchange | None = None
        self.body = bytearray()
        self.truncated = False
        self.interrupted = ""
        self.complete = False  # the body was read to its end: the connection is reusable
        self.headers: dict[str, str] | None = None

    async def read(self) -> None:
        assert self.exchange is not None
        self.headers = self.exchange.headers()
        seen = 0  # bytes of the body received, kept or not
        length = _length(self.headers.get("content-length", ""))
        chunks = self.exchange.chunks()
        try:
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    seen += len(chunk)
                    room = ANSWER_CAP - len(self.body)
                    self.body += chunk[:room]
                    if len(chunk) > room:
                        self.truncated = True
                        if length is None or not 0 <= length - seen <= DRAIN_LIMIT:
                            return  # closing the connection discards the rest unread
            self.complete = True
        except Exception as exc:  # the body broke off: the status stands
            self.interrupt(exc)

    def interrupt(self, exc: BaseException) -> None:
        if not self.truncated:  # a failed drain loses only the connection
            self.truncated, self.interrupted = True, failure(exc, self.timeout).reason

    def answer(self) -> Answer:
        assert self.exchange is not None
        return Answer(
            self.exchange.status,
            self.exchange.headers() if self.headers is None else self.headers,
            bytes(self.body),
            self.truncated,
            self.interrupted,
        )


def _length(value: str) -> int | None:
    """A Content-Length the rest of the body can be judged by, or None."""
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        return None
    return int(value)


@contextlib.contextmanager
def map_exceptions(timeout: float) -> Iterator[None]:
    """Re-raise whatever a transport raises as a :class:`SendFailed`, the original as cause."""
    try:
        yield
    except SendFailed:
        raise
    except Exception as exc:
        raise failure(exc, timeout) from exc


def failure(exc: BaseException, timeout: float) -> SendFailed:
    """The relay's error for a transport's exception; ``timeout`` was the attempt's budget.

    aiohttp's own errors (anywhere in the chain of causes) are read first: they name
    what happened more precisely than a wrapper's.
    """
    if type(exc) is TimeoutError:  # asyncio's: the overall deadline passed
        return SendTimeout(TimeoutPhase.OVERALL, timeout)
    chain = list(_chain(exc))
    for link in chain:
        if isinstance(link, aiohttp.ClientError | http_exceptions.HttpProcessingError):
            return _from_aiohttp(link, chain, timeout)
    if isinstance(exc, httpx.HTTPError | httpx.InvalidURL):
        return _from_httpx(exc, chain, timeout)
    if isinstance(exc, TimeoutError):
        return SendTimeout(TimeoutPhase.OVERALL, timeout)
    if isinstance(exc, OSError):
        return _from_os(exc)
    if isinstance(exc, ValueError | TypeError):  # e.g. a header value the wire forbids
        return _unsendable(exc)
    return SendFailed(f"{type(exc).__name__}: {_message(exc)}")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and its causes, outermost first; a group stands for its first member."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen and len(seen) < 16:
        seen.add(id(link))
        yield link
        if isinstance(link, BaseExceptionGroup) and link.exceptions:
            link = link.exceptions[0]
        elif link.__cause__ is not None:
            link = link.__cause__
        elif link.args and isinstance(link.args[0], BaseException):
            # httpcore wraps the original as its argument, then re-raises `from None`.
            link = link.args[0]
        else:
            link = None if link.__suppress_context__ else link.__context__


def _os_error(chain: list[BaseException]) -> OSError | None:
    """The innermost operating-system error among the causes, which names what happened."""
    found = None
    for link in chain:
        if isinstance(link, OSError) and not isinstance(link, TimeoutError):
            found = link
    return found


def _from_aiohttp(exc: BaseException, chain: list[BaseException], timeout: float) -> SendFailed:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return SendTimeout(TimeoutPhase.CONNECT, timeout)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return SendTimeout(TimeoutPhase.READ, timeout)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ConnectFailed("DNS lookup failed")
    if isinstance(exc, aiohttp.ClientSSLError | ssl.CertificateError):
        return _tls(chain)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _from_os(exc.os_error, connecting=True)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ConnectionReset("connection closed by peer")
    if isinstance(exc, aiohttp.ClientOSError | ConnectionError):
        return _from_os(_os_error(chain) or cast(OSError, exc))
    if isinstance(exc, aiohttp.ClientResponseError | http_exceptions.HttpProcessingError):
        # A malformed answer reaches us as a ClientResponseError caused by the parser's error.
        return _protocol(exc, chain)
    if isinstance(exc, aiohttp.ClientPayloadError):  # the body broke off or is malformed
        os_error = _os_error(chain)
        if os_error is not None:
            return _from_os(os_error)
        if "ConnectionResetError" in str(exc):  # aiohttp names the reset only in its message
            return ConnectionReset("connection reset by peer")
        if any(isinstance(c, http_exceptions.ContentLengthError) for c in chain):
            return ConnectionReset("connection closed by peer")
        return ProtocolViolation("malformed answer body")
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return RequestInvalid("the URL cannot be used")
    if isinstance(exc, aiohttp.ClientConnectionError):
        return ConnectionReset("connection closed")
    return SendFailed(f"{type(exc).__name__}: {_message(exc)}")


def _from_httpx(exc: Exception, chain: list[BaseException], timeout: float) -> SendFailed:
    if isinstance(exc, httpx.TimeoutException):
        return SendTimeout(_PHASES.get(type(exc), TimeoutPhase.OVERALL), timeout)
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return RequestInvalid("the URL cannot be used")
    if isinstance(exc, httpx.LocalProtocolError):
        return _unsendable(exc)
    if isinstance(exc, httpx.RemoteProtocolError):
        # httpcore's "Server disconnected without ...", h11's "peer closed connection without ..."
        if "disconnected" in str(exc) or "peer closed" in str(exc):
            return ConnectionReset("connection closed by peer")
        return _protocol(exc, chain)
    os_error = _os_error(chain)
    if isinstance(exc, httpx.ConnectError | httpx.ProxyError):
        if os_error is not None:
            return _from_os(os_error, connecting=True)
        if any(isinstance(c, ssl.CertificateError) for c in chain):
            return _tls(chain)
        return ConnectFailed(f"connect failed: {_message(exc)}")
    if isinstance(exc, httpx.NetworkError):
        if os_error is not None:
            return _from_os(os_error)
        return ConnectionReset(f"connection broken: {_message(exc)}")
    return SendFailed(f"{type(exc).__name__}: {_message(exc)}")


_PHASES: dict[type[Exception], TimeoutPhase] = {
    httpx.ConnectTimeout: TimeoutPhase.CONNECT,
    httpx.WriteTimeout: TimeoutPhase.WRITE,
    httpx.ReadTimeout: TimeoutPhase.READ,
    httpx.PoolTimeout: TimeoutPhase.POOL,
}

_UNREACHABLE = {
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTUNREACH: "host unreachable",
    errno.EHOSTDOWN: "host down",
    errno.ETIMEDOUT: "connect timed out",
}


def _from_os(exc: OSError, *, connecting: bool = False) -> SendFailed:
    """Name an operating-system error; ``connecting`` when it came while connecting."""
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return ConnectFailed("connect refused")
    if isinstance(exc, socket.gaierror):
        return ConnectFailed("DNS lookup failed")
    if isinstance(exc, ConnectionResetError) or exc.errno == errno.ECONNRESET:
        return ConnectionReset("connection reset by peer")
    if isinstance(exc, BrokenPipeError | ConnectionAbortedError) or exc.errno == errno.EPIPE:
        return ConnectionReset("connection closed by peer")
    if isinstance(exc, ssl.SSLError):
        return _tls([exc])
    if exc.errno in _UNREACHABLE:
        return ConnectFailed(_UNREACHABLE[exc.errno])
    detail = exc.strerror or _message(exc)
    return ConnectFailed(f"connect failed: {detail}") if connecting else SendFailed(detail)


def _tls(chain: list[BaseException]) -> ConnectFailed:
    """A failed TLS handshake, named by OpenSSL's reason rather than its long message."""
    err = next((c for c in reversed(chain) if isinstance(c, ssl.SSLError)), None)
    if isinstance(err, ssl.SSLCertVerificationError) and err.verify_message:
        detail = f"certificate verify failed: {err.verify_message}"
    elif err is not None and err.reason:
        detail = err.reason.lower().replace("_", " ")
    else:
        detail = _message(err or chain[-1])
    return ConnectFailed(f"TLS failed: {detail}")


def _unsendable(exc: BaseException) -> RequestInvalid:
    # The library's message may quote a header value, which is a secret: name the problem only.
    if isinstance(exc, UnicodeEncodeError):
        problem = "a header is not ASCII"
    elif "header" in str(exc).lower():
        problem = "a header name or value is not allowed on the wire"
    else:
        problem = type(exc).__name__
    return RequestInvalid(f"the request cannot be sent: {problem}")


def _protocol(exc: BaseException, chain: list[BaseException]) -> ProtocolViolation:
    """A malformed answer; headers over the parser's limits are named as such."""
    if any(isinstance(c, http_exceptions.LineTooLong) or "too long" in str(c) for c in chain):
        return ProtocolViolation("oversized answer headers")
    # aiohttp's message (not its str, which quotes the URL) starts with what is wrong.
    message = getattr(exc, "message", None)
    detail = message.splitlines()[0].rstrip(":") if isinstance(message, str) and message else ""
    return ProtocolViolation(f"not an HTTP answer: {detail or _message(exc)}")


def _message(exc: BaseException) -> str:
    """A library's message, one line and short: it may quote what the destination sent."""
    return " ".join(str(exc).split())[:_MESSAGE_CHARS] or type(exc).__name__
