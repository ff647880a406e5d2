"""Sandboxed templates: native types, exact paths in errors, event data never evaluated."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from relay.errors import RenderError, SpecError
from relay.templates import (
    ALLOWED_NAMES,
    StructureTemplate,
    TextTemplate,
    compile_structure,
    compile_text,
    slack_escape,
)

UINT64_MAX = 18446744073709551615

EVENT: dict[str, Any] = {
    "event_name": "Email Opened",
    "message_id": UINT64_MAX,
    "message_code": "B780-5A7D243C-9E1F0375",
    "campaign_id": 961234,
    "platform": "Email",
    "payload": "Don't miss our summer sale!",
    "application_code": "3A1B2-C3D41",
    "hwid": "example@gmail.com",
    "user_id": "1538",
    "timestamp": 1723798222,
    "journey_title": "Summer sale",
    "journey_point_title": "5_summer sale_promoemail",
    "x_custom": {"nested": [1, 2, 3]},
}
CTX: dict[str, Any] = {"event": EVENT, "destination": {"name": "crm"}}
BODY = "destinations.crm.body"


def render_body(body: object, context: dict[str, Any] | None = None) -> Any:
    return compile_structure(body, BODY).render(CTX if context is None else context)


def render_error(template: TextTemplate | StructureTemplate, context: dict[str, Any]) -> str:
    with pytest.raises(RenderError) as info:
        template.render(context)
    message = str(info.value)
    assert "\n" not in message
    return message


def spec_error(build: Any) -> SpecError:
    with pytest.raises(SpecError) as info:
        build()
    assert "\n" not in str(info.value)
    return info.value


# -- structures keep native types ----------------------------------------------------------


def test_single_expression_leaf_keeps_int_type() -> None:
    assert render_body({"opened_at": "{{ event.timestamp }}"}) == {"opened_at": 1723798222}


def test_uint64_max_stays_exact() -> None:
    out = render_body({"id": "{{ event.message_id }}", "text": "id {{ event.message_id }}"})
    assert out["id"] == UINT64_MAX
    assert type(out["id"]) is int
    assert out["text"] == f"id {UINT64_MAX}"


def test_events_and_event_render_to_list_and_dict() -> None:
    context = {**CTX, "events": [EVENT, EVENT]}
    out = render_body({"all": "{{ events }}", "one": "{{ event }}"}, context)
    assert out["all"] == [EVENT, EVENT]
    assert out["one"] == EVENT
    out["one"]["hwid"] = "changed"  # the rendered body is a copy, not the event itself
    assert EVENT["hwid"] == "example@gmail.com"


@pytest.mark.parametrize(
    ("leaf", "expected"),
    [
        ("  {{ event.campaign_id }}\n", 961234),
        ("{{- event.campaign_id -}}", 961234),
        ("{# a comment #}{{ event.campaign_id }}", 961234),
        ("{{ event.campaign_id > 5 }}", True),
        ("{{ event.x_custom }}", {"nested": [1, 2, 3]}),
        ("{{ event.x_custom.nested[1:] }}", [2, 3]),
        ("{{ (1, 2) }}", [1, 2]),
        ('{{ {"a": {"b": 1}} }}', {"a": {"b": 1}}),
        ("{{ event.missing | default(None) }}", None),
        ("{{ event.timestamp / 2 }}", 861899111.0),
        ("{{ event.hwid }}", "example@gmail.com"),
        ("{{ event.campaign_id | string }}", "961234"),
        ("{{ range(3) }}", [0, 1, 2]),
        ("{{ events | map(attribute='hwid') }}", ["example@gmail.com"]),
    ],
)
def test_native_leaves(leaf: str, expected: object) -> None:
    out = render_body({"v": leaf}, {**CTX, "events": [EVENT]})["v"]
    assert out == expected
    assert type(out) is type(expected)


@pytest.mark.parametrize(
    ("leaf", "expected"),
    [
        ("{{ event.campaign_id }} ", 961234),  # trailing whitespace only: still native
        ("x{{ event.campaign_id }}", "x961234"),
        ("{{ event.campaign_id }}{{ event.user_id }}", "9612341538"),
        ("{{ event.campaign_id }}}}", "961234}}"),
        ("{% if true %}{{ event.campaign_id }}{% endif %}", "961234"),
        ("plain text", "plain text"),
        ("", ""),
    ],
)
def test_other_string_leaves_render_to_text(leaf: str, expected: object) -> None:
    assert render_body({"v": leaf})["v"] == expected


def test_now_renders_as_iso_text() -> None:
    now = dt.datetime(2024, 8, 16, 8, 50, 22, tzinfo=dt.UTC)
    out = render_body({"at": "{{ now }}", "y": "{{ now.year }}"}, {**CTX, "now": now})
    assert out == {"at": "2024-08-16T08:50:22+00:00", "y": 2024}


def test_nested_structure_and_plain_leaves() -> None:
    body = {
        "email": "{{ event.hwid }}",
        "count": 3,
        "ratio": 0.5,
        "flag": False,
        "nothing": None,
        "items": [1, "{{ event.campaign_id }}", {"name": "Hi {{ event.user_id }}"}, [None, "x"]],
        "{{ event.hwid }}": "keys are plain",
    }
    assert render_body(body) == {
        "email": "example@gmail.com",
        "count": 3,
        "ratio": 0.5,
        "flag": False,
        "nothing": None,
        "items": [1, 961234, {"name": "Hi 1538"}, [None, "x"]],
        "{{ event.hwid }}": "keys are plain",
    }


def test_non_container_top_level_values() -> None:
    assert compile_structure(7, BODY).render(CTX) == 7
    assert compile_structure(None, BODY).render(CTX) is None
    assert compile_structure("{{ event.timestamp }}", BODY).render(CTX) == 1723798222


def test_compiled_once_rendered_many_times() -> None:
    template = compile_structure({"e": "{{ event.hwid }}"}, BODY)
    for hwid in ("a@x", "b@x", "c@x"):
        assert template.render({"event": {**EVENT, "hwid": hwid}}) == {"e": hwid}


def test_text_template() -> None:
    template = compile_text(":warning: {{ event.event_name }} for {{ event.hwid }}\n", "d.t")
    assert template.render(CTX) == ":warning: Email Opened for example@gmail.com\n"


def test_text_template_loops_over_events() -> None:
    template = compile_text(
        "{% for e in events %}{{ loop.index }}={{ e.hwid }};{% endfor %}", "d.t"
    )
    assert template.render({"events": [EVENT, {**EVENT, "hwid": "b"}]}) == (
        "1=example@gmail.com;2=b;"
    )


# -- compile-time errors -------------------------------------------------------------------


def test_unknown_name_is_spec_error_with_names() -> None:
    err = spec_error(lambda: compile_text("{{ evnt.hwid }}", "destinations.slack.text"))
    assert err.path == "destinations.slack.text"
    assert err.message == (
        "unknown name 'evnt' in template (names: event, events, group, destination, now)"
    )
    assert str(err).startswith("destinations.slack.text: unknown name 'evnt'")


def test_several_unknown_names_are_all_named() -> None:
    err = spec_error(lambda: compile_text("{{ b }}{{ a }}{{ event }}", "p"))
    assert err.message.startswith("unknown names 'a', 'b' in template")


def test_locally_assigned_names_are_fine() -> None:
    src = "{% set n = event.hwid %}{% for e in events %}{{ e }}{% endfor %}{{ n }}"
    compile_text(src, "p")


def test_allowed_names() -> None:
    assert frozenset({"event", "events", "group", "destination", "now"}) == ALLOWED_NAMES
    src = "{{ event }}{{ events }}{{ group }}{{ destination }}{{ now }}"
    compile_text(src, "p")


def test_syntax_error_single_line() -> None:
    err = spec_error(lambda: compile_text("{{ event.hwid ", "destinations.slack.text"))
    assert err.path == "destinations.slack.text"
    assert err.message.startswith("template syntax error: ")
    assert "line" not in err.message


def test_syntax_error_multi_line_names_the_line() -> None:
    src = "first line\nsecond {{ event.hwid }}\nthird {% if %}\n"
    err = spec_error(lambda: compile_text(src, "destinations.slack.text"))
    assert err.message.startswith("template syntax error: ")
    assert err.message.endswith("(line 3 of the template)")


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("{{ event | no_such_filter }}", "No filter named 'no_such_filter'"),
        ("{{ event is no_such_test }}", "No test named 'no_such_test'"),
        ("{% for %}", "template syntax error"),
        ("{% endfor %}", "template syntax error"),
        ("{{ }}", "template syntax error"),
        ("{% include 'x.txt' %}", "cannot include, import or extend"),
        ("{% extends 'base' %}", "cannot include, import or extend"),
        ("{{ lipsum(1000000) }}", "unknown name 'lipsum'"),
    ],
)
def test_compile_errors(source: str, fragment: str) -> None:
    err = spec_error(lambda: compile_text(source, "d.t"))
    assert fragment in err.message


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"email": "{{ evnt.hwid }}"}, "destinations.crm.body.email"),
        ({"items": [1, 2, "{{ event.hwid "]}, "destinations.crm.body.items[2]"),
        ({"a": {"b": [{"c": "{% if %}"}]}}, "destinations.crm.body.a.b[0].c"),
        ({"a": [[0, "{{ x }}"]]}, "destinations.crm.body.a[0][1]"),
        ({"n": "{{ event | nope }}"}, "destinations.crm.body.n"),
        ("{{ nope }}", "destinations.crm.body"),
    ],
)
def test_structure_spec_errors_point_at_the_leaf(body: object, path: str) -> None:
    err = spec_error(lambda: compile_structure(body, BODY))
    assert err.path == path
    assert str(err).startswith(f"{path}: ")


# -- render-time errors --------------------------------------------------------------------


def test_missing_field_is_render_error_naming_the_path() -> None:
    template = compile_structure({"email": "{{ event.no_such_field }}"}, BODY)
    assert render_error(template, CTX) == (
        "template at destinations.crm.body.email: 'dict object' has no attribute 'no_such_field'"
    )


def test_missing_field_in_text_leaf_and_text_template() -> None:
    template = compile_structure({"items": [0, "x {{ event.nope }}"]}, BODY)
    assert render_error(template, CTX).startswith("template at destinations.crm.body.items[1]: ")
    text = compile_text("hi {{ event.nope }}", "destinations.slack.text")
    assert render_error(text, CTX) == (
        "template at destinations.slack.text: 'dict object' has no attribute 'nope'"
    )


def test_allowed_name_missing_from_context() -> None:
    template = compile_structure({"all": "{{ events }}"}, BODY)
    assert (
        render_error(template, CTX)
        == "template at destinations.crm.body.all: 'events' is undefined"
    )


@pytest.mark.parametrize(
    ("leaf", "fragment"),
    [
        ("{{ [event.nope] }}", "has no attribute 'nope'"),
        ('{{ {"a": event.nope} }}', "has no attribute 'nope'"),
        ("{{ 1 / 0 }}", "ZeroDivisionError: division by zero"),
        ("{{ event.hwid + 1 }}", "TypeError"),
        ("{{ event.hwid.upper }}", "not JSON data"),
        ("{{ event.timestamp.nope }}", "has no attribute 'nope'"),
    ],
)
def test_native_render_errors(leaf: str, fragment: str) -> None:
    message = render_error(compile_structure({"v": leaf}, BODY), CTX)
    assert message.startswith("template at destinations.crm.body.v: ")
    assert fragment in message


@pytest.mark.parametrize(
    "source",
    ["{{ [event.nope] }}", "{{ 1 / 0 }}", "{{ event.hwid + 1 }}", "{{ event.nope.deeper }}"],
)
def test_text_render_errors(source: str) -> None:
    assert render_error(compile_text(source, "d.t"), CTX).startswith("template at d.t: ")


def test_render_error_is_one_short_line_even_with_event_data() -> None:
    event = {**EVENT, "payload": "line\n" * 10_000}
    message = render_error(compile_text("{{ event[event.payload] }}", "d.t"), {"event": event})
    assert message.startswith("template at d.t: ")
    assert len(message) < 400


# -- event data is data --------------------------------------------------------------------


@pytest.mark.parametrize(
    "hostile",
    ["{{ 7*7 }}", "{% for %}", "{% raw %}", "{# x", "{{ event.__class__ }}", "}}{{"],
)
def test_event_text_is_never_evaluated(hostile: str) -> None:
    context = {"event": {**EVENT, "payload": hostile, "hwid": hostile}}
    assert compile_text("{{ event.payload }}", "d.t").render(context) == hostile
    body = {"native": "{{ event.payload }}", "text": "<{{ event.hwid }}>"}
    assert compile_structure(body, BODY).render(context) == {
        "native": hostile,
        "text": f"<{hostile}>",
    }
    slack = compile_text("{{ event.payload }}", "d.t", escape=slack_escape)
    assert slack.render(context) == slack_escape(hostile)


# -- the sandbox ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attack",
    [
        "{{ event.__class__.__mro__ }}",
        "{{ event.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ event.hwid.__class__.__base__.__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ namespace.__init__.__globals__['os'] }}",
        "{{ events.append(1) }}",
        "{{ event.update({'hwid': 'x'}) }}",
        "{{ event.pop('hwid') }}",
        "{{ range(10 ** 9) | list }}",
        "{{ '{0.__class__.__mro__}'.format(event) }}",
        "{{ event.payload.format(event) }}",
        "{{ event.payload.format_map(event) }}",
    ],
)
def test_sandbox_escape_attempts_are_render_errors(attack: str) -> None:
    event = {**EVENT, "payload": "{0.__class__.__mro__}{hwid.__class__}"}
    events = [dict(event)]
    context = {"event": dict(event), "events": events}
    render_error(compile_text(attack, "d.t"), context)
    render_error(compile_structure({"v": attack}, BODY), context)
    assert context["event"] == event
    assert events == [event]


# -- Slack escaping ------------------------------------------------------------------------


def test_slack_escape() -> None:
    assert slack_escape("<!channel> & <http://x|y>") == "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"
    assert slack_escape("&lt;") == "&amp;lt;"
    assert slack_escape("plain @here") == "plain @here"


def test_escape_applies_to_values_not_to_literal_template_text() -> None:
    template = compile_text(
        "<!here> *{{ event.event_name }}* <{{ event.hwid }}|mail> {{ event.payload }} &",
        "destinations.slack.text",
        escape=slack_escape,
    )
    event = {**EVENT, "payload": "<!channel> <http://evil|click> & @here", "hwid": "a>b"}
    assert template.render({"event": event}) == (
        "<!here> *Email Opened* <a&gt;b|mail> "
        "&lt;!channel&gt; &lt;http://evil|click&gt; &amp; @here &"
    )


def test_escape_covers_filters_loops_and_non_strings() -> None:
    template = compile_text(
        "{% for e in events %}{{ e.payload | upper }};{% endfor %}{{ event.campaign_id }}"
        "{{ '<b>' }}",
        "d.t",
        escape=slack_escape,
    )
    events = [{"payload": "<a>"}, {"payload": "&"}]
    assert template.render({"events": events, "event": EVENT}) == "&lt;A&gt;;&amp;;961234&lt;b&gt;"


def test_escape_does_not_hide_undefined() -> None:
    template = compile_text("{{ event.nope }}", "d.t", escape=slack_escape)
    assert "has no attribute 'nope'" in render_error(template, CTX)


def test_unescaped_environment_is_separate() -> None:
    event = {**EVENT, "payload": "<b> & c"}
    escaped = compile_text("{{ event.payload }}", "d.t", escape=slack_escape)
    plain = compile_text("{{ event.payload }}", "d.t")
    assert escaped.render({"event": event}) == "&lt;b&gt; &amp; c"
    assert plain.render({"event": event}) == "<b> & c"


def test_structure_with_escape_escapes_values_keeps_types_and_literals() -> None:
    blocks = [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "<!here> {{ event.payload }}"},
            "fields": "{{ [event.payload, event.campaign_id] }}",
            "native": "{{ event.payload }}",
            "n": "{{ event.campaign_id }}",
        }
    ]
    event = {**EVENT, "payload": "<!channel> & x"}
    out = compile_structure(blocks, "d.blocks", escape=slack_escape).render({"event": event})
    assert out == [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "<!here> &lt;!channel&gt; &amp; x"},
            "fields": ["&lt;!channel&gt; &amp; x", 961234],
            "native": "&lt;!channel&gt; &amp; x",
            "n": 961234,
        }
    ]
