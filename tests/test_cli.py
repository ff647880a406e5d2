"""The `relay` command line as a user runs it: exit codes, stdout, one-line errors.

Each test starts a real process (``python -m relay``), so keep their number small.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from relay import __version__

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SHIPPED = ROOT / "config" / "relay.yaml"
UINT64_MAX = 2**64 - 1

SLACK_URL = "https://hooks.slack.com/services/T0SECRET/B0SECRET/slackpathsecret"
CRM_TOKEN = "crm-token-s3cret"
CRM_KEY = "query-key-s3cret"
SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRETS = (
    SLACK_URL,
    "slackpathsecret",
    CRM_TOKEN,
    CRM_KEY,
    SIGNING_SECRET,
    SIGNING_SECRET.removeprefix("whsec_"),
)
_LEAKY = ("SLACK_WEBHOOK_URL", "CRM_WEBHOOK_URL", "CRM_TOKEN")


def run(
    *args: str,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    exe: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the CLI with no RELAY_* (or destination secret) variables from the outer shell."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_") and k not in _LEAKY}
    proc = subprocess.run(
        [*(exe or [sys.executable, "-m", "relay"]), *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def log_routes(n: int) -> str:
    """A valid config of ``n`` routes to one log destination."""
    routes = "".join(f"  - {{name: r{i}, to: [log]}}\n" for i in range(n))
    return f"destinations:\n  log: {{type: log}}\nroutes:\n{routes}"


# -- relay check ---------------------------------------------------------------------------------


def test_check_shipped_config_with_an_empty_environment() -> None:
    proc = run("check")
    assert (proc.returncode, proc.stdout) == (0, "ok: 3 routes, 3 destinations\n")
    warnings = proc.stderr.splitlines()
    assert len(warnings) == 2
    assert all(w.startswith("warning: config/relay.yaml:") and "is disabled" in w for w in warnings)


def test_check_shipped_config_with_secrets_set() -> None:
    env = {
        "SLACK_WEBHOOK_URL": SLACK_URL,
        "CRM_WEBHOOK_URL": "https://crm.example.com/h",
        "CRM_TOKEN": CRM_TOKEN,
    }
    proc = run("check", "--config", str(SHIPPED), env=env, cwd=Path("/"))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "ok: 3 routes, 3 destinations\n", "")


def test_check_invalid_config_prints_every_problem_on_stderr(tmp_path: Path) -> None:
    write(
        tmp_path / "relay.yaml",
        """
        destinations:
          crm: {type: log}
        routes:
          - name: engagement
            when:
              event_name: {in: [Email Opened]}
              hwid: {regex: "(gmail"}
            to: [crm]
          - name: bounces
            to:
              - crm
              - crn
        """,
    )
    proc = run("check", "--config", "relay.yaml", cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.splitlines() == [
        "error: relay.yaml:7: routes[0].when.hwid.regex: invalid regular expression:"
        " missing ): (gmail; the syntax is RE2's: https://github.com/google/re2/wiki/Syntax",
        "error: relay.yaml:12: routes[1].to[1]: unknown destination 'crn' (did you mean 'crm'?)",
    ]


def test_check_warns_about_undocumented_event_names(tmp_path: Path) -> None:
    write(
        tmp_path / "relay.yaml",
        """
        destinations:
          log: {type: log}
        routes:
          - name: bounces
            when: {event_name: Email Bounce}
            to: [log]
        """,
    )
    proc = run("check", "--config", "relay.yaml", cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (0, "ok: 1 routes, 1 destinations\n")
    assert proc.stderr == (
        "warning: relay.yaml:5: routes[0].when.event_name: 'Email Bounce' is not an event"
        " name Pushwoosh documents (did you mean 'Email Bounced'?); it still matches events"
        " that carry it\n"
    )


RE2 = "the syntax is RE2's: https://github.com/google/re2/wiki/Syntax"


def test_check_names_each_pattern_re2_refuses_on_one_line(tmp_path: Path) -> None:
    config = r"""
        destinations:
          log: {type: log}
        routes:
          - name: python-only
            when:
              hwid: {regex: '^(\w+)@\1$'}
              user_id: {regex: 'a(?=b)'}
              payload: {regex: "end\\Z"}
            to: [log]
          - name: too-large
            when:
              any:
                - hwid: {regex: '(a{1000}){1000}'}
                - hwid: {regex: '\pL{100}'}
                - hwid: {glob: "QUESTIONS"}
            to: [log]
          - name: fine
            when: {hwid: {regex: '(?i)^[a-z0-9._%+-]+@(gmail|yahoo)\.com$', glob: "*@*"}}
            to: [log]
        """
    write(tmp_path / "relay.yaml", config.replace("QUESTIONS", "?" * 1000))
    proc = run("check", "--config", "relay.yaml", cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (1, "")
    at = "error: relay.yaml:"
    assert proc.stderr.splitlines() == [
        f"{at}6: routes[0].when.hwid.regex: invalid regular expression:"
        f" invalid escape sequence: \\1 (RE2 has no backreferences); {RE2}",
        f"{at}7: routes[0].when.user_id.regex: invalid regular expression:"
        f" invalid perl operator: (?= (RE2 has no lookahead or lookbehind); {RE2}",
        f"{at}8: routes[0].when.payload.regex: invalid regular expression:"
        f" invalid escape sequence: \\Z (RE2 writes the end of the text \\z); {RE2}",
        f"{at}13: routes[1].when.any[0].hwid.regex: invalid regular expression:"
        f" invalid repetition size: {{1000}}; {RE2}",
        f"{at}14: routes[1].when.any[1].hwid.regex: regular expression too large: it compiles"
        " to 119604 RE2 instructions; at most 2000 RE2 instructions are allowed (a bounded"
        f" repeat like {{1000}} or a Unicode class like \\pL makes many); {RE2}",
        f"{at}15: routes[1].when.any[2].hwid.glob: glob pattern too large: it compiles to 7004"
        " RE2 instructions; at most 2000 RE2 instructions are allowed (each ? and * makes"
        " several)",
    ]


def test_check_refuses_an_empty_config_on_one_line(tmp_path: Path) -> None:
    (tmp_path / "relay.yaml").write_text("# every line commented out\n# routes: []\n")
    proc = run("check", "--config", "relay.yaml", cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == (
        "error: relay.yaml: the config file is empty (only blank lines, comments or null);"
        " it would run with no token, no route and no destination\n"
    )


def test_check_warns_about_a_config_without_routes(tmp_path: Path) -> None:
    write(tmp_path / "relay.yaml", "destinations:\n  log: {type: log}\n")
    proc = run("check", "--config", "relay.yaml", cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (0, "ok: 0 routes, 1 destinations\n")
    assert proc.stderr == (
        "warning: relay.yaml:1: routes: no route: every event is accepted and delivered"
        " nowhere (set reload.allow_no_routes: true if that is meant)\n"
    )


@pytest.mark.parametrize(
    ("flag", "env_var", "routes"),
    [(False, False, 1), (False, True, 2), (True, True, 3)],
    ids=["default-path", "RELAY_CONFIG", "flag-beats-RELAY_CONFIG"],
)
def test_config_path_precedence(tmp_path: Path, flag: bool, env_var: bool, routes: int) -> None:
    write(tmp_path / "config" / "relay.yaml", log_routes(1))
    write(tmp_path / "from-env.yaml", log_routes(2))
    write(tmp_path / "from-flag.yaml", log_routes(3))
    args = ["check", *(["--config", "from-flag.yaml"] if flag else [])]
    env = {"RELAY_CONFIG": "from-env.yaml"} if env_var else {}
    proc = run(*args, cwd=tmp_path, env=env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        0,
        f"ok: {routes} routes, 1 destinations\n",
        "",
    )


@pytest.mark.parametrize(
    ("args", "shown"),
    [(["--config", "nope.yaml"], "nope.yaml"), ([], "config/relay.yaml")],
    ids=["flag", "default"],
)
def test_missing_config_file_is_one_line(tmp_path: Path, args: list[str], shown: str) -> None:
    proc = run("check", *args, cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        1,
        "",
        f"error: {shown}: config file not found\n",
    )


@pytest.mark.parametrize(
    "args",
    [["check", "--bogus"], ["route"], ["serve", "--port", "eighty"], ["frobnicate"]],
    ids=["unknown-flag", "missing-FILE", "bad-port", "unknown-command"],
)
def test_bad_command_line_exits_2_with_one_line(args: list[str]) -> None:
    proc = run(*args)
    assert (proc.returncode, proc.stdout) == (2, "")
    (line,) = proc.stderr.splitlines()
    assert line.startswith("relay") and ": error: " in line


# -- relay route ---------------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A local port that notices any connection made to it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock


def test_route_prints_masked_requests_and_sends_nothing(
    tmp_path: Path, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    write(
        tmp_path / "relay.yaml",
        f"""
        server:
          token: ${{RELAY_TOKEN}}
        destinations:
          log: {{type: log}}
          alerts:
            type: slack
            url: ${{SLACK_WEBHOOK_URL}}
            text: "{{{{ event.event_name }}}} for {{{{ event.hwid }}}}"
          crm:
            type: http
            url: http://127.0.0.1:{port}/hook?api_key=${{CRM_KEY}}&v=1
            headers:
              Authorization: "Bearer ${{CRM_TOKEN}}"
              X-Api-Key: ${{CRM_KEY}}
              Accept: application/json
            signing_secret: ${{SIGNING_SECRET}}
            body:
              email: "{{{{ event.hwid }}}}"
              at: "{{{{ event.timestamp }}}}"
        routes:
          - name: opened-to-log
            when: {{event_name: Email Opened}}
            to: [log]
          - name: bounces
            when: {{event_name: Email Bounced}}
            to: [alerts, crm]
        """,
    )
    env = {
        "SLACK_WEBHOOK_URL": SLACK_URL,
        "CRM_TOKEN": CRM_TOKEN,
        "CRM_KEY": CRM_KEY,
        "SIGNING_SECRET": SIGNING_SECRET,
        "RELAY_TOKEN": "relay-token-s3cret",
    }
    proc = run(
        "route",
        "--config",
        "relay.yaml",
        str(EXAMPLES / "email-bounced.json"),
        cwd=tmp_path,
        env=env,
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    for secret in (*SECRETS, "relay-token-s3cret"):
        assert secret not in proc.stdout
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected: a dry run sends nothing

    result = json.loads(proc.stdout)
    assert result["event_name"] == "Email Bounced"
    assert result["routes"] == ["bounces"]
    slack, crm = result["deliveries"]
    assert {k: slack[k] for k in ("route", "destination", "type")} == {
        "route": "bounces",
        "destination": "alerts",
        "type": "slack",
    }
    assert slack["request"]["method"] == "POST"
    assert slack["request"]["url"] == "https://hooks.slack.com/***"
    assert slack["request"]["body"] == {"text": "Email Bounced for no-such-user@example.org"}
    assert slack["request"]["headers"]["Content-Type"] == "application/json"

    request = crm["request"]
    assert (crm["destination"], crm["type"]) == ("crm", "http")
    assert (request["method"], request["url"]) == (
        "POST",
        f"http://127.0.0.1:{port}/hook?api_key=***&v=***",
    )
    headers = request["headers"]
    assert headers["Authorization"] == headers["X-Api-Key"] == "***"
    assert headers["webhook-signature"] == "***"
    assert headers["Accept"] == "application/json"
    assert headers["User-Agent"] == f"pushwoosh-relay/{__version__}"
    assert headers["webhook-id"] == headers["Idempotency-Key"]
    assert request["body"] == {"email": "no-such-user@example.org", "at": 1723798230}


def test_route_from_stdin_keeps_uint64_exact(tmp_path: Path) -> None:
    write(
        tmp_path / "relay.yaml",
        """
        destinations:
          log: {type: log}
          ids:
            type: log
            body: {message_id: "{{ event.message_id }}", text: "id {{ event.message_id }}"}
        routes:
          - name: all
            to: [log, ids]
        """,
    )
    event = (EXAMPLES / "push-ios.json").read_text()
    assert str(UINT64_MAX) in event
    proc = run("route", "--config", "relay.yaml", "-", cwd=tmp_path, stdin=event)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.count(f": {UINT64_MAX}") == 2  # as a JSON number, not a float
    result = json.loads(proc.stdout)
    assert result["routes"] == ["all"]
    raw, templated = (d["request"]["body"] for d in result["deliveries"])
    assert raw == json.loads(event)
    assert raw["message_id"] == UINT64_MAX
    assert templated == {"message_id": UINT64_MAX, "text": f"id {UINT64_MAX}"}


def test_route_batch_prints_one_result_per_event() -> None:
    proc = run("route", str(EXAMPLES / "batch.json"))
    assert (proc.returncode, proc.stderr) == (0, "")
    results = json.loads(proc.stdout)
    events = json.loads((EXAMPLES / "batch.json").read_text())
    assert isinstance(results, list)
    assert [r["event_name"] for r in results] == [e["event_name"] for e in events]
    assert all(r["routes"][0] == "everything-to-log" for r in results)


def test_route_invalid_event_is_one_line_naming_the_fields(tmp_path: Path) -> None:
    write(
        tmp_path / "event.json",
        """
        {"event_name": 7, "message_code": "m", "platform": "Email", "application_code": "a",
         "hwid": "h", "user_id": "u", "timestamp": 1.5, "message_id": -1}
        """,
    )
    proc = run("route", "--config", str(SHIPPED), "event.json", cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == (
        "error: event.json: invalid event: $.event_name: expected string, got integer;"
        " $.timestamp: expected integer, got number;"
        f" $.message_id: integer out of range [0, {UINT64_MAX}]\n"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json\n", "error: event.json: body is not valid JSON: "),
        ("", "error: event.json: empty body: expected a JSON event object or array"),
        ("[]", "error: event.json: invalid event: $: empty array: expected at least one event"),
    ],
    ids=["not-json", "empty", "empty-array"],
)
def test_route_bad_event_file(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "event.json").write_text(content)
    proc = run("route", "--config", str(SHIPPED), "event.json", cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (1, "")
    (line,) = proc.stderr.splitlines()
    assert line.startswith(message)


@pytest.mark.parametrize(
    ("target", "reason"),
    [("nope.json", "No such file or directory"), (".", "Is a directory")],
)
def test_route_unreadable_file_is_one_line(tmp_path: Path, target: str, reason: str) -> None:
    proc = run("route", "--config", str(SHIPPED), target, cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        1,
        "",
        f"error: cannot read {target}: {reason}\n",
    )


# -- relay schema, --version ---------------------------------------------------------------------


def test_schema_is_a_json_schema_the_shipped_config_satisfies() -> None:
    proc = run("schema")
    assert (proc.returncode, proc.stderr) == (0, "")
    schema = json.loads(proc.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    data: dict[str, Any] = yaml.safe_load(SHIPPED.read_text())
    assert list(validator.iter_errors(data)) == []
    data["destinations"]["crm"]["bdy"] = {}
    assert not validator.is_valid(data)
    del data["destinations"]["crm"]["bdy"]
    data["servr"] = {"port": 1}
    errors = list(validator.iter_errors(data))
    assert ["'servr' was unexpected" in e.message for e in errors] == [True]


def _console_script() -> list[str]:
    script = Path(sys.executable).parent / "relay"
    found = str(script) if script.exists() else shutil.which("relay")
    if found is None:
        pytest.skip("the relay console script is not installed")
    return [found]


@pytest.mark.parametrize("how", ["python -m relay", "console script"])
def test_version(how: str) -> None:
    exe = _console_script() if how == "console script" else None
    proc = run("--version", exe=exe)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        0,
        f"pushwoosh-relay {__version__}\n",
        "",
    )


def test_serve_errors_are_one_line(tmp_path: Path) -> None:
    cfg = write(tmp_path / "relay.yaml", f"queue: {{url: 'sqlite:///{tmp_path}/q.db'}}\n")
    bad_port = run("serve", "--config", str(cfg), "--port", "99999")
    assert bad_port.returncode == 2 and "not in 0-65535" in bad_port.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = run("serve", "--config", str(cfg), "--port", port)
    assert busy.returncode == 1
    assert f"error: cannot listen on 127.0.0.1:{port}" in busy.stderr
    unusable = write(tmp_path / "bad.yaml", "queue: {url: 'sqlite:////proc/no/q.db'}\n")
    broken = run("serve", "--config", str(unusable))
    assert broken.returncode == 1 and "cannot open SQLite queue" in broken.stderr
    assert len(broken.stderr.strip().splitlines()) == 1
