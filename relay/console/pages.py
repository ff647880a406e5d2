"""The console's pages: what an operator reads (overview, events, dead letters, ...).

Each handler fetches through :mod:`relay.operations` (the same functions the API
and the CLI call), shapes with :mod:`relay.console.views` and renders a template.
Parts of a page that change on their own (the overview, the destinations, an
event's deliveries while they are unsettled) are fragments that htmx fetches
again every few seconds, or when an action says they changed.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, get
from litestar.params import FromPath
from litestar.response import Template

from .. import operations
from ..errors import AdminRefused
from ..model import DeliveryState
from ..units import iso
from . import charts, params, views, web
from .render import page

PAGE = {"page": True}
OUTCOMES = (("succeeded", "ok"), ("retry", "retry"), ("dead", "dead"))


def _pairs(request: Request[Any, Any, Any]) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


def _attempt_series(series: dict[str, list[int]]) -> list[charts.Series]:
    return [charts.Series(name, css, series[name]) for name, css in OUTCOMES]


def _sparkline(minutes: list[str], series: dict[str, list[int]] | None) -> charts.Chart:
    empty = {name: [0] * len(minutes) for name, _ in OUTCOMES}
    return charts.stacked(
        "attempts, last hour",
        minutes,
        _attempt_series(series or empty),
        width=260,
        height=56,
        tick_every=30,
        left=0,
    )


async def _overview(request: Request[Any, Any, Any]) -> dict[str, Any]:
    rt = web.runtime(request)
    now = time.time()
    destinations = await operations.destinations(rt.queue, rt.config, now)
    activity = await operations.activity_per_minute(
        rt.queue, now, cache=web.admin_state(request).minutes
    )
    minutes = activity["minutes"]
    return {
        "destinations": destinations,
        "events_chart": charts.stacked(
            "Events received per minute",
            minutes,
            [charts.Series("events", "events", activity["events"])],
        ),
        "attempts_chart": charts.stacked(
            "Delivery attempts per minute, by outcome",
            minutes,
            _attempt_series(activity["attempts"]),
        ),
        "info": {
            "queue": rt.queue.dialect,
            "config": rt.config_path or rt.config.source,
            "loaded_at": iso(rt.loaded_at),
            "routes": len(rt.config.table.routes),
        },
        "now": iso(now),
    }


@get("/", opt=PAGE)
async def overview(request: Request[Any, Any, Any]) -> Template:
    return page(request, "overview.html", nav="overview", **(await _overview(request)))


@get("/fragments/overview", opt=PAGE)
async def overview_fragment(request: Request[Any, Any, Any]) -> Template:
    return page(request, "_overview.html", **(await _overview(request)))


# -- events ---------------------------------------------------------------------------------
@get("/events", opt=PAGE)
async def events(request: Request[Any, Any, Any]) -> Template:
    rt = web.runtime(request)
    context: dict[str, Any] = {
        "nav": "events",
        "destinations": list(rt.config.destinations),
        "states": [s.value for s in DeliveryState],
        "error": None,
        "page_": None,
        "query": None,
    }
    try:
        query = params.event_query(_pairs(request), time.time())
    except AdminRefused as exc:  # the form stays, with the reason above it
        given = dict(request.query_params.items())
        context.update(error=exc.reason, filters=given)
        return page(request, "events.html", exc.status, **context)
    mask = rt.config.settings.logging.mask_hwid and not query.unmask
    listing = await operations.list_events(
        rt.queue, query.filter, query.limit, query.before, mask=mask
    )
    context.update(page_=listing, query=query, filters=query.given)
    return page(request, "events.html", **context)


async def _event(request: Request[Any, Any, Any], event_id: str) -> dict[str, Any]:
    rt = web.runtime(request)
    given = params.single(_pairs(request), ("unmask",))
    unmask = params.flag("unmask", given.get("unmask"))
    mask = rt.config.settings.logging.mask_hwid and not unmask
    doc = await operations.show_event(rt.queue, event_id, mask=mask)
    routes = {d["route"]: views.route_of(rt.config, d["route"]) for d in doc["deliveries"]}
    replayable = sorted({d["destination"] for d in doc["deliveries"]} & set(rt.config.destinations))
    return {
        "doc": doc,
        "routes": routes,
        "replayable": replayable,
        "masked": mask,
        "can_unmask": rt.config.settings.logging.mask_hwid,
        "unmask": unmask,
        "unsettled": views.unsettled(doc),
    }


@get("/events/{event_id:str}", opt=PAGE)
async def event(request: Request[Any, Any, Any], event_id: FromPath[str]) -> Template:
    return page(request, "event.html", nav="events", **(await _event(request, event_id)))


@get("/events/{event_id:str}/deliveries", opt=PAGE)
async def event_deliveries(request: Request[Any, Any, Any], event_id: FromPath[str]) -> Template:
    return page(request, "_deliveries.html", **(await _event(request, event_id)))


# -- dead letters ---------------------------------------------------------------------------
async def _dead(request: Request[Any, Any, Any]) -> dict[str, Any]:
    rt = web.runtime(request)
    query = params.dead_query(_pairs(request))
    report = await operations.dead_letter_report(
        rt.queue, query.destination, query.error, query.limit
    )
    return {"report": report, "query": query, "filters": _shown(query)}


def _shown(query: params.DeadQuery) -> dict[str, str]:
    """The filter as query parameters (links and refreshes keep it)."""
    pairs = (("destination", query.destination), ("error", query.error))
    return {name: value for name, value in pairs if value}


@get("/dead-letters", opt=PAGE)
async def dead_letters(request: Request[Any, Any, Any]) -> Template:
    rt = web.runtime(request)
    return page(
        request,
        "dead_letters.html",
        nav="dead",
        destinations=list(rt.config.destinations),
        **(await _dead(request)),
    )


@get("/fragments/dead-letters", opt=PAGE)
async def dead_letters_fragment(request: Request[Any, Any, Any]) -> Template:
    return page(request, "_dead.html", **(await _dead(request)))


@get("/dead-letters/confirm", opt=PAGE)
async def dead_letters_confirm(request: Request[Any, Any, Any]) -> Template:
    """The count a replay of this filter would take back, and the button that does it."""
    rt = web.runtime(request)
    query = params.dead_query(_pairs(request))
    count = await operations.count_dead(rt.queue, query.destination, query.error)
    return page(request, "_confirm.html", count=count, query=query)


@get("/fragments/empty", opt=PAGE, media_type="text/html")
async def empty() -> str:
    """Nothing: what a Cancel button swaps in."""
    return ""


# -- destinations ---------------------------------------------------------------------------
async def _destinations(request: Request[Any, Any, Any]) -> dict[str, Any]:
    rt = web.runtime(request)
    now = time.time()
    rows = await operations.destinations(rt.queue, rt.config, now)
    activity = await operations.activity_per_minute(
        rt.queue, now, cache=web.admin_state(request).minutes
    )
    sparks = {
        row["name"]: _sparkline(activity["minutes"], activity["by_destination"].get(row["name"]))
        for row in rows
    }
    return {"destinations": rows, "sparks": sparks, "now": iso(now)}


@get("/destinations", opt=PAGE)
async def destinations(request: Request[Any, Any, Any]) -> Template:
    return page(request, "destinations.html", nav="destinations", **(await _destinations(request)))


@get("/fragments/destinations", opt=PAGE)
async def destinations_fragment(request: Request[Any, Any, Any]) -> Template:
    return page(request, "_destinations.html", **(await _destinations(request)))


# -- routes ---------------------------------------------------------------------------------
@get("/routes", opt=PAGE)
async def routes(request: Request[Any, Any, Any]) -> Template:
    config = web.runtime(request).config
    samples = list(views.samples())
    first = "email-bounced.json" if "email-bounced.json" in samples else None
    return page(
        request,
        "routes.html",
        nav="routes",
        routes=views.routes(config),
        samples=samples,
        sample=first,
        text=(views.sample_text(first) if first else "") or "",
    )


@get("/routes/sample", opt=PAGE)
async def route_sample(request: Request[Any, Any, Any]) -> Template:
    """A sample event's text, to put in the test form's text area."""
    given = params.single(_pairs(request), ("name",))
    name = given.get("name", "")
    text = views.sample_text(name)
    if text is None:
        raise AdminRefused(404, f"no sample event {name[:100]!r}")
    return page(request, "_sample.html", text=text)
