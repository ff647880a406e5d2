"""The HTTP/1.1 connection: uvicorn's httptools protocol, hardened against slow and idle clients.

uvicorn closes idle keep-alive connections, but nothing bounds the time a
client takes to send a request: a connection that never sends one, or trickles
its headers a byte every few seconds, holds a file descriptor for ever, and
about a thousand of them lock everyone else out. Its connection cap answers in
plain text, and the size of a request head is not limited at all. This
subclass adds, per connection:

- a head deadline: the request line and headers must arrive within
  ``server.header_timeout`` of the connection (or, on a kept-alive connection,
  of the next request's first byte). One deadline per request, not per byte,
  so trickling cannot stretch it. A connection that sent nothing is closed; a
  partial request is answered 408.
- a body deadline: the whole body within ``server.body_timeout`` of the head,
  else 408 (the app, waiting for the rest, logs it as a rejection).
- a head of at most :data:`MAX_HEAD_BYTES`, else 431.
- a connection cap: a request on a connection beyond ``max_connections`` is
  answered 503 with a JSON reason and the connection closed, instead of the
  client finding the port refused once file descriptors run out.

Every answer it makes itself is JSON with ``Connection: close``, like the app's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .logs import get_logger

log = get_logger("relay.http")

#: Request line plus headers, in bytes; Node.js and nginx allow 16 and 8 KiB by default.
MAX_HEAD_BYTES = 64 * 1024
#: Deadlines are checked this often at most, and at least every SWEEP_SHARE of the
#: shortest timeout, which is then how late at most a deadline is enforced.
MAX_SWEEP_EVERY = 0.5
SWEEP_SHARE = 0.1


@dataclass(frozen=True)
class ConnectionLimits:
    """What one server process allows a connection (0 s = no deadline)."""

    header_timeout: float
    body_timeout: float
    max_connections: int


def connection_cap(configured: int, fd_limit: int) -> int:
    """``max_connections``, kept to half the file descriptors the process may open.

    The other half is for connections beyond the cap (they are answered 503, which
    needs a descriptor too), the queue, logs and the delivery workers' requests.
    """
    return max(1, min(configured, fd_limit // 2))


def protocol_class(limits: ConnectionLimits) -> type[RelayHttpProtocol]:
    """The protocol class to give uvicorn (``http=``) for these limits."""
    return type("RelayHttpProtocol", (RelayHttpProtocol,), {"limits": limits, "tally": _Tally()})


class _Tally:
    """Connections cut off, by reason, logged at most every 10 s per reason.

    A flood of slow clients is then a line every 10 s, not a line per connection;
    ``count`` says how many since the previous line (this one included).
    """

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._logged_at: dict[str, float] = {}

    def add(self, reason: str, **fields: Any) -> None:
        self._counts[reason] = self._counts.get(reason, 0) + 1
        now = time.monotonic()
        if now - self._logged_at.get(reason, -10.0) >= 10.0:
            log.warning("http.cut_off", reason=reason, count=self._counts[reason], **fields)
            self._counts[reason], self._logged_at[reason] = 0, now


class RelayHttpProtocol(HttpToolsProtocol):
    limits: ClassVar[ConnectionLimits]
    tally: ClassVar[_Tally]
    #: The sweep that fires due deadlines, one per server (see :meth:`_sweep`).
    sweeper: ClassVar[asyncio.TimerHandle | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._due = 0.0  # loop time the current deadline passes at; 0: none
        self._late: Callable[[], None] = self._head_late
        self._request_seen = False  # a byte of the current request has arrived
        self._head_bytes = 0
        self._head_too_large = False

    # -- the connection ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self.app = _busy  # this connection's request gets a 503, then it is closed
            self.tally.add("max_connections", max_connections=self.limits.max_connections)
        self._arm(self.limits.header_timeout, self._head_late)
        cls = type(self)
        if cls.sweeper is None and (self.limits.header_timeout or self.limits.body_timeout):
            cls.sweeper = self.loop.call_later(self._sweep_every(), self._sweep)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._due:  # the first bytes after an answer: a new head's clock starts
            self._arm(self.limits.header_timeout, self._head_late)
        self._request_seen = True
        super().data_received(data)

    # -- parser callbacks -------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if not self._due:  # a pipelined request, read in the same chunk as the last
            self._arm(self.limits.header_timeout, self._head_late)
        self._request_seen = True
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._arm(self.limits.body_timeout, self._body_late)
        super().on_headers_complete()
        if self.cycle is not None and not isinstance(self.cycle.transport, _TurnWriter):
            self.cycle.transport = _TurnWriter(self.transport, self.loop)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        self._disarm()
        self._request_seen = False
        self._head_bytes = 0
        super().on_message_complete()

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            self._head_too_large = True
            # the parser turns this into an HttpParserError: uvicorn then calls send_400_response
            raise ValueError("request head too large")

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request it cannot parse, as JSON."""
        if self._head_too_large:
            self._answer(431, f"request head over {MAX_HEAD_BYTES} bytes")
        else:
            self._answer(400, "malformed HTTP request")

    # -- deadlines --------------------------------------------------------------------------
    # A deadline is a time on the connection, not a timer: arming and disarming happen two
    # or three times per request, and a loop timer each time cost more than the rest of
    # this class. One sweep per server fires the deadlines that passed, at most
    # SWEEP_SHARE of the shortest timeout late.
    def _arm(self, seconds: float, late: Callable[[], None]) -> None:
        self._due = self.loop.time() + seconds if seconds > 0 else 0.0
        self._late = late

    def _disarm(self) -> None:
        self._due = 0.0

    def _sweep_every(self) -> float:
        timeouts = [t for t in (self.limits.header_timeout, self.limits.body_timeout) if t > 0]
        return min(MAX_SWEEP_EVERY, min(timeouts) * SWEEP_SHARE)

    def _sweep(self) -> None:
        cls = type(self)
        cls.sweeper = self.loop.call_later(self._sweep_every(), self._sweep)
        now = self.loop.time()
        for conn in list(self.connections):
            if isinstance(conn, RelayHttpProtocol) and conn._due and conn._due <= now:
                conn._due = 0.0
                conn._late()

    def _head_late(self) -> None:
        if self.transport.is_closing():
            return
        self.tally.add("header_timeout", header_timeout=self.limits.header_timeout)
        if self._request_seen:
            self._answer(408, f"request head not received within {self.limits.header_timeout:g}s")
        else:
            self.transport.close()  # never said a word: nobody to answer

    def _body_late(self) -> None:
        if self.transport.is_closing():
            return
        self.tally.add("body_timeout", body_timeout=self.limits.body_timeout)
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            # The app is waiting for the rest of the body: it hears "disconnected" (and logs
            # a rejection); the client hears why.
            cycle.disconnected = True
            cycle.message_event.set()
            self._answer(408, f"request body not received within {self.limits.body_timeout:g}s")
        else:
            self.transport.close()  # answered already; the client is still trickling a body

    def _answer(self, status: int, reason: str) -> None:
        body = msgspec.json.encode({"error": reason})
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()


_BUSY = msgspec.json.encode({"error": "too many open connections; retry shortly"})


class _TurnWriter:
    """A response's writes of one loop turn, sent together at the turn's end.

    uvicorn writes an answer's head and its body with a ``write`` each: two
    ``send(2)`` calls and two TCP segments per answer, a fifth of the receiver's
    time on the event loop. Held until the end of the turn (or :data:`TURN_BYTES`),
    they leave in one. Everything else is the connection's transport.
    """

    __slots__ = ("_held", "_held_bytes", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._held_bytes = 0

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data)
        self._held_bytes += len(data)
        if self._held_bytes >= TURN_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._held:
            data = b"".join(self._held)
            self._held.clear()
            self._held_bytes = 0
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


#: A response's writes held in one loop turn are sent at once past this many bytes.
TURN_BYTES = 64 * 1024


async def _busy(scope: Any, receive: Any, send: Any) -> None:
    """The ASGI app of a connection beyond the cap."""
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_BUSY)).encode()),
                (b"retry-after", b"1"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _BUSY})
