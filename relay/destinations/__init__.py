"""Destinations: turn a delivery into one HTTP request.

Each destination type is a small module (``slack``, ``http``, ``log``) that
only builds requests and says whether a failure is worth retrying; the retry
schedule lives in the queue and the sending in :mod:`relay.delivery`, as in
Alertmanager's notifiers. Nothing here does I/O.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec

from .. import __version__
from ..errors import SpecError
from ..settings import Destination as DestinationSpec
from ..settings import HttpDestination, SlackDestination
from ..units import enc_hook

USER_AGENT = f"pushwoosh-relay/{__version__}"
MASK = "***"
_JSON = msgspec.json.Encoder(enc_hook=str)


def encode_json(value: Any) -> bytes:
    """JSON with exact integers (no float round trip) and str() for anything exotic."""
    return _JSON.encode(value)


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    """The exact request a destination would receive."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None

    def display(self, secrets: frozenset[str], secret_headers: frozenset[str]) -> dict[str, Any]:
        """A JSON-able view with secrets masked, for `relay route` and the log destination."""
        body: Any = None
        if self.body is not None:
            try:
                body = msgspec.json.decode(self.body)
            except msgspec.DecodeError:
                body = self.body.decode("utf-8", "replace")
        headers = {k: MASK if k.lower() in secret_headers else v for k, v in self.headers.items()}
        return {
            "method": self.method,
            "url": mask_url(self.url, secrets),
            "headers": headers,
            "body": body,
        }


@functools.lru_cache(maxsize=1024)
def mask_url(url: str, secrets: frozenset[str] = frozenset()) -> str:
    """Hide what may be secret in a URL: the password, query values, known secrets.

    Slack webhook URLs are secret in their path, so they are listed in ``secrets``.
    Cached: every attempt's history row shows its URL, and most destinations have one.
    """
    if not url:
        return url
    if url in secrets:  # before its parts (a Slack path) are: only the host stays
        parts = urlsplit(url)
        return urlunsplit((parts.scheme, parts.hostname or "", "/" + MASK, "", ""))
    for secret in sorted(secrets, key=len, reverse=True):
        if secret and secret in url:
            url = url.replace(secret, MASK)
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username}:{MASK}@{parts.hostname}" + (
            f":{parts.port}" if parts.port else ""
        )
    query = urlencode(
        [(k, MASK) for k, _ in parse_qsl(parts.query, keep_blank_values=True)], safe="*"
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def check_url(url: str, path: str) -> None:
    """Fail at load for a URL the HTTP client could not use."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SpecError(path, "expected an http:// or https:// URL")


@dataclass(frozen=True)
class Destination:
    """Base of the compiled destinations; subclasses implement :meth:`build`."""

    name: str
    spec: DestinationSpec
    enabled: bool = True
    disabled_reason: str = ""
    secrets: frozenset[str] = frozenset()
    secret_headers: frozenset[str] = frozenset()
    sends: bool = True  # False for `log`: the request is written, not sent

    @property
    def kind(self) -> str:
        return type(self.spec).__struct_config__.tag  # type: ignore[return-value]

    def build(self, context: Mapping[str, Any], delivery_id: str) -> OutboundRequest:
        raise NotImplementedError

    def build_notice(self, document: Mapping[str, Any], delivery_id: str) -> OutboundRequest:
        """The request carrying one of the relay's own notices (see :mod:`relay.notices`)."""
        raise NotImplementedError

    def summary(self, mask: Callable[[str], str]) -> dict[str, Any]:
        """The destination's settings as an operator may see them: every secret masked."""
        data: dict[str, Any] = msgspec.to_builtins(self.spec, enc_hook=enc_hook)
        if data.get("url"):
            data["url"] = mask_url(data["url"], self.secrets)
        if isinstance(data.get("headers"), dict):
            data["headers"] = {
                k: MASK if k.lower() in self.secret_headers else v
                for k, v in data["headers"].items()
            }
        if data.get("signing_secret"):
            data["signing_secret"] = MASK
        return _masked(data, mask)  # type: ignore[no-any-return]


def _masked(value: Any, mask: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: _masked(v, mask) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, mask) for v in value]
    return value


def template_context(
    events: list[dict[str, Any]],
    destination: str,
    now: float,
    *,
    raw: bytes | None = None,
    group_key: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What templates and request builders see (CONTRACT sections 5 and 9).

    ``event`` is the (first) event; a grouped delivery adds ``events`` and ``group``.
    ``raw`` is the stored body, forwarded as is when no body template is set.
    """
    context: dict[str, Any] = {"event": events[0], "destination": destination, "now": now}
    if group_key is not None:
        context["events"] = events
        context["group"] = {"key": group_key, "count": len(events), "total": len(events)}
    elif raw is not None:
        context["raw"] = raw
    return context


def base_headers(delivery_id: str) -> dict[str, str]:
    """Headers every forwarded request carries (CONTRACT section 6)."""
    return {"User-Agent": USER_AGENT, "Idempotency-Key": delivery_id}


def compile_destination(name: str, spec: DestinationSpec, path: str) -> Destination:
    """Build the destination for a validated spec; template problems raise SpecError."""
    from . import http, log, slack

    if isinstance(spec, SlackDestination):
        return slack.compile(name, spec, path)
    if isinstance(spec, HttpDestination):
        return http.compile(name, spec, path)
    return log.compile(name, spec, path)


__all__ = [
    "MASK",
    "USER_AGENT",
    "Destination",
    "OutboundRequest",
    "base_headers",
    "check_url",
    "compile_destination",
    "encode_json",
    "mask_url",
    "template_context",
]
