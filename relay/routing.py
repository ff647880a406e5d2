"""Which routes an event takes, and so which deliveries it makes.

Pure: every route whose `when` holds fires, in file order; a matching route
with ``stop: true`` ends the matching. One delivery per (event, destination),
however many routes lead there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .rules import When
from .settings import Group
from .templates import TextTemplate


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    name: str
    when: When
    to: tuple[str, ...]
    stop: bool = False
    group: Group | None = None
    order_by: TextTemplate | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """What an event does: the routes it matched and (destination, route) pairs to deliver."""

    routes: tuple[str, ...]
    targets: tuple[tuple[str, CompiledRoute], ...]


@dataclass(frozen=True)
class RouteTable:
    routes: tuple[CompiledRoute, ...]
    enabled: frozenset[str]

    def matching(self, event: Mapping[str, Any]) -> list[CompiledRoute]:
        """Routes whose `when` holds, in file order, up to the first matching ``stop``."""
        out = []
        for route in self.routes:
            if route.when(event):
                out.append(route)
                if route.stop:
                    break
        return out

    def plan(self, event: Mapping[str, Any]) -> Plan:
        """The deliveries an event makes; disabled destinations are left out."""
        matched = self.matching(event)
        targets: dict[str, CompiledRoute] = {}
        for route in matched:
            for name in route.to:
                if name in self.enabled:
                    targets.setdefault(name, route)
        return Plan(tuple(r.name for r in matched), tuple(targets.items()))
