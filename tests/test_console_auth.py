"""Who gets into the console and the admin API: the pure decision, case by case.

The process tests (test_console_access.py) check the same rules end to end; here
every branch is reached directly, with hostile inputs generated where the input is
a class (Host headers, cookies, tokens).
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.console import auth
from relay.errors import AdminRefused

TOKEN = "admin-secret-0123456789"
NOW = 1_800_000_000.0


def facts(**changes: object) -> auth.Facts:
    base = auth.Facts(
        method="GET",
        peer="127.0.0.1",
        host="127.0.0.1:8080",
        proxied=False,
        authorization=None,
        cookie=None,
        csrf=None,
        client="127.0.0.1",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def decide(
    f: auth.Facts, token: str = TOKEN, listen: str = "127.0.0.1", **kw: object
) -> auth.Access:
    throttle = kw.pop("throttle", None)
    throttle = auth.Throttle() if throttle is None else throttle
    return auth.decide(f, token, listen, throttle, kw.pop("now", NOW), **kw)  # type: ignore[arg-type]


def refused(f: auth.Facts, *args: object, **kw: object) -> AdminRefused:
    with pytest.raises(AdminRefused) as info:
        decide(f, *args, **kw)  # type: ignore[arg-type]
    return info.value


# -- modes ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("token", "listen", "mode"),
    [
        (TOKEN, "0.0.0.0", auth.Mode.TOKEN),
        (TOKEN, "127.0.0.1", auth.Mode.TOKEN),
        ("", "127.0.0.1", auth.Mode.LOCAL),
        ("", "127.0.0.2", auth.Mode.LOCAL),
        ("", "::1", auth.Mode.LOCAL),
        ("", "localhost", auth.Mode.LOCAL),
        ("", "0.0.0.0", auth.Mode.OFF),
        ("", "::", auth.Mode.OFF),
        ("", "10.1.2.3", auth.Mode.OFF),
        ("", "relay.internal", auth.Mode.OFF),
    ],
)
def test_the_mode_follows_the_token_and_the_listening_address(
    token: str, listen: str, mode: auth.Mode
) -> None:
    assert auth.mode(token, listen) is mode


def test_off_beyond_loopback_without_a_token_even_for_a_loopback_peer() -> None:
    exc = refused(facts(), "", "0.0.0.0")
    assert exc.status == 403 and "off" in exc.reason and "RELAY_ADMIN_TOKEN" in exc.reason


# -- local mode -----------------------------------------------------------------------------
def test_a_local_client_gets_in_and_its_first_page_a_session() -> None:
    assert decide(facts(), "").kind == "local"
    page = decide(facts(), "", start_session=True)
    assert page.kind == "local" and page.set_cookie and page.csrf
    # the cookie it got is a session whose CSRF token is the one the page carries
    again = decide(facts(cookie=page.set_cookie), "", start_session=True)
    assert again.set_cookie is None and again.csrf == page.csrf


@pytest.mark.parametrize(
    "change",
    [
        {"peer": "10.0.0.7"},
        {"peer": None},
        {"peer": "not an address"},
        {"host": "evil.example:8080"},  # DNS rebinding: the browser names the attacker's host
        {"host": None},
        {"host": "127.0.0.1.evil.example"},
        {"proxied": True},  # a proxy on this machine forwards strangers
    ],
)
def test_without_a_token_only_local_clients_get_in(change: dict[str, object]) -> None:
    exc = refused(facts(**change), "")
    assert exc.status == 403 and "local clients" in exc.reason


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST:80", "127.0.0.1", "127.9.9.9:1", "[::1]:8080", "[::1]"]
)
def test_loopback_host_headers(host: str) -> None:
    assert auth.host_header_is_local(host)


@pytest.mark.parametrize("peer", ["127.0.0.1", "::1", "::ffff:127.0.0.1", "127.255.0.1"])
def test_loopback_peers(peer: str) -> None:
    assert auth.is_loopback_ip(peer)


@given(st.text(max_size=80))
def test_no_host_header_text_passes_for_local_unless_it_names_loopback(host: str) -> None:
    name = host.strip()
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    expected = name.lower() == "localhost" or auth.is_loopback_ip(name)
    assert auth.host_header_is_local(host) is expected


def test_a_local_change_needs_the_csrf_header() -> None:
    post = facts(method="POST")
    assert refused(post, "").status == 403
    # no session: any value of the header (a web page cannot send one cross-origin)
    assert decide(dataclasses.replace(post, csrf="1"), "").kind == "local"
    # with a session: that session's token exactly
    cookie = decide(facts(), "", start_session=True).set_cookie
    with_cookie = dataclasses.replace(post, cookie=cookie, csrf="1")
    assert refused(with_cookie, "").status == 403
    good = auth.Sessions.for_token("").csrf(auth.Sessions.for_token("").verify(cookie, NOW))  # type: ignore[arg-type]
    assert decide(dataclasses.replace(with_cookie, csrf=good), "").kind == "local"


# -- token mode -----------------------------------------------------------------------------
def test_the_bearer_token_lets_in_without_csrf() -> None:
    access = decide(facts(method="POST", authorization=f"Bearer {TOKEN}", peer="203.0.113.9"))
    assert access.kind == "token"
    assert decide(facts(authorization=f"bearer   {TOKEN}  ")).kind == "token"


@pytest.mark.parametrize(
    "authorization",
    [
        f"Bearer {TOKEN}x",
        "Bearer ",
        f"Bearer {TOKEN[:-1]}",
        "Bearer \u00e9\u0000",
        "Bearer " + "a" * 10_000,
    ],
)
def test_a_wrong_bearer_is_a_401(authorization: str) -> None:
    exc = refused(facts(authorization=authorization))
    assert exc.status == 401 and TOKEN not in exc.reason


def test_no_credentials_is_a_401_and_a_basic_header_is_none() -> None:
    assert refused(facts()).status == 401
    assert refused(facts(authorization=f"Basic {TOKEN}")).status == 401


def test_a_session_lets_in_and_a_change_needs_its_csrf_token() -> None:
    sessions = auth.Sessions.for_token(TOKEN)
    cookie = sessions.issue(NOW)
    session = sessions.verify(cookie, NOW)
    assert session is not None
    csrf = sessions.csrf(session)
    assert decide(facts(cookie=cookie)).csrf == csrf
    post = facts(method="POST", cookie=cookie)
    assert refused(post).status == 403  # the cookie alone
    assert refused(dataclasses.replace(post, csrf="forged")).status == 403
    other = sessions.csrf(sessions.verify(sessions.issue(NOW), NOW))  # type: ignore[arg-type]
    assert refused(dataclasses.replace(post, csrf=other)).status == 403  # another session's
    assert decide(dataclasses.replace(post, csrf=csrf)).kind == "session"


def test_sessions_expire_end_with_the_token_and_cannot_be_forged() -> None:
    sessions = auth.Sessions.for_token(TOKEN)
    cookie = sessions.issue(NOW)
    assert sessions.verify(cookie, NOW + auth.SESSION_TTL - 1) is not None
    assert sessions.verify(cookie, NOW + auth.SESSION_TTL) is None
    assert sessions.verify(cookie, NOW - 3600) is None  # from the future
    assert auth.Sessions.for_token("another token").verify(cookie, NOW) is None
    assert auth.Sessions.for_token("").verify(cookie, NOW) is None
    issued, nonce, sig = cookie.split(".")
    assert sessions.verify(f"{issued}.{nonce[::-1]}.{sig}", NOW) is None
    later = f"{int(NOW + 100):x}"
    assert sessions.verify(f"{later}.{nonce}.{sig}", NOW + 200) is None


@given(st.text(max_size=300))
def test_no_cookie_text_is_a_session(cookie: str) -> None:
    assert auth.Sessions.for_token(TOKEN).verify(cookie, NOW) is None


# -- throttling -----------------------------------------------------------------------------
def test_repeated_failures_lock_a_client_out_for_longer_each_time() -> None:
    throttle = auth.Throttle(free=3, base=1.0, ceiling=8.0)
    wrong = facts(authorization="Bearer nope", client="198.51.100.7")
    for _ in range(3):
        assert refused(wrong, throttle=throttle).status == 401
    assert throttle.blocked_for("198.51.100.7", NOW) == 0  # three typos are free
    assert refused(wrong, throttle=throttle).status == 401
    exc = refused(facts(authorization=f"Bearer {TOKEN}", client="198.51.100.7"), throttle=throttle)
    assert exc.status == 429 and exc.retry_after == 1.0  # even the right token waits
    waits = []
    for i in range(5):
        now = NOW + 100 * (i + 1)
        refused(wrong, throttle=throttle, now=now)
        waits.append(throttle.blocked_for("198.51.100.7", now))
    assert waits == [2.0, 4.0, 8.0, 8.0, 8.0]
    # another client is not held up, and a success clears the record
    assert decide(facts(authorization=f"Bearer {TOKEN}", client="192.0.2.1"), throttle=throttle)
    assert decide(
        facts(authorization=f"Bearer {TOKEN}", client="198.51.100.7"),
        throttle=throttle,
        now=NOW + 10_000,
    )
    assert throttle.blocked_for("198.51.100.7", NOW + 10_000) == 0 and throttle.tracked == 0


def test_the_throttle_forgets_quiet_clients_and_stays_bounded() -> None:
    throttle = auth.Throttle(capacity=100, free=1, forget_after=60.0)
    for i in range(10_000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}", NOW)
    assert throttle.tracked == 100
    throttle.failed("a", NOW)
    throttle.failed("a", NOW + 61)  # quiet for longer than forget_after: starts over
    assert throttle.blocked_for("a", NOW + 61) == 0


def test_login_issues_a_session_for_the_right_token_only() -> None:
    throttle = auth.Throttle(free=1)
    cookie = auth.login(TOKEN, TOKEN, "c", throttle, NOW)
    assert auth.Sessions.for_token(TOKEN).verify(cookie, NOW) is not None
    with pytest.raises(AdminRefused) as wrong:
        auth.login("guess", TOKEN, "c", throttle, NOW)
    assert wrong.value.status == 401
    with pytest.raises(AdminRefused):
        auth.login("guess", TOKEN, "c", throttle, NOW)  # the second failure locks
    with pytest.raises(AdminRefused) as locked:
        auth.login(TOKEN, TOKEN, "c", throttle, NOW)
    assert locked.value.status == 429
    with pytest.raises(AdminRefused):
        auth.login("", "", "d", auth.Throttle(), NOW)  # no admin token: no login at all
