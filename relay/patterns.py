"""Linear-time ``regex`` and ``glob`` for routing rules, through Google's RE2.

Rules are matched against event fields, which are attacker-controlled text as
long as a whole body (1 MiB by default). Python's backtracking ``re`` takes
time exponential in such text for patterns as plain as ``(a+)+$``; RE2 never
backtracks: its time grows linearly with the text (by a factor that grows with
the compiled pattern, which is why pattern size is capped below). Globs are
translated to RE2 too, keeping :func:`fnmatch.fnmatchcase`'s meaning.

Compiling is bounded as well, so a hostile config cannot make a load take
unbounded time or memory: RE2's own memory budget per pattern, a cap on each
pattern's compiled size, and a cap on a whole config's. The module is pure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information

from .errors import SpecError

__all__ = [
    "MAX_CONFIG_PROGRAM",
    "MAX_PATTERN_PROGRAM",
    "SYNTAX_URL",
    "Budget",
    "Matcher",
    "compile_glob",
    "compile_regex",
    "glob_to_re2",
]

SYNTAX_URL: Final = "https://github.com/google/re2/wiki/Syntax"
# RE2's own default, stated so an upgrade cannot change it: it bounds one pattern's compile
# and its matching cache. Less makes RE2 drop to its slower NFA on big patterns: `a{600}c`
# over 1 MiB of "a" took 9 s at 1 MiB and 15 ms at 8 MiB (one core of the CI box).
MAX_MEM: Final = 8 << 20
# Instructions one pattern may compile to. RE2 is linear in the text, but when a pattern
# makes its DFA blow up (big counted repeats: `[ab]{1000}[ab]{900}c`) it falls back to its
# NFA, at up to ~10 ns per instruction and byte: this cap keeps the worst 1 MiB field to
# ~20 s, not hours. Routing patterns are tens of instructions; a Unicode class like `\pL`
# is ~1,200.
MAX_PATTERN_PROGRAM: Final = 2_000
# ... and every pattern of one config together: the load's compile time and memory.
MAX_CONFIG_PROGRAM: Final = 100_000
# What a pattern refused for size costs the budget: finding out took RE2 up to ~0.2 s, so
# a handful of them end the compiling, where a hostile config could hold thousands.
_OVERSIZED: Final = MAX_CONFIG_PROGRAM // 5

Matcher = Callable[[str], bool]
"""Does the pattern match this text (a search for ``regex``, the whole text for ``glob``)."""


class Budget:
    """RE2 instructions the patterns of one config may still compile to."""

    __slots__ = ("left", "total")

    def __init__(self, instructions: int = MAX_CONFIG_PROGRAM) -> None:
        self.total = self.left = instructions


def _options() -> Any:
    options = re2.Options()
    options.max_mem = MAX_MEM
    options.log_errors = False  # a bad pattern is reported with its file:line, not on stderr
    options.never_capture = True  # only "is there a match" is asked: no submatch bookkeeping
    return options


_OPTIONS: Final = _options()


@dataclass(frozen=True)
class _Kind:
    """How one kind of pattern is matched and explained."""

    what: str
    anchored: bool  # a glob matches the whole text, a regex anywhere in it
    why_big: str
    tail: str  # said after every refusal


_REGEX: Final = _Kind(
    "regular expression",
    anchored=False,
    why_big="a bounded repeat like {1000} or a Unicode class like \\pL makes many",
    tail=f"; the syntax is RE2's: {SYNTAX_URL}",
)
_GLOB: Final = _Kind("glob pattern", anchored=True, why_big="each ? and * makes several", tail="")


def compile_regex(pattern: str, path: str, budget: Budget) -> Matcher:
    """An unanchored search for ``pattern`` in RE2 syntax; SpecError at ``path`` if refused."""
    return _compile(pattern, path, budget, _REGEX)


def compile_glob(glob: str, path: str, budget: Budget) -> Matcher:
    """A whole-text match for a shell glob, as :func:`fnmatch.fnmatchcase` reads it."""
    return _compile(glob_to_re2(glob), path, budget, _GLOB)


def _compile(source: str, path: str, budget: Budget, kind: _Kind) -> Matcher:
    if budget.left < 0:  # compile nothing more: a hostile config could hold thousands
        raise SpecError(path, _over_budget(budget))
    try:
        # surrogatepass: YAML may spell a lone surrogate ("\ud800"); text is encoded the same way.
        regexp = re2.compile(source.encode("utf-8", "surrogatepass"), _OPTIONS)
    except re2.error as exc:
        reason = _reason(exc)
        if reason.startswith("pattern too large"):
            budget.left -= _OVERSIZED
            raise SpecError(path, _too_large(kind, "more than RE2 allows")) from None
        hint = _hint(reason, source)
        raise SpecError(path, f"invalid {kind.what}: {reason}{hint}{kind.tail}") from None
    finally:
        # re2.compile keeps the last 128 patterns alive, each up to MAX_MEM; the matcher below
        # holds its own, and one refused for size must not stay in memory.
        re2.purge()
    size = int(regexp.programsize)
    if size > MAX_PATTERN_PROGRAM:
        budget.left -= _OVERSIZED
        raise SpecError(path, _too_large(kind, f"{size} RE2 instructions"))
    budget.left -= size
    if budget.left < 0:
        raise SpecError(path, _over_budget(budget))
    find = regexp.fullmatch if kind.anchored else regexp.search

    def matches(text: str) -> bool:
        return find(text.encode("utf-8", "surrogatepass")) is not None

    return matches


def _too_large(kind: _Kind, size: str) -> str:
    return (
        f"{kind.what} too large: it compiles to {size}; at most {MAX_PATTERN_PROGRAM}"
        f" RE2 instructions are allowed ({kind.why_big}){kind.tail}"
    )


def _over_budget(budget: Budget) -> str:
    return (
        "the config's regex and glob patterns together compile to more than"
        f" {budget.total} RE2 instructions; use fewer or simpler patterns"
    )


# What people bring from Python or PCRE and RE2 leaves out on purpose (it needs backtracking).
_LOOKAROUND: Final = ("(?=", "(?!", "(?<=", "(?<!")


def _hint(reason: str, source: str) -> str:
    escape = reason.removeprefix("invalid escape sequence: \\")
    operator = reason.removeprefix("invalid perl operator: ")
    if escape == "Z":
        return " (RE2 writes the end of the text \\z)"
    if escape.isdigit() or (operator == "(?P" and "(?P=" in source):
        return " (RE2 has no backreferences)"
    if operator in _LOOKAROUND:
        return " (RE2 has no lookahead or lookbehind)"
    return ""


def _reason(exc: Exception) -> str:
    """RE2's message, decoded, on one line and short: it quotes the pattern, which may be huge."""
    raw = exc.args[0] if exc.args else ""
    text = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else str(raw)
    text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text[:200])
    return text if len(text) <= 120 else text[:119] + "…"


# -- glob -> RE2 -------------------------------------------------------------------------------

# A class that holds nothing: fnmatch's `[z-a]` matches no character at all.
_NOTHING: Final = r"[^\x00-\x{10ffff}]"


def glob_to_re2(glob: str) -> str:
    """A glob (``*``, ``?``, ``[seq]``, ``[!seq]``) as an RE2 pattern for a whole-text match.

    Means what :func:`fnmatch.fnmatchcase` means (the tests check it against that),
    but :func:`fnmatch.translate` writes Python-only syntax (``\\Z``, atomic groups)
    that RE2 refuses. ``*`` and ``?`` match any character, newlines included.
    """
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        i += 1
        if c == "*":
            if not out or out[-1] != ".*":  # `**` is `*`
                out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[" and (end := _class_end(glob, i)) is not None:
            out.append(_class(glob[i:end]))
            i = end + 1
        else:  # a `[` without its `]` is itself, like any other character
            out.append(_char(c))
    return "(?s)" + "".join(out)


def _class_end(glob: str, i: int) -> int | None:
    """Index of the `]` closing a class opened before ``i``; a `]` first in it is literal."""
    j = i
    if j < len(glob) and glob[j] == "!":
        j += 1
    if j < len(glob) and glob[j] == "]":
        j += 1
    end = glob.find("]", j)
    return end if end >= 0 else None


def _class(stuff: str) -> str:
    negate = stuff.startswith("!")
    ranges = _class_ranges(stuff[1:] if negate else stuff)
    if not ranges:  # only reversed ranges: nothing, or with `!` anything
        return "." if negate else _NOTHING
    items = "".join(_char(lo) if lo == hi else f"{_char(lo)}-{_char(hi)}" for lo, hi in ranges)
    return f"[{'^' if negate else ''}{items}]"


def _class_ranges(body: str) -> list[tuple[str, str]]:
    """The (low, high) character ranges of a class body, read exactly as fnmatch reads them.

    A `-` first or last is literal, as is one right after a range (`[a-c-e]` is
    a..c, `-`, `e`), and a reversed range (`[z-a]`) is dropped, endpoints and all.
    """
    if "-" not in body:
        return [(c, c) for c in body]
    chunks: list[str] = []  # the text between the hyphens that make ranges
    start, k = 0, 1
    while (k := body.find("-", k)) >= 0:
        chunks.append(body[start:k])
        start, k = k + 1, k + 3
    if body[start:]:
        chunks.append(body[start:])
    else:
        chunks[-1] += "-"
    for k in range(len(chunks) - 1, 0, -1):
        if chunks[k - 1][-1] > chunks[k][0]:
            chunks[k - 1] = chunks[k - 1][:-1] + chunks[k][1:]
            del chunks[k]
    ranges: list[tuple[str, str]] = []
    last = len(chunks) - 1
    for k, chunk in enumerate(chunks):
        # chunk[0] closed the range before (but the first), chunk[-1] opens the next (but the last)
        inner = chunk[1 if k else 0 : len(chunk) - 1 if k < last else len(chunk)]
        ranges.extend((c, c) for c in inner)
        if k < last:
            ranges.append((chunk[-1], chunks[k + 1][0]))
    return ranges


def _char(c: str) -> str:
    """One character as RE2 reads it literally, anywhere (inside a class too)."""
    return c if c.isascii() and c.isalnum() else f"\\x{{{ord(c):x}}}"
