"""Config loading: the shipped file, ${ENV} interpolation, located errors, warnings, units."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from relay import yamlsource
from relay.config import EMPTY, NO_ROUTES, json_schema, load_config, parse_config
from relay.errors import ConfigError, Problem
from relay.units import Duration, Rate

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config" / "relay.yaml"
SLACK_URL = "https://hooks.slack.com/services/T000/B000/slacksecret42"
SECRET_ENV = {
    "SLACK_WEBHOOK_URL": SLACK_URL,
    "CRM_WEBHOOK_URL": "https://crm.example.com/hook",
    "CRM_TOKEN": "crmtoken42",
}

WriteConfig = Callable[..., Path]


def problems_of(path: Path, env: dict[str, str] | None = None) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    return info.value.problems


def line_of(path: Path, needle: str) -> int:
    """The 1-based line of the only line of ``path`` containing ``needle``."""
    hits = [i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits}"
    return hits[0]


# -- the shipped config ----------------------------------------------------------------------


def test_shipped_config_loads_with_an_empty_environment() -> None:
    config = load_config(SHIPPED, env={})
    assert config.summary() == "ok: 3 routes, 3 destinations"
    assert {n: d.enabled for n, d in config.destinations.items()} == {
        "log": True,
        "bounce-alerts": False,
        "crm": False,
    }
    assert config.table.enabled == frozenset({"log"})
    server = config.settings.server
    assert (server.host, server.port, server.path, server.token) == (
        "127.0.0.1",
        8080,
        "/webhooks/pushwoosh",
        "",
    )
    assert config.settings.queue.url == "sqlite:///data/relay.db"
    assert sorted(w.path for w in config.warnings) == [
        "destinations.bounce-alerts",
        "destinations.crm",
    ]
    assert all("is disabled" in w.message for w in config.warnings)


def test_shipped_config_with_secrets_enables_slack_and_crm() -> None:
    config = load_config(SHIPPED, env=SECRET_ENV)
    assert config.summary() == "ok: 3 routes, 3 destinations"
    assert all(d.enabled for d in config.destinations.values())
    assert config.table.enabled == frozenset({"log", "bounce-alerts", "crm"})
    assert config.warnings == ()
    crm = config.destinations["crm"].spec
    assert crm.url == "https://crm.example.com/hook"  # type: ignore[union-attr]
    assert crm.headers == {"Authorization": "Bearer crmtoken42"}  # type: ignore[union-attr]
    assert {SLACK_URL, "Bearer crmtoken42"} <= config.secrets


def test_default_path_comes_from_relay_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from relay.config import default_path

    monkeypatch.delenv("RELAY_CONFIG", raising=False)
    assert default_path() == "config/relay.yaml"
    monkeypatch.setenv("RELAY_CONFIG", "/etc/relay.yaml")
    assert default_path() == "/etc/relay.yaml"


# -- interpolation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scalar", "env", "expected"),
    [
        ("${A}", {"A": "x y"}, "x y"),
        ("pre-${A}-post", {"A": "v"}, "pre-v-post"),
        ("${A:-dflt}", {}, "dflt"),
        ("${A:-dflt}", {"A": ""}, "dflt"),
        ("${A:-dflt}", {"A": "set"}, "set"),
        ("${A-dflt}", {}, "dflt"),
        ("${A-dflt}", {"A": ""}, ""),
        ("${A-dflt}", {"A": "set"}, "set"),
        ("$$", {}, "$"),
        ("a$$b", {}, "a$b"),
        ("$${A}", {"A": "v"}, "${A}"),
        ("$HOME", {"HOME": "/root"}, "$HOME"),  # only the braced form is substituted
        ("${A}", {"A": "p$$q"}, "p$$q"),  # a value from the environment is not re-read
        ("${A}", {"A": "${B}"}, "${B}"),
        # A plain scalar is typed after substitution; a quoted one stays text.
        ("${PORT:-8080}", {}, 8080),
        ("${PORT:-8080}", {"PORT": "9090"}, 9090),
        ("'${PORT:-8080}'", {}, "8080"),
        ('"${PORT:-8080}"', {}, "8080"),
        ("${FLAG:-true}", {}, True),
        ("${RATE:-1.5}", {}, 1.5),
        ("${A}", {"A": "x: b # c"}, "x: b # c"),  # substituted text cannot break the YAML
        ("'#${A}'", {"A": "1"}, "#1"),
        # An empty substitution is "", never null.
        ("${A:-}", {}, ""),
        ("${A-}", {}, ""),
        ("${A-}", {"A": ""}, ""),
        ("'${A:-}'", {}, ""),
    ],
)
def test_interpolation(scalar: str, env: dict[str, str], expected: Any) -> None:
    doc = yamlsource.load(f"key: {scalar}\n", "t.yaml", env)
    assert doc.problems == []
    value = doc.data["key"]
    assert value == expected
    assert type(value) is type(expected)


def test_port_from_environment_is_an_int(write_config: WriteConfig) -> None:
    path = write_config("""
        server:
          port: ${PORT:-8080}
          host: "${HOST:-0.0.0.0}"
          token: ${TOKEN:-}
        """)
    server = load_config(path, env={}).settings.server
    assert (server.port, server.host, server.token) == (8080, "0.0.0.0", "")
    assert load_config(path, env={"PORT": "9000"}).settings.server.port == 9000


@pytest.mark.parametrize("env", [{}, {"TOKEN": ""}], ids=["unset", "empty"])
def test_unset_variable_is_an_error_naming_it_the_file_and_the_line(
    write_config: WriteConfig, env: dict[str, str]
) -> None:
    path = write_config("""
        server:
          host: 127.0.0.1
          token: ${TOKEN}
        """)
    (problem,) = problems_of(path, env)
    assert str(problem) == (
        f"{path}:3: server.token: environment variable TOKEN is not set"
        " (write ${TOKEN:-default} to make it optional)"
    )


def test_every_unset_variable_is_reported(write_config: WriteConfig) -> None:
    path = write_config("""
        server:
          token: ${ONE}
        destinations:
          hook:
            type: http
            url: https://example.com/${TWO}
        """)
    problems = problems_of(path)
    assert [(p.line, p.path) for p in problems] == [
        (2, "server.token"),
        (6, "destinations.hook.url"),
    ]
    assert "ONE" in problems[0].message and "TWO" in problems[1].message


def test_an_alias_is_substituted_once(write_config: WriteConfig) -> None:
    path = write_config("""
        destinations:
          a: &hook
            type: http
            url: https://example.com/${PATH_PART}
          b: *hook
        """)
    config = load_config(path, env={"PATH_PART": "p$$q"})
    urls = {name: d.spec.url for name, d in config.destinations.items()}  # type: ignore[union-attr]
    assert urls == {"a": "https://example.com/p$$q", "b": "https://example.com/p$$q"}


def test_substituted_value_that_is_not_text_says_to_quote_it(write_config: WriteConfig) -> None:
    path = write_config("""
        server:
          token: ${RELAY_TOKEN:-}
        """)
    (problem,) = problems_of(path, {"RELAY_TOKEN": "123456"})
    assert (problem.line, problem.path) == (2, "server.token")
    assert "quote it" in problem.message
    assert "123456" not in str(problem)
    assert load_config(path, env={"RELAY_TOKEN": "abc123"}).settings.server.token == "abc123"


# -- located errors ------------------------------------------------------------------------------

# (id, config text, text on the offending line, the rendering after "file:line: ")
ERROR_CASES = [
    (
        "yaml-syntax",
        """
        server:
          host: a
          port: 1
         junk
        """,
        "junk",
        "invalid YAML: while parsing a block mapping on line 1:"
        " expected <block end>, but found '<scalar>'",
    ),
    (
        "duplicate-key",
        """
        server:
          port: 1
          port: 2
        """,
        "port: 2",
        "server.port: duplicate key (first on line 2)",
    ),
    (
        "top-level-list",
        """
        - server
        - routes
        """,
        "- server",
        "expected a mapping at the top of the file",
    ),
    (
        "unknown-top-level-key",
        """
        server:
          port: 1
        rotues: []
        """,
        "rotues",
        "rotues: unknown key 'rotues'",
    ),
    (
        "unknown-server-key",
        """
        server:
          host: 127.0.0.1
          prot: 8080
        """,
        "prot",
        "server.prot: unknown key 'prot'",
    ),
    (
        "unknown-destination-key",
        """
        destinations:
          crm:
            type: http
            url: https://example.com/
            header: {X: y}
        """,
        "header:",
        "destinations.crm.header: unknown key 'header'",
    ),
    (
        "unknown-route-key",
        """
        destinations:
          log: {type: log}
        routes:
          - name: all
            to: [log]
            stpo: true
        """,
        "stpo",
        "routes[0].stpo: unknown key 'stpo'",
    ),
    (
        "unknown-retry-key",
        """
        destinations:
          log:
            type: log
            retry:
              max_attempts: 3
              max_delays: 10m
        """,
        "max_delays",
        "destinations.log.retry.max_delays: unknown key 'max_delays'",
    ),
    (
        "wrong-type",
        """
        server:
          host: 127.0.0.1
          port: "abc"
        """,
        "port:",
        "server.port: Expected `int`, got `str`",
    ),
    (
        "port-out-of-range",
        """
        server:
          port: 70000
        """,
        "port:",
        "server.port: Expected `int` <= 65535",
    ),
    (
        "bad-duration",
        """
        destinations:
          crm:
            type: http
            url: https://example.com/
            timeout: 10 seconds
        """,
        "timeout",
        "destinations.crm.timeout: expected a duration like 500ms, 10s, 5m, 24h; got '10 seconds'",
    ),
    (
        "duration-without-unit",
        """
        server:
          shutdown_grace: 10
        """,
        "shutdown_grace",
        "server.shutdown_grace: expected a duration like 500ms, 10s, 5m, 24h; got 10",
    ),
    (
        "bad-rate",
        """
        destinations:
          log:
            type: log
            rate_limit: 5 per second
        """,
        "rate_limit",
        "destinations.log.rate_limit: expected a rate like 1/s, 30/m or 1000/h; got '5 per second'",
    ),
    (
        "zero-rate",
        """
        destinations:
          log:
            type: log
            rate_limit: 0/s
        """,
        "rate_limit",
        "destinations.log.rate_limit: expected a rate like 1/s, 30/m or 1000/h; got '0/s'",
    ),
    (
        "unknown-destination-type",
        """
        destinations:
          mail:
            type: smtp
        """,
        "smtp",
        "destinations.mail.type: Invalid value 'smtp' (expected one of: slack, http, log)",
    ),
    (
        "missing-type",
        """
        destinations:
          mail:
            url: https://example.com/
        """,
        "mail:",
        "destinations.mail: missing required key 'type'",
    ),
    (
        "slack-without-url",
        """
        destinations:
          alerts:
            type: slack
        """,
        "alerts:",
        "destinations.alerts: missing required key 'url'",
    ),
    (
        "http-without-url",
        """
        destinations:
          crm:
            type: http
            method: POST
        """,
        "crm:",
        "destinations.crm: missing required key 'url'",
    ),
    (
        "invalid-url",
        """
        destinations:
          crm:
            type: http
            url: ftp://x
        """,
        "ftp://",
        "destinations.crm.url: expected an http:// or https:// URL",
    ),
    (
        "url-without-host",
        """
        destinations:
          alerts:
            type: slack
            url: https:///services/x
        """,
        "https:///",
        "destinations.alerts.url: expected an http:// or https:// URL",
    ),
    (
        "bad-method",
        """
        destinations:
          crm:
            type: http
            url: https://example.com/
            method: FETCH
        """,
        "FETCH",
        "destinations.crm.method: Invalid enum value 'FETCH'",
    ),
    (
        "bad-destination-name",
        """
        destinations:
          "my crm":
            type: log
        """,
        "my crm",
        "destinations.my crm: destination names use letters, digits, _ . -",
    ),
    (
        "unknown-destination-in-route",
        """
        destinations:
          crm: {type: log}
        routes:
          - name: first
            to: [crm]
          - name: second
            to:
              - crn
        """,
        "- crn",
        "routes[1].to[0]: unknown destination 'crn' (did you mean 'crm'?)",
    ),
    (
        "unknown-destination-no-hint",
        """
        destinations:
          crm: {type: log}
        routes:
          - name: first
            to: [crm, zzzzzz]
        """,
        "zzzzzz",
        "routes[0].to[1]: unknown destination 'zzzzzz'",
    ),
    (
        "route-without-to",
        """
        routes:
          - name: first
        """,
        "name: first",
        "routes[0]: missing required key 'to'",
    ),
    (
        "duplicate-route-names",
        """
        destinations:
          log: {type: log}
        routes:
          - {name: same, to: [log]}
          - name: same
            to: [log]
        """,
        "- name: same",
        "routes[1].name: duplicate route name 'same' (also routes[0])",
    ),
    (
        "unknown-operator",
        """
        destinations:
          log: {type: log}
        routes:
          - name: opened
            when:
              event_name:
                inn: [Email Opened]
            to: [log]
        """,
        "inn:",
        "routes[0].when.event_name.inn: unknown operator 'inn' (did you mean 'in'?);"
        " valid: in, not_in, regex, glob, gt, gte, lt, lte, exists, max_length",
    ),
    (
        "bad-regex",
        """
        destinations:
          log: {type: log}
        routes:
          - name: gmail
            when:
              platform: Email
              hwid: {regex: "(gmail"}
            to: [log]
        """,
        "regex",
        "routes[0].when.hwid.regex: invalid regular expression: missing ): (gmail;"
        " the syntax is RE2's: https://github.com/google/re2/wiki/Syntax",
    ),
    (
        "boolean-key-in-when",
        """
        destinations:
          log: {type: log}
        routes:
          - name: switch
            when:
              on: 1
            to: [log]
        """,
        "when:",
        "routes[0].when: Expected `str`, got `bool` for a key; quote the key",
    ),
    (
        "template-syntax-error",
        """
        destinations:
          crm:
            type: http
            url: https://example.com/
            body:
              email: "{{ event.hwid }}"
              name: "{{ event.event_name "
        """,
        "name:",
        "destinations.crm.body.name: template syntax error: unexpected end of template,"
        " expected 'end of print statement'.",
    ),
    (
        "template-unknown-name",
        """
        destinations:
          crm:
            type: http
            url: https://example.com/
            body:
              ids:
                - "{{ event.message_id }}"
                - "{{ evnt.hwid }}"
        """,
        "evnt",
        "destinations.crm.body.ids[1]: unknown name 'evnt' in template"
        " (names: event, events, group, destination, now)",
    ),
    (
        "slack-text-unknown-name",
        """
        destinations:
          alerts:
            type: slack
            url: https://hooks.slack.com/services/x
            text: "{{ evnt.hwid }}"
        """,
        "text:",
        "destinations.alerts.text: unknown name 'evnt' in template"
        " (names: event, events, group, destination, now)",
    ),
    (
        "bad-signing-secret",
        """
        destinations:
          crm:
            type: http
            url: https://example.com/
            signing_secret: hunter2
        """,
        "signing_secret",
        "destinations.crm.signing_secret: expected a Standard Webhooks secret 'whsec_<base64>'",
    ),
    (
        "short-signing-secret",
        """
        destinations:
          crm:
            type: http
            url: https://example.com/
            signing_secret: whsec_c2hvcnQ=
        """,
        "signing_secret",
        "destinations.crm.signing_secret: the signing key is shorter than 16 bytes",
    ),
    (
        "group-wait-zero",
        """
        destinations:
          log: {type: log}
        routes:
          - name: digest
            to: [log]
            group:
              wait: 0
        """,
        "wait:",
        "routes[0].group.wait: must be a positive duration",
    ),
    (
        "recursive-alias",
        """
        server: &loop
          inner: *loop
        """,
        "&loop",
        "invalid YAML: found an alias to an anchor that contains it",
    ),
]


@pytest.mark.parametrize(
    ("text", "needle", "rendering"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_config_error_names_file_line_and_path(
    write_config: WriteConfig, text: str, needle: str, rendering: str
) -> None:
    path = write_config(text)
    problems = problems_of(path)
    expected = f"{path}:{line_of(path, needle)}: {rendering}"
    assert [str(p) for p in problems] == [expected]
    assert str(ConfigError(problems)) == expected


def test_every_problem_is_reported_at_once(write_config: WriteConfig) -> None:
    path = write_config("""
        destinations:
          a:
            type: smtp
          b:
            type: slack
            url: https://hooks.slack.com/services/x
            txt: hi
        """)
    assert [(p.line, p.path) for p in problems_of(path)] == [
        (line_of(path, "smtp"), "destinations.a.type"),
        (line_of(path, "txt:"), "destinations.b.txt"),
    ]


def test_route_problems_are_all_reported(write_config: WriteConfig) -> None:
    path = write_config("""
        destinations:
          crm: {type: log}
        routes:
          - name: a
            to: [crn]
          - name: a
            when: {event_name: {regex: "["}}
            to: [crm]
        """)
    rendered = [str(p) for p in problems_of(path)]
    assert rendered == [
        f"{path}:5: routes[0].to[0]: unknown destination 'crn' (did you mean 'crm'?)",
        f"{path}:6: routes[1].name: duplicate route name 'a' (also routes[0])",
        f"{path}:7: routes[1].when.event_name.regex: invalid regular expression: missing ]: [;"
        " the syntax is RE2's: https://github.com/google/re2/wiki/Syntax",
    ]


def test_missing_file_is_one_problem_without_a_line(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path / "nope.yaml")
    assert str(problem) == f"{tmp_path / 'nope.yaml'}: config file not found"


def test_directory_is_not_a_config_file(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path)
    assert str(problem).startswith(f"{tmp_path}: cannot read config file: ")


EMPTY_DOCUMENTS = {
    "no-bytes": "",
    "newline": "\n",
    "whitespace": "  \n\t\n   ",
    "comments": "# yaml-language-server: $schema=./relay.schema.json\n# routes: []\n",
    "document-marker": "---\n",
    "markers-and-comment": "--- # nothing\n...\n",
    "null": "null\n",
    "tilde": "~",
    "byte-order-mark": "\ufeff\n# c\n",
    "crlf": "\r\n# c\r\n",
}


@pytest.mark.parametrize("text", EMPTY_DOCUMENTS.values(), ids=EMPTY_DOCUMENTS.keys())
def test_an_empty_config_is_an_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "relay.yaml"
    path.write_bytes(text.encode())
    expected = [f"{path}: {EMPTY}"]
    assert [str(p) for p in problems_of(path)] == expected
    with pytest.raises(ConfigError) as info:
        parse_config(text, str(path), env={})
    assert [str(p) for p in info.value.problems] == expected


def test_an_explicit_empty_mapping_is_a_config_of_defaults(write_config: WriteConfig) -> None:
    path = write_config("{}\n")
    config = load_config(path, env={})
    assert config.summary() == "ok: 0 routes, 0 destinations"
    assert config.settings.server.port == 8080
    assert [str(w) for w in config.warnings] == [f"{path}:1: routes: {NO_ROUTES}"]


def test_no_route_is_allowed_with_a_warning_at_its_line(write_config: WriteConfig) -> None:
    path = write_config("""
        server: {port: 8081}
        destinations:
          log: {type: log}
        routes: []
        """)
    config = load_config(path, env={})
    assert config.summary() == "ok: 0 routes, 1 destinations"
    assert [str(w) for w in config.warnings] == [f"{path}:4: routes: {NO_ROUTES}"]
    assert "every event is accepted and delivered nowhere" in NO_ROUTES


def test_allow_no_routes_says_no_route_is_meant(write_config: WriteConfig) -> None:
    path = write_config("""
        destinations:
          log: {type: log}
        reload: {allow_no_routes: true}
        """)
    config = load_config(path, env={})
    assert config.warnings == ()
    assert config.settings.reload.allow_no_routes is True
    assert config.settings.reload.allow_removing_token is False


def test_the_reload_section_is_strict(write_config: WriteConfig) -> None:
    path = write_config("""
        reload:
          allow_removing_tokens: true
          allow_no_routes: "yes"
        """)
    assert [str(p) for p in problems_of(path)] == [
        f"{path}:2: reload.allow_removing_tokens: unknown key 'allow_removing_tokens'"
    ]
    path = write_config("reload: {allow_no_routes: 'yes'}\n")
    assert [str(p) for p in problems_of(path)] == [
        f"{path}:1: reload.allow_no_routes: Expected `bool`, got `str`"
    ]


def test_a_file_that_is_not_utf8_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "relay.yaml"
    path.write_bytes(b"server: {host: \xff}\n")
    (problem,) = problems_of(path)
    assert str(problem).startswith(f"{path}: cannot read config file: 'utf-8' codec can't decode")


def test_deeply_nested_yaml_is_an_error_not_a_crash() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("a: " + "[" * 3000 + "]" * 3000, "deep.yaml", env={})
    assert [str(p) for p in info.value.problems] == ["deep.yaml: invalid YAML: nested too deeply"]


# -- warnings ------------------------------------------------------------------------------------


def test_undocumented_event_name_warns_with_a_suggestion(write_config: WriteConfig) -> None:
    path = write_config("""
        destinations:
          log: {type: log}
        routes:
          - name: bounces
            when:
              event_name: Email Bounce
            to: [log]
          - name: engagement
            when:
              event_name: {in: [Email Opened, Email Opend]}
            to: [log]
          - name: pushes
            when: {event_name: Push Sent}
            to: [log]
        """)
    config = load_config(path, env={})
    rendered = [str(w) for w in config.warnings]
    assert rendered[0] == (
        f"{path}:{line_of(path, 'Email Bounce')}: routes[0].when.event_name: 'Email Bounce' is"
        " not an event name Pushwoosh documents (did you mean 'Email Bounced'?); it still"
        " matches events that carry it"
    )
    assert rendered[1].startswith(
        f"{path}:{line_of(path, 'Email Opend')}: routes[1].when.event_name.in[1]: 'Email Opend'"
    )
    assert "did you mean 'Email Opened'" in rendered[1]
    assert rendered[2].startswith(f"{path}:13: routes[2].when.event_name: 'Push Sent'")
    assert "did you mean" not in rendered[2]
    assert len(rendered) == 3
    # A warning is not an error: the route still matches that name.
    assert config.table.plan({"event_name": "Email Bounce"}).routes == ("bounces",)


def test_disabled_destination_warns(write_config: WriteConfig) -> None:
    path = write_config("""
        destinations:
          log:
            type: log
            enabled: false
          alerts:
            type: slack
            url: ${SLACK_WEBHOOK_URL:-}
        routes:
          - name: all
            to: [log, alerts]
        """)
    config = load_config(path, env={})
    assert [str(w) for w in config.warnings] == [
        f"{path}:2: destinations.log: destination 'log' is disabled (enabled: false);"
        " routes to it send nothing",
        f"{path}:5: destinations.alerts: destination 'alerts' is disabled (its url is empty);"
        " routes to it send nothing",
    ]
    assert config.table.enabled == frozenset()
    assert config.table.plan({"event_name": "x"}).targets == ()


# -- durations and rates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("5m", 300.0),
        ("24h", 86400.0),
        ("7d", 604800.0),
        (0, 0.0),
        ("1.5s", 1.5),
        (" 2m ", 120.0),
    ],
)
def test_duration(text: object, seconds: float) -> None:
    assert Duration.parse(text) == seconds


@pytest.mark.parametrize("text", ["10", 10, "10 seconds", "-1s", "1w", "", True, None, "s"])
def test_bad_duration(text: object) -> None:
    with pytest.raises(ValueError, match="expected a duration like 500ms, 10s"):
        Duration.parse(text)


@pytest.mark.parametrize(
    ("text", "per_second"), [("1/s", 1.0), ("30/m", 0.5), ("1000/h", 1000 / 3600), ("2 / s", 2.0)]
)
def test_rate(text: str, per_second: float) -> None:
    rate = Rate.parse(text)
    assert rate == pytest.approx(per_second)
    assert Rate.parse(str(rate)) == pytest.approx(rate)


@pytest.mark.parametrize("text", ["0/s", "1/d", "1", 1, "fast", "/s"])
def test_bad_rate(text: object) -> None:
    with pytest.raises(ValueError, match="expected a rate like 1/s"):
        Rate.parse(text)


def test_durations_and_rates_in_a_config(write_config: WriteConfig) -> None:
    path = write_config("""
        server:
          dedupe_window: 0
          shutdown_grace: 500ms
        destinations:
          crm:
            type: http
            url: https://example.com/
            timeout: 5m
            rate_limit: 30/m
            retry: {max_attempts: 3, max_age: 7d, initial_delay: 10s, max_delay: 24h}
          alerts:
            type: slack
            url: https://hooks.slack.com/services/x
        """)
    settings = load_config(path, env={}).settings
    assert (settings.server.dedupe_window, settings.server.shutdown_grace) == (0.0, 0.5)
    crm = settings.destinations["crm"]
    assert (crm.timeout, crm.rate_limit) == (300.0, 0.5)
    assert (
        crm.retry.max_attempts,
        crm.retry.max_age,
        crm.retry.initial_delay,
        crm.retry.max_delay,
    ) == (3, 604800.0, 10.0, 86400.0)
    # Slack allows one message per second per webhook: the default rate limit.
    assert settings.destinations["alerts"].rate_limit == 1.0


# -- JSON Schema ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_shipped_config_validates_against_the_schema(
    validator: jsonschema.Draft202012Validator,
) -> None:
    assert list(validator.iter_errors(yaml.safe_load(SHIPPED.read_text()))) == []


@pytest.mark.parametrize(
    "patch",
    [
        {"servr": {}},
        {"server": {"prot": 1}},
        {"server": {"dedupe_window": "10 seconds"}},
        {"destinations": {"x": {"type": "smtp"}}},
        {"destinations": {"x": {"type": "slack"}}},
        {"destinations": {"x": {"type": "log", "rate_limit": "fast"}}},
        {"routes": [{"name": "r"}]},
    ],
    ids=["top", "server", "duration", "type", "no-url", "rate", "route-without-to"],
)
def test_invalid_config_fails_the_schema(
    validator: jsonschema.Draft202012Validator, patch: dict[str, Any]
) -> None:
    data = yaml.safe_load(SHIPPED.read_text())
    for key, value in patch.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and key in data else value
    assert not validator.is_valid(data)


def test_schema_defaults_are_written_as_in_the_config() -> None:
    defs = json_schema()["$defs"]
    assert defs["Server"]["properties"]["dedupe_window"]["default"] == "1d"
    assert defs["Server"]["properties"]["shutdown_grace"]["default"] == "10s"
    assert defs["Retry"]["properties"]["max_delay"]["default"] == "10m"
    assert defs["SlackDestination"]["properties"]["rate_limit"]["default"] == "1/s"
