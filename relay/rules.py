"""Compile routing ``when`` blocks into fast predicates over raw events.

Every event is matched against every route, so a ``when`` block is validated
and compiled once, at config load: regexes, globs (both RE2, linear in the
text: see :mod:`relay.patterns`) and literal sets are built up front and the
result is a tree of small closures. Mistakes surface at load time as
:class:`~relay.errors.SpecError` naming the exact document path of the
offending node, never at send time. The module is pure: no I/O, no state.

Equality is forgiving because rules are hand-written YAML while events are
JSON: ``user_id: 1538`` matches ``"1538"`` and ``campaign_id: "961234"``
matches ``961234``. Integers are always compared exactly (never through
float), so 64-bit message ids work.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, Protocol, TypeVar

from relay.errors import SpecError
from relay.patterns import Budget, compile_glob, compile_regex

__all__ = [
    "COMBINATORS",
    "OPERATORS",
    "Event",
    "When",
    "compile_when",
    "compile_when_reporting",
    "literal_comparisons",
    "referenced_fields",
]

Event = Mapping[str, Any]
"""The raw event as received (JSON-decoded; ints are exact Python ints)."""

COMBINATORS: Final = ("any", "all", "not")
OPERATORS: Final = (
    "in",
    "not_in",
    "regex",
    "glob",
    "gt",
    "gte",
    "lt",
    "lte",
    "exists",
    "max_length",
)

Scalar = str | int | float | bool


class When(Protocol):
    """A compiled ``when`` block: called once per event on the hot path."""

    def __call__(self, event: Event, /) -> bool: ...


# A test on one field's value; receives _MISSING when the event lacks the field.
_Pred = Callable[[object], bool]
_T = TypeVar("_T", When, _Pred)


class _Missing:
    """Stands for an absent field, which differs from a field holding JSON null."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Final = _Missing()

_COMPARE: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
# What a str event value must look like to be compared as a number (no spaces, no '_').
# Python `re` on event text, but safe: no nested repeats, fullmatch, so linear in the text.
_INT_TEXT: Final = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


# -- compiling ---------------------------------------------------------------------------------


def compile_when(spec: object, path: str = "when", budget: Budget | None = None) -> When:
    """Compile a YAML-loaded ``when`` block; ``None`` or ``{}`` matches every event.

    ``path`` is the document path of the block itself; the SpecError raised (the
    block's first, in document order) names the path of the exact node at fault
    (``routes[1].when.event_name.in``). ``budget`` bounds what the block's
    patterns compile to; pass one per config, so it bounds all routes' together.
    """
    when, errors = compile_when_reporting(spec, path, budget)
    if errors:
        raise errors[0]
    return when


def compile_when_reporting(
    spec: object, path: str = "when", budget: Budget | None = None
) -> tuple[When, list[SpecError]]:
    """Like :func:`compile_when`, but every mistake of the block, so `relay check` shows all.

    The compiled block is only meant to be used when the list is empty.
    """
    compiler = _Compiler(budget or Budget())
    when = compiler.guard(_ALWAYS, compiler.block, spec, path)
    return when, compiler.errors


class _Compiler:
    """One block's compilation: the shared pattern budget, and the mistakes found so far."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.errors: list[SpecError] = []

    def guard(self, instead: _T, compile: Callable[..., _T], *args: Any) -> _T:
        """Compile one part; on a mistake note it and go on with ``instead`` (never run)."""
        try:
            return compile(*args)
        except SpecError as exc:
            self.errors.append(exc)
            return instead

    def block(self, spec: object, path: str) -> When:
        if spec is None:
            return _always
        if not isinstance(spec, Mapping):
            raise SpecError(path, f"expected a mapping of event fields, got {_kind(spec)}")
        tests: list[When] = []
        for key, value in spec.items():
            if key in ("any", "all"):
                tests.append(self.guard(_ALWAYS, self.list, key, value, f"{path}.{key}"))
            elif key == "not":
                tests.append(_negate(self.guard(_ALWAYS, self.block, value, f"{path}.not")))
            elif isinstance(key, str):
                pred = self.guard(_ANY_VALUE, self.condition, value, f"{path}.{key}")
                tests.append(_field_test(key, pred))
            else:
                # e.g. YAML 1.1 reads an unquoted `on:` or `yes:` key as a bool.
                self.errors.append(
                    SpecError(path, f"field names must be strings, got {key!r}; quote it")
                )
        return _all(tests)

    def list(self, key: str, value: object, path: str) -> When:
        """``any:`` / ``all:``: an empty list is almost surely a mistake, so refuse it."""
        if not isinstance(value, list | tuple) or not value:
            raise SpecError(path, f"expected a non-empty list of when-blocks, got {_kind(value)}")
        blocks = [
            self.guard(_ALWAYS, self.block, block, f"{path}[{i}]") for i, block in enumerate(value)
        ]
        return _all(blocks) if key == "all" else _any(blocks)

    def condition(self, value: object, path: str) -> _Pred:
        """A field's value: a plain scalar means equals, a mapping holds operators (ANDed)."""
        if isinstance(value, Mapping):
            if not value:
                raise SpecError(
                    path, f"empty operator mapping; valid operators: {', '.join(OPERATORS)}"
                )
            preds = [
                self.guard(_ANY_VALUE, self.operator, op, arg, path) for op, arg in value.items()
            ]
            return _all_preds(preds)
        if value is None:
            raise SpecError(
                path, "null matches nothing; to match a missing field write {exists: false}"
            )
        if isinstance(value, list | tuple):
            raise SpecError(
                path, "a list is not a single value; to match any of several write {in: [...]}"
            )
        return _member_of([_scalar(value, path)])

    def operator(self, op: object, arg: object, path: str) -> _Pred:
        op_path = f"{path}.{op}" if isinstance(op, str) else path
        if op == "in" or op == "not_in":
            if not isinstance(arg, list | tuple) or (op == "in" and not arg):
                need = "a non-empty list" if op == "in" else "a list"
                raise SpecError(op_path, f"expected {need} of values, got {_kind(arg)}")
            member = _member_of([_scalar(x, f"{op_path}[{i}]") for i, x in enumerate(arg)])
            return member if op == "in" else _negate_pred(member)
        if op == "regex":
            if not isinstance(arg, str):
                raise SpecError(op_path, f"expected a regular expression string, got {_kind(arg)}")
            return _text_test(compile_regex(arg, op_path, self.budget))
        if op == "glob":
            if not isinstance(arg, str):
                raise SpecError(op_path, f"expected a glob pattern string, got {_kind(arg)}")
            return _text_test(compile_glob(arg, op_path, self.budget))
        if op in _COMPARE:
            if isinstance(arg, bool) or not isinstance(arg, int | float):
                raise SpecError(op_path, f"expected a number, got {_kind(arg)}")
            if _is_nan(arg):
                raise SpecError(op_path, "expected a number, got NaN, which compares false always")
            return _compare(_COMPARE[op], arg)
        if op == "exists":
            if not isinstance(arg, bool):
                raise SpecError(op_path, f"expected true or false, got {_kind(arg)}")
            return _is_present if arg else _is_missing
        if op == "max_length":
            if isinstance(arg, bool) or not isinstance(arg, int) or arg < 0:
                raise SpecError(op_path, f"expected a whole number of characters, got {_kind(arg)}")
            return _text_test(lambda text: len(text) <= arg)
        raise SpecError(op_path, _unknown_operator(op))


def _unknown_operator(op: object) -> str:
    close = difflib.get_close_matches(str(op), OPERATORS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown operator {str(op)!r}{hint}; valid: {', '.join(OPERATORS)}"


def _scalar(value: object, path: str) -> Scalar:
    """Check one literal; anything but str/int/float/bool could never equal a JSON value."""
    if isinstance(value, str | int | float):
        return value
    if value is None:
        raise SpecError(
            path, "null matches nothing; to match a missing field write {exists: false}"
        )
    hint = "" if isinstance(value, Mapping | list | tuple) else "; quote it to compare as text"
    raise SpecError(path, f"expected a string, number or boolean, got {_kind(value)}{hint}")


# -- building predicates -----------------------------------------------------------------------


def _always(event: Event, /) -> bool:
    return True


def _negate(test: When) -> When:
    return lambda event: not test(event)


def _negate_pred(pred: _Pred) -> _Pred:
    return lambda value: not pred(value)


def _field_test(field: str, pred: _Pred) -> When:
    return lambda event: pred(event.get(field, _MISSING))


def _all(tests: Sequence[When]) -> When:
    if not tests:
        return _always
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda event: first(event) and second(event)
    chain = tuple(tests)

    def all_hold(event: Event, /) -> bool:
        # Plain loops, not all()/any() over a generator: twice as fast on the hot path.
        for test in chain:  # noqa: SIM110
            if not test(event):
                return False
        return True

    return all_hold


def _any(tests: Sequence[When]) -> When:
    if len(tests) == 1:
        return tests[0]
    chain = tuple(tests)

    def any_holds(event: Event, /) -> bool:
        for test in chain:  # noqa: SIM110
            if test(event):
                return True
        return False

    return any_holds


def _all_preds(preds: Sequence[_Pred]) -> _Pred:
    if len(preds) == 1:
        return preds[0]
    chain = tuple(preds)

    def all_hold(value: object) -> bool:
        for pred in chain:  # noqa: SIM110
            if not pred(value):
                return False
        return True

    return all_hold


def _is_present(value: object) -> bool:
    return value is not _MISSING


def _is_missing(value: object) -> bool:
    return value is _MISSING


# Stand-ins for a part that failed to compile: the result is thrown away, but typed.
_ALWAYS: Final[When] = _always
_ANY_VALUE: Final[_Pred] = _is_present


def _member_of(literals: Sequence[Scalar]) -> _Pred:
    """Forgiving ``value in literals``, precomputed as one set per event value kind.

    The forgiving equality is not transitive ("1538" ~ 1538 ~ 1538.0 but
    "1538" !~ 1538.0), so a single normalised set cannot express it; instead
    each JSON kind gets the set of literals it may equal. Sets hold ints and
    floats side by side: Python compares and hashes them exactly.
    """
    strs: set[str] = set()  # what a str event value may equal
    ints: set[int | float] = set()  # ... an int event value
    floats: set[int | float] = set()  # ... a float event value
    bools: set[bool] = set()
    for lit in literals:
        if isinstance(lit, bool):
            bools.add(lit)
        elif isinstance(lit, int):
            strs.add(str(lit))
            ints.add(lit)
            floats.add(lit)
        elif isinstance(lit, float):
            if not math.isnan(lit):  # NaN equals nothing; keep it out of identity-checking sets
                ints.add(lit)
                floats.add(lit)
        else:
            strs.add(lit)
            as_int = _canonical_int(lit)
            if as_int is not None:
                ints.add(as_int)

    if not (ints or floats or bools):  # the common case: plain names, e.g. event_name
        if len(strs) == 1:
            (only,) = strs
            return lambda value: value == only
        frozen = frozenset(strs)
        return lambda value: isinstance(value, str) and value in frozen

    str_set, int_set, float_set, bool_set = (
        frozenset(strs),
        frozenset(ints),
        frozenset(floats),
        frozenset(bools),
    )

    def member(value: object) -> bool:
        if isinstance(value, str):
            return value in str_set
        if isinstance(value, bool):  # before int: bool is an int subclass, and True == 1
            return value in bool_set
        if isinstance(value, int):
            return value in int_set
        if isinstance(value, float):
            return value in float_set
        return False  # null, lists, objects, missing

    return member


def _canonical_int(text: str) -> int | None:
    """The int whose ``str()`` is exactly ``text`` ("1538" yes; "01538", "+5", "1_0" no)."""
    if not _INT_TEXT.fullmatch(text):
        return None
    try:
        number = int(text)
    except ValueError:  # more digits than Python converts
        return None
    return number if str(number) == text else None


def _text_test(matches: Callable[[str], bool]) -> _Pred:
    """A test of a scalar's text (regex, glob, max_length); null, lists, objects and
    missing never match."""

    def test(value: object) -> bool:
        if isinstance(value, str):
            return matches(value)
        text = _as_text(value)
        return text is not None and matches(text)

    return test


def _as_text(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"  # the JSON spelling, which is what was received
    if isinstance(value, int | float):
        try:
            return str(value)
        except ValueError:  # an int too long to print
            return None
    return None


def _compare(compare: Callable[[Any, Any], bool], bound: int | float) -> _Pred:
    def test(value: object) -> bool:
        number = _as_number(value)
        return number is not None and compare(number, bound)

    return test


def _as_number(value: object) -> int | float | None:
    """An event value as a number: ints stay exact, numeric strings are parsed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        if _INT_TEXT.fullmatch(value):
            try:
                return int(value)
            except ValueError:
                return None
        if _FLOAT_TEXT.fullmatch(value):
            return float(value)
    return None


def _is_nan(value: int | float) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _kind(value: object) -> str:
    """How a YAML value reads in an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, Mapping):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, list | tuple):
        return "a list" if value else "an empty list"
    return f"a {type(value).__name__} ({value!r})"


# -- inspecting --------------------------------------------------------------------------------


def literal_comparisons(spec: object, field: str, path: str = "when") -> list[tuple[str, object]]:
    """``(path, literal)`` for each equality/``in``/``not_in`` literal compared with ``field``.

    Lets ``relay check`` warn about event names Pushwoosh never sends. Tolerant of
    malformed blocks: it skips what it does not understand instead of raising.
    """
    found: list[tuple[str, object]] = []
    for name, field_path, condition in _conditions(spec, path):
        if name != field:
            continue
        if isinstance(condition, Mapping):
            for op, arg in condition.items():
                if op in ("in", "not_in") and isinstance(arg, list | tuple):
                    found.extend(
                        (f"{field_path}.{op}[{i}]", lit)
                        for i, lit in enumerate(arg)
                        if isinstance(lit, str | int | float)
                    )
        elif isinstance(condition, str | int | float):
            found.append((field_path, condition))
    return found


def referenced_fields(spec: object) -> set[str]:
    """Every event field name the block tests, inside combinators too."""
    return {name for name, _, _ in _conditions(spec, "when")}


def _conditions(spec: object, path: str) -> Iterator[tuple[str, str, object]]:
    """``(field, path, condition)`` for every field test, walking any/all/not."""
    if not isinstance(spec, Mapping):
        return
    for key, value in spec.items():
        if key in ("any", "all"):
            if isinstance(value, list | tuple):
                for i, block in enumerate(value):
                    yield from _conditions(block, f"{path}.{key}[{i}]")
        elif key == "not":
            yield from _conditions(value, f"{path}.not")
        elif isinstance(key, str):
            yield key, f"{path}.{key}", value
