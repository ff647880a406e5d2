"""A raw TCP server for the sender's hostile-destination tests.

Each connection runs a script coroutine that may write anything: endless
bodies, garbage, a reset (SO_LINGER 0) mid-answer, or nothing at all. The
server counts what it managed to write and notices when the relay hangs up,
which is how the tests see that a huge answer was discarded, not read.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal


@dataclass
class Connection:
    """What the server saw of one connection."""

    requests: int = 0
    sent: int = 0  # bytes the server got into the socket
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Connection], Awaitable[None]]


class RawServer:
    """``async with RawServer(script) as server``: ``server.url``, ``server.connections``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections: list[Connection] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = Connection()
        self.connections.append(conn)
        try:
            await self.script(reader, writer, conn)
        except (ConnectionError, OSError):
            pass  # the relay hung up: what these tests look for
        except asyncio.CancelledError:
            pass  # the server is closing; end quietly instead of as a cancelled callback
        finally:
            conn.hung_up.set()
            writer.close()
            self._tasks.discard(task)


async def read_request(reader: asyncio.StreamReader, conn: Connection) -> bool:
    """Read one request (head and Content-Length body); False when the client closed."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return False
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    conn.requests += 1
    return True


async def write(writer: asyncio.StreamWriter, conn: Connection, data: bytes) -> None:
    writer.write(data)
    await writer.drain()
    conn.sent += len(data)


async def stream_forever(writer: asyncio.StreamWriter, conn: Connection, chunk: bytes) -> None:
    """Write ``chunk`` until the relay hangs up (the write fails) or 1 GiB is out."""
    while conn.sent < 2**30:
        await write(writer, conn, chunk)
    raise AssertionError("the relay read a whole GiB")


async def wait_hung_up(reader: asyncio.StreamReader) -> None:
    """Until the client closes its side."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0: the peer gets a TCP RST, not a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def respond(
    data: bytes, then: Literal["wait", "reset", "close"] = "wait", pause: float = 0.0
) -> Script:
    """A script: read one request, write ``data``, pause, then wait for the relay to hang
    up, reset the connection, or close it."""

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, c: Connection) -> None:
        await read_request(r, c)
        if data:
            await write(w, c, data)
        await asyncio.sleep(pause)
        if then == "reset":
            reset(w)
        elif then == "wait":
            await wait_hung_up(r)

    return script
