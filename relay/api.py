"""The admin API (``/api/v1``): the operations of :mod:`relay.operations` as JSON over HTTP.

A third thin face beside the command line and the console: each handler reads its
parameters (:mod:`relay.console.params`, shared with the console), calls one
operation and answers its document, so ``GET /api/v1/events/{id}`` is exactly
`relay events show --json`. Access is the console's (:mod:`relay.console.web`):
``Authorization: Bearer <server.admin_token>``, or a console session plus its
``X-CSRF-Token`` for a change, or a local client when no admin token is set.
Every refusal is JSON ``{"error": reason}`` with a 4xx status; nothing a client
sends makes a 500.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.exceptions import HTTPException
from litestar.openapi.spec import Operation
from litestar.params import FromPath, JSONBody, QueryParameter

from . import operations
from .console import params, web
from .dryrun import EventFileInvalid, dry_run
from .errors import AdminRefused, QueueUnavailable
from .logs import get_logger
from .openapi import events_body

log = get_logger("relay.api")
PREFIX = "/api/v1"
#: Most ids one replay request names.
MAX_IDS = 1000


def _q(description: str, name: str | None = None, **schema: Any) -> Any:
    """A documented optional query parameter (read again by :mod:`relay.console.params`)."""
    return QueryParameter(
        description=description, name=name, required=False, schema_extra=schema or None
    )


class _Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Request bodies reject keys they do not know, as the config does."""


class ReplayEvent(_Body):
    destination: str | None = None


class Pause(_Body):
    reason: str | None = None


class ReplayDead(_Body):
    destination: str | None = None
    error: str | None = None
    ids: list[str] | None = None
    all: bool = False
    dry_run: bool = False


def _json(status: int, payload: dict[str, Any], **headers: str) -> Response[bytes]:
    return Response(
        msgspec.json.encode(payload),
        status_code=status,
        media_type="application/json",
        headers=headers or None,
    )


@dataclass
class DryRunOperation(Operation):
    """The dry run reads its body itself (any event, as the receiver): say what it takes."""

    def __post_init__(self) -> None:
        self.request_body = events_body()


def _pairs(request: Request[Any, Any, Any]) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


# -- events ---------------------------------------------------------------------------------
@get(
    "/events",
    summary="List stored events, newest first",
    description="`relay events list --json`: filters named like its flags; `next` is the"
    " cursor of the next page (pass it as `before`). Unknown parameters are a 400.",
)
async def list_events(
    request: Request[Any, Any, Any],
    destination: Annotated[str | None, _q("a destination's name")] = None,
    state_: Annotated[  # `state` is a name Litestar keeps for the app's state
        str | None,
        _q("per destination", "state", enum=["pending", "retrying", "succeeded", "dead"]),
    ] = None,
    event_name: Annotated[str | None, _q("exact event name")] = None,
    hwid: Annotated[str | None, _q("an address, case-insensitive")] = None,
    user_id: Annotated[str | None, _q("exact user id")] = None,
    campaign_id: Annotated[str | None, _q("exact campaign id")] = None,
    since: Annotated[str | None, _q("1h (ago), 2026-11-28T10:00Z or epoch seconds")] = None,
    until: Annotated[str | None, _q("the same forms as since")] = None,
    limit: Annotated[str | None, _q("1-500, default 50", type="integer")] = None,
    before: Annotated[str | None, _q("the previous page's `next`")] = None,
    unmask: Annotated[str | None, _q("show addresses in full", type="boolean")] = None,
) -> dict[str, Any]:
    rt = web.runtime(request)
    query = params.event_query(_pairs(request), time.time())
    mask = rt.config.settings.logging.mask_hwid and not query.unmask
    return await operations.list_events(
        rt.queue, query.filter, query.limit, query.before, mask=mask
    )


@get(
    "/events/{event_id:str}",
    summary="One event, each delivery and every attempt",
    description="The `relay events show --json` document; 404 when there is no such event.",
)
async def show_event(
    request: Request[Any, Any, Any],
    event_id: FromPath[str],
    unmask: Annotated[str | None, _q("show the address in full", type="boolean")] = None,
) -> dict[str, Any]:
    rt = web.runtime(request)
    given = params.single(_pairs(request), ("unmask",))
    mask = rt.config.settings.logging.mask_hwid and not params.flag("unmask", given.get("unmask"))
    return await operations.show_event(rt.queue, event_id, mask=mask)


@post(
    "/events/{event_id:str}/replay",
    status_code=200,
    summary="Send an event again (any state) as new deliveries",
    description='Body (optional): `{"destination": NAME}`; otherwise to every destination'
    " it had. New delivery ids (new Idempotency-Key), fresh budget.",
    operation_id="replayEvent",
)
async def replay_event(
    request: Request[Any, Any, Any],
    event_id: FromPath[str],
    data: JSONBody[ReplayEvent | None] = None,
) -> dict[str, Any]:
    rt = web.runtime(request)
    destination = data.destination if data else None
    done = await operations.resend_event(rt.queue, event_id, destination)
    web.audit(request, "api", "replay_event", event_id=event_id, destination=destination)
    return done


# -- dead letters ---------------------------------------------------------------------------
@get(
    "/dead-letters",
    summary="Dead letters: how many match, by destination and last error, the newest",
)
async def dead_letters(
    request: Request[Any, Any, Any],
    destination: Annotated[str | None, _q("a destination's name")] = None,
    error: Annotated[str | None, _q("a last error, exactly as listed")] = None,
    limit: Annotated[str | None, _q("1-1000, default 100", type="integer")] = None,
) -> dict[str, Any]:
    query = params.dead_query(_pairs(request))
    rt = web.runtime(request)
    return await operations.dead_letter_report(
        rt.queue, query.destination, query.error, query.limit
    )


@post(
    "/dead-letters/replay",
    status_code=200,
    summary="Dead letters back to pending with a fresh budget; answers how many",
    description='Body: `{"ids": [...]}`, or a filter `{"destination": NAME, "error": TEXT}`'
    ' (either or both), or `{"all": true}`; `"dry_run": true` only counts.',
)
async def replay_dead(
    request: Request[Any, Any, Any], data: JSONBody[ReplayDead]
) -> dict[str, Any]:
    rt = web.runtime(request)
    body = data
    if body.ids is not None:
        if not body.ids or len(body.ids) > MAX_IDS:
            raise AdminRefused(400, f"ids: give from 1 to {MAX_IDS} ids")
        if body.dry_run:
            raise AdminRefused(400, "dry_run counts a filter, not ids")
        n = await operations.replay_dead(rt.queue, body.ids, body.destination)
        web.audit(request, "api", "replay_dead", destination=body.destination, count=n)
        return {"replayed": n}
    if body.destination is None and body.error is None and not body.all:
        raise AdminRefused(
            400, 'give ids, a filter (destination, error) or "all": true to replay every one'
        )
    if body.dry_run:
        return {"would_replay": await operations.count_dead(rt.queue, body.destination, body.error)}
    n = await operations.replay_dead_matching(rt.queue, body.destination, body.error)
    web.audit(request, "api", "replay_dead", destination=body.destination, count=n)
    return {"replayed": n}


# -- destinations ---------------------------------------------------------------------------
@get("/destinations", summary="Every destination: state, counts, success rate, p95, last error")
async def destinations(request: Request[Any, Any, Any]) -> dict[str, Any]:
    rt = web.runtime(request)
    return {"destinations": await operations.destinations(rt.queue, rt.config, time.time())}


@post(
    "/destinations/{name:str}/pause",
    status_code=200,
    summary="Hold a destination for every instance",
    description='Body (optional): `{"reason": TEXT}`. Events keep being queued for it.',
)
async def pause(
    request: Request[Any, Any, Any], name: FromPath[str], data: JSONBody[Pause | None] = None
) -> dict[str, Any]:
    rt = web.runtime(request)
    reason = data.reason if data else None
    done = await operations.pause_destination(rt.queue, rt.config, name, reason)
    web.audit(request, "api", "pause", destination=name, changed=done["changed"])
    return done


@post("/destinations/{name:str}/resume", status_code=200, summary="Release a pause")
async def resume(request: Request[Any, Any, Any], name: FromPath[str]) -> dict[str, Any]:
    rt = web.runtime(request)
    done = await operations.resume_destination(rt.queue, rt.config, name)
    web.audit(request, "api", "resume", destination=name, changed=done["changed"])
    return done


# -- routing --------------------------------------------------------------------------------
@post(
    "/route",
    status_code=200,
    summary="Dry run: which routes match the posted event and the exact requests (masked)",
    description="`relay route`: the body is one event or an array of events (at most"
    f" {params.MAX_DRY_RUN_BYTES // 1024} KiB); nothing is queued or sent.",
    operation_class=DryRunOperation,
)
async def route(request: Request[Any, Any, Any]) -> Any:
    config = web.runtime(request).config
    body = await request.body()
    if len(body) > params.MAX_DRY_RUN_BYTES:
        raise AdminRefused(413, f"a dry run takes at most {params.MAX_DRY_RUN_BYTES} bytes")
    try:
        # The rendering of many events is CPU work: off the event loop.
        return await asyncio.to_thread(dry_run, config, body)
    except EventFileInvalid as exc:
        raise AdminRefused(exc.status, str(exc)) from None


# -- refusals -------------------------------------------------------------------------------
def refused(request: Request[Any, Any, Any], exc: AdminRefused) -> Response[bytes]:
    headers = {}
    if exc.retry_after is not None:
        headers["retry-after"] = str(int(exc.retry_after))
    if exc.status == 401:
        headers["www-authenticate"] = 'Bearer realm="relay admin"'
    return _json(exc.status, {"error": exc.reason}, **headers)


def not_found(request: Request[Any, Any, Any], exc: operations.NotFound) -> Response[bytes]:
    return _json(404, {"error": str(exc.args[0]) if exc.args else "not found"})


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """Litestar's own refusals (a parameter it could not read, a body too large) as ours."""
    reason = str(exc.detail)
    if isinstance(exc.extra, list):  # Validation failed ...: say what, not only that
        found = [str(item.get("message")) for item in exc.extra if isinstance(item, dict)]
        reason = "; ".join([f"{reason}: {found[0]}", *found[1:]]) if found else reason
    return _json(exc.status_code, {"error": reason[:2000]})


def unavailable(request: Request[Any, Any, Any], exc: QueueUnavailable) -> Response[bytes]:
    log.error("queue.unavailable", error=str(exc), path=request.url.path)
    return _json(503, {"error": "queue unavailable; try again"})


def failed(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """A bug: logged with its traceback, answered without one."""
    log.error("api.failed", error=f"{type(exc).__name__}: {exc}"[:500], exc_info=exc)
    return _json(500, {"error": "internal error (logged)"})


def router() -> Router:
    """The admin API, to mount on the app."""
    return Router(
        path=PREFIX,
        route_handlers=[
            list_events,
            show_event,
            replay_event,
            dead_letters,
            replay_dead,
            destinations,
            pause,
            resume,
            route,
        ],
        guards=[web.guard],
        middleware=[web.security_headers],
        exception_handlers={
            AdminRefused: refused,
            operations.NotFound: not_found,
            HTTPException: http_error,
            QueueUnavailable: unavailable,
            Exception: failed,
        },
        tags=["admin"],
    )


__all__ = ["PREFIX", "router"]
