"""The console's pure parts: `when` read aloud, chart geometry, query parameters, settings."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.config import ConfigError, parse_config
from relay.console import charts, params, views
from relay.errors import AdminRefused
from relay.reload import weakenings

NOW = 1_800_000_000.0


# -- `when` as a sentence -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("when", "sentence"),
    [
        (None, "every event"),
        ({}, "every event"),
        ({"event_name": "Email Bounced"}, 'event_name = "Email Bounced"'),
        ({"user_id": 1538}, "user_id = 1538"),
        (
            {"event_name": {"in": ["Email Opened", "Email Link Clicked"]}, "platform": "Email"},
            'event_name in ["Email Opened", "Email Link Clicked"] and platform = "Email"',
        ),
        ({"campaign_id": {"exists": True}}, "campaign_id is present"),
        ({"campaign_id": {"exists": False}}, "campaign_id is missing"),
        ({"message_id": {"gt": 5, "lte": 9}}, "message_id > 5 and message_id ≤ 9"),
        ({"hwid": {"regex": "@example\\.com$"}}, 'hwid matches regex "@example\\\\.com$"'),
        ({"hwid": {"glob": "*@x.org"}}, 'hwid matches glob "*@x.org"'),
        ({"hwid": {"max_length": 254}}, "hwid is at most 254 characters"),
        ({"platform": {"not_in": ["Push"]}}, 'platform not in ["Push"]'),
        (
            {"any": [{"event_name": "A"}, {"not": {"platform": "Email"}}]},
            'any of [(event_name = "A") or (not (platform = "Email"))]',
        ),
        ({"all": [{"a": 1}, {"b": 2}]}, "all of [(a = 1) and (b = 2)]"),
    ],
)
def test_when_is_read_aloud(when: object, sentence: str) -> None:
    assert views.describe_when(when) == sentence


def test_routes_are_listed_in_file_order_with_their_options() -> None:
    config = parse_config(
        textwrap.dedent("""
        destinations: {log: {type: log}}
        routes:
          - {name: b, to: [log], stop: true}
          - name: a
            when: {event_name: X}
            to: [log]
            group: {by: [campaign_id], wait: 30s}
          - {name: c, to: [log], order_by: "{{ event.hwid }}"}
        """),
        "r.yaml",
        {},
    )
    b, a, c = views.routes(config)
    assert (b.name, b.when, b.stop, b.group) == ("b", "every event", True, None)
    assert a.group == "by campaign_id; wait 30s, interval 5m, at most 500 events"
    assert c.order_by == "{{ event.hwid }}" and views.route_of(config, "zz") is None


def test_samples_are_read_only_by_the_names_listed(tmp_path: object) -> None:
    names = views.samples()
    assert "email-bounced.json" in names and "batch.json" in names
    assert views.sample_text("email-bounced.json", views.EXAMPLES)
    for name in ("../pyproject.toml", "/etc/passwd", "", "email-bounced.json/"):
        assert views.sample_text(name) is None


# -- charts ---------------------------------------------------------------------------------
def test_bars_stack_and_scale_to_a_round_top() -> None:
    minutes = [f"2026-11-28T10:0{i}:00.000Z" for i in range(3)]
    chart = charts.stacked(
        "t",
        minutes,
        [charts.Series("ok", "ok", [3, 0, 1]), charts.Series("dead", "dead", [2, 0, 0])],
        width=340,
        height=124,
        tick_every=2,
    )
    assert chart.total == 6 and chart.legend == (("ok", "ok", 4), ("dead", "dead", 2))
    plot_h = 124 - charts.BOTTOM - charts.TOP
    first_ok, first_dead, last_ok = chart.rects
    assert first_ok.height == round(plot_h * 3 / 5, 1)  # the top is 5, the next round number
    assert first_dead.y + first_dead.height == pytest.approx(first_ok.y, abs=0.2)  # stacked on it
    assert last_ok.x == 40 + 2 * 100 and first_ok.title == "10:00 UTC: 3 ok"
    assert [t.text for t in chart.ticks] == ["10:00", "10:02"]
    assert [g.text for g in chart.grid] == ["0", "5"]


@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=90))
def test_bars_always_fit_the_frame(counts: list[int]) -> None:
    minutes = [f"2026-11-28T10:{i % 60:02d}:00.000Z" for i in range(len(counts))]
    chart = charts.stacked("t", minutes, [charts.Series("n", "n", counts)])
    for r in chart.rects:
        assert r.y >= charts.TOP - 0.1 and r.y + r.height <= chart.height - charts.BOTTOM + 0.1
        assert r.x + r.width <= chart.width + 0.1 and r.height > 0


@pytest.mark.parametrize(
    ("n", "top"), [(0, 1), (1, 1), (2, 2), (3, 5), (7, 10), (11, 20), (999, 1000)]
)
def test_nice_ceiling(n: int, top: int) -> None:
    assert charts.nice_ceiling(n) == top


# -- query parameters -----------------------------------------------------------------------
def test_a_listing_query_is_read_into_a_filter_and_links_keep_it() -> None:
    q = params.event_query(
        [
            ("destination", "crm"),
            ("state", "dead"),
            ("hwid", " A@B.C "),
            ("since", "1h"),
            ("limit", "20"),
        ],
        NOW,
    )
    assert q.filter.destination == "crm" and str(q.filter.state) == "dead"
    assert q.filter.hwid == "A@B.C" and q.filter.since == NOW - 3600 and q.limit == 20
    assert q.link(before="0abc") == "destination=crm&state=dead&hwid=A%40B.C&since=1h&before=0abc"
    assert q.link(state=None) == "destination=crm&hwid=A%40B.C&since=1h"


names = st.sampled_from([*params.EVENT_PARAMS, "x", "event-name", ""])


@given(st.lists(st.tuples(names, st.text(max_size=40)), max_size=6))
def test_no_query_breaks_the_parser_other_than_with_a_400(pairs: list[tuple[str, str]]) -> None:
    try:
        params.event_query(pairs, NOW)
    except AdminRefused as exc:
        assert exc.status == 400 and exc.reason
    try:
        params.dead_query(pairs)
    except AdminRefused as exc:
        assert exc.status == 400 and exc.reason


@given(st.text(max_size=40))
def test_any_time_text_is_a_time_or_a_400(text: str) -> None:
    try:
        value = params.instant("since", text, NOW)
    except AdminRefused as exc:
        assert exc.status == 400
    else:
        assert value is None or 0 <= value <= params.LATEST


# -- settings -------------------------------------------------------------------------------
def config(server: str) -> str:
    rest = "destinations: {log: {type: log}}\nroutes: [{name: a, to: [log]}]\n"
    return f"server: {{{server}}}\n{rest}"


@pytest.mark.parametrize(
    "path", ["/api", "/api/v1", "/webhooks/pushwoosh", "/metrics", "/schema/x", "/webhooks"]
)
def test_the_console_may_not_take_a_path_the_relay_serves(path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config(f"console_path: {path}"), "r.yaml", {})
    assert "server.console_path" in str(info.value) and "overlaps" in str(info.value)


def test_the_admin_token_is_a_secret_and_the_console_path_configurable() -> None:
    cfg = parse_config(
        config('admin_token: "adm-123456", console_path: /ops/console'), "r.yaml", {}
    )
    assert "adm-123456" in cfg.secrets and cfg.masker("x adm-123456 y") == "x *** y"
    assert cfg.settings.server.console_path == "/ops/console"
    for bad in ("console", "/console/", "/"):
        with pytest.raises(ConfigError):
            parse_config(config(f'console_path: "{bad}"'), "r.yaml", {})


def test_a_reload_never_silently_drops_the_admin_token() -> None:
    running = parse_config(config('admin_token: "adm-123456"'), "r.yaml", {})
    [refusal] = weakenings(running, parse_config(config("port: 8080"), "r.yaml", {}))
    assert refusal.path == "server.admin_token" and "allow_removing_token" in refusal.message
    changed = parse_config(config('admin_token: "adm-654321"'), "r.yaml", {})
    assert weakenings(running, changed) == []  # a new token is not a removal
    consent = (
        "server: {}\nreload: {allow_removing_token: true}\n" + config("")[len("server: {}\n") :]
    )
    assert weakenings(running, parse_config(consent, "r.yaml", {})) == []
