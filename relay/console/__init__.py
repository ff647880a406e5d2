"""The operator console: server-rendered pages to see and steer a running relay.

Litestar templates (Jinja2, autoescaped) and htmx (vendored under ``static/``, no
CDN, no build step) for partial refresh and actions; charts are inline SVG drawn
on the server. The pages call the same operations as the admin API and the CLI
(:mod:`relay.operations`); access, CSRF and the security headers are shared with
the API (:mod:`relay.console.web`). :func:`routers` is what the app mounts.
"""

from __future__ import annotations

from litestar import Litestar, Router
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router

from ..logs import get_logger
from . import actions, auth, pages, web
from .render import EXCEPTION_HANDLERS, STATIC, template_config

log = get_logger("relay.console")


def routers(path: str) -> list[Router]:
    """The console's pages at ``path`` and its static files at ``path/static``."""
    pages_router = Router(
        path=path,
        route_handlers=[
            pages.overview,
            pages.overview_fragment,
            pages.events,
            pages.event,
            pages.event_deliveries,
            pages.dead_letters,
            pages.dead_letters_fragment,
            pages.dead_letters_confirm,
            pages.empty,
            pages.destinations,
            pages.destinations_fragment,
            pages.routes,
            pages.route_sample,
            actions.replay_event,
            actions.replay_dead,
            actions.pause,
            actions.resume,
            actions.route_test,
            actions.login_form,
            actions.login,
            actions.logout,
            actions.unknown,
        ],
        guards=[web.guard],
        middleware=[web.security_headers],
        exception_handlers=EXCEPTION_HANDLERS,
        include_in_schema=False,
    )
    static = create_static_files_router(
        path=f"{path}/static",
        directories=[STATIC],
        name="console-static",
        guards=[web.guard],
        middleware=[web.security_headers],
        exception_handlers=EXCEPTION_HANDLERS,
        opt={"public": True},
        # the URLs carry the relay's version (?v=), so a day of caching is safe
        cache_control=CacheControlHeader(max_age=86400, private=True),
        include_in_schema=False,
    )
    return [pages_router, static]


def announce(app: Litestar) -> None:
    """At start: say how the console can be reached, or that it is off and why."""
    config = web.runtime_of_app(app).config
    listen_host = app.state.admin.listen_host or config.settings.server.host
    server = config.settings.server
    current = auth.mode(server.admin_token, listen_host)
    if current is auth.Mode.OFF:
        log.warning(
            "console.off",
            reason=auth.OFF,
            listen_host=listen_host,
            hint="set server.admin_token (RELAY_ADMIN_TOKEN) to use the console and admin API",
        )
    elif current is auth.Mode.LOCAL:
        log.info(
            "console.local_only",
            path=server.console_path,
            api="/api/v1",
            hint="no admin token: loopback clients only",
        )
    else:
        log.info("console.ready", path=server.console_path, api="/api/v1", auth="admin token")


__all__ = ["announce", "routers", "template_config"]
