"""Hiding what must not leave the relay: configured secrets and email addresses.

Pure. One :class:`SecretMasker` per config replaces every configured secret
(inbound token, destination URLs, header values, signing secrets) wherever it
appears in a text; it is used on log lines and on everything stored about a
destination's answers (errors, answer excerpts, dead letters), before storing,
so no reader of the queue ever sees a secret. :func:`mask_hwid` hides most of
an address.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "***"
#: Shorter strings are not masked: they would match everywhere and hide nothing secret.
MIN_SECRET = 3


class SecretMasker:
    """Replaces known secret strings; longest first, so a secret's prefix never wins."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        items = sorted({s for s in secrets if s and len(s) >= MIN_SECRET}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, items))) if items else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern is not None else text

    def optional(self, text: str | None) -> str | None:
        return None if text is None else self(text)


def mask_hwid(value: Any) -> Any:
    """``example@gmail.com`` -> ``ex***@gmail.com``; other ids keep their first 4 characters."""
    if not isinstance(value, str):
        return value
    local, at, domain = value.partition("@")
    if at:
        return f"{local[:2]}{MASK}@{domain}"
    return value[:4] + MASK if len(value) > 4 else MASK
