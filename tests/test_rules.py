"""Tests for relay.rules: the `when` language, its errors, and its algebra.

Table-driven tests pin every rule of the spec against real Pushwoosh events;
hypothesis checks the combinators' algebra and the whole compiler against a
deliberately naive reference interpreter written straight from the spec.
"""

from __future__ import annotations

import datetime
import fnmatch
import re
from collections.abc import Mapping
from typing import Any

import pytest
import re2  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.errors import SpecError
from relay.patterns import Budget
from relay.rules import (
    OPERATORS,
    compile_when,
    compile_when_reporting,
    literal_comparisons,
    referenced_fields,
)

U64_MAX = 18446744073709551615

BOUNCED: dict[str, Any] = {
    "event_name": "Email Bounced",
    "message_id": 2000013258,
    "message_code": "B780-5A7D243C-9E1F0375",
    "campaign_id": 961234,
    "platform": "Email",
    "payload": "Don't miss our summer sale!",
    "application_code": "3A1B2-C3D41",
    "hwid": "no-such-user@example.org",
    "user_id": "2291",
    "timestamp": 1723798230,
    "journey_title": "Summer sale",
    "journey_point_title": "5_summer sale_promoemail",
}
OPENED: dict[str, Any] = {
    "event_name": "Email Opened",
    "message_id": 2000013258,
    "message_code": "B780-5A7D243C-9E1F0375",
    "campaign_id": 961234,
    "platform": "Email",
    "payload": "Don't miss our summer sale!",
    "application_code": "3A1B2-C3D41",
    "hwid": "example@gmail.com",
    "user_id": "1538",
    "timestamp": 1723801822,
    "journey_title": "Summer sale",
    "journey_point_title": "5_summer sale_promoemail",
}
PUSH: dict[str, Any] = {
    "event_name": "Push Sent",
    "message_id": U64_MAX,
    "message_code": "B780-5A7D243C-9E1F0375",
    "campaign_id": 961234,
    "platform": "iOS",
    "payload": "Summer sale starts now",
    "application_code": "3A1B2-C3D41",
    "hwid": "8F3C2B1A-6D4E-4F7A-9B2C-1E5D7A9C3F10",
    "user_id": "1538",
    "timestamp": 1723798222,
}
MINIMAL: dict[str, Any] = {
    "event_name": "Email Sent",
    "message_code": "B780-5A7D243C-9E1F0375",
    "platform": "Email",
    "application_code": "3A1B2-C3D41",
    "hwid": "example@gmail.com",
    "user_id": "1538",
    "timestamp": 1723798222,
}
# Not a real Pushwoosh event: odd JSON kinds the rules must still handle.
ODD: dict[str, Any] = {
    "event_name": "Custom",
    "campaign_id": None,
    "flag": True,
    "off": False,
    "score": 2.5,
    "count": "42",
    "ratio": "0.75",
    "big": str(U64_MAX),
    "tags": ["a", "b"],
    "extra": {"k": "v"},
    "zero": 0,
    "one_float": 1.0,
}

MATCHES: list[tuple[str, object, dict[str, Any], bool]] = [
    # -- empty blocks ------------------------------------------------------------------------
    ("none-matches-all", None, BOUNCED, True),
    ("empty-matches-all", {}, MINIMAL, True),
    # -- plain equality ----------------------------------------------------------------------
    ("eq-str", {"event_name": "Email Bounced"}, BOUNCED, True),
    ("eq-str-other", {"event_name": "Email Bounced"}, OPENED, False),
    ("eq-case-sensitive", {"event_name": "email bounced"}, BOUNCED, False),
    ("eq-int", {"campaign_id": 961234}, BOUNCED, True),
    ("eq-int-other", {"campaign_id": 961235}, BOUNCED, False),
    ("eq-missing", {"campaign_id": 961234}, MINIMAL, False),
    ("eq-null-field", {"campaign_id": "None"}, ODD, False),
    ("eq-null-field-empty-str", {"campaign_id": ""}, ODD, False),
    ("eq-list-field", {"tags": "a"}, ODD, False),
    ("eq-dict-field", {"extra": "v"}, ODD, False),
    ("eq-bool", {"flag": True}, ODD, True),
    ("eq-bool-false", {"off": False}, ODD, True),
    ("eq-bool-mismatch", {"flag": False}, ODD, False),
    ("eq-float", {"score": 2.5}, ODD, True),
    # -- forgiving equality ------------------------------------------------------------------
    ("int-lit-str-event", {"user_id": 1538}, OPENED, True),
    ("int-lit-str-event-other", {"user_id": 1539}, OPENED, False),
    ("str-lit-int-event", {"campaign_id": "961234"}, BOUNCED, True),
    ("str-lit-int-event-other", {"campaign_id": "961235"}, BOUNCED, False),
    ("str-lit-leading-zero", {"campaign_id": "0961234"}, BOUNCED, False),
    ("str-lit-plus-sign", {"campaign_id": "+961234"}, BOUNCED, False),
    ("str-lit-space", {"campaign_id": " 961234"}, BOUNCED, False),
    ("str-lit-underscore", {"campaign_id": "961_234"}, BOUNCED, False),
    ("str-lit-float-text-int-event", {"campaign_id": "961234.0"}, BOUNCED, False),
    ("int-lit-float-event", {"one_float": 1}, ODD, True),
    ("float-lit-int-event", {"campaign_id": 961234.0}, BOUNCED, True),
    ("float-lit-str-event", {"user_id": 1538.0}, OPENED, False),
    ("int-lit-bool-event", {"flag": 1}, ODD, False),
    ("int0-lit-bool-event", {"off": 0}, ODD, False),
    ("bool-lit-int-event", {"zero": False}, ODD, False),
    ("bool-lit-str-event", {"flag": "true"}, ODD, False),
    ("str-true-lit-bool-event", {"flag": "True"}, ODD, False),
    ("bool-lit-float-event", {"one_float": True}, ODD, False),
    # -- uint64 exactness --------------------------------------------------------------------
    ("u64-eq", {"message_id": U64_MAX}, PUSH, True),
    ("u64-off-by-one", {"message_id": U64_MAX - 1}, PUSH, False),
    ("u64-str-lit", {"message_id": str(U64_MAX)}, PUSH, True),
    ("u64-str-lit-off-by-one", {"message_id": str(U64_MAX - 1)}, PUSH, False),
    ("u64-float-lit-not-exact", {"message_id": float(U64_MAX)}, PUSH, False),
    ("u64-in", {"message_id": {"in": [1, U64_MAX]}}, PUSH, True),
    ("u64-in-off-by-one", {"message_id": {"in": [U64_MAX - 1]}}, PUSH, False),
    ("u64-int-lit-str-event", {"big": U64_MAX}, ODD, True),
    ("u64-int-lit-str-event-off", {"big": U64_MAX - 1}, ODD, False),
    ("u64-gte", {"message_id": {"gte": U64_MAX}}, PUSH, True),
    ("u64-gt-minus-one", {"message_id": {"gt": U64_MAX - 1}}, PUSH, True),
    ("u64-gt", {"message_id": {"gt": U64_MAX}}, PUSH, False),
    ("u64-lt", {"message_id": {"lt": U64_MAX}}, PUSH, False),
    ("u64-str-event-gt", {"big": {"gt": U64_MAX - 1}}, ODD, True),
    ("u64-str-event-gt-max", {"big": {"gt": U64_MAX}}, ODD, False),
    # -- several keys are ANDed --------------------------------------------------------------
    ("and-both", {"event_name": "Email Opened", "platform": "Email"}, OPENED, True),
    ("and-one-fails", {"event_name": "Email Opened", "platform": "iOS"}, OPENED, False),
    (
        "and-three",
        {"event_name": "Email Opened", "platform": "Email", "user_id": 1538},
        OPENED,
        True,
    ),
    (
        "and-three-one-fails",
        {"event_name": "Email Opened", "platform": "Email", "user_id": 2291},
        OPENED,
        False,
    ),
    # -- in / not_in -------------------------------------------------------------------------
    ("in", {"event_name": {"in": ["Email Opened", "Email Link Clicked"]}}, OPENED, True),
    ("in-miss", {"event_name": {"in": ["Email Opened", "Email Link Clicked"]}}, BOUNCED, False),
    ("in-single", {"event_name": {"in": ["Email Bounced"]}}, BOUNCED, True),
    ("in-missing-field", {"campaign_id": {"in": [961234]}}, MINIMAL, False),
    ("in-null-field", {"campaign_id": {"in": ["", 0, False]}}, ODD, False),
    ("in-list-field", {"tags": {"in": ["a", "b"]}}, ODD, False),
    ("in-forgiving-int", {"user_id": {"in": [1, 1538]}}, OPENED, True),
    ("in-forgiving-str", {"campaign_id": {"in": ["x", "961234"]}}, BOUNCED, True),
    ("in-mixed-kinds", {"flag": {"in": [1, "true", True]}}, ODD, True),
    ("in-mixed-kinds-no-bool", {"flag": {"in": [1, "true", "True", 1.0]}}, ODD, False),
    ("in-float-lit-int-event", {"campaign_id": {"in": [961234.0]}}, BOUNCED, True),
    ("in-str-lit-float-event", {"one_float": {"in": ["1", "1.0"]}}, ODD, False),
    ("in-int-lit-float-event", {"one_float": {"in": ["x", 1]}}, ODD, True),
    ("in-nan-lit", {"score": {"in": [float("nan"), 3]}}, ODD, False),
    ("not-in", {"event_name": {"not_in": ["Email Opened"]}}, BOUNCED, True),
    ("not-in-hit", {"event_name": {"not_in": ["Email Opened", "Email Bounced"]}}, BOUNCED, False),
    ("not-in-forgiving", {"user_id": {"not_in": [1538]}}, OPENED, False),
    ("not-in-missing-field", {"campaign_id": {"not_in": [961234]}}, MINIMAL, True),
    ("not-in-null-field", {"campaign_id": {"not_in": [961234]}}, ODD, True),
    ("not-in-empty-list", {"event_name": {"not_in": []}}, BOUNCED, True),
    ("not-in-empty-list-missing", {"nope": {"not_in": []}}, BOUNCED, True),
    # -- regex -------------------------------------------------------------------------------
    ("regex", {"event_name": {"regex": "^Email (Opened|Link Clicked)$"}}, OPENED, True),
    ("regex-miss", {"event_name": {"regex": "^Email (Opened|Link Clicked)$"}}, BOUNCED, False),
    ("regex-unanchored", {"hwid": {"regex": "example"}}, BOUNCED, True),
    ("regex-anchored-miss", {"hwid": {"regex": "^example"}}, BOUNCED, False),
    ("regex-case", {"event_name": {"regex": "bounced"}}, BOUNCED, False),
    ("regex-inline-flag", {"event_name": {"regex": "(?i)bounced"}}, BOUNCED, True),
    ("regex-int-event", {"campaign_id": {"regex": "^9612"}}, BOUNCED, True),
    ("regex-u64-event", {"message_id": {"regex": "^18446744073709551615$"}}, PUSH, True),
    ("regex-float-event", {"score": {"regex": r"^2\.5$"}}, ODD, True),
    ("regex-bool-event-json-text", {"flag": {"regex": "^true$"}}, ODD, True),
    ("regex-bool-event-not-python-text", {"flag": {"regex": "True"}}, ODD, False),
    ("regex-missing", {"nope": {"regex": ""}}, BOUNCED, False),
    ("regex-null", {"campaign_id": {"regex": ""}}, ODD, False),
    ("regex-null-text", {"campaign_id": {"regex": "None"}}, ODD, False),
    ("regex-list", {"tags": {"regex": "a"}}, ODD, False),
    ("regex-dict", {"extra": {"regex": "k"}}, ODD, False),
    # RE2, not Python `re`: where the two differ, RE2 is the rule (README: Routes).
    ("regex-dollar-is-end-of-text", {"payload": {"regex": "b$"}}, {"payload": "a\nb\n"}, False),
    ("regex-dollar-at-end", {"payload": {"regex": "b$"}}, {"payload": "a\nb"}, True),
    ("regex-multiline-dollar", {"payload": {"regex": "(?m)a$"}}, {"payload": "a\nb"}, True),
    ("regex-backslash-z", {"payload": {"regex": "b\\z"}}, {"payload": "a\nb"}, True),
    ("regex-dot-no-newline", {"payload": {"regex": "a.b"}}, {"payload": "a\nb"}, False),
    ("regex-dot-s-flag", {"payload": {"regex": "(?s)a.b"}}, {"payload": "a\nb"}, True),
    ("regex-digit-is-ascii", {"user_id": {"regex": "^\\d+$"}}, {"user_id": "\u0661\u0662"}, False),
    ("regex-unicode-digit", {"user_id": {"regex": "^\\p{Nd}+$"}}, {"user_id": "\u0661"}, True),
    ("regex-unicode-letter", {"hwid": {"regex": "^\\pL+@"}}, {"hwid": "jos\u00e9@x.org"}, True),
    ("regex-case-fold-unicode", {"hwid": {"regex": "(?i)JOS\u00c9"}}, {"hwid": "jos\u00e9"}, True),
    ("regex-lone-surrogate", {"hwid": {"regex": "^a.b$"}}, {"hwid": "a\ud800b"}, True),
    ("regex-named-group", {"hwid": {"regex": "^(?P<user>[a-z]+)@"}}, BOUNCED, False),
    ("regex-named-group-hit", {"hwid": {"regex": "^(?P<user>[a-z-]+)@"}}, BOUNCED, True),
    # -- glob --------------------------------------------------------------------------------
    ("glob", {"event_name": {"glob": "Email *"}}, BOUNCED, True),
    ("glob-miss", {"event_name": {"glob": "Push *"}}, BOUNCED, False),
    ("glob-whole-string", {"event_name": {"glob": "Email"}}, BOUNCED, False),
    ("glob-case-sensitive", {"event_name": {"glob": "email *"}}, BOUNCED, False),
    ("glob-question", {"user_id": {"glob": "229?"}}, BOUNCED, True),
    ("glob-class", {"platform": {"glob": "[iI]OS"}}, PUSH, True),
    ("glob-int-event", {"campaign_id": {"glob": "961*"}}, BOUNCED, True),
    ("glob-newline", {"payload": {"glob": "*"}}, {"payload": "a\nb"}, True),
    ("glob-missing", {"nope": {"glob": "*"}}, BOUNCED, False),
    ("glob-null", {"campaign_id": {"glob": "*"}}, ODD, False),
    ("glob-regex-chars-are-literal", {"x": {"glob": "a.b+(c)|$"}}, {"x": "a.b+(c)|$"}, True),
    ("glob-dot-is-not-any", {"x": {"glob": "a.b"}}, {"x": "axb"}, False),
    ("glob-question-newline", {"x": {"glob": "a?b"}}, {"x": "a\nb"}, True),
    ("glob-negated-class", {"x": {"glob": "[!0-9]*"}}, {"x": "x1"}, True),
    ("glob-negated-class-miss", {"x": {"glob": "[!0-9]*"}}, {"x": "1x"}, False),
    ("glob-caret-is-literal", {"x": {"glob": "[^a]"}}, {"x": "^"}, True),
    ("glob-unclosed-bracket", {"x": {"glob": "[ab"}}, {"x": "[ab"}, True),
    ("glob-reversed-range-is-nothing", {"x": {"glob": "[z-a]"}}, {"x": "m"}, False),
    ("glob-negated-reversed-range", {"x": {"glob": "[!z-a]"}}, {"x": "m"}, True),
    ("glob-backslash-is-literal", {"x": {"glob": "a\\*"}}, {"x": "a\\bc"}, True),
    ("glob-unicode", {"x": {"glob": "caf\u00e9 ?"}}, {"x": "caf\u00e9 \u2603"}, True),
    # -- numeric comparisons -----------------------------------------------------------------
    ("gt", {"timestamp": {"gt": 1723798229}}, BOUNCED, True),
    ("gt-equal", {"timestamp": {"gt": 1723798230}}, BOUNCED, False),
    ("gte-equal", {"timestamp": {"gte": 1723798230}}, BOUNCED, True),
    ("gte-below", {"timestamp": {"gte": 1723798231}}, BOUNCED, False),
    ("lt", {"timestamp": {"lt": 1723798231}}, BOUNCED, True),
    ("lt-equal", {"timestamp": {"lt": 1723798230}}, BOUNCED, False),
    ("lte-equal", {"timestamp": {"lte": 1723798230}}, BOUNCED, True),
    ("lte-above", {"timestamp": {"lte": 1723798229}}, BOUNCED, False),
    ("range", {"timestamp": {"gte": 1723798000, "lt": 1723799000}}, BOUNCED, True),
    ("range-out", {"timestamp": {"gte": 1723798000, "lt": 1723799000}}, OPENED, False),
    ("float-bound", {"score": {"gt": 2.49, "lt": 2.51}}, ODD, True),
    ("int-bound-float-event", {"score": {"gt": 2}}, ODD, True),
    ("float-bound-int-event", {"timestamp": {"lt": 1723798230.5}}, BOUNCED, True),
    ("str-int-event", {"user_id": {"gt": 2290}}, BOUNCED, True),
    ("str-int-event-false", {"user_id": {"gt": 2291}}, BOUNCED, False),
    ("str-float-event", {"ratio": {"gte": 0.75}}, ODD, True),
    ("str-float-event-false", {"ratio": {"gt": 0.75}}, ODD, False),
    ("str-int-event-lte", {"count": {"lte": 42}}, ODD, True),
    ("str-negative", {"n": {"lt": 0}}, {"n": "-3"}, True),
    ("str-exponent", {"n": {"gt": 999}}, {"n": "1e3"}, True),
    ("str-not-number", {"event_name": {"gt": 0}}, BOUNCED, False),
    ("str-with-spaces", {"n": {"gt": 0}}, {"n": " 5 "}, False),
    ("str-nan-text", {"n": {"lt": 1e308}}, {"n": "nan"}, False),
    ("str-inf-text", {"n": {"gt": 0}}, {"n": "inf"}, False),
    ("bool-event-gt", {"flag": {"gte": 0}}, ODD, False),
    ("null-event-gt", {"campaign_id": {"gte": 0}}, ODD, False),
    ("list-event-gt", {"tags": {"gte": 0}}, ODD, False),
    ("missing-gt", {"campaign_id": {"gt": 0}}, MINIMAL, False),
    ("missing-lt", {"campaign_id": {"lt": 0}}, MINIMAL, False),
    # -- exists ------------------------------------------------------------------------------
    ("exists-true", {"campaign_id": {"exists": True}}, BOUNCED, True),
    ("exists-true-missing", {"campaign_id": {"exists": True}}, MINIMAL, False),
    ("exists-false-missing", {"campaign_id": {"exists": False}}, MINIMAL, True),
    ("exists-false-present", {"campaign_id": {"exists": False}}, BOUNCED, False),
    ("exists-null-is-present", {"campaign_id": {"exists": True}}, ODD, True),
    ("exists-false-null", {"campaign_id": {"exists": False}}, ODD, False),
    # -- several operators are ANDed ---------------------------------------------------------
    ("ops-and", {"hwid": {"exists": True, "regex": "@", "not_in": ["x@y.z"]}}, OPENED, True),
    ("ops-and-fails", {"hwid": {"exists": True, "regex": "@", "glob": "*.org"}}, OPENED, False),
    # -- combinators -------------------------------------------------------------------------
    ("any-first", {"any": [{"event_name": "Email Bounced"}, {"platform": "iOS"}]}, BOUNCED, True),
    ("any-second", {"any": [{"event_name": "Email Bounced"}, {"platform": "iOS"}]}, PUSH, True),
    ("any-none", {"any": [{"event_name": "Email Bounced"}, {"platform": "iOS"}]}, OPENED, False),
    ("any-single", {"any": [{"platform": "iOS"}]}, PUSH, True),
    ("any-empty-block", {"any": [{"platform": "X"}, {}]}, PUSH, True),
    ("all-both", {"all": [{"platform": "Email"}, {"user_id": 1538}]}, OPENED, True),
    ("all-one", {"all": [{"platform": "Email"}, {"user_id": 1538}]}, BOUNCED, False),
    ("all-three", {"all": [{"platform": "Email"}, {"user_id": 2291}, {}]}, BOUNCED, True),
    ("not", {"not": {"event_name": "Email Bounced"}}, OPENED, True),
    ("not-false", {"not": {"event_name": "Email Bounced"}}, BOUNCED, False),
    ("not-empty-never", {"not": {}}, BOUNCED, False),
    ("not-none-never", {"not": None}, BOUNCED, False),
    ("not-not", {"not": {"not": {"platform": "iOS"}}}, PUSH, True),
    (
        "combinator-and-field",
        {"platform": "Email", "not": {"event_name": {"in": ["Email Sent", "Email Delivered"]}}},
        OPENED,
        True,
    ),
    (
        "combinator-and-field-fails",
        {"platform": "Email", "not": {"event_name": {"in": ["Email Sent", "Email Delivered"]}}},
        MINIMAL,
        False,
    ),
    (
        "nested",
        {
            "any": [
                {"all": [{"platform": "iOS"}, {"message_id": {"gt": 10}}]},
                {"event_name": {"glob": "*Bounced"}, "not": {"hwid": {"regex": "gmail"}}},
            ]
        },
        BOUNCED,
        True,
    ),
    (
        "nested-false",
        {
            "any": [
                {"all": [{"platform": "iOS"}, {"message_id": {"gt": 10}}]},
                {"event_name": {"glob": "*Bounced"}, "not": {"hwid": {"regex": "gmail"}}},
            ]
        },
        OPENED,
        False,
    ),
]


@pytest.mark.parametrize(
    ("spec", "event", "expected"),
    [pytest.param(spec, event, expected, id=name) for name, spec, event, expected in MATCHES],
)
def test_matches(spec: object, event: dict[str, Any], expected: bool) -> None:
    assert compile_when(spec)(event) is expected


def test_compiled_block_is_reusable_and_pure() -> None:
    when = compile_when({"event_name": {"in": ["Email Opened"]}, "hwid": {"regex": "@"}})
    events = [OPENED, BOUNCED, PUSH, MINIMAL] * 3
    assert [when(e) for e in events] == [True, False, False, False] * 3
    assert OPENED["event_name"] == "Email Opened"  # events are not mutated


def test_regex_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    when = compile_when({"hwid": {"regex": "@example"}, "platform": {"glob": "E*"}})

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a pattern compiled while matching")

    monkeypatch.setattr(re, "compile", refuse)
    monkeypatch.setattr(re2, "compile", refuse)
    assert when(BOUNCED) is True
    assert when(OPENED) is False


def test_accepts_any_mapping_as_event() -> None:
    from types import MappingProxyType

    assert compile_when({"platform": "iOS"})(MappingProxyType(PUSH)) is True


SPEC_ERRORS: list[tuple[str, object, str, str]] = [
    # -- the block itself --------------------------------------------------------------------
    ("block-list", ["event_name"], "when", "expected a mapping of event fields, got a list"),
    ("block-str", "Email Bounced", "when", "expected a mapping of event fields, got a string"),
    ("block-int", 3, "when", "expected a mapping of event fields"),
    ("field-name-bool", {True: "x"}, "when", "field names must be strings, got True"),
    ("field-name-int", {1: "x"}, "when", "field names must be strings, got 1"),
    # -- field values ------------------------------------------------------------------------
    ("value-null", {"event_name": None}, "when.event_name", "{exists: false}"),
    ("value-list", {"event_name": ["a", "b"]}, "when.event_name", "{in: [...]}"),
    ("value-empty-list", {"event_name": []}, "when.event_name", "{in: [...]}"),
    (
        "value-date",
        {"day": datetime.date(2024, 1, 1)},
        "when.day",
        "expected a string, number or boolean, got a date",
    ),
    ("value-date-hint", {"day": datetime.date(2024, 1, 1)}, "when.day", "quote it"),
    ("value-bytes", {"raw": b"x"}, "when.raw", "got a bytes"),
    # -- operator mapping --------------------------------------------------------------------
    ("ops-empty", {"event_name": {}}, "when.event_name", "empty operator mapping"),
    (
        "op-unknown-suggest",
        {"event_name": {"regexp": "x"}},
        "when.event_name.regexp",
        "unknown operator 'regexp' (did you mean 'regex'?); "
        "valid: in, not_in, regex, glob, gt, gte, lt, lte, exists",
    ),
    ("op-unknown-notin", {"a": {"notin": [1]}}, "when.a.notin", "(did you mean 'not_in'?)"),
    ("op-unknown-ge", {"a": {"ge": 1}}, "when.a.ge", "(did you mean 'gte'?)"),
    ("op-unknown-exist", {"a": {"exist": True}}, "when.a.exist", "(did you mean 'exists'?)"),
    (
        "op-unknown-no-suggestion",
        {"event_name": {"matches": "x"}},
        "when.event_name.matches",
        "unknown operator 'matches'; valid: in, not_in, regex, glob, gt, gte, lt, lte, exists",
    ),
    ("op-combinator-in-field", {"a": {"any": [1]}}, "when.a.any", "unknown operator 'any'"),
    ("op-non-str-key", {"a": {1: 2}}, "when.a", "unknown operator '1'"),
    # -- in / not_in -------------------------------------------------------------------------
    ("in-empty", {"event_name": {"in": []}}, "when.event_name.in", "non-empty list"),
    ("in-str", {"event_name": {"in": "Email Opened"}}, "when.event_name.in", "got a string"),
    ("in-mapping", {"event_name": {"in": {"a": 1}}}, "when.event_name.in", "got a mapping"),
    ("in-null", {"event_name": {"in": None}}, "when.event_name.in", "got null"),
    ("in-null-item", {"event_name": {"in": ["a", None]}}, "when.event_name.in[1]", "exists"),
    ("in-list-item", {"event_name": {"in": ["a", ["b"]]}}, "when.event_name.in[1]", "got a list"),
    ("in-dict-item", {"a": {"in": [{"b": 1}]}}, "when.a.in[0]", "got a mapping"),
    ("not-in-str", {"event_name": {"not_in": "x"}}, "when.event_name.not_in", "expected a list"),
    ("not-in-null-item", {"a": {"not_in": [1, 2, None]}}, "when.a.not_in[2]", "null"),
    # -- regex / glob ------------------------------------------------------------------------
    ("regex-bad", {"hwid": {"regex": "(unclosed"}}, "when.hwid.regex", "invalid regular exp"),
    (
        "regex-bad-re2-message",
        {"hwid": {"regex": "(unclosed"}},
        "when.hwid.regex",
        "invalid regular expression: missing ): (unclosed;"
        " the syntax is RE2's: https://github.com/google/re2/wiki/Syntax",
    ),
    ("regex-bad-repeat", {"hwid": {"regex": "*x"}}, "when.hwid.regex", "no argument for repet"),
    ("regex-backreference", {"h": {"regex": "(a)\\1"}}, "when.h.regex", "no backreferences"),
    ("regex-named-backref", {"h": {"regex": "(?P<n>a)(?P=n)"}}, "when.h.regex", "no backref"),
    ("regex-lookahead", {"h": {"regex": "a(?=b)"}}, "when.h.regex", "no lookahead or lookbe"),
    ("regex-neg-lookahead", {"h": {"regex": "a(?!b)"}}, "when.h.regex", "no lookahead"),
    ("regex-lookbehind", {"h": {"regex": "(?<=a)b"}}, "when.h.regex", "no lookahead or lookb"),
    ("regex-neg-lookbehind", {"h": {"regex": "(?<!a)b"}}, "when.h.regex", "no lookahead"),
    ("regex-python-end", {"h": {"regex": "a\\Z"}}, "when.h.regex", "end of the text \\z"),
    ("regex-verbose-flag", {"h": {"regex": "(?x) a"}}, "when.h.regex", "invalid perl operator"),
    ("regex-repeat-size", {"h": {"regex": "(a{1000}){1000}"}}, "when.h.regex", "repetition size"),
    (
        "regex-too-large",
        {"h": {"regex": "\\pL{100}"}},
        "when.h.regex",
        "regular expression too large: it compiles to 119604 RE2 instructions;"
        " at most 2000 RE2 instructions are allowed",
    ),
    ("regex-too-large-for-re2", {"h": {"regex": "\\pL{1000}"}}, "when.h.regex", "more than RE2"),
    ("regex-too-large-links", {"h": {"regex": "\\pL{1000}"}}, "when.h.regex", "wiki/Syntax"),
    ("glob-too-large", {"h": {"glob": "?" * 1000}}, "when.h.glob", "glob pattern too large"),
    ("regex-int", {"hwid": {"regex": 5}}, "when.hwid.regex", "expected a regular expression"),
    ("regex-list", {"hwid": {"regex": ["a"]}}, "when.hwid.regex", "got a list"),
    ("glob-int", {"hwid": {"glob": 5}}, "when.hwid.glob", "expected a glob pattern string"),
    ("glob-null", {"hwid": {"glob": None}}, "when.hwid.glob", "got null"),
    # -- comparisons -------------------------------------------------------------------------
    ("gt-str", {"timestamp": {"gt": "5"}}, "when.timestamp.gt", "expected a number, got a string"),
    ("gte-bool", {"timestamp": {"gte": True}}, "when.timestamp.gte", "got a boolean"),
    ("lt-null", {"timestamp": {"lt": None}}, "when.timestamp.lt", "got null"),
    ("lte-list", {"timestamp": {"lte": [1]}}, "when.timestamp.lte", "got a list"),
    ("gt-nan", {"timestamp": {"gt": float("nan")}}, "when.timestamp.gt", "got NaN"),
    # -- exists ------------------------------------------------------------------------------
    ("exists-str", {"a": {"exists": "yes"}}, "when.a.exists", "expected true or false"),
    ("exists-int", {"a": {"exists": 1}}, "when.a.exists", "expected true or false"),
    ("exists-null", {"a": {"exists": None}}, "when.a.exists", "got null"),
    # -- combinators -------------------------------------------------------------------------
    ("any-empty", {"any": []}, "when.any", "expected a non-empty list of when-blocks"),
    ("any-empty-kind", {"any": []}, "when.any", "got an empty list"),
    ("all-empty", {"all": []}, "when.all", "expected a non-empty list of when-blocks"),
    ("any-mapping", {"any": {"a": 1}}, "when.any", "got a mapping"),
    ("all-null", {"all": None}, "when.all", "got null"),
    ("any-str", {"any": "a"}, "when.any", "got a string"),
    ("any-item-not-mapping", {"any": [{"a": 1}, "b"]}, "when.any[1]", "expected a mapping"),
    ("not-list", {"not": [{"a": 1}]}, "when.not", "expected a mapping of event fields"),
    # -- paths reach deep --------------------------------------------------------------------
    (
        "deep-path",
        {"all": [{"a": 1}, {"any": [{"b": 2}, {"not": {"c": {"in": [1, None]}}}]}]},
        "when.all[1].any[1].not.c.in[1]",
        "null",
    ),
    (
        "deep-regex",
        {"any": [{"a": 1}, {"b": 2}, {"platform": {"regex": "["}}]},
        "when.any[2].platform.regex",
        "missing ]: [",
    ),
]


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [pytest.param(spec, path, frag, id=name) for name, spec, path, frag in SPEC_ERRORS],
)
def test_spec_errors(spec: object, path: str, fragment: str) -> None:
    with pytest.raises(SpecError) as caught:
        compile_when(spec)
    assert caught.value.path == path
    assert fragment in caught.value.message
    assert str(caught.value) == f"{path}: {caught.value.message}"


def test_error_path_is_prefixed_by_caller_path() -> None:
    spec = {"event_name": {"in": ["a"]}, "any": [{"x": 1}, {"platform": {"regexp": "i"}}]}
    with pytest.raises(SpecError) as caught:
        compile_when(spec, "routes[3].when")
    assert caught.value.path == "routes[3].when.any[1].platform.regexp"
    assert str(caught.value).startswith("routes[3].when.any[1].platform.regexp: unknown operator")


def test_error_path_of_non_mapping_block_is_callers() -> None:
    with pytest.raises(SpecError) as caught:
        compile_when(["x"], "routes[1].when")
    assert caught.value.path == "routes[1].when"


def test_first_error_in_document_order() -> None:
    with pytest.raises(SpecError) as caught:
        compile_when({"a": {"gt": "x"}, "b": None})
    assert caught.value.path == "when.a.gt"


# -- RE2: linear in the text, bounded to compile -------------------------------------------------

# Patterns that take Python's backtracking `re` time exponential in the text, with the text that
# does it. RE2 answers at once; if it did not, these would run for longer than the universe.
CRAFTED: list[tuple[str, str, str, bool]] = [
    ("nested-plus", "(a+)+$", "a" * 100_000 + "!", False),
    ("nested-plus-hit", "(a+)+$", "a" * 100_000, True),
    ("alternation", "(a|aa)+$", "a" * 100_000 + "!", False),
    ("nested-star", "^(a*)*b", "a" * 100_000, False),
    ("words", r"^(\w+\s?)*$", "word " * 20_000 + "!", False),
    ("overlapping", "(x+x+)+y", "x" * 100_000, False),
    ("email-like", r"^([a-zA-Z0-9])(([\-.]|[_]+)?([a-zA-Z0-9]+))*(@)", "a" * 100_000 + "!", False),
]


@pytest.mark.parametrize(
    ("pattern", "hwid", "expected"),
    [pytest.param(p, h, e, id=name) for name, p, h, e in CRAFTED],
)
def test_catastrophic_patterns_on_crafted_input_answer_at_once(
    pattern: str, hwid: str, expected: bool
) -> None:
    when = compile_when({"hwid": {"regex": pattern}})
    assert when({"hwid": hwid}) is expected
    assert when({"hwid": hwid[:100] + hwid}) is expected  # and again: compiled once


def test_glob_with_many_stars_on_crafted_input() -> None:
    when = compile_when({"hwid": {"glob": "*a*a*a*a*a*a*a*a*a*a*b"}})
    assert when({"hwid": "a" * 100_000}) is False
    assert when({"hwid": "a" * 100_000 + "b"}) is True


_SYNTAX = "the syntax is RE2's: https://github.com/google/re2/wiki/Syntax"
# Every character RE2 gives a meaning to, and a few it does not, in any order.
REGEX_TEXT = st.text(
    st.sampled_from(list("()[]{}*+?|^$\\.-,:=!<>PpLdDwWsSbBzZAQEx0129aé☃ \n\t\x00\ud800")),
    max_size=24,
)


@settings(max_examples=500)
@given(st.one_of(REGEX_TEXT, st.text(max_size=12)))
def test_every_pattern_compiles_or_is_one_clean_line(pattern: str) -> None:
    try:
        when = compile_when({"f": {"regex": pattern}})
    except SpecError as exc:
        assert exc.path == "when.f.regex"
        assert exc.message.isprintable(), exc.message  # one line, whatever the pattern holds
        assert exc.message.startswith(("invalid regular expression: ", "regular expression too"))
        assert exc.message.endswith(_SYNTAX)
        assert len(exc.message) < 500
        return
    for text in ("", "a\nb", "(x)", "\ud800", "é" * 3):
        assert when({"f": text}) in (True, False)


# Globs built from what makes fnmatch's classes subtle: ranges, reversed ranges, `!`, `]`, `-`.
GLOB_CHARS = list("ab-z!^]*?[\\.\né\ud800")
GLOB_TEXT = st.text(st.sampled_from(GLOB_CHARS), max_size=10)


@settings(max_examples=1500)
@given(GLOB_TEXT, st.text(st.sampled_from([c for c in GLOB_CHARS if c not in "*?"]), max_size=5))
def test_glob_means_what_fnmatch_means(glob: str, text: str) -> None:
    when = compile_when({"f": {"glob": glob}})
    assert when({"f": text}) is fnmatch.fnmatchcase(text, glob)
    # ... also on a text made to fit it, so matches are as well covered as misses.
    fitted = glob.replace("*", "ab").replace("?", "-").replace("[", "").replace("]", "")
    assert when({"f": fitted}) is fnmatch.fnmatchcase(fitted, glob)


def test_patterns_share_the_budget_they_are_given() -> None:
    budget = Budget(2_500)
    block = {"hwid": {"regex": "a{1000}"}}  # about 1,000 instructions
    compile_when(block, "routes[0].when", budget)
    compile_when(block, "routes[1].when", budget)
    with pytest.raises(SpecError) as caught:
        compile_when(block, "routes[2].when", budget)
    assert caught.value.path == "routes[2].when.hwid.regex"
    assert caught.value.message == (
        "the config's regex and glob patterns together compile to more than 2500 RE2"
        " instructions; use fewer or simpler patterns"
    )
    with pytest.raises(SpecError, match="together compile to more than 2500"):
        compile_when({"x": {"glob": "*"}}, "routes[3].when", budget)  # nothing more compiles
    assert compile_when(block)({"hwid": "a" * 1000}) is True  # a fresh budget by default


def test_patterns_refused_for_size_use_up_the_budget() -> None:
    """Refusing a giant costs RE2 time: a config of thousands must stop compiling early."""
    budget = Budget()
    giants = [".{1000}"] * 4 + ["\\pL{1000}"]  # too large for the cap, then for RE2 itself
    for i, giant in enumerate(giants):
        with pytest.raises(SpecError, match="regular expression too large: it compiles to "):
            compile_when({"h": {"regex": giant}}, f"routes[{i}].when", budget)
    with pytest.raises(SpecError, match="together compile to more than 100000"):
        compile_when({"h": {"regex": "x"}}, "routes[5].when", budget)


def test_reporting_lists_every_mistake_in_document_order() -> None:
    spec = {
        "a": {"gt": "x", "regex": "(?=y)"},
        "b": None,
        "any": [{"c": {"glob": 5}}, "d"],
        "not": {"e": {"regexp": "z", "in": []}},
        1: 2,
        "f": {"regex": "fine"},
    }
    when, errors = compile_when_reporting(spec, "routes[0].when")
    assert [e.path for e in errors] == [
        "routes[0].when.a.gt",
        "routes[0].when.a.regex",
        "routes[0].when.b",
        "routes[0].when.any[0].c.glob",
        "routes[0].when.any[1]",
        "routes[0].when.not.e.regexp",
        "routes[0].when.not.e.in",
        "routes[0].when",
    ]
    with pytest.raises(SpecError) as caught:
        compile_when(spec, "routes[0].when")
    assert caught.value is not errors[0] and str(caught.value) == str(errors[0])
    when, errors = compile_when_reporting({"f": {"regex": "fine"}})
    assert errors == [] and when({"f": "so fine"}) is True


def test_valid_operators_are_the_documented_ones() -> None:
    assert OPERATORS == (
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


@pytest.mark.parametrize(
    ("value", "holds"),
    [("a" * 254, True), ("a" * 255, False), ("é" * 254, True), (12345, True), (123456, False)],
)
def test_max_length_counts_characters_of_the_text(value: object, holds: bool) -> None:
    limit = {"hwid": {"max_length": 254}} if isinstance(value, str) else {"hwid": {"max_length": 5}}
    assert compile_when(limit)({"hwid": value}) is holds
    assert compile_when(limit)({}) is False
    assert compile_when(limit)({"hwid": None}) is False


@pytest.mark.parametrize("arg", [-1, 1.5, "10", True, None])
def test_max_length_wants_a_whole_number(arg: object) -> None:
    with pytest.raises(SpecError, match="expected a whole number of characters"):
        compile_when({"hwid": {"max_length": arg}})


# -- literal_comparisons / referenced_fields ---------------------------------------------------

COMPLEX = {
    "event_name": "Email Opened",
    "platform": {"in": ["Email", "iOS"]},
    "any": [
        {"event_name": {"in": ["Email Link Clicked", "Email Opnd"], "regex": "^Email"}},
        {"not": {"event_name": {"not_in": ["Email Sent"]}, "user_id": 1538}},
        {"all": [{"campaign_id": {"gt": 5}}, {"event_name": {"glob": "Push*"}}]},
    ],
    "hwid": {"exists": True},
}


def test_literal_comparisons_walks_every_equality() -> None:
    assert literal_comparisons(COMPLEX, "event_name", "routes[2].when") == [
        ("routes[2].when.event_name", "Email Opened"),
        ("routes[2].when.any[0].event_name.in[0]", "Email Link Clicked"),
        ("routes[2].when.any[0].event_name.in[1]", "Email Opnd"),
        ("routes[2].when.any[1].not.event_name.not_in[0]", "Email Sent"),
    ]


def test_literal_comparisons_other_fields() -> None:
    assert literal_comparisons(COMPLEX, "platform") == [
        ("when.platform.in[0]", "Email"),
        ("when.platform.in[1]", "iOS"),
    ]
    assert literal_comparisons(COMPLEX, "user_id") == [("when.any[1].not.user_id", 1538)]
    assert literal_comparisons(COMPLEX, "campaign_id") == []  # gt is not equality
    assert literal_comparisons(COMPLEX, "hwid") == []
    assert literal_comparisons(COMPLEX, "nope") == []


@pytest.mark.parametrize("spec", [None, {}, "x", [1], {"any": "x"}, {"a": {"in": "x"}}, {1: 2}])
def test_literal_comparisons_tolerates_anything(spec: object) -> None:
    assert literal_comparisons(spec, "a") == []


def test_literal_comparisons_skips_malformed_parts() -> None:
    spec = {"a": {"in": ["x", None, ["y"]]}, "any": [{"a": None}, 3, {"a": "z"}]}
    assert literal_comparisons(spec, "a") == [("when.a.in[0]", "x"), ("when.any[2].a", "z")]


def test_referenced_fields() -> None:
    assert referenced_fields(COMPLEX) == {
        "event_name",
        "platform",
        "user_id",
        "campaign_id",
        "hwid",
    }
    assert referenced_fields(None) == set()
    assert referenced_fields({}) == set()
    assert referenced_fields({"not": {"a": 1}, "all": [{"b": 1}, {"any": [{"c": 1}]}]}) == {
        "a",
        "b",
        "c",
    }


@pytest.mark.parametrize("spec", ["x", [1], {"any": 3}, {"not": "x"}, {1: 2}])
def test_referenced_fields_tolerates_anything(spec: object) -> None:
    assert referenced_fields(spec) == set()


# -- property-based ----------------------------------------------------------------------------

FIELDS = ["event_name", "user_id", "message_id", "score", "flag", "tags", "absent"]
INTS = st.one_of(
    st.sampled_from([0, 1, -1, 1538, 961234, U64_MAX, U64_MAX - 1, 2**63]),
    st.integers(min_value=-(2**65), max_value=2**65),
)
FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, 1.5, 1538.0, float(U64_MAX), float("inf")]),
    st.floats(allow_nan=False),
)
TEXTS = st.one_of(
    st.sampled_from(
        ["", "Email Opened", "Email Bounced", "1538", "01538", "1.5", "true", "-1", str(U64_MAX)]
    ),
    st.text(alphabet="Eam il0158.-", max_size=6),
)
SCALARS = st.one_of(INTS, FLOATS, TEXTS, st.booleans())
EVENT_VALUES = st.one_of(SCALARS, st.none(), st.lists(SCALARS, max_size=2))
PATTERNS = st.sampled_from(["", "^E", "ed$", "1", r"^\d+$", "(?i)email", "tru", "[0-9]{3}"])
GLOBS = st.sampled_from(["*", "E*", "*ed", "1?3?", "[0-9]*", "true", "?"])
NUMBERS = st.one_of(INTS, FLOATS)

OPERATOR_ARGS: dict[str, st.SearchStrategy[Any]] = {
    "in": st.lists(SCALARS, min_size=1, max_size=4),
    "not_in": st.lists(SCALARS, max_size=4),
    "regex": PATTERNS,
    "glob": GLOBS,
    "gt": NUMBERS,
    "gte": NUMBERS,
    "lt": NUMBERS,
    "lte": NUMBERS,
    "exists": st.booleans(),
    "max_length": st.integers(min_value=0, max_value=30),
}
OPERATOR_MAPS = st.lists(
    st.sampled_from(OPERATORS).flatmap(lambda op: st.tuples(st.just(op), OPERATOR_ARGS[op])),
    min_size=1,
    max_size=3,
).map(dict)
CONDITIONS = st.one_of(SCALARS, OPERATOR_MAPS)
FIELD_BLOCKS = st.dictionaries(st.sampled_from(FIELDS), CONDITIONS, max_size=3)


def _extend(blocks: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    lists = st.lists(blocks, min_size=1, max_size=3)
    return st.one_of(
        st.builds(lambda bs: {"any": bs}, lists),
        st.builds(lambda bs: {"all": bs}, lists),
        st.builds(lambda b: {"not": b}, blocks),
        st.builds(lambda d, b, bs: {**d, "not": b, "any": bs}, FIELD_BLOCKS, blocks, lists),
    )


BLOCKS = st.recursive(st.one_of(st.none(), FIELD_BLOCKS), _extend, max_leaves=8)
EVENTS = st.dictionaries(st.sampled_from(FIELDS[:-1]), EVENT_VALUES, max_size=6)


@given(BLOCKS, EVENTS)
def test_not_inverts(block: object, event: dict[str, Any]) -> None:
    assert compile_when({"not": block})(event) is (not compile_when(block)(event))


@given(st.lists(BLOCKS, min_size=1, max_size=4), EVENTS)
def test_any_and_all_are_or_and_and(blocks: list[object], event: dict[str, Any]) -> None:
    each = [compile_when(b)(event) for b in blocks]
    assert compile_when({"any": blocks})(event) is any(each)
    assert compile_when({"all": blocks})(event) is all(each)


@given(BLOCKS, EVENTS)
def test_mapping_is_and_of_its_keys(block: object, event: dict[str, Any]) -> None:
    if not isinstance(block, dict):
        return
    singles = [compile_when({key: value})(event) for key, value in block.items()]
    assert compile_when(block)(event) is all(singles)


@given(SCALARS, st.lists(SCALARS, max_size=4), EVENT_VALUES)
def test_in_is_equality_with_any(literal: object, others: list[object], value: object) -> None:
    event = {"f": value}
    literals = [literal, *others]
    hit = any(compile_when({"f": lit})(event) for lit in literals)
    assert compile_when({"f": {"in": literals}})(event) is hit
    assert compile_when({"f": {"not_in": literals}})(event) is (not hit)


def _forms(n: int) -> list[object]:
    """Spellings of one number that the forgiving equality must tell apart."""
    return [n, str(n), float(n), f"0{n}", f"{n}.0", f"+{n}", n % 2 == 1, str(float(n))]


RELATED_PAIRS = INTS.flatmap(
    lambda n: st.tuples(st.sampled_from(_forms(n)), st.sampled_from([*_forms(n), None, [n]]))
)


@settings(max_examples=300)
@given(RELATED_PAIRS)
def test_equality_agrees_with_reference(pair: tuple[object, object]) -> None:
    literal, value = pair
    event = {"f": value}
    expected = _loose_eq(literal, value)
    assert compile_when({"f": literal})(event) is expected
    assert compile_when({"f": {"in": [literal]}})(event) is expected
    assert compile_when({"f": {"in": ["zzz", literal, 0.5]}})(event) is expected


@settings(max_examples=300)
@given(BLOCKS, EVENTS)
def test_agrees_with_reference_interpreter(block: object, event: dict[str, Any]) -> None:
    assert compile_when(block)(event) is _reference(block, event)


@given(BLOCKS, st.sampled_from(FIELDS))
def test_inspection_agrees_with_blocks(block: object, field: str) -> None:
    found = literal_comparisons(block, field, "routes[0].when")
    assert all(path.startswith("routes[0].when.") and f".{field}" in path for path, _ in found)
    assert referenced_fields(block) <= set(FIELDS)
    if found:
        assert field in referenced_fields(block)


# -- a naive interpreter written straight from the spec, to check the compiled one -------------

_ABSENT = object()


def _reference(block: object, event: Mapping[str, Any]) -> bool:
    if block is None:
        return True
    assert isinstance(block, dict)
    for key, cond in block.items():
        if key == "any":
            ok = any(_reference(b, event) for b in cond)
        elif key == "all":
            ok = all(_reference(b, event) for b in cond)
        elif key == "not":
            ok = not _reference(cond, event)
        else:
            ok = _reference_field(cond, event.get(key, _ABSENT))
        if not ok:
            return False
    return True


def _reference_field(cond: object, value: object) -> bool:
    if not isinstance(cond, dict):
        return _loose_eq(cond, value)
    for op, arg in cond.items():
        if op == "in":
            ok = any(_loose_eq(lit, value) for lit in arg)
        elif op == "not_in":
            ok = not any(_loose_eq(lit, value) for lit in arg)
        elif op == "exists":
            ok = (value is not _ABSENT) is arg
        elif op == "max_length":
            text = _reference_text(value)
            ok = text is not None and len(text) <= arg
        elif op in ("regex", "glob"):
            text = _reference_text(value)
            if text is None:
                ok = False
            elif op == "regex":
                ok = re2.search(arg, text) is not None  # RE2 is the spec (README: Routes)
            else:
                ok = fnmatch.fnmatchcase(text, arg)
        else:
            number = _reference_number(value)
            ok = (
                number is not None
                and {
                    "gt": number > arg,
                    "gte": number >= arg,
                    "lt": number < arg,
                    "lte": number <= arg,
                }[op]
            )
        if not ok:
            return False
    return True


def _kind_of(x: object) -> str:
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, int | float):
        return "number"
    if isinstance(x, str):
        return "str"
    return "other"


def _loose_eq(lit: object, value: object) -> bool:
    kinds = {_kind_of(lit), _kind_of(value)}
    if len(kinds) == 1 and kinds != {"other"}:
        return lit == value
    if isinstance(lit, str) and type(value) is int:
        return str(value) == lit
    if isinstance(value, str) and type(lit) is int:
        return str(lit) == value
    return False


def _reference_text(value: object) -> str | None:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float | str):
        return str(value)
    return None


def _reference_number(value: object) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str) and value.isascii() and value == value.strip():
        if "_" in value or value.lower().strip("+-") in ("inf", "infinity", "nan"):
            return None
        try:
            return int(value)
        except ValueError:
            pass
        try:
            return float(value)
        except ValueError:
            return None
    return None
