"""The baseline: a bare Litestar app with one POST handler that reads the body.

Served like the relay (uvicorn, uvloop, httptools, one process, no access log):
`uvicorn bench.bare_app:app --loop uvloop --http httptools`.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, Response, post


@post("/webhooks/pushwoosh", status_code=200)
async def receive(request: Request[Any, Any, Any]) -> Response[bytes]:
    await request.body()
    return Response(b"{}", status_code=200, media_type="application/json")


app = Litestar(route_handlers=[receive], debug=False, logging_config=None)
