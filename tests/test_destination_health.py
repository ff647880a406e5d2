"""Destinations that fail for hours, end to end with real processes and real local servers.

A failing destination opens its circuit (no attempts while open, measured at the
destination), a notice reaches the ops destination, the probe closes it and the
backlog drains with nothing lost and no max_age spent; a pause holds across a
restart; order per key holds under injected retries with two instances on
PostgreSQL.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from . import pg
from .process import Server, relay, wait
from .sink import Answer, Received, Sink
from .store import store

BREAKER = "{failure_rate: 50%, min_attempts: 5, window: 30s, cooldown: 1s, max_cooldown: 2s}"


def config(
    tmp_path: Path,
    queue_url: str,
    crm: str,
    ops: str,
    extra_route: str = "",
    breaker: str = BREAKER,
) -> Path:
    cfg = tmp_path / "relay.yaml"
    cfg.write_text(f"""
server: {{dedupe_window: 0, shutdown_grace: 2s}}
queue: {{url: "{queue_url}", poll_interval: 100ms, heartbeat: 200ms}}
destinations:
  crm:
    type: http
    url: "{crm}"
    concurrency: 4
    timeout: 5s
    retry: {{max_attempts: 1000, max_age: 3s, initial_delay: 100ms, max_delay: 200ms}}
    circuit: {breaker}
  ops: {{type: http, url: "{ops}", circuit: off}}
alerts: {{to: [ops]}}
routes:
  - name: all
    when: {{event_name: {{in: [Email Bounced, Email Opened]}}}}
    to: [crm]
    {extra_route}
""")
    return cfg


def notices_of(sink: Sink) -> list[str]:
    return [r.json()["type"] for r in sink.received]


def cli(cfg: Path, *args: str) -> Any:
    done = relay(*args, "--config", str(cfg), cwd=cfg.parent)
    assert done.returncode == 0, done.stderr
    return done


def test_an_outage_opens_the_circuit_then_the_probe_drains_the_backlog(
    tmp_path: Path, bounced: dict[str, Any]
) -> None:
    with Sink() as crm, Sink() as ops, store(tmp_path / "q.db") as stored:
        crm.default = Answer(503, body=b"down for maintenance")
        cfg = config(tmp_path, f"sqlite:///{tmp_path}/q.db", crm.url, ops.url)
        server = Server(tmp_path, cfg)
        try:
            for i in range(10):
                assert server.post(dict(bounced, user_id=f"u{i}")).status_code == 200
            wait(lambda: "relay.circuit_opened" in notices_of(ops), timeout=15)
            [opened] = [r.json() for r in ops.received]
            assert (opened["destination"], opened["state"]) == ("crm", "open")
            assert "attempts failed" in opened["reason"] and 1 <= opened["pending"] <= 10

            listed = json.loads(cli(cfg, "destinations", "list", "--json").stdout)
            state = {d["name"]: d for d in listed}
            assert state["crm"]["state"] in ("open", "half-open")
            assert state["crm"]["last_error"].startswith("HTTP 503")
            metrics = httpx.get(server.url + "/metrics").text
            assert 'relay_destination_state{destination="ops",state="active"} 1.0' in metrics

            # While open, only the probes get through: one request per cooldown (1-2 s).
            during = len(crm.received)
            time.sleep(4)  # longer than max_age (3s): a hold must spend none of it
            probes = len(crm.received) - during
            assert 1 <= probes <= 4
            assert stored.states("crm").count("dead") == 0

            crm.default = Answer(200)  # the CRM is back: the next probe closes the circuit
            wait(lambda: "relay.circuit_closed" in notices_of(ops), timeout=10)
            wait(lambda: stored.states("crm") == ["succeeded"] * 10, timeout=15)
        finally:
            assert server.stop() == 0
    succeeded = [r.json()["user_id"] for r in crm.received if r.body and crm.received]
    assert sorted(set(succeeded)) == sorted(f"u{i}" for i in range(10))
    log = server.output()
    assert "destination.circuit_opened" in log and "destination.circuit_closed" in log


def test_a_pause_holds_across_a_restart_and_resume_drains(
    tmp_path: Path, bounced: dict[str, Any]
) -> None:
    with Sink() as crm, Sink() as ops, store(tmp_path / "q.db") as stored:
        cfg = config(tmp_path, f"sqlite:///{tmp_path}/q.db", crm.url, ops.url)
        server = Server(tmp_path, cfg)
        try:
            paused = cli(cfg, "destinations", "pause", "crm", "--reason", "CRM maintenance")
            assert paused.stdout.strip() == "crm: paused"
            for i in range(5):
                assert server.post(dict(bounced, user_id=f"a{i}")).status_code == 200
            time.sleep(1.5)
            assert crm.received == []
            wait(lambda: "destination.paused" in server.output())
        finally:
            assert server.stop() == 0

        server = Server(tmp_path, cfg)  # the pause lives in the queue
        try:
            for i in range(3):
                assert server.post(dict(bounced, user_id=f"b{i}")).status_code == 200
            time.sleep(2.5)  # past max_age (3s) for the first ones: a pause spends none
            assert crm.received == []
            listed = {
                d["name"]: d for d in json.loads(cli(cfg, "destinations", "list", "--json").stdout)
            }
            assert (listed["crm"]["state"], listed["crm"]["paused_reason"]) == (
                "paused",
                "CRM maintenance",
            )
            assert listed["crm"]["pending"] == 8
            table = cli(cfg, "destinations", "list").stdout
            assert "paused (CRM maintenance)" in table

            assert cli(cfg, "destinations", "resume", "crm").stdout.strip() == "crm: active"
            wait(lambda: stored.states("crm") == ["succeeded"] * 8, timeout=10)
            assert sorted(r.json()["user_id"] for r in crm.received) == sorted(
                [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(3)]
            )
            wait(lambda: notices_of(ops) == ["relay.paused", "relay.resumed"])
        finally:
            assert server.stop() == 0


def test_pause_of_an_unknown_destination_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "relay.yaml"
    cfg.write_text(
        f"queue: {{url: 'sqlite:///{tmp_path}/q.db'}}\n"
        "destinations: {crm: {type: log}}\nroutes: [{name: all, to: [crm]}]\n"
    )
    done = relay("destinations", "pause", "crn", "--config", str(cfg), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == "error: no destination 'crn' in the config (did you mean 'crm'?)"


async def test_order_per_key_with_retries_on_two_instances(
    tmp_path: Path, bounced: dict[str, Any]
) -> None:
    """Every third request fails; per key the CRM must see 0, 0, 1, 2, 2, 3...: never n+1
    before n went through, whichever of the two instances sends."""
    async with pg.fresh_schema() as url:
        with Sink() as crm, Sink() as ops:
            count = {"n": 0}
            lock = threading.Lock()

            def flaky(_: Received) -> Answer:
                with lock:
                    count["n"] += 1
                    return Answer(500) if count["n"] % 3 == 0 else Answer(200)

            crm.respond = flaky
            order = 'order_by: "{{ event.hwid }}"'
            cfg = config(tmp_path, url, crm.url, ops.url, extra_route=order, breaker="off")
            first, second = Server(tmp_path, cfg), Server(tmp_path, cfg)
            keys = [f"k{i}@example.com" for i in range(4)]
            try:
                for n in range(10):
                    for j, key in enumerate(keys):
                        server = (first, second)[(n + j) % 2]
                        body = dict(bounced, hwid=key, user_id=str(n))
                        assert server.post(body).status_code == 200

                def delivered() -> bool:
                    ok = {(r.json()["hwid"], r.json()["user_id"]) for r in answered(crm)}
                    return len(ok) == len(keys) * 10

                wait(delivered, timeout=30)
            finally:
                assert first.stop() == 0
                assert second.stop() == 0
    for key in keys:
        seen = [int(r.json()["user_id"]) for r in crm.received if r.json()["hwid"] == key]
        assert seen == sorted(seen), f"{key} out of order: {seen}"
        assert set(seen) == set(range(10))
    assert len(crm.received) > len(keys) * 10  # retries happened (every third request failed)


def answered(sink: Sink) -> list[Received]:
    """The requests the flaky sink answered 200 (every third one failed)."""
    with sink.lock:
        return [r for i, r in enumerate(sink.received, start=1) if i % 3 != 0]
