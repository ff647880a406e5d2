"""The console's pages and actions against the real app, queue and a real destination.

Logged in with the admin token as an operator would: every page renders with the
security headers and no inline script or style; event data is text, never markup;
each action needs the session's CSRF token and does what the API does.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from relay.app import create_app
from relay.config import parse_config
from relay.console.actions import safe_next

from .helpers import eventually
from .sink import Answer, Sink
from .test_admin_api import ADMIN, BEARER, SECRET, config_for, event, send, settled

XSS = "<img src=x onerror=alert(1)>"
PAGES = ["", "/events", "/dead-letters", "/destinations", "/routes", "/fragments/overview"]


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[tuple[AsyncTestClient[Any], Sink]]:
    with Sink() as sink:
        text = config_for(tmp_path / "q.db", sink.url)
        app = create_app(parse_config(text, str(tmp_path / "relay.yaml"), {}))
        async with AsyncTestClient(app) as client:
            yield client, sink


async def login(client: AsyncTestClient[Any]) -> dict[str, str]:
    """Log in through the form; the headers an htmx action sends (its CSRF token)."""
    r = await client.post("/console/login", data={"token": ADMIN}, follow_redirects=False)
    assert r.status_code == 303, r.text
    page = (await client.get("/console")).text
    found = re.search(r"hx-headers='([^']*)'", page)
    assert found, page[:500]
    return {**json.loads(found.group(1)), "HX-Request": "true"}


def assert_headers(r: httpx.Response) -> None:
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"


class _Tags(HTMLParser):
    """Every tag, its attributes, and whether a <script> or <style> holds any text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._open = tag if tag in ("script", "style") else None

    def handle_data(self, data: str) -> None:
        if self._open and data.strip():
            self.inline.append(data[:80])

    def handle_endtag(self, tag: str) -> None:
        self._open = None


def assert_no_inline_code(html: str) -> None:
    """Nothing the CSP would have to refuse: no inline script or style, no on*= handler."""
    parsed = _Tags()
    parsed.feed(html)
    assert parsed.inline == []
    for tag, attrs in parsed.tags:
        assert tag != "style"
        assert "style" not in attrs, (tag, attrs)
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        if tag == "script":
            assert re.fullmatch(
                r"/console/static/[a-z.]+\?v=[0-9a-z.+]+", attrs.get("src") or ""
            ), attrs


# -- login ----------------------------------------------------------------------------------
async def test_pages_need_a_login_which_sets_a_strict_session_cookie(
    console: tuple[AsyncTestClient[Any], Sink],
) -> None:
    client, _ = console
    r = await client.get("/console/events?hwid=a%40b.c", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/console/login?next=%2Fconsole%2Fevents%3Fhwid%3Da%2540b.c"
    assert_headers(r)
    form = await client.get(r.headers["location"])
    assert (
        form.status_code == 200 and 'name="token"' in form.text and 'type="password"' in form.text
    )
    assert 'value="/console/events?hwid=a%40b.c"' in form.text
    assert_no_inline_code(form.text)

    wrong = await client.post("/console/login", data={"token": "guess-987"}, follow_redirects=False)
    assert (
        wrong.status_code == 401
        and "wrong admin token" in wrong.text
        and "guess-987" not in wrong.text
    )
    assert "set-cookie" not in wrong.headers

    ok = await client.post(
        "/console/login",
        data={"token": ADMIN, "next": "/console/events?hwid=a%40b.c"},
        follow_redirects=False,
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/console/events?hwid=a%40b.c"
    cookie = ok.headers["set-cookie"]
    assert cookie.startswith("relay_session=")
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"):
        assert attribute in cookie
    assert "Secure" not in cookie  # plain http here; see test_console_access for https
    assert (await client.get("/console/events")).status_code == 200


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/console/events?state=dead", "/console/events?state=dead"),
        ("/console", "/console"),
        ("https://evil.example/console", "/console"),
        ("//evil.example/console", "/console"),
        ("/consolex", "/console"),
        ("/console/../admin", "/console"),
        ("/console\\@evil", "/console"),
        ("/console/x\r\nSet-Cookie: a=b", "/console"),
        ("/console/é", "/console"),
        (None, "/console"),
        ("/console/" + "a" * 3000, "/console"),
    ],
)
def test_after_login_only_our_own_pages(target: str | None, expected: str) -> None:
    assert safe_next("/console", target) == expected


async def test_htmx_without_a_session_is_sent_to_the_login(
    console: tuple[AsyncTestClient[Any], Sink],
) -> None:
    client, _ = console
    r = await client.get("/console/fragments/overview", headers={"HX-Request": "true"})
    assert r.status_code == 401 and r.headers["hx-redirect"].startswith("/console/login?next=")


async def test_logout_clears_the_cookie(console: tuple[AsyncTestClient[Any], Sink]) -> None:
    client, _ = console
    headers = await login(client)
    assert (await client.post("/console/logout")).status_code == 403  # no CSRF token
    r = await client.post("/console/logout", headers=headers)
    assert r.status_code == 200 and r.headers["hx-redirect"] == "/console/login"
    assert "Max-Age=0" in r.headers["set-cookie"] and r.headers["set-cookie"].startswith(
        "relay_session=;"
    )


# -- pages ----------------------------------------------------------------------------------
async def test_every_page_renders_strictly(console: tuple[AsyncTestClient[Any], Sink]) -> None:
    client, _ = console
    await login(client)
    [event_id] = await send(client, event("Email Bounced", "ann@example.com"))
    await settled(client, 1)
    for path in [*PAGES, f"/events/{event_id}", f"/events/{event_id}/deliveries", "/nope/at/all"]:
        r = await client.get(f"/console{path}")
        assert r.status_code == (404 if "nope" in path else 200), (path, r.text[:300])
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["cache-control"] == "no-store"
        assert_headers(r)
        assert_no_inline_code(r.text)
    static = await client.get("/console/static/htmx.min.js")
    assert static.status_code == 200 and "javascript" in static.headers["content-type"]
    assert_headers(static)


async def test_event_data_is_text_never_markup(console: tuple[AsyncTestClient[Any], Sink]) -> None:
    client, _ = console
    await login(client)
    hostile = event("<script>alert(2)</script>", XSS, user_id="\"'><svg onload=alert(3)>")
    [event_id] = await send(client, hostile)
    await settled(client, 1)
    listing = (await client.get("/console/events")).text
    page = (await client.get(f"/console/events/{event_id}?unmask=1")).text
    for html in (listing, page):
        assert "<img src" not in html and "<script>alert" not in html and "<svg" not in html
        assert_no_inline_code(html)
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in listing
    assert "&lt;img src=x onerror=alert(1)&gt;" in page  # unmasked on request, still text
    assert "&lt;img***" in listing  # masked in the listing (logging.mask_hwid)


async def test_the_events_page_filters_by_its_query_and_pages(
    console: tuple[AsyncTestClient[Any], Sink],
) -> None:
    client, _ = console
    await login(client)
    await send(client, *(event("Email Opened", f"user{i}@example.com") for i in range(3)))
    await send(client, event("Email Opened", "Target@Example.com"))
    await settled(client, 4)
    one = (await client.get("/console/events?hwid=target%40example.com")).text
    assert one.count('href="/console/events/') == 1 and "Ta***@Example.com" in one
    assert 'value="target@example.com"' in one  # the form shows the filter in force
    first = (await client.get("/console/events?event_name=Email+Opened&limit=2")).text
    more = re.search(r'rel="next" href="([^"]+)"', first)
    assert more and "event_name=Email+Opened" in more.group(1) and "before=" in more.group(1)
    second = (await client.get(more.group(1).replace("&amp;", "&"))).text
    assert second.count('href="/console/events/0') == 2
    bad = await client.get("/console/events?state=bogus&since=2h")
    assert bad.status_code == 400 and "unknown state" in bad.text and 'value="2h"' in bad.text


async def test_the_overview_shows_destinations_and_charts(
    console: tuple[AsyncTestClient[Any], Sink],
) -> None:
    client, sink = console
    await login(client)
    sink.default = Answer(400)
    await send(
        client, event("Email Bounced", "a@example.com"), event("Email Opened", "b@example.com")
    )
    await settled(client, 2)
    html = (await client.get("/console")).text
    row = re.search(r'<tr data-destination="crm">(.*?)</tr>', html, re.S)
    assert row and "s-active" in row.group(1) and ">1</a>" in row.group(1)  # one dead
    assert 'hx-trigger="every 5s"' in html
    assert re.search(r'<rect class="bar events"[^>]*><title>\d\d:\d\d UTC: 2 events</title>', html)
    assert re.search(r'<rect class="bar dead"', html) and re.search(r'<rect class="bar ok"', html)
    assert "sqlite" in html and "relay.yaml" in html


# -- actions --------------------------------------------------------------------------------
async def test_actions_need_the_csrf_token(console: tuple[AsyncTestClient[Any], Sink]) -> None:
    client, _ = console
    await login(client)  # a session, but the form posts without its CSRF token
    r = await client.post("/console/destinations/crm/pause", data={"reason": "x"})
    assert r.status_code == 403 and "X-CSRF-Token" in r.text
    assert_headers(r)
    htmx = await client.post(
        "/console/destinations/crm/pause", data={"reason": "x"}, headers={"HX-Request": "true"}
    )
    assert htmx.status_code == 403 and htmx.headers["hx-retarget"] == "#flash"
    state = (await client.get("/api/v1/destinations", headers=BEARER)).json()["destinations"]
    assert all(d["state"] != "paused" for d in state)


async def test_pause_and_resume_from_the_page(console: tuple[AsyncTestClient[Any], Sink]) -> None:
    client, _ = console
    headers = await login(client)
    r = await client.post(
        "/console/destinations/crm/pause", data={"reason": "CRM <b>upgrade</b>"}, headers=headers
    )
    assert r.status_code == 200 and "crm paused" in r.text
    assert r.headers["hx-trigger"] == "destinations-changed"
    page = (await client.get("/console/fragments/destinations")).text
    assert 'data-state="paused"' in page and "CRM &lt;b&gt;upgrade&lt;/b&gt;" in page
    assert "Resume" in page
    r = await client.post("/console/destinations/crm/resume", headers=headers)
    assert "crm resumed (active)" in r.text
    unknown = await client.post("/console/destinations/crn/pause", headers=headers)
    assert unknown.status_code == 404 and "did you mean" in unknown.text


async def test_dead_letters_are_counted_before_a_replay(
    console: tuple[AsyncTestClient[Any], Sink],
) -> None:
    client, sink = console
    headers = await login(client)
    sink.default = Answer(400, body=b"no such contact")
    await send(client, *(event("Email Bounced", f"d{i}@example.com") for i in range(3)))
    await settled(client, 3)
    page = (await client.get("/console/dead-letters")).text
    assert "3 dead deliveries" in page and "HTTP 400: no such contact (not retryable)" in page
    confirm = await client.get(
        "/console/dead-letters/confirm",
        params={"destination": "crm", "error": "HTTP 400: no such contact (not retryable)"},
    )
    assert (
        "Replay <strong>3</strong> dead deliveries" in confirm.text
        and 'id="confirm-replay"' in confirm.text
    )
    sink.default = Answer(200)
    [letter, *_] = (await client.get("/api/v1/dead-letters", headers=BEARER)).json()["dead_letters"]
    one = await client.post(
        "/console/dead-letters/replay", data={"id": letter["id"]}, headers=headers
    )
    assert (
        "Replayed 1 dead delivery" in one.text
        and one.headers["hx-trigger"] == "dead-letters-changed"
    )
    again = await client.post(
        "/console/dead-letters/replay", data={"id": letter["id"]}, headers=headers
    )
    assert again.status_code == 404
    rest = await client.post(
        "/console/dead-letters/replay",
        data={"destination": "crm", "error": "HTTP 400: no such contact (not retryable)"},
        headers=headers,
    )
    assert "Replayed 2 dead deliveries" in rest.text
    await eventually(lambda: len(sink.received) >= 6)
    empty = await client.get("/console/dead-letters/confirm")
    assert "Nothing to replay" in empty.text


async def test_an_event_is_replayed_from_its_page(
    console: tuple[AsyncTestClient[Any], Sink],
) -> None:
    client, sink = console
    headers = await login(client)
    sink.default = Answer(400)
    [event_id] = await send(client, event("Email Bounced", "e@example.com"))
    await settled(client, 1)
    page = (await client.get(f"/console/events/{event_id}")).text
    assert 'data-destination="crm" data-state="dead"' in page and "HTTP 400" in page
    assert (
        "route <strong>bounces</strong>" in page and "event_name = &#34;Email Bounced&#34;" in page
    )
    sink.default = Answer(200)
    r = await client.post(
        f"/console/events/{event_id}/replay", data={"destination": "crm"}, headers=headers
    )
    assert (
        "Sent again to crm: 1 new delivery." in r.text
        and r.headers["hx-trigger"] == "deliveries-changed"
    )

    async def succeeded() -> bool:
        html = (await client.get(f"/console/events/{event_id}/deliveries")).text
        return 'data-destination="crm" data-state="succeeded"' in html

    await eventually(succeeded)
    missing = await client.post("/console/events/nope/replay", headers=headers)
    assert missing.status_code == 404


async def test_routes_page_and_its_dry_run(
    console: tuple[AsyncTestClient[Any], Sink], bounced: dict[str, Any]
) -> None:
    client, sink = console
    headers = await login(client)
    page = (await client.get("/console/routes")).text
    assert "event_name = &#34;Email Bounced&#34;" in page and "every event" in page
    assert 'option value="email-bounced.json" selected' in page
    sample = await client.get("/console/routes/sample", params={"name": "batch.json"})
    assert sample.status_code == 200 and "<textarea" in sample.text
    for name in ("../../etc/passwd", "/etc/passwd", "nope.json"):
        assert (
            await client.get("/console/routes/sample", params={"name": name})
        ).status_code == 404
    r = await client.post(
        "/console/routes/test", data={"event": json.dumps(bounced)}, headers=headers
    )
    assert r.status_code == 200
    assert "2 routes (bounces, everything)" in r.text and "***" in r.text and SECRET not in r.text
    bad = await client.post("/console/routes/test", data={"event": "{nope"}, headers=headers)
    assert "not valid JSON" in bad.text
    assert sink.received == []
