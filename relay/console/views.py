"""What the console's pages show, computed without I/O from documents and the config.

The handlers fetch (through :mod:`relay.operations`, as the API and the CLI do);
this module shapes: a route's ``when`` as a sentence, pretty JSON, a sample
event list, the rows the templates loop over. Templates only lay out and
escape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from ..config import RelayConfig

#: A route's `when` operators as people read them.
_COMPARE = {"gt": ">", "gte": "≥", "lt": "<", "lte": "≤"}
#: Delivery states that will still change: a page showing one refreshes itself.
UNSETTLED = frozenset({"pending", "retrying", "held"})
_CHECKOUT = Path(__file__).resolve().parents[2]
#: The repository's sample events, when the relay runs from a checkout (not from a wheel
#: in site-packages, where some other package's "examples" folder may sit).
EXAMPLES = _CHECKOUT / "examples"
MAX_SAMPLE_BYTES = 64 * 1024


def pretty(value: Any) -> str:
    """Indented JSON with exact integers (what an operator reads in a <pre>)."""
    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode()


def literal(value: Any) -> str:
    """A value as the config would spell it, JSON-quoted so spaces and quotes stay visible."""
    return json.dumps(value, ensure_ascii=False)


def describe_when(when: Any) -> str:
    """A route's ``when`` as a sentence: ``event_name = "Email Bounced" and platform …``."""
    if not when:
        return "every event"
    return _block(when)


def _block(block: Any) -> str:
    if not isinstance(block, Mapping):
        return literal(block)
    parts = [_clause(str(key), value) for key, value in block.items()]
    return " and ".join(parts) if parts else "every event"


def _clause(key: str, value: Any) -> str:
    if key in ("any", "all") and isinstance(value, list):
        joiner = " or " if key == "any" else " and "
        inner = joiner.join(f"({_block(b)})" for b in value)
        return f"{'any' if key == 'any' else 'all'} of [{inner}]"
    if key == "not":
        return f"not ({_block(value)})"
    if isinstance(value, Mapping):
        return " and ".join(_operator(key, str(op), arg) for op, arg in value.items())
    return f"{key} = {literal(value)}"


def _operator(field: str, op: str, arg: Any) -> str:
    if op == "in":
        return f"{field} in {literal(arg)}"
    if op == "not_in":
        return f"{field} not in {literal(arg)}"
    if op == "regex":
        return f"{field} matches regex {literal(arg)}"
    if op == "glob":
        return f"{field} matches glob {literal(arg)}"
    if op in _COMPARE:
        return f"{field} {_COMPARE[op]} {literal(arg)}"
    if op == "exists":
        return f"{field} is present" if arg else f"{field} is missing"
    if op == "max_length":
        return f"{field} is at most {literal(arg)} characters"
    return f"{field} {op} {literal(arg)}"


@dataclass(frozen=True, slots=True)
class RouteView:
    index: int
    name: str
    when: str
    to: tuple[str, ...]
    stop: bool
    group: str | None
    order_by: str | None


def routes(config: RelayConfig) -> list[RouteView]:
    """The routes in file order, each ``when`` as a sentence."""
    out = []
    for i, spec in enumerate(config.settings.routes):
        group = None
        if spec.group is not None:
            by = ", ".join(spec.group.by) or "(one group)"
            group = (
                f"by {by}; wait {spec.group.wait}, interval {spec.group.interval},"
                f" at most {spec.group.max_events} events"
            )
        out.append(
            RouteView(
                i,
                spec.name,
                describe_when(spec.when),
                tuple(spec.to),
                spec.stop,
                group,
                spec.order_by,
            )
        )
    return out


def route_of(config: RelayConfig, name: str) -> RouteView | None:
    return next((r for r in routes(config) if r.name == name), None)


def samples(root: Path = EXAMPLES) -> dict[str, Path]:
    """Sample events by file name (``email-bounced.json``), when the examples are at hand."""
    try:
        project = (root.parent / "pyproject.toml").read_text(encoding="utf-8")
        files = sorted(root.glob("*.json")) if 'name = "pushwoosh-relay"' in project else []
    except OSError:
        return {}
    return {f.name: f for f in files if f.is_file()}


def sample_text(name: str, root: Path = EXAMPLES) -> str | None:
    """One sample's text, only by a name :func:`samples` lists (never a path from outside)."""
    path = samples(root).get(name)
    if path is None:
        return None
    try:
        return path.read_bytes()[:MAX_SAMPLE_BYTES].decode("utf-8", "replace")
    except OSError:
        return None


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


def millis(ms: float | None) -> str:
    return "—" if ms is None else f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def unsettled(doc: Mapping[str, Any]) -> bool:
    """Whether an event's deliveries may still change (the page keeps refreshing)."""
    deliveries: Sequence[Mapping[str, Any]] = doc.get("deliveries", ())
    return any(d.get("state") in UNSETTLED for d in deliveries)
