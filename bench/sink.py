"""A fast local HTTP/1.1 sink: answers 200 `{}` at once and counts what it received.

Run as its own process (`python -m bench.sink --port P`) so that its work never
shows up in the relay's CPU. Raw asyncio protocol + httptools (a dependency of
uvicorn[standard], hence of the relay) on uvloop when available: tens of
thousands of requests per second, far above what it is fed.

``GET /_count`` answers ``{"count": N}`` (requests to any other path, counted);
``GET /_reset`` sets it back to 0. Neither is counted.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import signal
from typing import Any

import httptools

_OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


class Counter:
    def __init__(self) -> None:
        self.count = 0


class SinkProtocol(asyncio.Protocol):
    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        url, self.url = self.url, b""
        assert self.transport is not None
        if url.startswith(b"/_count"):
            body = json.dumps({"count": self.counter.count}).encode()
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
        elif url.startswith(b"/_reset"):
            self.counter.count = 0
            self.transport.write(_OK)
        else:
            self.counter.count += 1
            self.transport.write(_OK)
        if not self.parser.should_keep_alive():
            self.transport.close()


async def serve(host: str, port: int) -> None:
    counter = Counter()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SinkProtocol(counter), host, port, backlog=2048, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sink")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))
    return 0


class SinkClient:
    """Reads the sink's counter from the orchestrator (one keep-alive connection)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._conn: http.client.HTTPConnection | None = None

    def _get(self, path: str) -> Any:
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
            try:
                self._conn.request("GET", path)
                return json.loads(self._conn.getresponse().read() or b"{}")
            except (OSError, http.client.HTTPException):
                self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise
        return None

    def count(self) -> int:
        return int(self._get("/_count")["count"])

    def reset(self) -> None:
        self._get("/_reset")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


if __name__ == "__main__":
    raise SystemExit(main())
