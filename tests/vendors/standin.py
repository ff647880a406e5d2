"""One real local HTTP server standing in for one vendor's ingestion API.

The recipes in ``examples/recipes/`` claim to respect each vendor's documented
limits; a sink that accepts anything could not show it. A stand-in answers as
the vendor documents: it checks the credential, refuses a body over the byte
limit and a batch over the count limit with the vendor's status, answers 429
with ``Retry-After`` once a rate window is full, parses the body as the vendor
would (400 for what the vendor would call malformed), and records every event
it accepted under a key that makes duplicates and losses visible.

The vendor-specific parts (paths, credential, body shape, keys) live in
:mod:`tests.vendors.catalog`; this module is the same for all of them.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class Rejected(Exception):
    """The vendor refuses the request with ``status`` (and this message as the body)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Window:
    """At most ``count`` units (requests or events) in any ``seconds`` long window."""

    count: int
    seconds: float


@dataclass(frozen=True)
class Limits:
    """What one endpoint documents, and the status it answers when a batch breaks it."""

    max_events: int
    max_bytes: int | None = None
    max_event_bytes: int | None = None
    oversize_status: int = 400  # body over max_bytes or an event over max_event_bytes
    overcount_status: int = 400  # more than max_events in one request
    requests: Window | None = None  # the documented request rate
    events: Window | None = None  # the documented event rate, where it is counted in events


@dataclass(frozen=True)
class Incoming:
    """A request as an endpoint sees it: parsed JSON, headers (lower-case keys), query."""

    doc: Any
    headers: Mapping[str, str]
    query: Mapping[str, list[str]]


@dataclass(frozen=True)
class Accepted:
    """What an endpoint took from one request: a key per event and a value to keep for it."""

    items: list[tuple[str, Any]]
    status: int = 200
    body: Any = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    """One vendor path: how to check the credential and read the body."""

    limits: Limits
    authorized: Callable[[Incoming], bool]
    accept: Callable[[Incoming], Accepted]  # raises Rejected for what the vendor refuses
    count: Callable[[Any], int]  # events in a body, for the count limit (before accept)


@dataclass
class Exchange:
    """One answered request, for assertions about batch sizes and statuses."""

    path: str
    status: int
    events: int
    size: int


class _Windows:
    """Sliding-window rate limits over requests and events; the caller holds the lock."""

    def __init__(self, requests: Window | None, events: Window | None) -> None:
        self.requests = requests
        self.events = events
        self._request_times: deque[float] = deque()
        self._event_times: deque[tuple[float, int]] = deque()

    def wait_for_request(self, now: float) -> float:
        """Seconds until one more request fits (0 = it fits now; it is then counted)."""
        if self.requests is None:
            return 0.0
        times = self._request_times
        while times and times[0] <= now - self.requests.seconds:
            times.popleft()
        if len(times) >= self.requests.count:
            return times[0] + self.requests.seconds - now
        times.append(now)
        return 0.0

    def wait_for_events(self, now: float, n: int) -> float:
        """Seconds until ``n`` more events fit (0 = they fit now; they are then counted)."""
        if self.events is None:
            return 0.0
        times = self._event_times
        while times and times[0][0] <= now - self.events.seconds:
            times.popleft()
        used = sum(k for _, k in times)
        if used and used + n > self.events.count:
            return times[0][0] + self.events.seconds - now
        times.append((now, n))
        return 0.0


class StandIn:
    """A threaded stdlib HTTP server answering as ``endpoints`` (path -> Endpoint) document.

    The documented rate windows apply unless ``rate`` is given: then that request window
    replaces them, so a test can make the rate small enough for a short burst to hit it.
    All endpoints of one stand-in share the windows, as a vendor's limit is per account.
    """

    def __init__(self, endpoints: Mapping[str, Endpoint], *, rate: Window | None = None) -> None:
        self.endpoints = dict(endpoints)
        first = next(iter(self.endpoints.values())).limits
        if rate is None:
            self._windows = _Windows(first.requests, first.events)
        else:
            self._windows = _Windows(rate, None)
        self.accepted: Counter[str] = Counter()
        self.latest: dict[str, Any] = {}
        self.exchanges: list[Exchange] = []
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll interval: shutdown() waits for the serving loop to notice it.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> StandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(
        self, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """Judge a request as the vendor would: (status, headers, body); record what it takes."""
        parts = urlsplit(path)
        endpoint = self.endpoints.get(parts.path)
        if endpoint is None:
            return self._done(parts.path, 404, 0, body, {"error": "not found"})
        limits = endpoint.limits
        try:
            doc = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError):
            doc = None
        incoming = Incoming(doc, headers, parse_qs(parts.query))
        if not endpoint.authorized(incoming):
            return self._done(parts.path, 401, 0, body, {"error": "unauthorized"})
        with self.lock:
            wait = self._windows.wait_for_request(time.time())
        if wait:
            return self._throttled(parts.path, body, wait)
        if limits.max_bytes is not None and len(body) > limits.max_bytes:
            return self._done(parts.path, limits.oversize_status, 0, body, {"error": "too large"})
        try:
            if doc is None:
                raise Rejected(400, "body is not JSON")
            n = endpoint.count(doc)
            if n > limits.max_events:
                raise Rejected(limits.overcount_status, f"{n} events; at most {limits.max_events}")
            taken = endpoint.accept(incoming)
        except Rejected as exc:
            return self._done(parts.path, exc.status, 0, body, {"error": exc.message})
        with self.lock:
            wait = self._windows.wait_for_events(time.time(), len(taken.items))
        if wait:
            return self._throttled(parts.path, body, wait)
        with self.lock:
            for key, value in taken.items:
                self.accepted[key] += 1
                self.latest[key] = value
        return self._done(parts.path, taken.status, len(taken.items), body, taken.body)

    def _throttled(self, path: str, body: bytes, wait: float) -> tuple[int, dict[str, str], bytes]:
        status, _, payload = self._done(path, 429, 0, body, {"error": "rate limited"})
        return status, {"Retry-After": str(max(1, math.ceil(wait)))}, payload

    def _done(
        self, path: str, status: int, events: int, body: bytes, answer: Any
    ) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.exchanges.append(Exchange(path, status, events, len(body)))
        payload = b"" if status == 204 else json.dumps(answer).encode()
        return status, {}, payload

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body in one buffered write, sent at once: no delayed-ACK stalls.
            wbufsize = 1 << 16
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, extra, payload = stand_in.answer(self.path, headers, body)
                try:
                    self.send_response(status)
                    for k, v in extra.items():
                        self.send_header(k, v)
                    if payload:
                        self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the relay gave up on this request (timeout, shutdown)

        return Handler


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a relay stopped mid-request resets its connection: expected here
