"""`type: http`: any HTTP endpoint, with templated body and configured headers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from ..errors import SpecError
from ..masking import url_secrets
from ..settings import HttpDestination
from ..templates import StructureTemplate, compile_structure
from . import Destination, OutboundRequest, base_headers, check_url, encode_json

#: Configured header values are secrets (CONTRACT section 7) except these harmless ones.
PUBLIC_HEADERS = frozenset({"content-type", "accept", "user-agent"})


@dataclass(frozen=True)
class Http(Destination):
    body: StructureTemplate | None = None
    signer: Any = None

    def build(self, context: Mapping[str, Any], delivery_id: str) -> OutboundRequest:
        spec = self.spec
        assert isinstance(spec, HttpDestination)
        headers = base_headers(delivery_id)
        headers.update(spec.headers)
        payload: bytes | None
        if spec.method in ("GET", "DELETE") and self.body is None:
            payload = None
        elif self.body is None:
            if "group" in context:
                payload = encode_json(default_group_body(context))
            else:
                payload = context["raw"] if "raw" in context else encode_json(context["event"])
            headers.setdefault("Content-Type", "application/json")
        else:
            rendered = self.body.render(context)
            if isinstance(rendered, str):
                payload = rendered.encode()
                headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            else:
                payload = encode_json(rendered)
                headers.setdefault("Content-Type", "application/json")
        if self.signer is not None and payload is not None:
            headers.update(self.signer(delivery_id, payload))
        return OutboundRequest(spec.method, spec.url, headers, payload)

    def build_notice(self, document: Mapping[str, Any], delivery_id: str) -> OutboundRequest:
        """A notice is POSTed as JSON with the destination's headers (and signature)."""
        spec = self.spec
        assert isinstance(spec, HttpDestination)
        headers = base_headers(delivery_id)
        headers.update(spec.headers)
        headers["Content-Type"] = "application/json"
        payload = encode_json(document)
        if self.signer is not None:
            headers.update(self.signer(delivery_id, payload))
        return OutboundRequest("POST", spec.url, headers, payload)


def default_group_body(context: Mapping[str, Any]) -> dict[str, Any]:
    """CONTRACT section 9: ``{"group": {...key...}, "count": N, "events": [...]}``."""
    group = context["group"]
    return {"group": group["key"], "count": group["count"], "events": context["events"]}


def header_secrets(value: str) -> set[str]:
    """What to mask of a header value: all of it, and the credential after a scheme word.

    ``Bearer `` with an empty token (an unset variable) holds no secret at all.
    """
    scheme, _, credential = value.strip().partition(" ")
    credential = credential.strip()
    if not credential:
        return {scheme} if len(scheme) >= 4 and scheme.lower() not in ("bearer", "basic") else set()
    return {value.strip(), credential} if len(credential) >= 4 else {value.strip()}


def compile(name: str, spec: HttpDestination, path: str) -> Http:
    enabled, reason = spec.enabled, "" if spec.enabled else "enabled: false"
    if not spec.url:
        enabled, reason = False, "its url is empty"
    elif spec.enabled:
        check_url(spec.url, f"{path}.url")
    body = None if spec.body is msgspec.UNSET else compile_structure(spec.body, f"{path}.body")
    secret_headers = frozenset(k.lower() for k in spec.headers if k.lower() not in PUBLIC_HEADERS)
    secrets = {
        s for k, v in spec.headers.items() if k.lower() in secret_headers for s in header_secrets(v)
    }
    secrets |= url_secrets(spec.url)
    signer = None
    if spec.signing_secret:
        from ..signing import signer_for

        try:
            signer = signer_for(spec.signing_secret)
        except ValueError as exc:
            raise SpecError(f"{path}.signing_secret", str(exc)) from None
        secrets.add(spec.signing_secret)
        secret_headers |= {"webhook-signature"}
    return Http(
        name=name,
        spec=spec,
        enabled=enabled,
        disabled_reason=reason,
        secrets=frozenset(s for s in secrets if s),
        secret_headers=secret_headers,
        body=body,
        signer=signer,
    )
