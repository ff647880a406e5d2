"""A response's writes of one loop turn leave together, over a real loopback connection.

uvicorn writes an answer's head and body separately; the receiver's protocol holds
them until the end of the turn so they leave in one ``send(2)``. What must hold:
every byte arrives, in order, whatever the sizes; past TURN_BYTES nothing waits for
the turn's end; a close sends what was held first; a closed peer loses nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from relay.http_protocol import TURN_BYTES, _TurnWriter


@asynccontextmanager
async def connection() -> AsyncIterator[tuple[asyncio.Transport, asyncio.StreamReader]]:
    """A real TCP connection on loopback: our end's transport and the peer's reader."""
    accepted: asyncio.Queue[asyncio.StreamReader] = asyncio.Queue()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(reader)

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    peer = await accepted.get()
    try:
        yield transport, peer
    finally:
        transport.close()
        server.close()
        await server.wait_closed()


async def test_writes_of_one_turn_arrive_in_order_after_the_turn() -> None:
    async with connection() as (transport, peer):
        writer = _TurnWriter(transport, asyncio.get_running_loop())
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        writer.write(b"{}")
        assert transport.get_write_buffer_size() == 0  # nothing handed over yet
        data = await asyncio.wait_for(peer.readexactly(40), 5)
        assert data == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"


async def test_past_the_turns_limit_the_writes_leave_at_once_and_whole() -> None:
    chunks = [bytes([65 + i]) * (TURN_BYTES // 2 + 1) for i in range(5)]
    async with connection() as (transport, peer):
        writer = _TurnWriter(transport, asyncio.get_running_loop())
        for chunk in chunks:
            writer.write(chunk)
        data = await asyncio.wait_for(peer.readexactly(sum(map(len, chunks))), 5)
    assert data == b"".join(chunks)


async def test_a_close_sends_what_the_turn_held_first() -> None:
    async with connection() as (transport, peer):
        writer = _TurnWriter(transport, asyncio.get_running_loop())
        writer.write(b"last words")
        writer.close()
        assert await asyncio.wait_for(peer.read(), 5) == b"last words"  # then end of stream
        assert writer.is_closing()  # the rest is the transport's own
