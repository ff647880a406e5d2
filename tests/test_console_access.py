"""Who reaches the console, end to end: real `relay serve` processes, real sockets.

Without an admin token the console answers local clients only and is off when the
relay listens beyond loopback (and says so at start); with one, a login session
holds across `--workers` processes, the cookie is Secure behind a trusted https
proxy, and the token never reaches the log.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from .process import Server, clean_env

ADMIN = "admin-token-9c2f51e0aa"


def write(tmp_path: Path, server: str = "") -> Path:
    cfg = tmp_path / "relay.yaml"
    cfg.write_text(f"""
server: {{dedupe_window: 0, shutdown_grace: 1s{server}}}
queue: {{url: "sqlite:///{tmp_path}/q.db", poll_interval: 100ms}}
destinations:
  log: {{type: log}}
routes:
  - {{name: all, to: [log]}}
""")
    return cfg


def lines(server: Server, event: str) -> list[dict[str, object]]:
    return [line for line in server.lines() if line.get("event") == event]


def test_without_a_token_only_local_clients_reach_it(tmp_path: Path) -> None:
    server = Server(tmp_path, write(tmp_path), extra=("--workers", "2"))
    try:
        assert lines(server, "console.local_only")
        page = httpx.get(server.url + "/console", timeout=5)
        assert page.status_code == 200 and "local access" in page.text
        cookie = page.cookies["relay_session"]
        # Each worker process takes the others' sessions (the run's key is made before the
        # fork): on fresh connections, spread over both, none hands out a new cookie.
        for _ in range(30):
            again = httpx.get(
                server.url + "/console/events",
                cookies={"relay_session": cookie},
                headers={"Connection": "close"},
                timeout=5,
            )
            assert again.status_code == 200 and "set-cookie" not in again.headers
        assert httpx.get(server.url + "/api/v1/events", timeout=5).status_code == 200
        # a proxy in between, or a page on another name (DNS rebinding): refused
        for headers in (
            {"X-Forwarded-For": "203.0.113.5"},
            {"Host": "evil.example:8080"},
            {"Via": "1.1 proxy"},
        ):
            r = httpx.get(server.url + "/console", headers=headers, timeout=5)
            assert r.status_code == 403 and "local clients" in r.json()["error"]
        # a change needs the header a web page cannot send to another origin
        pause = server.url + "/api/v1/destinations/log/pause"
        assert httpx.post(pause, timeout=5).status_code == 403
        assert (
            httpx.post(pause, headers={"X-CSRF-Token": "script"}, timeout=5).json()["state"]
            == "paused"
        )
        # the receiver is not the console's: same answers as ever
        assert (
            httpx.post(server.url + "/webhooks/pushwoosh", content=b"{", timeout=5).status_code
            == 400
        )
    finally:
        assert server.stop() == 0


def test_beyond_loopback_without_a_token_it_is_off_and_says_so(tmp_path: Path) -> None:
    server = Server(tmp_path, write(tmp_path), extra=("--host", "0.0.0.0"))
    try:
        [off] = lines(server, "console.off")
        assert "RELAY_ADMIN_TOKEN" in str(off["hint"]) and off["listen_host"] == "0.0.0.0"
        for path in ("/console", "/console/login", "/console/static/htmx.min.js", "/api/v1/events"):
            r = httpx.get(server.url + path, timeout=5)
            assert r.status_code == 403 and "off" in r.json()["error"], path
        assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
    finally:
        assert server.stop() == 0


def test_a_session_holds_across_workers_and_the_token_stays_out_of_the_log(tmp_path: Path) -> None:
    cfg = write(tmp_path, ', admin_token: "${RELAY_ADMIN_TOKEN}", trusted_proxies: [127.0.0.1]')
    server = Server(tmp_path, cfg, env=clean_env(RELAY_ADMIN_TOKEN=ADMIN), extra=("--workers", "2"))
    try:
        assert lines(server, "console.ready")
        with httpx.Client(base_url=server.url, timeout=5) as client:
            assert client.get("/console", follow_redirects=False).status_code == 303
            assert client.post("/console/login", data={"token": "guess-42"}).status_code == 401
            r = client.post("/console/login", data={"token": ADMIN}, follow_redirects=False)
            assert r.status_code == 303 and "Secure" not in r.headers["set-cookie"]
            pages = [client.get("/console/events") for _ in range(30)]  # both workers answer
            assert {p.status_code for p in pages} == {200}
            csrf = re.search(r'"X-CSRF-Token": "([^"]+)"', pages[-1].text)
            assert csrf
            for _ in range(10):
                r = client.post(
                    "/api/v1/destinations/log/resume", headers={"X-CSRF-Token": csrf.group(1)}
                )
                assert r.status_code == 200, r.text
        # behind a trusted proxy that says the client used https, the cookie is Secure
        https = httpx.post(
            server.url + "/console/login",
            data={"token": ADMIN},
            headers={"X-Forwarded-Proto": "https"},
            follow_redirects=False,
            timeout=5,
        )
        assert "; Secure" in https.headers["set-cookie"]
        bearer = httpx.get(
            server.url + "/api/v1/events", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5
        )
        assert bearer.status_code == 200
    finally:
        assert server.stop() == 0
    output = server.output()
    assert ADMIN not in output and "guess-42" not in output
    assert '"event":"admin.auth_failed"' in output.replace(" ", "")
