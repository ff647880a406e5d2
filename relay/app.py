"""The Litestar application: HTTP routes and the lifespan that owns queue, client and workers.

Thin shell: handlers translate between HTTP and :mod:`relay.receiver`; the
lifespan opens the queue, starts the delivery workers, and on shutdown gives
in-flight attempts ``server.shutdown_grace`` before leaving the rest queued.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.exceptions import ClientException

from . import __version__, maintenance
from .config import RelayConfig
from .delivery import Dispatcher
from .errors import QueueUnavailable
from .http_client import Sender
from .logs import get_logger
from .metrics import CONTENT_TYPE, Metrics
from .model import EventInvalid
from .openapi import ReceiveOperation
from .queue import Queue, from_settings
from .receiver import BodyInvalid, prepare, token_ok
from .reload import Reloader

log = get_logger("relay.receiver")
_JSON = "application/json"


class Runtime:
    """What the handlers share: the current config (swapped on reload), queue, workers."""

    def __init__(self, config: RelayConfig, queue: Queue | None = None) -> None:
        self.config = config
        self.queue = queue or from_settings(config.settings.queue)
        self.metrics = Metrics()
        self.sender: Sender | None = None
        self.dispatcher: Dispatcher | None = None
        self._checks: asyncio.Task[None] | None = None

    def current(self) -> RelayConfig:
        return self.config

    def apply(self, config: RelayConfig) -> None:
        """Swap in a reloaded config: new events use it; workers pick up new destinations."""
        self.config = config
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


def _json(status: int, payload: dict[str, Any]) -> Response[bytes]:
    return Response(msgspec.json.encode(payload), status_code=status, media_type=_JSON)


def _reject(rt: Runtime, status: int, reason: str, **extra: Any) -> Response[bytes]:
    rt.metrics.events.labels("rejected").inc()
    log.warning("event.rejected", status=status, reason=reason)
    return _json(status, {"error": reason, **extra})


def create_app(
    config: RelayConfig,
    queue: Queue | None = None,
    *,
    run_workers: bool = True,
    config_path: str | None = None,
) -> Litestar:
    """Build the app for ``config``; ``queue`` overrides the configured one (tests).

    With ``config_path`` the app reloads that file on SIGHUP and when it changes.
    """
    rt = Runtime(config, queue)
    server = config.settings.server

    async def receive(request: Request[Any, Any, Any]) -> Response[bytes]:
        cfg = rt.config
        srv = cfg.settings.server
        limit = server.max_body_bytes  # restart-only: what Litestar enforces, not a reload's
        if cfg.ip_policy.allow:
            peer = request.client.host if request.client else None
            if not cfg.ip_policy.allows(peer, request.headers.get("x-forwarded-for")):
                return _reject(rt, 403, "client address not allowed")
        if not token_ok(srv.token, request.query_params, request.headers.get("authorization")):
            return _reject(rt, 401, "missing or wrong token")
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            return _reject(rt, 413, f"body over {limit} bytes")
        try:
            body = await request.body()
        except ClientException as exc:
            if exc.status_code == 413:
                return _reject(rt, 413, f"body over {limit} bytes")
            return _reject(rt, exc.status_code, str(exc.detail))
        if len(body) > limit:
            return _reject(rt, 413, f"body over {limit} bytes")
        try:
            prepared = prepare(body, cfg.table, dedupe=srv.dedupe_window > 0)
        except BodyInvalid as exc:
            return _reject(rt, 400, str(exc))
        except EventInvalid as exc:
            return _reject(
                rt, 422, "event does not match the Pushwoosh webhook schema", errors=exc.errors
            )
        try:
            accepted = await rt.queue.enqueue(
                [p.record for p in prepared], srv.dedupe_window, time.time()
            )
        except Exception as exc:
            log.error(
                "queue.unavailable",
                error=str(exc)
                if isinstance(exc, QueueUnavailable)
                else f"{type(exc).__name__}: {exc}",
            )
            return _json(503, {"error": "queue unavailable; the event was not accepted"})
        ids: list[str] = []
        duplicates = 0
        destinations: set[str] = set()
        for p, result in zip(prepared, accepted, strict=True):
            ids.append(result.event_id)
            if result.duplicate:
                duplicates += 1
                rt.metrics.events.labels("duplicate").inc()
                log.info(
                    "event.duplicate",
                    event_id=result.event_id,
                    event_name=p.event.get("event_name"),
                )
                continue
            rt.metrics.events.labels("accepted").inc()
            destinations.update(d.destination for d in p.record.deliveries)
            log.info(
                "event.received",
                event_id=result.event_id,
                event_name=p.event.get("event_name"),
                routes=list(p.plan.routes),
                deliveries=len(p.record.deliveries),
            )
        if rt.dispatcher is not None and destinations:
            rt.dispatcher.wake(list(destinations))
        payload: dict[str, Any] = {"accepted": len(ids) - duplicates, "ids": ids}
        if duplicates:
            payload["duplicates"] = duplicates
        return _json(200, payload)

    @get("/healthz", sync_to_thread=False)
    def healthz() -> Response[bytes]:
        return _json(200, {"status": "ok", "version": __version__})

    @get("/readyz")
    async def readyz() -> Response[bytes]:
        try:
            await rt.queue.ping()
        except Exception as exc:
            return _json(503, {"status": "unavailable", "error": str(exc)})
        return _json(200, {"status": "ready"})

    @get("/metrics")
    async def metrics() -> Response[bytes]:
        try:
            depth = await rt.queue.depth(time.time())
            rt.metrics.set_depth(depth, list(rt.config.destinations))
        except Exception as exc:
            log.warning("metrics.depth_failed", error=str(exc))
        return Response(rt.metrics.render(), media_type=CONTENT_TYPE)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await rt.queue.open()
        await rt.queue.join()
        rt.sender = Sender()
        background: list[asyncio.Task[None]] = []
        if run_workers:
            rt.dispatcher = Dispatcher(rt.queue, rt.current, rt.sender, rt.metrics)
            rt.dispatcher.start()
            background.append(asyncio.create_task(maintenance.run(rt.queue, rt.current)))
        if config_path is not None:
            reloader = Reloader(
                config_path,
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
            queue=_queue_kind(rt),
            routes=len(rt.config.table.routes),
            destinations=len(rt.config.destinations),
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

    handler = post(server.path, status_code=200, name="receive", operation_class=ReceiveOperation)(
        receive
    )
    app = Litestar(
        route_handlers=[handler, healthz, readyz, metrics],
        lifespan=[lifespan],
        request_max_body_size=server.max_body_bytes,
        debug=False,
        logging_config=None,
    )
    app.state.runtime = rt
    return app


def _queue_kind(rt: Runtime) -> str:
    return rt.config.settings.queue.url.split(":", 1)[0]
