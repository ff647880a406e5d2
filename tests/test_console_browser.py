"""The console in a real browser: headless Chromium (Playwright) against a real `relay serve`.

One relay with an admin token and three real local destinations: `crm` refuses the
first bounces (dead letters) and then accepts, `flaky` answers 503 until its circuit
opens, `log` writes. An operator logs in, sees the failing destination's state and
chart, opens a dead event, reads its attempts, replays it and sees it succeed,
pauses and resumes, filters events by address, tests a route, and the hostile
address shows as text. Every page is screenshot into .artifacts/console/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from . import browser
from .process import Server, clean_env, wait
from .sink import Answer, Sink

ADMIN = "browser-admin-token-51c0"
XSS = "<img src=x onerror=alert(1)>"


def event(name: str, hwid: str) -> dict[str, Any]:
    return {
        "event_name": name,
        "message_code": "M-9",
        "platform": "Email",
        "application_code": "A-9",
        "hwid": hwid,
        "user_id": "42",
        "timestamp": 1723798230,
        "campaign_id": 961234,
    }


@dataclass
class Relay:
    server: Server
    crm: Sink
    flaky: Sink
    dead_event: str

    def api(self, path: str) -> Any:
        r = httpx.get(
            self.server.url + path, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5
        )
        r.raise_for_status()
        return r.json()


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    reason = browser.missing()
    if reason:
        browser.unavailable(reason)
    tmp = tmp_path_factory.mktemp("browser")
    with Sink() as crm, Sink() as flaky:
        crm.script = [Answer(400, body=b"unknown contact"), Answer(400, body=b"unknown contact")]
        flaky.default = Answer(503, body=b"upstream down")
        cfg = tmp / "relay.yaml"
        cfg.write_text(f"""
server: {{admin_token: "${{RELAY_ADMIN_TOKEN}}", dedupe_window: 0, shutdown_grace: 1s}}
queue: {{url: "sqlite:///{tmp}/q.db", poll_interval: 100ms}}
logging: {{mask_hwid: false}}
destinations:
  crm:
    type: http
    url: "{crm.url}/contacts"
    headers: {{Authorization: "Bearer crm-secret-abcdef"}}
    circuit: off
  flaky:
    type: http
    url: "{flaky.url}/hook"
    retry: {{max_attempts: 50, initial_delay: 100ms, max_delay: 200ms}}
    circuit: {{failure_rate: 50%, min_attempts: 3, window: 1m, cooldown: 1h, max_cooldown: 1h}}
  log: {{type: log}}
routes:
  - name: bounces-to-crm
    when: {{event_name: Email Bounced}}
    to: [crm]
  - name: opens-to-flaky
    when: {{event_name: Email Opened}}
    to: [flaky]
  - {{name: everything-to-log, to: [log]}}
""")
        server = Server(tmp, cfg, env=clean_env(RELAY_ADMIN_TOKEN=ADMIN))
        try:
            [dead] = server.post(event("Email Bounced", "dead@example.com")).json()["ids"]
            server.post(event("Email Bounced", "second@example.com"))
            for i in range(3):
                server.post(event("Email Opened", f"reader{i}@example.com"))
            server.post(event("Email Sent", XSS))
            relay = Relay(server, crm, flaky, dead)
            wait(lambda: relay.api("/api/v1/dead-letters")["count"] == 2)
            yield relay
        finally:
            server.stop()


@pytest.fixture(scope="module")
def page(relay: Relay) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    browser.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = browser.launch(playwright)
        context = chromium.new_context(
            viewport={"width": 1280, "height": 900}, base_url=relay.server.url
        )
        context.set_default_timeout(10_000)
        tab = context.new_page()
        dialogs: list[str] = []
        tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        errors: list[str] = []
        tab.on("pageerror", lambda e: errors.append(str(e)))
        yield tab
        assert dialogs == [], "a script ran from event data"
        assert errors == []
        context.close()
        chromium.close()


def expect(locator: Any) -> Any:
    """Playwright's retrying assertions (imported here: the module loads without Playwright)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(browser.ARTIFACTS / f"{name}.png"), full_page=True)


# -- the operator's path, in order ----------------------------------------------------------
def test_log_in(page: Any, relay: Relay) -> None:
    page.goto("/console")
    assert "/console/login" in page.url
    shot(page, "login")
    page.fill("input[name=token]", "wrong")
    page.click("button[type=submit]")
    assert page.locator(".notice.error").inner_text() == "wrong admin token"
    page.fill("input[name=token]", ADMIN)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/console$"))
    assert page.locator("h1").first.inner_text() == "Destinations"


def test_a_failing_destination_shows_its_state_and_chart(page: Any, relay: Relay) -> None:
    wait(
        lambda: any(d["state"] == "open" for d in relay.api("/api/v1/destinations")["destinations"])
    )
    page.goto("/console")
    row = page.locator('tr[data-destination="flaky"]')
    assert row.locator(".state").inner_text() == "open"
    assert "HTTP 503" in row.locator(".error-text").inner_text()
    assert page.locator("rect.bar.retry").count() >= 1
    assert page.locator("rect.bar.events").count() >= 1
    shot(page, "overview")
    # the overview refreshes itself: a new event shows without a reload
    before = page.locator("figure.chart figcaption").first.inner_text()
    relay.server.post(event("Email Delivered", "late@example.com"))
    page.wait_for_function(
        "before => document.querySelector('figure.chart figcaption').innerText !== before",
        arg=before,
        timeout=8000,
    )
    page.goto("/console/destinations")
    card = page.locator('section[data-destination="flaky"]')
    assert card.get_attribute("data-state") == "open"
    assert "failed within" in card.inner_text()  # the circuit's reason
    assert card.locator("rect.bar.retry").count() >= 1
    shot(page, "destinations")


def test_a_dead_event_is_read_and_replayed_until_it_succeeds(page: Any, relay: Relay) -> None:
    page.goto("/console/events?state=dead&destination=crm")
    shot(page, "events-dead")
    page.click(f'a[href="/console/events/{relay.dead_event}"]')
    crm = page.locator('article[data-destination="crm"]')
    assert crm.get_attribute("data-state") == "dead"
    attempt = crm.locator("tr.attempt").first
    assert "400" in attempt.inner_text() and "unknown contact" in attempt.inner_text()
    assert "Bearer crm-secret" not in page.content()
    page.select_option("select[name=destination]", "crm")
    page.click("#replay")
    expect(page.locator("#flash")).to_contain_text("Sent again to crm: 1 new delivery.")
    page.wait_for_selector('article[data-destination="crm"][data-state="succeeded"]')
    assert page.locator('article[data-destination="crm"]').count() == 2
    shot(page, "event")


def test_dead_letters_are_counted_then_replayed(page: Any, relay: Relay) -> None:
    page.goto("/console/dead-letters")
    # the event replayed above went out as a new delivery; its dead letter is still here
    assert page.locator("#dead h2").inner_text() == "2 dead deliveries"
    page.click("table.groups button")
    expect(page.locator(".confirm")).to_contain_text("Replay 2 dead deliveries of crm")
    shot(page, "dead-letters")
    page.click("#confirm-replay")
    expect(page.locator("#flash")).to_contain_text("Replayed 2 dead deliveries")
    page.wait_for_function("document.querySelector('#dead h2').innerText.startsWith('0 dead')")


def test_pause_and_resume(page: Any, relay: Relay) -> None:
    page.goto("/console/destinations")
    card = page.locator('section[data-destination="crm"]')
    card.locator("input[name=reason]").fill("CRM maintenance window")
    card.locator("form.pause button").click()
    page.wait_for_selector('section[data-destination="crm"][data-state="paused"]')
    assert (
        "paused: CRM maintenance window"
        in page.locator('section[data-destination="crm"]').inner_text()
    )
    assert relay.api("/api/v1/destinations")["destinations"][0]["state"] == "paused"
    page.locator('section[data-destination="crm"] button.resume').click()
    page.wait_for_selector('section[data-destination="crm"][data-state="active"]')


def test_events_are_filtered_by_address(page: Any) -> None:
    page.goto("/console/events")
    page.fill("input[name=hwid]", "DEAD@example.com")
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(r"hwid=DEAD%40example.com"))
    rows = page.locator("table#events tbody tr")
    assert rows.count() == 1 and "dead@example.com" in rows.first.inner_text()
    shot(page, "events")


def test_a_hostile_address_is_text(page: Any) -> None:
    page.goto("/console/events?event_name=Email+Sent")
    cell = page.locator("table#events td.hwid").first
    assert cell.inner_text() == XSS
    assert page.locator("table#events img").count() == 0
    page.click("table#events a.mono")
    assert XSS in page.locator("#body").inner_text()
    assert page.locator("main img").count() == 0


def test_no_inline_script_runs_and_a_post_without_the_token_is_refused(page: Any) -> None:
    page.goto("/console/destinations")
    ran = page.evaluate(
        """() => { const s = document.createElement('script');
                   s.textContent = 'window.injected = true'; document.body.appendChild(s);
                   return window.injected === true; }"""
    )
    assert ran is False  # the CSP refused it
    status = page.evaluate(
        "async () => (await fetch('/api/v1/destinations/crm/pause', {method: 'POST'})).status"
    )
    assert status == 403
    form = page.evaluate(
        """async () => (await fetch('/console/destinations/crm/pause',
                        {method: 'POST', body: new URLSearchParams({reason: 'x'})})).status"""
    )
    assert form == 403


def test_a_route_is_tried_with_a_sample(page: Any) -> None:
    page.goto("/console/routes")
    assert (
        'event_name = "Email Bounced"'
        in page.locator('tr[data-route="bounces-to-crm"]').inner_text()
    )
    page.select_option("select[name=name]", "email-opened.json")
    page.wait_for_function("document.querySelector('#event-text').value.includes('Email Opened')")
    page.click("#test-route")
    result = page.locator("#route-result")
    result.locator(".dry-run").wait_for()
    text = result.inner_text()
    assert "opens-to-flaky" in text and "everything-to-log" in text
    shot(page, "routes")


def test_every_page_was_screenshot(page: Any) -> None:
    names = {p.stem for p in browser.ARTIFACTS.glob("*.png")}
    assert {
        "login",
        "overview",
        "destinations",
        "event",
        "dead-letters",
        "events",
        "routes",
    } <= names
    for path in browser.ARTIFACTS.glob("*.png"):
        assert path.stat().st_size > 5000, path
