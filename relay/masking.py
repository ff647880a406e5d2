"""Hiding what must not leave the relay: configured secrets and email addresses.

Pure. One :class:`SecretMasker` per config replaces every configured secret
(inbound token, destination URLs, header values, signing secrets) wherever it
appears in a text; it is used on log lines and on everything stored about a
destination's answers (errors, answer excerpts, dead letters), before storing,
so no reader of the queue ever sees a secret. :func:`url_secrets` and
:func:`webhook_secrets` say what of a destination's URL is such a secret, since
a destination may echo any part of the request it got. :func:`mask_hwid` hides
most of an address.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

MASK = "***"
#: Shorter strings are not masked: they would match everywhere and hide nothing secret.
MIN_SECRET = 3
#: Shorter query values are no secret worth masking everywhere (``?v=2``, ``?mode=eu``).
MIN_QUERY_SECRET = 4
#: A shorter path (``/``) or path segment is no secret of its own.
MIN_PATH_SECRET = 8


class SecretMasker:
    """Replaces known secret strings; longest first, so a secret's prefix never wins."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        items = sorted({s for s in secrets if s and len(s) >= MIN_SECRET}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, items))) if items else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern is not None else text

    def found(self, text: str) -> bool:
        """Whether ``text`` holds a secret (one search, nothing replaced)."""
        return self._pattern is not None and self._pattern.search(text) is not None

    def optional(self, text: str | None) -> str | None:
        return None if text is None else self(text)


def url_secrets(url: str) -> set[str]:
    """What of a destination URL is secret wherever it shows up: query values, the password.

    ``mask_url`` hides them when the URL is shown; a destination that echoes its
    request ("invalid api_key abc for /hook?api_key=abc") must not bring them back in
    an error, a stored answer or a log line either. Both the form written in the URL and
    the decoded one count, and a password also as the Basic credential made of it.
    """
    parts = urlsplit(url)
    found: set[str] = set()
    for pair in parts.query.split("&"):
        raw = pair.partition("=")[2]
        found |= {raw, unquote(raw.replace("+", " "))}
    if parts.password:
        user, password = unquote(parts.username or ""), unquote(parts.password)
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        found |= {parts.password, password, basic}
    return {s for s in found if len(s) >= MIN_QUERY_SECRET}


def webhook_secrets(url: str) -> frozenset[str]:
    """A URL that is a credential itself (a Slack webhook), whole and in parts: an error
    that echoes only its path (``no_service for /services/T0/B0/xyz``) or its last
    segment gives it away too."""
    if not url:
        return frozenset()
    path = urlsplit(url).path
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return frozenset(s for s in (url, path, last) if len(s) >= MIN_PATH_SECRET)


def mask_hwid(value: Any) -> Any:
    """``example@gmail.com`` -> ``ex***@gmail.com``; other ids keep their first 4 characters."""
    if not isinstance(value, str):
        return value
    local, at, domain = value.partition("@")
    if at:
        return f"{local[:2]}{MASK}@{domain}"
    return value[:4] + MASK if len(value) > 4 else MASK
