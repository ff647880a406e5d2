"""What an operator does from the console: replay, pause, resume, test a route, log in and out.

Every action is an htmx POST carrying the session's ``X-CSRF-Token`` (the guard
refuses it otherwise) and calls one function of :mod:`relay.operations`, as the
API does. It answers a notice for the page's flash area and names, in
``HX-Trigger``, the parts of the page that should fetch themselves again.
The login form is the one POST without a CSRF token: the admin token it carries
is the proof.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from .. import operations
from ..dryrun import EventFileInvalid, dry_run
from ..errors import AdminRefused
from ..logs import get_logger
from . import auth, params, web
from .render import base_path, notice, page, problem

log = get_logger("relay.console")
PAGE = {"page": True}
PUBLIC = {"public": True}


async def _form(request: Request[Any, Any, Any]) -> dict[str, Any]:
    form = await request.form()
    return dict(form.items())


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


@post("/events/{event_id:str}/replay", status_code=200)
async def replay_event(request: Request[Any, Any, Any], event_id: FromPath[str]) -> Template:
    rt = web.runtime(request)
    destination = params.text_field(await _form(request), "destination", 200) or None
    done = await operations.resend_event(rt.queue, event_id, destination)
    made = done["deliveries"]
    where = f" to {destination}" if destination else ""
    web.audit(request, "console", "replay_event", event_id=event_id, destination=destination)
    return notice(
        request,
        f"Sent again{where}: {_count(len(made), 'new delivery', 'new deliveries')}.",
        trigger="deliveries-changed",
    )


@post("/dead-letters/replay", status_code=200)
async def replay_dead(request: Request[Any, Any, Any]) -> Template:
    """One dead letter (``id``), or every one of a filter (``destination``, ``error``)."""
    rt = web.runtime(request)
    form = await _form(request)
    one = params.text_field(form, "id", 64)
    destination = params.text_field(form, "destination", 200) or None
    error = params.text_field(form, "error") or None
    if one:
        n = await operations.replay_dead(rt.queue, [one], None)
        if not n:
            raise AdminRefused(404, "that delivery is no longer a dead letter")
    else:
        n = await operations.replay_dead_matching(rt.queue, destination, error)
    web.audit(request, "console", "replay_dead", destination=destination, count=n)
    return notice(
        request,
        f"Replayed {_count(n, 'dead delivery', 'dead deliveries')}: back to pending with a"
        " fresh budget.",
        trigger="dead-letters-changed",
    )


@post("/destinations/{name:str}/pause", status_code=200)
async def pause(request: Request[Any, Any, Any], name: FromPath[str]) -> Template:
    rt = web.runtime(request)
    reason = params.text_field(await _form(request), "reason", 500)
    done = await operations.pause_destination(rt.queue, rt.config, name, reason)
    web.audit(request, "console", "pause", destination=name, changed=done["changed"])
    text = f"{name} paused" if done["changed"] else f"{name} was already paused"
    return notice(request, text + ".", trigger="destinations-changed")


@post("/destinations/{name:str}/resume", status_code=200)
async def resume(request: Request[Any, Any, Any], name: FromPath[str]) -> Template:
    rt = web.runtime(request)
    done = await operations.resume_destination(rt.queue, rt.config, name)
    web.audit(request, "console", "resume", destination=name, changed=done["changed"])
    text = f"{name} resumed ({done['state']})" if done["changed"] else f"{name} was not paused"
    return notice(request, text + ".", trigger="destinations-changed")


@post("/routes/test", status_code=200)
async def route_test(request: Request[Any, Any, Any]) -> Template:
    """The `relay route` dry run of the pasted event, in the page."""
    config = web.runtime(request).config
    text = params.text_field(await _form(request), "event", params.MAX_DRY_RUN_BYTES) or ""
    try:
        result = await asyncio.to_thread(dry_run, config, text.encode())
    except EventFileInvalid as exc:
        return page(request, "_route_result.html", results=None, error=str(exc))
    results = result if isinstance(result, list) else [result]
    return page(request, "_route_result.html", results=results, error=None, raw=result)


# -- login ----------------------------------------------------------------------------------
def safe_next(base: str, target: object) -> str:
    """Where to go after logging in: a console path of ours, never another site."""
    if not isinstance(target, str) or not target.startswith(base) or len(target) > 2000:
        return base
    if not target.isascii() or any(ord(c) <= 0x20 or c == "\x7f" for c in target):
        return base  # a header value: no line breaks, spaces or bytes beyond ASCII
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target or target.startswith("//"):
        return base
    if ".." in parts.path.split("/"):
        return base
    rest = parts.path[len(base) :]
    if rest and not rest.startswith("/"):
        return base
    return target


@get("/login", opt=PUBLIC)
async def login_form(request: Request[Any, Any, Any]) -> Response[Any]:
    config = web.runtime(request).config
    base = base_path(request)
    if not config.settings.server.admin_token:
        return Redirect(base, status_code=303)
    target = safe_next(base, request.query_params.get("next"))
    return page(request, "login.html", next=target, error=None)


@post("/login", opt=PUBLIC, status_code=303)
async def login(request: Request[Any, Any, Any]) -> Response[Any]:
    config = web.runtime(request).config
    base = base_path(request)
    token = config.settings.server.admin_token
    if not token:
        return Redirect(base, status_code=303)
    form = await _form(request)
    target = safe_next(base, form.get("next"))
    given = form.get("token")
    client = web.client_of(request, config)
    try:
        cookie = auth.login(
            given if isinstance(given, str) else "",
            token,
            client,
            web.admin_state(request).throttle,
            time.time(),
        )
    except AdminRefused as exc:
        web.auth_failed(request, client, exc.reason)
        response = page(request, "login.html", exc.status, next=target, error=exc.reason)
        if exc.retry_after:
            response.headers["Retry-After"] = str(int(exc.retry_after))
        return response
    secure = web.is_https(request, config)
    return Redirect(
        target, status_code=303, headers={"Set-Cookie": web.session_cookie(cookie, secure)}
    )


@post("/logout", status_code=200)
async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
    secure = web.is_https(request, web.runtime(request).config)
    return Response(
        b"",
        headers={
            "Set-Cookie": web.session_cookie("", secure, max_age=0),
            "HX-Redirect": f"{base_path(request)}/login",
        },
    )


@get("/{rest:path}", opt=PAGE, include_in_schema=False)
async def unknown(request: Request[Any, Any, Any], rest: FromPath[str]) -> Response[Any]:
    return problem(request, 404, "no such page")
