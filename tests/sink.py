"""A real local HTTP server standing in for Slack or a CRM in tests.

It answers from a script (status, headers, body, delay) and then 200, and
records every request it received.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


FILLER = b"<p>" + b"x" * 65533
ENDLESS = 2**30  # "endless": a GiB, far more than any client should read


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0
    #: The body, then bytes without end (no Content-Length) until the client hangs up.
    endless: bool = False


class Sink:
    def __init__(self) -> None:
        self.script: list[Answer] = []
        self.default = Answer()
        #: When set, answers every request (after the script): the test decides per request.
        self.respond: Callable[[Received], Answer] | None = None
        self.received: list[Received] = []
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                with sink.lock:
                    got = Received(
                        self.command,
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                        time.time(),
                    )
                    sink.received.append(got)
                    if sink.script:
                        answer = sink.script.pop(0)
                    elif sink.respond is not None:
                        answer = sink.respond(got)
                    else:
                        answer = sink.default
                if answer.delay:
                    time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    for k, v in answer.headers.items():
                        self.send_header(k, v)
                    if answer.endless:
                        self.send_header("Connection", "close")
                        self.close_connection = True
                    else:
                        self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                    for _ in range(ENDLESS // len(FILLER) if answer.endless else 0):
                        self.wfile.write(FILLER)
                except OSError:
                    pass  # the client hung up: how an endless answer ends

            do_POST = do_PUT = do_GET = do_PATCH = do_DELETE = _handle

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a relay killed mid-request resets its connection: expected here

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Sink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Received]:
        """Wait until at least ``n`` requests arrived; fail the test otherwise."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if len(self.received) >= n:
                    return list(self.received)
            time.sleep(0.02)
        raise AssertionError(f"sink got {len(self.received)} requests, expected {n}")
