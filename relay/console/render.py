"""How the console answers: whole pages, htmx fragments, notices and refusals.

Jinja2 with autoescape on every template, so event data (an ``hwid`` of
``<img src=x onerror=...>``) is always text. Every page gets the same frame
context (paths, the CSRF token for ``hx-headers``, the access mode); a refusal
becomes a login redirect, an htmx redirect, a notice in the page's flash area,
or an error page, depending on who asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.template.config import TemplateConfig

from .. import __version__, operations
from ..errors import AdminRefused, QueueUnavailable
from ..logs import get_logger
from ..units import iso
from . import views, web

log = get_logger("relay.console")
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def environment() -> jinja2.Environment:
    """Autoescaping everywhere, and a loud error for a name a template gets wrong."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pretty"] = views.pretty
    env.filters["percent"] = views.percent
    env.filters["millis"] = views.millis
    env.filters["iso"] = iso
    return env


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment()))


def base_path(request: Request[Any, Any, Any]) -> str:
    path: str = request.app.state.console_path
    return path


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


def frame(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """What every template sees: where things are, who is in, the CSRF token."""
    base = base_path(request)
    access = web.access_of(request)
    return {
        "base": base,
        "static": f"{base}/static",
        "version": __version__,
        "csrf": access.csrf if access is not None else None,
        "access": access.kind if access is not None else "public",
        "path": request.url.path,
    }


def page(request: Request[Any, Any, Any], name: str, status: int = 200, **context: Any) -> Template:
    return Template(template_name=name, context={**frame(request), **context}, status_code=status)


def notice(
    request: Request[Any, Any, Any],
    text: str,
    *,
    status: int = 200,
    kind: str = "ok",
    trigger: str | None = None,
) -> Template:
    """A message for the page's flash area; ``trigger`` tells parts of the page to refresh."""
    response = page(request, "_notice.html", status, text=text, kind=kind)
    headers = {"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"}
    if trigger:
        headers["HX-Trigger"] = trigger
    response.headers.update(headers)
    return response


def login_url(request: Request[Any, Any, Any]) -> str:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"{base_path(request)}/login?next={quote(here, safe='')}"


def refused(request: Request[Any, Any, Any], exc: AdminRefused) -> Response[Any]:
    headers = {"Retry-After": str(int(exc.retry_after))} if exc.retry_after else {}
    if request.state.get(web.UNREACHABLE):
        # Off, or not a local client: the same JSON the API answers, and no page at all.
        return Response({"error": exc.reason}, status_code=403, media_type="application/json")
    if exc.status == 401:
        if is_htmx(request):
            return Response(b"", status_code=401, headers={"HX-Redirect": login_url(request)})
        if request.method == "GET":
            return Redirect(login_url(request), status_code=303)
    return problem(request, exc.status, exc.reason, headers)


def problem(
    request: Request[Any, Any, Any],
    status: int,
    reason: str,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    """A refusal as a notice (htmx) or an error page; the page holds no data, only the reason."""
    if is_htmx(request):
        response = notice(request, reason, status=status, kind="error")
    else:
        bare = web.access_of(request) is None  # not let in: no links to follow
        response = page(request, "error.html", status, code=status, reason=reason, bare=bare)
    if headers:
        response.headers.update(headers)
    return response


def not_found(request: Request[Any, Any, Any], exc: operations.NotFound) -> Response[Any]:
    return problem(request, 404, str(exc.args[0]) if exc.args else "not found")


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    return problem(request, exc.status_code, str(exc.detail))


def unavailable(request: Request[Any, Any, Any], exc: QueueUnavailable) -> Response[Any]:
    log.error("queue.unavailable", error=str(exc), path=request.url.path)
    return problem(request, 503, "the queue is unavailable; try again")


def failed(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("console.failed", error=f"{type(exc).__name__}: {exc}"[:500], exc_info=exc)
    return problem(request, 500, "internal error (logged)")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    AdminRefused: refused,
    operations.NotFound: not_found,
    HTTPException: http_error,
    QueueUnavailable: unavailable,
    Exception: failed,
}

__all__ = ["EXCEPTION_HANDLERS", "STATIC", "page", "template_config", "web"]
