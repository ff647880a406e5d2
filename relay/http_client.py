"""Sending one request: httpx's types on aiohttp's transport, without the client layer.

httpx's own transport spends a whole core at a few hundred requests per second
(encode/httpx#3215), and its ``AsyncClient`` adds cookie, redirect, auth and URL
merging work a relay never needs (a third of a drain's CPU in profiles). The
:class:`Sender` builds an ``httpx.Request`` and hands it straight to a transport:
`httpx-aiohttp` by default, httpx's own with ``RELAY_HTTP_TRANSPORT=httpx`` (to
compare, or where aiohttp is unwanted). One overall deadline per attempt bounds
slow-drip answers that per-phase timeouts would let through.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

import httpx

from .destinations import OutboundRequest

LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=200, keepalive_expiry=30)
#: Bytes of an error answer kept for the log line and `relay dlq list`.
SNIPPET = 200


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: httpx.Headers
    snippet: str  # the start of a non-2xx body, for the error message


def make_transport() -> httpx.AsyncBaseTransport:
    """The transport every destination worker of this process shares."""
    if os.environ.get("RELAY_HTTP_TRANSPORT", "aiohttp") == "aiohttp":
        try:
            from httpx_aiohttp import AiohttpTransport
        except ImportError:  # pragma: no cover - a dependency; keep working without it
            pass
        else:
            return AiohttpTransport(limits=LIMITS)
    return httpx.AsyncHTTPTransport(limits=LIMITS)


class Sender:
    """Sends an :class:`OutboundRequest`; raises ``httpx`` errors like a client would."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.transport = transport or make_transport()
        self._urls: dict[str, httpx.URL] = {}

    def _url(self, url: str) -> httpx.URL:
        """Parsed once per destination URL: parsing was a tenth of a drain's CPU."""
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) > 1000:
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    async def send(self, outbound: OutboundRequest, timeout: float) -> Answer:
        request = httpx.Request(
            outbound.method,
            self._url(outbound.url),
            headers=outbound.headers,
            content=outbound.body,
            extensions={"timeout": httpx.Timeout(timeout).as_dict()},
        )
        try:
            async with asyncio.timeout(timeout):
                response = await self.transport.handle_async_request(request)
                try:
                    snippet = ""
                    if not 200 <= response.status_code < 300:
                        body = await response.aread()
                        snippet = body[:SNIPPET].decode("utf-8", "replace").strip()
                finally:
                    await response.aclose()
        except TimeoutError:
            raise httpx.ReadTimeout(f"no complete answer within {timeout:g}s") from None
        return Answer(response.status_code, response.headers, snippet)

    async def aclose(self) -> None:
        await self.transport.aclose()
