"""The Litestar application: HTTP routes and the lifespan that owns queue, client and workers.

Thin shell: module-level handlers read the shared :class:`Runtime` from
``app.state`` and translate between HTTP and :mod:`relay.receiver`. A request
the receiver refuses is raised as :class:`~relay.errors.Rejected` from wherever
it is noticed and rendered by one exception handler, so every refusal is
answered, counted and logged the same way. The lifespan opens the queue, starts
the delivery workers, and on shutdown gives in-flight attempts
``server.shutdown_grace`` before leaving the rest queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)

from . import __version__, api, console, maintenance
from .config import RelayConfig
from .delivery import Dispatcher
from .errors import QueueUnavailable, Rejected
from .http_client import Sender
from .logs import get_logger
from .metrics import CONTENT_TYPE, Metrics
from .openapi import ReceiveOperation
from .queue import Queue, from_settings
from .receiver import Prepared, preparation, token_ok
from .reload import Reloader
from .slices import Steps, finish, run_sliced

log = get_logger("relay.receiver")
_JSON = "application/json"
_JSON_BYTES = _JSON.encode()

#: Bodies above this many bytes are prepared one at a time (see :func:`receive`).
LARGE_BODY = 64 * 1024
#: Bodies up to this size (a Pushwoosh event is under 1 KB) are prepared without slicing:
#: they take far less than a slice, and reading the clock between steps costs more.
SMALL_BODY = 8 * 1024


class Runtime:
    """What the handlers share: the current config (swapped on reload), queue, workers."""

    def __init__(
        self,
        config: RelayConfig,
        queue: Queue | None = None,
        *,
        run_workers: bool = True,
        config_path: str | None = None,
    ) -> None:
        self.config = config
        self.loaded_at = time.time()  # when `config` was loaded (the console shows it)
        # restart-only: the limit Litestar enforces, whatever a reload says
        self.max_body_bytes = config.settings.server.max_body_bytes
        self.queue = queue or from_settings(config.settings.queue)
        self.metrics = Metrics()
        self.run_workers = run_workers
        self.config_path = config_path
        self.sender: Sender | None = None
        self.dispatcher: Dispatcher | None = None
        self.large_bodies = asyncio.Semaphore(1)
        self._checks: asyncio.Task[None] | None = None

    def current(self) -> RelayConfig:
        return self.config

    def apply(self, config: RelayConfig) -> None:
        """Swap in a reloaded config: new events use it; workers pick up new destinations."""
        self.config = config
        self.loaded_at = time.time()
        if self.dispatcher is not None:
            self.dispatcher.sync()
            self.dispatcher.wake()
        self._checks = asyncio.get_running_loop().create_task(self.warn_stranded())

    async def warn_stranded(self) -> None:
        """Queued deliveries keep their destination name; say so when the config lost it."""
        try:
            depth = await self.queue.depth(time.time())
        except Exception:
            return
        for (dest, state), n in sorted(depth.counts.items()):
            if dest not in self.config.destinations and n:
                log.warning(
                    "queue.unknown_destination",
                    destination=dest,
                    state=state,
                    deliveries=n,
                    hint="add the destination back to deliver them",
                )


def runtime_of(request: Request[Any, Any, Any]) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def _json(status: int, payload: dict[str, Any]) -> Response[bytes]:
    return Response(msgspec.json.encode(payload), status_code=status, media_type=_JSON)


# -- the receiver: admit -> read -> prepare -> enqueue -> answer ----------------------------
async def receive(request: Request[Any, Any, Any]) -> Response[bytes]:
    rt = runtime_of(request)
    cfg = rt.config  # one config for the whole request, even if a reload lands meanwhile
    window = cfg.settings.server.dedupe_window
    admit(request, cfg, rt.max_body_bytes)
    body = await read_body(request, rt.max_body_bytes)
    if len(body) <= SMALL_BODY:  # well within one slice: straight through
        prepared = finish(preparation(body, cfg.table, dedupe=window > 0))
        return finish(answer(rt, prepared, await enqueue(rt, prepared, window)))
    # Large bodies take turns: run in slices, several at once would hold all their
    # decoded events in memory together (they were one after the other before slicing).
    async with rt.large_bodies if len(body) > LARGE_BODY else contextlib.nullcontext():
        prepared = await run_sliced(preparation(body, cfg.table, dedupe=window > 0))
        return await run_sliced(answer(rt, prepared, await enqueue(rt, prepared, window)))


def direct(app: ASGIApp) -> ASGIApp:
    """The webhook POST's middleware: it runs :func:`receive` itself and sends the answer.

    Litestar's handler machinery (signature model, kwargs, response layers) cost
    more per event than the receiver's own checks, for a handler whose only argument
    is the request and whose answer is always JSON bytes. The handler stays
    registered, so routing, 405s, OPTIONS and the OpenAPI document are Litestar's;
    exceptions still reach the app's handlers (:func:`rejected`, :func:`unavailable`,
    :func:`failed`), and behind this middleware the handler would answer the same.
    """

    async def direct_app(scope: Scope, receive_: Receive, send: Send) -> None:
        response = await receive(Request(scope, receive_, send))
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": response.status_code or 200,
            "headers": [
                (b"content-type", _JSON_BYTES),
                (b"content-length", str(len(response.content)).encode()),
            ],
        }
        await send(start)
        body: HTTPResponseBodyEvent = {
            "type": "http.response.body",
            "body": response.content,
            "more_body": False,
        }
        await send(body)

    return direct_app


def admit(request: Request[Any, Any, Any], cfg: RelayConfig, limit: int) -> None:
    """Refuse before reading the body: client address, token, declared length.

    The headers are read from the raw ASGI list: building Litestar's header mapping
    (and the query's, with no token configured) cost more than the checks themselves.
    """
    forwarded = authorization = length = None
    for name, value in request.scope["headers"]:
        if name == b"content-length":
            length = value
        elif name == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
        elif name == b"x-forwarded-for":
            # several X-Forwarded-For lines are one list, in order (RFC 9110 section 5.3):
            # the hop our proxy appended is at the end of the last one
            text = value.decode("latin-1")
            forwarded = text if forwarded is None else f"{forwarded}, {text}"
    if cfg.ip_policy.allow:
        peer = request.client.host if request.client else None
        if not cfg.ip_policy.allows(peer, forwarded):
            raise Rejected(403, "client address not allowed")
    token = cfg.settings.server.token
    if token and not token_ok(token, request.query_params, authorization):
        raise Rejected(401, "missing or wrong token")
    if length and length.isdigit() and int(length) > limit:
        raise _too_large(limit)


async def read_body(request: Request[Any, Any, Any], limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes, whatever the framing (length or chunked).

    Read straight from ASGI ``receive``: Litestar's ``Request.body()`` goes through an
    async generator and a list per request, a tenth of the receiver's own time for a
    one-chunk body. The limit holds on the bytes received, not on what a header says.
    """
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            # the client went away mid-body, or server.body_timeout passed and
            # relay.http_protocol answered 408 itself
            raise Rejected(408, "the body did not arrive in full")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit: int) -> Rejected:
    return Rejected(413, f"body over {limit} bytes")


async def enqueue(rt: Runtime, prepared: list[Prepared], dedupe_window: float) -> Sequence[Any]:
    """Commit every event and its deliveries; any failure means nothing was accepted (503)."""
    try:
        return await rt.queue.enqueue([p.record for p in prepared], dedupe_window, time.time())
    except QueueUnavailable:
        raise
    except Exception as exc:
        raise QueueUnavailable(f"{type(exc).__name__}: {exc}") from exc


def answer(
    rt: Runtime, prepared: list[Prepared], accepted: Sequence[Any]
) -> Steps[Response[bytes]]:
    """Wake the workers of what is new, count and log each event, say what was taken."""
    ids = [result.event_id for result in accepted]
    duplicates = sum(1 for result in accepted if result.duplicate)
    if rt.dispatcher is not None:
        new = [
            d
            for p, r in zip(prepared, accepted, strict=True)
            if not r.duplicate
            for d in p.record.deliveries
        ]
        if new:
            grouped = any(d.group is not None for d in new)
            rt.dispatcher.wake(list({d.destination for d in new}), groups=grouped)
    rt.metrics.accepted.inc(len(ids) - duplicates)
    if duplicates:
        rt.metrics.duplicates.inc(duplicates)
    for p, result in zip(prepared, accepted, strict=True):
        yield  # a log line per event: 50,000 of them take a few slices
        if result.duplicate:
            log.info(
                "event.duplicate", event_id=result.event_id, event_name=p.event.get("event_name")
            )
            continue
        log.info(
            "event.received",
            event_id=result.event_id,
            event_name=p.event.get("event_name"),
            routes=list(p.plan.routes),
            deliveries=len(p.record.deliveries),
        )
    payload: dict[str, Any] = {"accepted": len(ids) - duplicates, "ids": ids}
    if duplicates:
        payload["duplicates"] = duplicates
    return _json(200, payload)


def rejected(request: Request[Any, Any, Any], exc: Rejected) -> Response[bytes]:
    """The one place a refusal becomes an answer, a metric and a log line."""
    runtime_of(request).metrics.rejected.inc()
    log.warning("event.rejected", status=exc.status, reason=exc.reason)
    return _json(exc.status, {"error": exc.reason, **exc.extra})


def unavailable(request: Request[Any, Any, Any], exc: QueueUnavailable) -> Response[bytes]:
    log.error("queue.unavailable", error=str(exc))
    return _json(503, {"error": "queue unavailable; the event was not accepted"})


def failed(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """Safety net for a bug on the receiving path: logged with its traceback, answered 503.

    The contract allows the receiver no 5xx but 503, and 503 is the truth for the
    sender: nothing was accepted (or, if the commit happened, a retry is a duplicate).
    """
    log.error("receiver.failed", error=f"{type(exc).__name__}: {exc}"[:500], exc_info=exc)
    return _json(503, {"error": "internal error; the event was not accepted"})


# -- the other routes -----------------------------------------------------------------------
@get("/healthz", sync_to_thread=False)
def healthz() -> Response[bytes]:
    return _json(200, {"status": "ok", "version": __version__})


@get("/readyz")
async def readyz(request: Request[Any, Any, Any]) -> Response[bytes]:
    try:
        await runtime_of(request).queue.ping()
    except Exception as exc:
        return _json(503, {"status": "unavailable", "error": str(exc)})
    return _json(200, {"status": "ready"})


@get("/metrics")
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    rt = runtime_of(request)
    try:
        depth = await rt.queue.depth(time.time())
        rt.metrics.set_depth(depth, list(rt.config.destinations))
    except Exception as exc:
        log.warning("metrics.depth_failed", error=str(exc))
    return Response(rt.metrics.render(), media_type=CONTENT_TYPE)


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    rt: Runtime = app.state.runtime
    await rt.queue.open()
    await rt.queue.join()
    rt.sender = Sender()
    background: list[asyncio.Task[None]] = []
    if rt.run_workers:
        rt.dispatcher = Dispatcher(rt.queue, rt.current, rt.sender, rt.metrics)
        await rt.dispatcher.start()
        background.append(asyncio.create_task(maintenance.run(rt.queue, rt.current)))
    if rt.config_path is not None:
        reloader = Reloader(
            rt.config_path,
            rt.current,
            rt.apply,
            lambda outcome: rt.metrics.reloads.labels(outcome).inc(),
        )
        reloader.install_sighup()
        background.append(asyncio.create_task(reloader.watch()))
    await rt.warn_stranded()
    log.info(
        "relay.started",
        version=__version__,
        queue=rt.config.settings.queue.url.split(":", 1)[0],
        routes=len(rt.config.table.routes),
        destinations=len(rt.config.destinations),
        delivering=rt.run_workers,
    )
    try:
        yield
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if rt.dispatcher is not None:
            await rt.dispatcher.stop(float(rt.config.settings.server.shutdown_grace))
        await rt.sender.aclose()
        await rt.queue.close()
        log.info("relay.stopped")


def create_app(
    config: RelayConfig,
    queue: Queue | None = None,
    *,
    run_workers: bool = True,
    receiving: bool = True,
    config_path: str | None = None,
    listen_host: str | None = None,
) -> Litestar:
    """Build the app for ``config``; ``queue`` overrides the configured one (tests).

    ``run_workers`` runs the delivery workers in this process, ``receiving`` serves the
    webhook path (`relay serve --role`: a process may do either or both).

    With ``config_path`` the app reloads that file on SIGHUP and when it changes.
    ``listen_host`` is the address `relay serve` listens on (default: the config's);
    without an admin token the console is for local clients only, and off beyond loopback.
    """
    server = config.settings.server
    handler = post(
        server.path,
        status_code=200,
        name="receive",
        operation_class=ReceiveOperation,
        # key 500: any exception that is not an HTTPException (Rejected has its own handler)
        exception_handlers={HTTP_500_INTERNAL_SERVER_ERROR: failed},
        middleware=[direct],
    )(receive)
    app = Litestar(
        route_handlers=[
            *([handler] if receiving else []),
            healthz,
            readyz,
            metrics,
            api.router(),
            *console.routers(server.console_path),
        ],
        exception_handlers={Rejected: rejected, QueueUnavailable: unavailable},
        template_config=console.template_config(),
        on_startup=[console.announce],
        lifespan=[lifespan],
        request_max_body_size=server.max_body_bytes,
        debug=False,
        logging_config=None,
    )
    app.state.runtime = Runtime(config, queue, run_workers=run_workers, config_path=config_path)
    app.state.admin = console.web.AdminState(listen_host)
    app.state.console_path = server.console_path
    return app
