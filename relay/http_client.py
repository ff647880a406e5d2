"""The outbound HTTP client: httpx's API on aiohttp's transport.

httpx's own transport spends a whole core at a few hundred requests per second
(encode/httpx#3215); `httpx-aiohttp` keeps the httpx API (and so the code and
its tests) while aiohttp does the I/O several times faster (see README,
Performance). ``RELAY_HTTP_TRANSPORT=httpx`` switches back, e.g. to compare.
"""

from __future__ import annotations

import os

import httpx

LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=200, keepalive_expiry=30)


def make_client() -> httpx.AsyncClient:
    """One client per process, shared by every destination worker."""
    transport: httpx.AsyncBaseTransport | None = None
    if os.environ.get("RELAY_HTTP_TRANSPORT", "aiohttp") == "aiohttp":
        try:
            from httpx_aiohttp import AiohttpTransport
        except ImportError:  # pragma: no cover - it is a dependency; keep working without
            transport = None
        else:
            transport = AiohttpTransport(limits=LIMITS)
    return httpx.AsyncClient(transport=transport, limits=LIMITS, follow_redirects=False)
