"""Config units: durations (``500ms``, ``10s``, ``24h``), rates (``30/m``), shares (``50%``).

Custom msgspec types so the config validates them where it validates
everything else, and `relay schema` can describe them with a pattern.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

DURATION_PATTERN = r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)\s*$"
RATE_PATTERN = r"^\s*([0-9]+(?:\.[0-9]+)?)\s*/\s*(s|m|h)\s*$"
PERCENT_PATTERN = r"^\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*$"
_DURATION = re.compile(DURATION_PATTERN)
_PERCENT = re.compile(PERCENT_PATTERN)
_RATE = re.compile(RATE_PATTERN)
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class Duration(float):
    """Seconds, written in the config as ``10s``; a bare ``0`` means zero (off)."""

    __slots__ = ()

    @classmethod
    def parse(cls, value: object) -> Duration:
        if isinstance(value, bool):
            raise ValueError(f"expected a duration like 500ms, 10s, 5m, 24h; got {value!r}")
        if isinstance(value, int | float) and value == 0:
            return cls(0.0)
        if isinstance(value, str):
            m = _DURATION.match(value)
            if m:
                return cls(float(m.group(1)) * _SECONDS[m.group(2)])
        raise ValueError(f"expected a duration like 500ms, 10s, 5m, 24h; got {value!r}")

    def __str__(self) -> str:
        for unit in ("d", "h", "m", "s"):
            n = self / _SECONDS[unit]
            if n >= 1 and n == int(n):
                return f"{int(n)}{unit}"
        return f"{round(self * 1000)}ms"


class Rate(float):
    """Requests per second, written ``1/s``, ``30/m`` or ``1000/h``."""

    __slots__ = ()

    @classmethod
    def parse(cls, value: object) -> Rate:
        if isinstance(value, str):
            m = _RATE.match(value)
            if m and float(m.group(1)) > 0:
                return cls(float(m.group(1)) / _SECONDS[m.group(2)])
        raise ValueError(f"expected a rate like 1/s, 30/m or 1000/h; got {value!r}")

    def __str__(self) -> str:
        for unit in ("s", "m", "h"):
            n = round(self * _SECONDS[unit], 9)
            if n >= 1 and n == int(n):
                return f"{int(n)}/{unit}"
        return f"{self * 3600:g}/h"


class Percent(float):
    """A share from 0 to 1, written ``50%`` (or as the fraction ``0.5``)."""

    __slots__ = ()

    @classmethod
    def parse(cls, value: object) -> Percent:
        share: float | None = None
        if isinstance(value, str):
            m = _PERCENT.match(value)
            if m:
                share = float(m.group(1)) / 100
        elif isinstance(value, int | float) and not isinstance(value, bool):
            share = float(value)
        if share is None or not 0 < share <= 1:
            raise ValueError(f"expected a share like 50% (above 0%, at most 100%); got {value!r}")
        return cls(share)

    def __str__(self) -> str:
        return f"{self * 100:g}%"


def dec_hook(typ: type, obj: Any) -> Any:
    """msgspec hook: build our custom types from config values."""
    if typ is Duration:
        return Duration.parse(obj)
    if typ is Rate:
        return Rate.parse(obj)
    if typ is Percent:
        return Percent.parse(obj)
    raise NotImplementedError(f"unsupported type {typ!r}")


def enc_hook(obj: Any) -> Any:
    """msgspec hook: write our custom types back as the config spells them (``24h``, ``1/s``)."""
    if isinstance(obj, Duration | Rate | Percent):
        return str(obj)
    raise NotImplementedError(f"unsupported type {type(obj)!r}")


def schema_hook(typ: type) -> dict[str, Any]:
    """msgspec hook: JSON Schema of our custom types, for editors."""
    if typ is Duration:
        return {
            "anyOf": [{"type": "string", "pattern": DURATION_PATTERN}, {"const": 0}],
            "description": "a duration: 500ms, 10s, 5m, 24h, 7d",
        }
    if typ is Rate:
        return {
            "type": "string",
            "pattern": RATE_PATTERN,
            "description": "a rate: 1/s, 30/m, 1000/h",
        }
    if typ is Percent:
        return {
            "anyOf": [
                {"type": "string", "pattern": PERCENT_PATTERN},
                {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            ],
            "description": "a share: 50% (or 0.5)",
        }
    raise NotImplementedError(f"unsupported type {typ!r}")


def parse_instant(text: str, now: float) -> float:
    """A point in time for ``--since``/``--until``: ``1h`` (ago), ISO 8601, or epoch seconds.

    ``2026-11-28`` and ``2026-11-28T10:00`` without a zone are UTC.
    """
    value = text.strip()
    m = _DURATION.match(value)
    if m:
        return now - float(m.group(1)) * _SECONDS[m.group(2)]
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if math.isfinite(number):
            return number
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"expected a time like 1h (ago), 2026-11-28T10:00:00Z or epoch seconds; got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def iso(seconds: float) -> str:
    """``2026-11-28T10:00:00.123Z``: how times are shown to operators."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
