"""relay.model.validate_events: the Pushwoosh event schema of CONTRACT section 4."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.model import (
    EVENT_FIELDS,
    INT64,
    MAX_REPORTED_ERRORS,
    UINT64,
    EventInvalid,
    validate_events,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text())


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1

STRINGS = ("event_name", "message_code", "platform", "application_code", "hwid", "user_id")
OPTIONAL_STRINGS = ("payload", "journey_title", "journey_point_title")
IDS = ("message_id", "campaign_id")
REQUIRED = (*STRINGS, "timestamp")
OPTIONAL = (*IDS, *OPTIONAL_STRINGS)


def event(**fields: Any) -> dict[str, Any]:
    """The full example event with ``fields`` replaced."""
    base: dict[str, Any] = load_example("email-sent.json")
    return {**base, **fields}


def errors_of(decoded: Any) -> dict[str, str]:
    with pytest.raises(EventInvalid) as info:
        validate_events(decoded)
    return info.value.errors


def test_the_table_is_the_contract() -> None:
    assert {n for n, (_, required) in EVENT_FIELDS.items() if required} == set(REQUIRED)
    assert {n for n, (_, required) in EVENT_FIELDS.items() if not required} == set(OPTIONAL)
    assert EVENT_FIELDS["timestamp"][0] == INT64 == (INT64_MIN, INT64_MAX)
    assert EVENT_FIELDS["message_id"][0] == EVENT_FIELDS["campaign_id"][0] == UINT64
    assert UINT64 == (0, UINT64_MAX)


# -- valid events --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "email-sent.json",
        "email-bounced.json",
        "email-opened.json",
        "email-delivered.json",
        "minimal.json",
        "push-ios.json",
    ],
)
def test_examples_are_valid(name: str) -> None:
    ev = load_example(name)
    assert validate_events(ev) == [ev]


def test_an_object_becomes_a_list_of_one_and_is_not_copied() -> None:
    ev = event()
    out = validate_events(ev)
    assert out == [ev]
    assert out[0] is ev


def test_an_array_is_returned_as_is() -> None:
    batch = load_example("batch.json")
    out = validate_events(batch)
    assert out == batch
    assert all(a is b for a, b in zip(out, batch, strict=True))


def test_only_required_fields() -> None:
    ev = {name: event()[name] for name in REQUIRED}
    assert validate_events(ev) == [ev]


def test_unknown_fields_are_kept_untouched() -> None:
    extra = {
        "x_nested": {"a": [1, 2.5, None, True]},
        "x_huge": 2**80,
        "x_float": 1.5,
        "x_null": None,
        "": "empty key",
    }
    ev = event(**extra)
    (out,) = validate_events(ev)
    assert out == ev
    assert list(out) == list(ev)


def test_unknown_event_names_are_valid() -> None:
    for name in ("Email Link Clicked", "Push Opened", "", "🙂"):
        assert validate_events(event(event_name=name))[0]["event_name"] == name


@pytest.mark.parametrize("name", OPTIONAL)
def test_optional_field_may_be_null(name: str) -> None:
    assert validate_events(event(**{name: None}))[0][name] is None


@pytest.mark.parametrize("name", OPTIONAL)
def test_optional_field_may_be_missing(name: str) -> None:
    ev = event()
    del ev[name]
    assert validate_events(ev) == [ev]


@pytest.mark.parametrize("value", [INT64_MIN, -1, 0, 1723798222, INT64_MAX])
def test_timestamp_is_int64(value: int) -> None:
    assert validate_events(event(timestamp=value))[0]["timestamp"] == value


@pytest.mark.parametrize("name", IDS)
@pytest.mark.parametrize("value", [0, 1, INT64_MAX, INT64_MAX + 1, UINT64_MAX])
def test_ids_are_uint64(name: str, value: int) -> None:
    (out,) = validate_events(event(**{name: value}))
    assert out[name] == value
    assert type(out[name]) is int


def test_uint64_max_survives_msgspec_exactly() -> None:
    raw = b'{"message_id": 18446744073709551615}'
    decoded = msgspec.json.decode(raw)
    (out,) = validate_events({**event(), **decoded})
    assert out["message_id"] == UINT64_MAX
    assert b"18446744073709551615" in msgspec.json.encode(out)


# -- type rules ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", STRINGS + OPTIONAL_STRINGS)
@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (1, "integer"),
        (1.5, "number"),
        (True, "boolean"),
        ([], "array"),
        ({}, "object"),
    ],
)
def test_string_fields_reject_other_types(name: str, value: Any, kind: str) -> None:
    errors = errors_of(event(**{name: value}))
    assert errors == {f"$.{name}": f"expected string, got {kind}"}


@pytest.mark.parametrize("name", ["timestamp", *IDS])
@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (True, "boolean"),
        (False, "boolean"),  # bool is an int subclass: still not one
        (1723798222.0, "number"),
        (1.5, "number"),  # even integral floats
        ("1723798222", "string"),
        ([1], "array"),
        ({"v": 1}, "object"),
    ],
)
def test_integer_fields_reject_other_types(name: str, value: Any, kind: str) -> None:
    errors = errors_of(event(**{name: value}))
    assert errors == {f"$.{name}": f"expected integer, got {kind}"}


@pytest.mark.parametrize("value", [INT64_MIN - 1, INT64_MAX + 1, UINT64_MAX, -(2**70)])
def test_timestamp_out_of_int64_range(value: int) -> None:
    errors = errors_of(event(timestamp=value))
    assert list(errors) == ["$.timestamp"]
    assert "out of range" in errors["$.timestamp"]
    assert str(INT64_MAX) in errors["$.timestamp"]


@pytest.mark.parametrize("name", IDS)
@pytest.mark.parametrize("value", [-1, INT64_MIN, UINT64_MAX + 1, 2**100])
def test_ids_out_of_uint64_range(name: str, value: int) -> None:
    errors = errors_of(event(**{name: value}))
    assert list(errors) == [f"$.{name}"]
    assert "out of range" in errors[f"$.{name}"]
    assert str(UINT64_MAX) in errors[f"$.{name}"]


@pytest.mark.parametrize("name", REQUIRED)
def test_required_field_missing(name: str) -> None:
    ev = event()
    del ev[name]
    assert errors_of(ev) == {f"$.{name}": "required field is missing"}


@pytest.mark.parametrize("name", REQUIRED)
def test_required_field_may_not_be_null(name: str) -> None:
    errors = errors_of(event(**{name: None}))
    assert list(errors) == [f"$.{name}"]
    assert errors[f"$.{name}"].endswith("got null")


# -- every path at once --------------------------------------------------------------------
def test_every_offending_field_is_named() -> None:
    bad = event(timestamp=1.0, message_id="7", campaign_id=-1, hwid=None, payload=False)
    del bad["platform"]
    assert set(errors_of(bad)) == {
        "$.timestamp",
        "$.message_id",
        "$.campaign_id",
        "$.hwid",
        "$.payload",
        "$.platform",
    }


def test_empty_object_names_every_required_field() -> None:
    assert errors_of({}) == {f"$.{name}": "required field is missing" for name in REQUIRED}


def test_array_paths_name_the_item() -> None:
    good = event()
    batch = [good, event(timestamp=True), good, event(message_id=2**64, user_id=5), 7, None]
    errors = errors_of(batch)
    assert set(errors) == {"$[1].timestamp", "$[3].message_id", "$[3].user_id", "$[4]", "$[5]"}
    assert errors["$[4]"] == "expected an event object, got integer"
    assert errors["$[5]"] == "expected an event object, got null"


def test_exception_message_lists_every_path() -> None:
    with pytest.raises(EventInvalid) as info:
        validate_events([event(), event(timestamp="x", campaign_id=-2)])
    assert "$[1].timestamp: expected integer, got string" in str(info.value)
    assert "$[1].campaign_id" in str(info.value)


# -- top level -----------------------------------------------------------------------------
def test_empty_array() -> None:
    errors = errors_of([])
    assert list(errors) == ["$"]
    assert "empty" in errors["$"]


@pytest.mark.parametrize(
    ("decoded", "kind"),
    [
        ("Email Sent", "string"),
        (42, "integer"),
        (4.2, "number"),
        (None, "null"),
        (True, "boolean"),
        (False, "boolean"),
    ],
)
def test_top_level_must_be_an_object_or_array(decoded: Any, kind: str) -> None:
    errors = errors_of(decoded)
    assert list(errors) == ["$"]
    assert errors["$"].endswith(f"got {kind}")


def test_nested_arrays_are_not_flattened() -> None:
    errors = errors_of([[event()]])
    assert errors == {"$[0]": "expected an event object, got array"}


# -- the report is capped; its cost follows the body, not the number of errors -------------
def _all_errors(decoded: list[Any]) -> list[str]:
    """Every offending path of an array, uncapped, in order (a reference for the cap)."""
    paths = []
    for i, item in enumerate(decoded):
        try:
            validate_events(item)
        except EventInvalid as exc:
            paths += [f"$[{i}]{p[1:]}" for p in exc.errors]
    return paths


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from([event(), {}, 7, event(timestamp="x"), event(hwid=None, campaign_id=-1)]),
        min_size=1,
        max_size=40,
    )
)
def test_report_names_the_first_errors_in_order_and_counts_the_rest(batch: list[Any]) -> None:
    expected = _all_errors(batch)
    if not expected:
        assert validate_events(batch) == batch
        return
    with pytest.raises(EventInvalid) as info:
        validate_events(batch)
    assert list(info.value.errors) == expected[:MAX_REPORTED_ERRORS]
    assert info.value.omitted == len(expected) - min(len(expected), MAX_REPORTED_ERRORS)
    assert info.value.extra.get("errors_omitted", 0) == info.value.omitted


def test_a_flood_of_errors_costs_no_memory_per_error() -> None:
    batch: list[Any] = [{} for _ in range(200_000)]  # 1.4 million missing fields
    tracemalloc.start()
    try:
        with pytest.raises(EventInvalid) as info:
            validate_events(batch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(info.value.errors) == MAX_REPORTED_ERRORS
    assert info.value.omitted == 200_000 * len(REQUIRED) - MAX_REPORTED_ERRORS
    assert peak < 256 * 1024  # the report and a few strings, whatever the number of errors
    assert str(info.value).endswith(f"; and {info.value.omitted} more")
