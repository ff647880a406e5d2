"""`server.allow_ips` and `trusted_proxies`: pure policy and through the app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar import Request
from litestar.testing import TestClient

from relay.app import admit, create_app
from relay.config import parse_config
from relay.errors import ConfigError, Rejected
from relay.netfilter import IpPolicy, parse_networks

from .process import Server

POLICY = IpPolicy(
    parse_networks(["203.0.113.0/24", "2001:db8::/32"], "allow"),
    parse_networks(["10.0.0.0/8"], "trusted"),
)


@pytest.mark.parametrize(
    ("peer", "xff", "allowed"),
    [
        ("203.0.113.7", None, True),
        ("198.51.100.1", None, False),
        ("::ffff:203.0.113.9", None, True),  # IPv4-mapped IPv6 peer
        ("2001:db8::1", None, True),
        ("198.51.100.1", "203.0.113.7", False),  # untrusted peer: X-Forwarded-For ignored
        ("10.1.2.3", "203.0.113.7", True),  # trusted proxy: the client it names
        ("10.1.2.3", "198.51.100.1", False),
        ("10.1.2.3", "203.0.113.7, 10.9.9.9", True),  # our own proxies skipped from the right
        ("10.1.2.3", "203.0.113.7, 198.51.100.1", False),  # forged left part does not help
        ("10.1.2.3", "not-an-ip", False),
        (None, None, False),
    ],
)
def test_policy(peer: str | None, xff: str | None, allowed: bool) -> None:
    assert POLICY.allows(peer, xff) is allowed


def test_bad_cidr_is_a_config_error_with_its_line() -> None:
    text = "server:\n  allow_ips:\n    - 203.0.113.0/24\n    - 300.1.1.1/8\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, "relay.yaml", {})
    p = err.value.problems[0]
    assert (p.line, p.path) == (4, "server.allow_ips[1]")


def test_app_answers_403_outside_allow_ips(tmp_path: Path, bounced: dict[str, Any]) -> None:
    text = f"""
server: {{allow_ips: [203.0.113.0/24], trusted_proxies: [127.0.0.1]}}
queue: {{url: "sqlite:///{tmp_path}/q.db"}}
"""
    app = create_app(parse_config(text, "relay.yaml", {}), run_workers=False)
    with TestClient(app) as client:  # the test client's peer is "testclient", not an address
        r = client.post("/webhooks/pushwoosh", json=bounced)
        assert r.status_code == 403 and r.json() == {"error": "client address not allowed"}


def _request(headers: list[tuple[bytes, bytes]]) -> Request[Any, Any, Any]:
    scope = {"type": "http", "method": "POST", "path": "/", "query_string": b""}
    return Request({**scope, "headers": headers, "client": ("10.1.2.3", 40000)})  # type: ignore[arg-type]


def test_several_x_forwarded_for_lines_are_read_as_one_list(tmp_path: Path) -> None:
    """A client may send its own X-Forwarded-For line; the proxy then adds another.

    Reading only the first line would judge the client's forgery; the lines are one
    list (RFC 9110), walked from the right as for a single line.
    """
    text = f"""
server: {{allow_ips: [203.0.113.0/24], trusted_proxies: [10.0.0.0/8]}}
queue: {{url: "sqlite:///{tmp_path}/q.db"}}
"""
    cfg = parse_config(text, "relay.yaml", {})
    forged = [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-for", b"198.51.100.1")]
    with pytest.raises(Rejected) as err:
        admit(_request(forged), cfg, 1024)
    assert err.value.status == 403
    admit(
        _request([(b"x-forwarded-for", b"198.51.100.1"), (b"x-forwarded-for", b"203.0.113.7")]),
        cfg,
        1024,
    )


def test_declared_length_over_the_limit_is_refused_before_the_body(tmp_path: Path) -> None:
    cfg = parse_config(f'queue: {{url: "sqlite:///{tmp_path}/q.db"}}\n', "relay.yaml", {})
    with pytest.raises(Rejected) as err:
        admit(_request([(b"content-length", b"1025")]), cfg, 1024)
    assert err.value.status == 413
    admit(_request([(b"content-length", b"1024")]), cfg, 1024)


def test_the_served_relay_believes_x_forwarded_for_only_from_trusted_proxies(
    tmp_path: Path, bounced: dict[str, Any]
) -> None:
    """Through `relay serve` itself: the server under the app must not rewrite the peer
    from X-Forwarded-For on its own (uvicorn believes loopback peers by default), or a
    local client could claim an allowed address whatever `trusted_proxies` says."""
    config = tmp_path / "relay.yaml"
    config.write_text(
        "server: {allow_ips: [203.0.113.0/24], trusted_proxies: []}\n"
        f'queue: {{url: "sqlite:///{tmp_path}/q.db"}}\n'
        "destinations: {sink: {type: log}}\nroutes: [{name: all, to: [sink]}]\n"
    )
    server = Server(tmp_path, config)
    try:
        forged = {"X-Forwarded-For": "203.0.113.7"}
        r = server.post(bounced, headers=forged)
        assert (r.status_code, r.json()["error"]) == (403, "client address not allowed")
    finally:
        assert server.stop() == 0
    trusted = tmp_path / "trusted.yaml"
    trusted.write_text(
        config.read_text().replace("trusted_proxies: []", "trusted_proxies: [127.0.0.1/32]")
    )
    server = Server(tmp_path, trusted)
    try:
        assert server.post(bounced, headers=forged).status_code == 200
        r = server.post(bounced, headers={"X-Forwarded-For": "198.51.100.1"})
        assert r.status_code == 403
    finally:
        assert server.stop() == 0
