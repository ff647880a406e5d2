"""`type: log`: write the would-be request into the structured log.

The shipped config routes here by default, so a new relay works with no
secrets set, and an operator sees exactly what a real destination would get.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from ..settings import LogDestination
from ..templates import StructureTemplate, compile_structure
from . import Destination, OutboundRequest, base_headers, encode_json


@dataclass(frozen=True)
class Log(Destination):
    body: StructureTemplate | None = None

    def build(self, context: Mapping[str, Any], delivery_id: str) -> OutboundRequest:
        if self.body is not None:
            payload = encode_json(self.body.render(context))
        elif "group" in context:
            from .http import default_group_body

            payload = encode_json(default_group_body(context))
        else:
            payload = context["raw"] if "raw" in context else encode_json(context["event"])
        return self._logged(payload, delivery_id)

    def build_notice(self, document: Mapping[str, Any], delivery_id: str) -> OutboundRequest:
        return self._logged(encode_json(dict(document)), delivery_id)

    def _logged(self, payload: bytes, delivery_id: str) -> OutboundRequest:
        headers = base_headers(delivery_id)
        headers["Content-Type"] = "application/json"
        return OutboundRequest("LOG", f"log:{self.name}", headers, payload)


def compile(name: str, spec: LogDestination, path: str) -> Log:
    body = None if spec.body is msgspec.UNSET else compile_structure(spec.body, f"{path}.body")
    return Log(
        name=name,
        spec=spec,
        enabled=spec.enabled,
        disabled_reason="" if spec.enabled else "enabled: false",
        sends=False,
        body=body,
    )
