"""The HTTP shell the console and the admin API share: the access guard and the headers.

:mod:`relay.console.auth` decides from plain facts; this module reads those facts
off a request (the peer address from the connection, never from a header), runs
the decision as a Litestar guard on both routers, logs refused tokens without
their value, and adds the security headers (a strict Content-Security-Policy,
``X-Frame-Options: DENY``, no caching) and any new session cookie to every
response of the two routers, error pages included.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from litestar import Litestar
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import AdminRefused
from ..logs import get_logger
from ..operations import MinuteCache
from . import auth

if TYPE_CHECKING:
    from ..app import Runtime
    from ..config import RelayConfig

log = get_logger("relay.console")

#: Scripts and styles from our own static files only: no inline script or style, no
#: eval, no frames, forms post back here only.
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
_ACCESS = "relay_access"
UNREACHABLE = "relay_unreachable"
SET_COOKIE = "relay_set_cookie"


class AdminState:
    """Per process: where the relay listens, failed-attempt counts, finished minutes' counts."""

    def __init__(self, listen_host: str | None = None) -> None:
        self.listen_host = listen_host
        self.throttle = auth.Throttle()
        self.minutes = MinuteCache()


def runtime(connection: ASGIConnection[Any, Any, Any, Any]) -> Runtime:
    rt: Runtime = connection.app.state.runtime
    return rt


def runtime_of_app(app: Litestar) -> Runtime:
    rt: Runtime = app.state.runtime
    return rt


def admin_state(connection: ASGIConnection[Any, Any, Any, Any]) -> AdminState:
    state: AdminState = connection.app.state.admin
    return state


def listen_host(connection: ASGIConnection[Any, Any, Any, Any], config: RelayConfig) -> str:
    """The address the relay was started on (``--host``), else the config's."""
    return admin_state(connection).listen_host or config.settings.server.host


def client_of(connection: ASGIConnection[Any, Any, Any, Any], config: RelayConfig) -> str:
    """Whom failed attempts count against: the peer, or the client a trusted proxy names."""
    peer = connection.client.host if connection.client else None
    forwarded = connection.headers.get("x-forwarded-for")
    return config.ip_policy.client_ip(peer, forwarded) or "unknown"


def facts_of(connection: ASGIConnection[Any, Any, Any, Any], config: RelayConfig) -> auth.Facts:
    headers = connection.headers
    return auth.Facts(
        method=str(connection.scope.get("method", "GET")),
        peer=connection.client.host if connection.client else None,
        host=headers.get("host"),
        proxied=any(name in headers for name in auth.PROXY_HEADERS),
        authorization=headers.get("authorization"),
        cookie=connection.cookies.get(auth.COOKIE),
        csrf=headers.get(auth.CSRF_HEADER),
        client=client_of(connection, config),
    )


def is_https(connection: ASGIConnection[Any, Any, Any, Any], config: RelayConfig) -> bool:
    """Served over TLS, or behind a trusted proxy that says the client used https."""
    if connection.url.scheme == "https":
        return True
    peer = connection.client.host if connection.client else None
    proto = connection.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return proto == "https" and config.ip_policy.trusts(peer)


def session_cookie(value: str, secure: bool, max_age: float = auth.SESSION_TTL) -> str:
    """A ``Set-Cookie`` value: HttpOnly, SameSite=Strict, Secure over https."""
    parts = [f"{auth.COOKIE}={value}", "Path=/", "HttpOnly", "SameSite=Strict"]
    parts.append(f"Max-Age={int(max_age)}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def access_of(connection: ASGIConnection[Any, Any, Any, Any]) -> auth.Access | None:
    """Whom the guard let in for this request (None: refused before it decided)."""
    access: auth.Access | None = connection.state.get(_ACCESS)
    return access


async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Let a request in or raise AdminRefused; public handlers (login, static) pass the
    mode's gate only."""
    config = runtime(connection).config
    token = config.settings.server.admin_token
    facts = facts_of(connection, config)
    listen = listen_host(connection, config)
    try:
        auth.reachable(facts, token, listen)
    except AdminRefused:
        connection.state[UNREACHABLE] = True  # off, or not local: answered as plain JSON
        raise
    if handler.opt.get("public"):
        connection.state[_ACCESS] = auth.Access("public")
        return
    try:
        access = auth.decide(
            facts,
            token,
            listen,
            admin_state(connection).throttle,
            time.time(),
            start_session=bool(handler.opt.get("page")) and not facts.changes_state,
        )
    except AdminRefused as exc:
        if exc.status in (401, 429) and auth.bearer(facts.authorization) is not None:
            auth_failed(connection, facts.client, exc.reason)
        raise
    if access.set_cookie is not None:
        cookie = session_cookie(access.set_cookie, is_https(connection, config))
        connection.state[SET_COOKIE] = cookie  # the middleware adds it to the answer
    connection.state[_ACCESS] = access


def audit(
    connection: ASGIConnection[Any, Any, Any, Any], face: str, action: str, **fields: Any
) -> None:
    """An operator's change on the log (``admin.action``): what, through which face
    (``api``, ``console``), from which client."""
    client = client_of(connection, runtime(connection).config)
    log.info("admin.action", action=action, **fields, by=face, client=client)


def auth_failed(connection: ASGIConnection[Any, Any, Any, Any], client: str, reason: str) -> None:
    """A refused token, logged without its value."""
    log.warning("admin.auth_failed", client=client, path=connection.url.path, reason=reason)


def security_headers(app: ASGIApp) -> ASGIApp:
    """Router middleware: the headers on every response, and a session cookie to set."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in HEADERS if k not in present]
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                cookie = scope.get("state", {}).get(SET_COOKIE)
                if cookie:
                    headers.append((b"set-cookie", cookie.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, sending)

    return wrapped
