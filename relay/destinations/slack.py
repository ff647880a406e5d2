"""`type: slack`: a Slack incoming webhook.

Default messages are Block Kit built by :mod:`relay.slack_format`; a configured
``text`` / ``blocks`` is a template whose every value from the event is escaped
for mrkdwn, so an event can never ping ``@channel`` or inject a link. Payloads
are cut to Slack's documented limits before sending.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import slack_format
from ..masking import webhook_secrets
from ..settings import SlackDestination
from ..templates import (
    StructureTemplate,
    TextTemplate,
    compile_structure,
    compile_text,
    slack_escape,
)
from . import Destination, OutboundRequest, base_headers, check_url, encode_json


@dataclass(frozen=True)
class Slack(Destination):
    text: TextTemplate | None = None
    blocks: StructureTemplate | None = None

    def payload(self, context: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON body Slack receives."""
        if self.text is None and self.blocks is None:
            if "group" in context:
                group = context["group"]
                return slack_format.digest_message(
                    context["events"], group["key"], total=group.get("total")
                )
            return slack_format.default_message(context["event"])
        payload: dict[str, Any] = {}
        if self.text is not None:
            payload["text"] = self.text.render(context)
        if self.blocks is not None:
            payload["blocks"] = self.blocks.render(context)
        return slack_format.fit_payload(payload)

    def build(self, context: Mapping[str, Any], delivery_id: str) -> OutboundRequest:
        return self._post(self.payload(context), delivery_id)

    def build_notice(self, document: Mapping[str, Any], delivery_id: str) -> OutboundRequest:
        """A notice is a one-line message, every text in it escaped for mrkdwn."""
        return self._post(slack_format.notice_message(document), delivery_id)

    def _post(self, payload: dict[str, Any], delivery_id: str) -> OutboundRequest:
        headers = base_headers(delivery_id)
        headers["Content-Type"] = "application/json"
        assert isinstance(self.spec, SlackDestination)
        return OutboundRequest("POST", self.spec.url, headers, encode_json(payload))


def compile(name: str, spec: SlackDestination, path: str) -> Slack:
    enabled, reason = spec.enabled, "" if spec.enabled else "enabled: false"
    if not spec.url:
        enabled, reason = False, "its url is empty"
    elif spec.enabled:
        check_url(spec.url, f"{path}.url")
    text = (
        None if spec.text is None else compile_text(spec.text, f"{path}.text", escape=slack_escape)
    )
    blocks = (
        None
        if spec.blocks is None
        else compile_structure(spec.blocks, f"{path}.blocks", escape=slack_escape)
    )
    return Slack(
        name=name,
        spec=spec,
        enabled=enabled,
        disabled_reason=reason,
        secrets=webhook_secrets(spec.url),
        text=text,
        blocks=blocks,
    )
