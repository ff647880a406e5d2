"""`relay route`: what an event would do, computed by the same code that serves, sending nothing."""

from __future__ import annotations

from typing import Any

from .config import RelayConfig
from .errors import RelayError, RenderError
from .receiver import BodyInvalid, EventInvalid, prepare


class EventFileInvalid(RelayError):
    """The file does not hold a valid event."""


def dry_run(config: RelayConfig, body: bytes) -> dict[str, Any] | list[dict[str, Any]]:
    """One result per event: matching routes and each destination's exact request (masked)."""
    try:
        prepared = prepare(body, config.table, dedupe=False)
    except BodyInvalid as exc:
        raise EventFileInvalid(str(exc)) from None
    except EventInvalid as exc:
        raise EventFileInvalid(
            "invalid event: " + "; ".join(f"{path}: {msg}" for path, msg in exc.errors.items())
        ) from None
    results = []
    for p in prepared:
        by_name = {d.destination: d for d in p.record.deliveries}
        deliveries = []
        for route in config.table.matching(p.event):
            for name in route.to:
                dest = config.destinations[name]
                entry: dict[str, Any] = {
                    "route": route.name,
                    "destination": name,
                    "type": dest.kind,
                }
                if not dest.enabled:
                    entry["skipped"] = f"destination disabled: {dest.disabled_reason}"
                elif name not in by_name or by_name[name].route != route.name:
                    entry["skipped"] = "an earlier route already delivers this event here"
                else:
                    context = {
                        "event": p.event,
                        "raw": p.record.body,
                        "destination": name,
                        "now": 0,
                    }
                    if route.group is not None:
                        entry["group"] = _group_info(route.group, p.event)
                        context = _group_context(context, route.group, p.event)
                    try:
                        request = dest.build(context, by_name[name].id)
                        entry["request"] = request.display(
                            config.secrets | dest.secrets, dest.secret_headers
                        )
                    except RenderError as exc:
                        entry["error"] = str(exc)
                deliveries.append(entry)
        results.append(
            {
                "event_name": p.event.get("event_name"),
                "routes": list(p.plan.routes),
                "deliveries": deliveries,
            }
        )
    return results[0] if len(results) == 1 and not body.lstrip().startswith(b"[") else results


def _group_info(group: Any, event: dict[str, Any]) -> dict[str, Any]:
    key = {f: event.get(f) for f in group.by}
    return {
        "key": key,
        "wait_s": float(group.wait),
        "interval_s": float(group.interval),
        "max_events": group.max_events,
    }


def _group_context(context: dict[str, Any], group: Any, event: dict[str, Any]) -> dict[str, Any]:
    key = {f: event.get(f) for f in group.by}
    return {**context, "events": [event], "group": {"key": key, "count": 1, "total": 1}}
