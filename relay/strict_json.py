"""Strict JSON for hostile bodies: one clear 400 for anything we will not take.

Any body, whatever its shape, either decodes or raises :class:`BodyInvalid`:
the parsers' exceptions are caught by name, nesting is limited to
:data:`MAX_DEPTH`, duplicate keys are refused (RFC 8259 leaves them undefined
and parsers disagree on which one wins), and nothing here recurses on the body
in Python. The work after msgspec's decode comes as :mod:`relay.slices` steps,
so a large body never holds the event loop for long; msgspec's decode itself is
one C call, of 5 to 90 ms per megabyte depending on the body's shape.
"""

from __future__ import annotations

import contextlib
import gc
import json
import re
from collections.abc import Iterator
from typing import Any

import msgspec

from .errors import BodyInvalid
from .slices import Steps, finish

#: Containers (objects, arrays) may nest this deep; deeper is a 400. Pushwoosh events are
#: flat; the limit keeps every later step (templates, encoders) far from any recursion limit.
MAX_DEPTH = 64
TOO_DEEP = f"body nests deeper than {MAX_DEPTH} levels"

_DECODER = msgspec.json.Decoder()
#: What ends a key: a quote, optional whitespace, a colon (``":`` is counted apart, faster).
_SPACED_KEY_END = re.compile(rb'"[ \t\r\n]+:')
#: The same after a run of backslashes: an escaped quote when the run is odd.
_AFTER_BACKSLASHES = re.compile(rb'(\\+)"[ \t\r\n]*:')
_CHUNK = 256 * 1024  # bytes of the body scanned per slice
_SEPARATOR = re.compile(r"[ \t\r\n]*,?[ \t\r\n]*")
#: Bodies up to this size decode without pausing the GC: too few containers for a
#: collection to matter, and pausing costs more than their whole decode.
_GC_PAUSE_FROM = 16 * 1024


def decoding(body: bytes) -> Steps[Any]:
    """The JSON value of ``body`` (whatever the Content-Type says), or a 400."""
    if not body.strip():
        raise BodyInvalid("empty body: expected a JSON event object or array")
    try:
        if len(body) <= _GC_PAUSE_FROM:
            decoded = _DECODER.decode(body)
        else:
            with _gc_paused():
                decoded = _DECODER.decode(body)
    # invalid UTF-8 is not JSON either; ValidationError: 1e999, a number no parser can hold
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise _not_json(exc) from None
    except RecursionError:  # msgspec's own guard, far deeper than MAX_DEPTH
        raise BodyInvalid(TOO_DEEP) from None
    keys = yield from _counting_keys(decoded)
    if (yield from _counting_key_ends(body)) != keys:
        yield from _refusing_duplicate_keys(body, decoded)
    return decoded


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Keep the cyclic GC out of msgspec's decode, which allocates every container at once.

    Mid-decode the GC would walk the growing tree again and again: two to five
    times the decode's own cost on a body of many small containers (the advice
    msgpack gives for large messages). Nothing decoded can form a cycle.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _not_json(exc: Exception) -> BodyInvalid:
    """The parser's reason, cut short: msgspec names the path, which can be 1,000 levels long."""
    reason = str(exc)
    if len(reason) > 200:
        reason = reason[:200] + "..."
    return BodyInvalid(f"body is not valid JSON: {reason}")


def decode(body: bytes) -> Any:
    """:func:`decoding` in one go."""
    return finish(decoding(body))


def _counting_keys(value: Any) -> Steps[int]:
    """Keys in decoded JSON; nesting deeper than :data:`MAX_DEPTH` is a :class:`BodyInvalid`.

    Iterative, with one iterator per open container, so memory follows the depth
    and no body shape can exhaust the Python stack.
    """
    if type(value) is dict:
        keys, stack = len(value), [iter(value.values())]
    elif type(value) is list:
        keys, stack = 0, [iter(value)]
    else:
        return 0
    seen = 0
    while stack:
        for child in stack[-1]:
            seen += 1
            if not seen % 512:
                yield
            kind = type(child)
            if kind is dict or kind is list:
                if len(stack) >= MAX_DEPTH:
                    raise BodyInvalid(TOO_DEEP)
                if kind is dict:
                    keys += len(child)
                    stack.append(iter(child.values()))
                else:
                    stack.append(iter(child))
                break
        else:
            stack.pop()
    return keys


def _counting_key_ends(body: bytes, chunk: int = _CHUNK) -> Steps[int]:
    """Places in the raw body that look like the end of a key: ``"``, whitespace, ``:``.

    Every real key ends so. Escaped quotes (JSON text inside a string, as in a
    ``payload``) are told apart by the run of backslashes before them and not
    counted. What is left over counts only strings that start with ``:`` and
    duplicate keys; nothing removes a match. So as many matches as decoded keys
    proves there is no duplicate, and any other count sends the body to the exact
    check. The body is scanned in chunks that end just after a colon: a match
    holds one colon, at its end, so none is split.
    """
    count, start, size = 0, 0, len(body)
    while start < size:
        end = body.find(b":", start + chunk)
        end = size if end < 0 else end + 1
        count += body.count(b'":', start, end) + len(_SPACED_KEY_END.findall(body, start, end))
        if body.find(b"\\", start, end) >= 0:
            count -= sum(len(run) % 2 for run in _AFTER_BACKSLASHES.findall(body, start, end))
        start = end
        yield
    return count


def _no_duplicates(pairs: list[tuple[str, Any]]) -> None:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise BodyInvalid(f"body is not valid JSON: duplicate key {key[:100]!r}")
        seen.add(key)


def _refusing_duplicate_keys(body: bytes, decoded: Any) -> Steps[None]:
    """The exact check: a stdlib pass that only looks at each object's keys.

    msgspec silently keeps the last of duplicate keys. This runs on a body that
    msgspec accepted and :func:`_counting_keys` found shallow, so it cannot
    recurse deeply; an array is read one element per step. A disagreement
    between the two parsers is still a 400.
    """
    text = body.decode()
    scan = json.JSONDecoder(object_pairs_hook=_no_duplicates)
    try:
        if type(decoded) is not list:
            scan.decode(text)
            return
        at = text.index("[") + 1
        for _ in decoded:
            _, at = scan.raw_decode(text, _skip_separator(text, at))
            yield
    except (ValueError, RecursionError) as exc:
        raise _not_json(exc) from None


def _skip_separator(text: str, at: int) -> int:
    found = _SEPARATOR.match(text, at)  # always matches, if only the empty string
    return found.end() if found else at
