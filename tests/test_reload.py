"""Hot reload of a running `relay serve`: file change and SIGHUP, valid and invalid."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from relay.config import EMPTY, RelayConfig, load_config, parse_config
from relay.errors import ConfigError
from relay.reload import Reloader, weakenings

from .process import Server, relay, wait
from .sink import Sink

BASE = """
server: {{dedupe_window: 0, port: {port}}}
queue: {{url: "sqlite:///{db}", poll_interval: 100ms}}
destinations:
  log: {{type: log}}
  crm: {{type: http, url: "{sink}"}}
routes:
  - {{name: all, to: [log]}}
"""


def events(server: Server, name: str) -> list[dict[str, Any]]:
    return [x for x in server.lines() if x.get("event") == name]


def test_file_change_and_sighup_reload(tmp_path: Path, bounced: dict[str, Any]) -> None:
    with Sink() as sink:
        cfg = tmp_path / "relay.yaml"
        from .process import free_port

        port = free_port()
        base = BASE.format(port=port, db=tmp_path / "q.db", sink=sink.url)
        cfg.write_text(base)
        server = Server(tmp_path, cfg, port=port)
        try:
            assert server.post(bounced).status_code == 200
            time.sleep(0.5)
            assert sink.received == []

            # 1. A valid change: the new route takes effect within 2 s, without a signal.
            changed = time.time()
            cfg.write_text(base + "  - {name: crm, to: [crm]}\n")
            wait(lambda: events(server, "config.reloaded"), timeout=2.5)
            assert time.time() - changed <= 2.5
            assert server.post(dict(bounced, user_id="2")).status_code == 200
            sink.wait_for(1)

            # 2. An invalid change is refused with `relay check`'s message; the old config stays.
            bad = base + "  - {name: crm, to: [crn]}\n"
            cfg.write_text(bad)
            failed = wait(lambda: events(server, "config.reload_failed"), timeout=2.5)
            check = relay("check", "--config", str(cfg), cwd=tmp_path)
            assert check.returncode == 1
            assert failed[0]["message"] == check.stderr.strip()
            assert "unknown destination 'crn'" in failed[0]["message"]
            assert server.post(dict(bounced, user_id="3")).status_code == 200
            sink.wait_for(2)  # the previous config (with the crm route) still runs

            # 3. SIGHUP reloads; a restart-only change is reported as such.
            cfg.write_text(base.replace(f"port: {port}", f"port: {port + 1}"))
            by_file = wait(
                lambda: [e for e in events(server, "config.reloaded") if e["trigger"] == "file"][1:]
            )
            assert by_file[-1]["restart_required"] == ["server.port"]
            os.kill(server.proc.pid, signal.SIGHUP)
            by_signal = wait(
                lambda: [e for e in events(server, "config.reloaded") if e["trigger"] == "SIGHUP"]
            )
            assert by_signal[0]["restart_required"] == ["server.port"]
            assert server.post(dict(bounced, user_id="4")).status_code == 200
            time.sleep(0.5)
            assert len(sink.received) == 2  # the crm route is gone again
        finally:
            assert server.stop() == 0


# -- refusing a reload that weakens the running relay ------------------------------------------

RUNNING = """\
server:
  token: s3cret-token
  allow_ips: [203.0.113.0/24, 198.51.100.7/32]
destinations:
  log: {type: log}
routes:
  - {name: all, to: [log]}
  - {name: bounces, when: {event_name: Email Bounced}, to: [log]}
"""
TOKEN_KEY = "set reload.allow_removing_token: true"
IPS_KEY = "set reload.allow_removing_allow_ips: true"
ROUTES_KEY = "set reload.allow_no_routes: true"


def config(text: str) -> RelayConfig:
    return parse_config(text, "relay.yaml", env={})


RUNNING_CONFIG = config(RUNNING)


def refusals(text: str) -> list[str]:
    return [str(p) for p in weakenings(RUNNING_CONFIG, config(text))]


def test_dropping_the_token_is_refused_at_its_line_naming_the_key() -> None:
    assert refusals(RUNNING.replace("s3cret-token", '""')) == [
        "relay.yaml:2: server.token: the running relay requires a token and this config has"
        " none; refused, so events stay authenticated (to drop the token, set"
        " reload.allow_removing_token: true)"
    ]
    (gone,) = refusals(RUNNING.replace("  token: s3cret-token\n", ""))
    assert gone.startswith("relay.yaml:1: server.token: ") and TOKEN_KEY in gone


def test_emptying_allow_ips_is_refused_naming_the_key() -> None:
    (emptied,) = refusals(RUNNING.replace("[203.0.113.0/24, 198.51.100.7/32]", "[]"))
    assert emptied.startswith("relay.yaml:3: server.allow_ips: ") and IPS_KEY in emptied
    (gone,) = refusals(RUNNING.replace("  allow_ips: [203.0.113.0/24, 198.51.100.7/32]\n", ""))
    assert gone.startswith("relay.yaml:1: server.allow_ips: ") and IPS_KEY in gone


def test_leaving_no_route_is_refused_naming_the_key() -> None:
    (refused,) = refusals(RUNNING.split("routes:")[0] + "routes: []\n")
    assert refused.startswith("relay.yaml:6: routes: this config has no route")
    assert ROUTES_KEY in refused
    (refused,) = refusals(RUNNING.split("routes:")[0])  # the key gone: the top of the file
    assert refused.startswith("relay.yaml:1: routes: ")


def test_each_weakening_is_named_at_once() -> None:
    text = "destinations:\n  log: {type: log}\n"
    assert [r.split(": ")[1] for r in refusals(text)] == [
        "server.token",
        "server.allow_ips",
        "routes",
    ]


@pytest.mark.parametrize(
    "text",
    [
        RUNNING.replace("s3cret-token", "rotated-token"),
        RUNNING.replace("[203.0.113.0/24, 198.51.100.7/32]", "[203.0.113.0/25]"),  # narrower
        RUNNING.replace("[203.0.113.0/24, 198.51.100.7/32]", "[192.0.2.0/24]"),  # elsewhere
        RUNNING.replace("  - {name: all, to: [log]}\n", ""),  # fewer routes, not none
    ],
    ids=["token-changed", "allow-ips-narrowed", "allow-ips-moved", "fewer-routes"],
)
def test_changes_that_drop_nothing_are_not_weakenings(text: str) -> None:
    assert refusals(text) == []


@pytest.mark.parametrize(
    ("allow", "left"),
    [
        ("allow_removing_token", ["server.allow_ips", "routes"]),
        ("allow_removing_allow_ips", ["server.token", "routes"]),
        ("allow_no_routes", ["server.token", "server.allow_ips"]),
    ],
)
def test_each_allowance_allows_its_weakening_only(allow: str, left: list[str]) -> None:
    text = f"destinations:\n  log: {{type: log}}\nreload:\n  {allow}: true\n"
    assert [r.split(": ")[1] for r in refusals(text)] == left


def test_all_allowances_together_allow_an_open_relay_with_no_route() -> None:
    text = (
        "destinations:\n  log: {type: log}\n"
        "reload: {allow_removing_token: true, allow_removing_allow_ips: true,"
        " allow_no_routes: true}\n"
    )
    assert refusals(text) == []


def test_a_relay_without_token_or_allow_ips_has_nothing_to_lose() -> None:
    running = config("destinations:\n  log: {type: log}\nroutes:\n  - {name: a, to: [log]}\n")
    new = config("destinations:\n  log: {type: log}\nroutes:\n  - {name: b, to: [log]}\n")
    assert weakenings(running, new) == []


def test_no_prefix_of_the_file_drops_the_token_the_addresses_or_every_route() -> None:
    """What a reload may read mid-write: the file cut anywhere. None may weaken the relay."""
    data = RUNNING.encode()
    for cut in range(len(data)):
        try:
            new = config(data[:cut].decode("utf-8"))
        except ConfigError:
            continue
        if weakenings(RUNNING_CONFIG, new):
            continue
        assert new.settings.server.token == "s3cret-token"
        assert new.settings.server.allow_ips
        assert new.table.routes


# -- the Reloader, in process, on a real file --------------------------------------------------


class Applied(list[RelayConfig]):
    """The configs a Reloader handed over, and what the relay runs."""

    def __init__(self, running: RelayConfig) -> None:
        super().__init__()
        self.running = running

    def apply(self, config: RelayConfig) -> None:
        self.append(config)
        self.running = config


async def test_refused_reloads_keep_the_running_config(tmp_path: Path) -> None:
    path = tmp_path / "relay.yaml"
    path.write_text(RUNNING)
    applied = Applied(load_config(path, env={}))
    outcomes: list[str] = []
    reloader = Reloader(str(path), lambda: applied.running, applied.apply, outcomes.append)
    cases = [
        ("", f"error: {path}: {EMPTY}"),
        ("# all commented out\n", f"error: {path}: {EMPTY}"),
        (RUNNING.replace("s3cret-token", '""'), TOKEN_KEY),
        (RUNNING.split("routes:")[0], ROUTES_KEY),
    ]
    for text, expected in cases:
        path.write_text(text)
        with capture_logs() as logs:
            assert await reloader.reload("SIGHUP") is False
        (failed,) = [x for x in logs if x["event"] == "config.reload_failed"]
        assert expected in failed["message"]
        assert applied == []
        assert applied.running.settings.server.token == "s3cret-token"
    assert outcomes == ["failed"] * len(cases)

    path.write_text(
        RUNNING.replace("s3cret-token", '""') + "reload: {allow_removing_token: true}\n"
    )
    with capture_logs() as logs:
        assert await reloader.reload("SIGHUP") is True
    assert [x["event"] for x in logs] == ["config.reloaded"]
    assert applied.running.settings.server.token == ""
    assert outcomes[-1] == "succeeded"


async def test_the_watcher_applies_a_slow_save_only_once_it_is_whole(tmp_path: Path) -> None:
    path = tmp_path / "relay.yaml"
    path.write_text(RUNNING)
    applied = Applied(load_config(path, env={}))
    reloader = Reloader(str(path), lambda: applied.running, applied.apply)
    watching = asyncio.create_task(reloader.watch(interval=0.05, settle=0.5))
    whole = RUNNING + "  - {name: opens, when: {event_name: Email Opened}, to: [log]}\n"
    half = RUNNING.split("  - {name: bounces")[0]  # valid on its own: one route, token kept

    def save_in_two_writes() -> None:
        with path.open("w") as file:  # truncates first, like `cat >` and many editors
            file.write(half)
            file.flush()
            time.sleep(0.1)
            file.write(whole[len(half) :])

    try:
        with capture_logs() as logs:
            await asyncio.to_thread(save_in_two_writes)
            deadline = time.monotonic() + 5
            while not applied and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # room for a wrong second reload to show
    finally:
        watching.cancel()
    assert [[r.name for r in c.table.routes] for c in applied] == [["all", "bounces", "opens"]]
    assert [x["event"] for x in logs] == ["config.reloaded"]


def test_a_running_relay_keeps_its_token_through_weakening_reloads(
    tmp_path: Path, bounced: dict[str, Any]
) -> None:
    from .process import free_port

    cfg = tmp_path / "relay.yaml"
    port = free_port()
    base = BASE.format(port=port, db=tmp_path / "q.db", sink="http://127.0.0.1:9/")
    with_token = base.replace("dedupe_window: 0,", "dedupe_window: 0, token: s3cret-token,")
    without_token = base
    cfg.write_text(with_token)
    server = Server(tmp_path, cfg, port=port)

    def refused(text: str, expected: str, signal_it: bool = True) -> None:
        cfg.write_text(text)
        if signal_it:  # faster than the watcher; the file alone is tested above
            os.kill(server.proc.pid, signal.SIGHUP)
        wait(
            lambda: [e for e in events(server, "config.reload_failed") if expected in e["message"]],
            timeout=5,
        )
        assert server.post(bounced).status_code == 401
        assert server.post(bounced, params={"token": "s3cret-token"}).status_code == 200

    try:
        assert server.post(bounced).status_code == 401
        refused("", "the config file is empty", signal_it=False)
        refused(without_token, "set reload.allow_removing_token: true")
        refused(with_token.split("routes:")[0], "set reload.allow_no_routes: true")
        assert events(server, "config.reloaded") == []

        cfg.write_text(without_token + "reload: {allow_removing_token: true}\n")
        os.kill(server.proc.pid, signal.SIGHUP)
        wait(lambda: events(server, "config.reloaded"), timeout=5)
        assert server.post(dict(bounced, user_id="2")).status_code == 200
    finally:
        assert server.stop() == 0


def test_serve_refuses_an_empty_config_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "relay.yaml").write_text("\n# routes: to be written\n")
    proc = relay("serve", "--config", "relay.yaml", "--port", "0", cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == f"error: relay.yaml: {EMPTY}\n"
