"""`relay route`: what an event would do, computed by the same code that serves, sending nothing."""

from __future__ import annotations

from typing import Any

from .config import RelayConfig
from .destinations import template_context
from .errors import RelayError, RenderError
from .receiver import BodyInvalid, EventInvalid, group_key, prepare


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
                    if route.order_by is not None:
                        entry["order_key"] = by_name[name].order_key
                    if route.group is None:
                        context = template_context([p.event], name, 0, raw=p.record.body)
                    else:
                        key = group_key(route.group.by, p.event)
                        entry["group"] = {
                            "key": key,
                            "wait_s": float(route.group.wait),
                            "interval_s": float(route.group.interval),
                            "max_events": route.group.max_events,
                        }
                        context = template_context([p.event], name, 0, group_key=key)
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
