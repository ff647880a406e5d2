"""The CRM recipes in ``examples/recipes/`` against stand-ins that enforce each vendor's limits.

A recipe is a promise: this config passes `relay check`, renders the body the vendor
parses, never sends a batch over the vendor's count or byte limit (even for the largest
event its route admits), stays under the documented rate, and gets every event there
exactly once when the vendor throttles it. Each promise has a test here; the vendors'
documented numbers live once, in :mod:`tests.vendors.catalog`.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay.config import RelayConfig, load_config
from relay.destinations import OutboundRequest, template_context

from .process import ROOT, Server, clean_env, relay
from .vendors import Endpoint, Limits, StandIn, Window, catalog

RECIPES = ROOT / "examples" / "recipes"
EMAIL_EVENTS = (
    "Email Sent",
    "Email Delivered",
    "Email Bounced",
    "Email Opened",
    "Email Link Clicked",
)


def iso(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def slug(name: str) -> str:
    return name.lower().replace(" ", "_")


def tracking_id(e: dict[str, Any]) -> str:
    """messageId / insert_id as the Segment, RudderStack and Amplitude recipes build it."""
    user = e["user_id"] or e["hwid"]
    return f"pushwoosh-{e['message_code']}-{e['event_name']}-{e['timestamp']}-{user}"


@dataclass(frozen=True)
class Recipe:
    """A recipe file, the environment it needs, its stand-in, and where each event lands."""

    file: str
    env: dict[str, str]  # credentials (made up), and the rest each recipe requires
    url_var: str  # the variable holding the vendor's base URL
    endpoints: Callable[[], dict[str, Endpoint]]
    # destination -> (stand-in path, the key the stand-in records an event under)
    lands: dict[str, tuple[str, Callable[[dict[str, Any]], str]]]
    prefix: str = "X"  # the recipe's env prefix: X_RATE_LIMIT, X_GROUP_WAIT, X_GROUP_INTERVAL
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return RECIPES / self.file


RECIPE_LIST = [
    Recipe(
        "braze.yaml",
        {"BRAZE_API_KEY": "braze-key-1"},
        "BRAZE_URL",
        lambda: catalog.braze("braze-key-1"),
        {
            "braze": (
                "/users/track",
                lambda e: (
                    f"{e['hwid']}|{e['event_name']}|{iso(e['timestamp'])}|{e['message_code']}"
                ),
            )
        },
        "BRAZE",
    ),
    Recipe(
        "hubspot.yaml",
        {"HUBSPOT_TOKEN": "hubspot-token-1", "HUBSPOT_PORTAL_ID": "4711"},
        "HUBSPOT_URL",
        lambda: catalog.hubspot("hubspot-token-1"),
        {
            "hubspot-events": (
                "/events/v3/send/batch",
                lambda e: (
                    f"{e['hwid']}|pe4711_pushwoosh_{slug(e['event_name'])}|"
                    f"{iso(e['timestamp'])}|{e['message_code']}"
                ),
            ),
            "hubspot-contacts": (
                "/crm/v3/objects/contacts/batch/upsert",
                lambda e: e["hwid"].lower(),
            ),
        },
        "HUBSPOT",
    ),
    Recipe(
        "segment.yaml",
        {"SEGMENT_BASIC_AUTH": catalog.basic("segment-write-key").removeprefix("Basic ")},
        "SEGMENT_URL",
        lambda: catalog.segment("segment-write-key"),
        {"segment": ("/v1/batch", tracking_id)},
        "SEGMENT",
    ),
    Recipe(
        "rudderstack.yaml",
        {"RUDDERSTACK_BASIC_AUTH": catalog.basic("rudder-write-key").removeprefix("Basic ")},
        "RUDDERSTACK_DATA_PLANE_URL",
        lambda: catalog.rudderstack("rudder-write-key"),
        {"rudderstack": ("/v1/batch", tracking_id)},
        "RUDDERSTACK",
        {"RUDDERSTACK_DATA_PLANE_URL": "https://hosted.rudderlabs.example"},
    ),
    Recipe(
        "mixpanel.yaml",
        {
            "MIXPANEL_BASIC_AUTH": catalog.basic("sa-user", "sa-secret").removeprefix("Basic "),
            "MIXPANEL_PROJECT_ID": "31337",
        },
        "MIXPANEL_URL",
        lambda: catalog.mixpanel("sa-user", "sa-secret", "31337"),
        {
            "mixpanel": (
                "/import",
                lambda e: (
                    f"{e['event_name']}|{e['timestamp']}|{e['user_id'] or e['hwid']}|"
                    f"{e['message_code']}"
                ),
            )
        },
        "MIXPANEL",
    ),
    Recipe(
        "amplitude.yaml",
        {"AMPLITUDE_API_KEY": "amplitude-key-1"},
        "AMPLITUDE_URL",
        lambda: catalog.amplitude("amplitude-key-1"),
        {"amplitude": ("/2/httpapi", tracking_id)},
        "AMPLITUDE",
    ),
    Recipe(
        "customerio.yaml",
        {"CUSTOMERIO_BASIC_AUTH": catalog.basic("site-1", "track-key-1").removeprefix("Basic ")},
        "CUSTOMERIO_TRACK_URL",
        lambda: catalog.customerio("site-1", "track-key-1"),
        {
            "customerio": (
                "/api/v2/batch",
                lambda e: f"{e['hwid']}|{e['event_name']}|{e['timestamp']}|{e['message_code']}",
            )
        },
        "CUSTOMERIO",
    ),
]
RECIPE_IDS = [r.file.removesuffix(".yaml") for r in RECIPE_LIST]
by_recipe = pytest.mark.parametrize("recipe", RECIPE_LIST, ids=RECIPE_IDS)


def test_every_recipe_file_is_tested() -> None:
    assert sorted(p.name for p in RECIPES.glob("*.yaml")) == sorted(r.file for r in RECIPE_LIST)


def event(i: int, **fields: Any) -> dict[str, Any]:
    """A Pushwoosh email event (the shape of examples/email-opened.json), unique by ``i``."""
    body: dict[str, Any] = {
        "event_name": EMAIL_EVENTS[i % len(EMAIL_EVENTS)],
        "message_id": 2000013258 + i,
        "message_code": f"B780-5A7D243C-{i:08X}",
        "campaign_id": 961234 + i % 3,
        "platform": "Email",
        "payload": "Don't miss our summer sale!",
        "application_code": "3A1B2-C3D41",
        "hwid": f"reader{i}@example.org",
        "user_id": f"{1538 + i}" if i % 4 else "",  # some events carry no user id
        "timestamp": 1723801822 + i,
        "journey_title": "Summer sale",
    }
    body.update(fields)
    return body


_LOADED: dict[str, RelayConfig] = {}


def loaded(recipe: Recipe) -> RelayConfig:
    """The recipe's config with its variables set (loaded once: tests only read it)."""
    if recipe.file not in _LOADED:
        _LOADED[recipe.file] = load_config(recipe.path, {**recipe.env, **recipe.extra_env})
    return _LOADED[recipe.file]


def render(recipe: Recipe, destination: str, events: list[dict[str, Any]]) -> OutboundRequest:
    """The request the recipe's destination sends for one grouped delivery of ``events``."""
    config = loaded(recipe)
    dest = config.destinations[destination]
    return dest.build(template_context(events, destination, 0.0, group_key={}), "delivery-1")


def max_events(recipe: Recipe) -> int:
    config = loaded(recipe)
    (route,) = config.settings.routes
    assert route.group is not None, "a recipe batches: its route needs group"
    return route.group.max_events


# -- `relay check` ---------------------------------------------------------------------------


@by_recipe
def test_recipe_passes_relay_check_once_its_variables_are_set(
    recipe: Recipe, tmp_path: Path
) -> None:
    env = {**recipe.env, **recipe.extra_env}
    checked = relay("check", "--config", str(recipe.path), cwd=tmp_path, env=clean_env(**env))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("ok: 1 routes")
    # Without its variables the recipe is refused, naming each.
    missing = relay("check", "--config", str(recipe.path), cwd=tmp_path, env=clean_env())
    assert missing.returncode == 1
    assert all(f"environment variable {name} is not set" in missing.stderr for name in env)


# -- limits, from the documented numbers -------------------------------------------------------


def worst_events(recipe: Recipe, timestamp: int) -> list[dict[str, Any]]:
    """The largest events the recipe's route admits: longest fields of the costliest characters.

    An astral character is 12 bytes in escaped JSON and ``<`` 6; the routes bound the
    address to 254 characters and user_id/message_code to printable ASCII.
    """
    config = loaded(recipe)
    candidates = [
        event(
            1,
            event_name="Email Link Clicked",
            hwid="\U0001f600" * 254,
            user_id=user,
            message_code=code,
            timestamp=timestamp,
            campaign_id=2**64 - 1,
            message_id=2**64 - 1,
        )
        for user in ("", "<" * 128)
        for code in ("<" * 64, "A" * 36)
    ]
    admitted = [e for e in candidates if config.table.matching(e)]
    assert admitted, "the route admits none of the largest events"
    return admitted


@by_recipe
def test_largest_batch_fits_the_documented_size(recipe: Recipe) -> None:
    n = max_events(recipe)
    endpoints = recipe.endpoints()
    for destination, (path, _) in recipe.lands.items():
        limits = endpoints[path].limits
        assert n <= limits.max_events
        for worst in worst_events(recipe, 2**63 - 1):  # the longest time a template can print
            request = render(recipe, destination, [dict(worst) for _ in range(n)])
            assert request.body is not None
            if limits.max_bytes is not None:
                assert len(request.body) <= limits.max_bytes, (destination, worst["user_id"])
            if limits.max_event_bytes is not None:
                one = render(recipe, destination, [worst]).body
                assert one is not None and len(one) <= limits.max_event_bytes


@by_recipe
def test_largest_batch_is_accepted_by_the_vendor(recipe: Recipe) -> None:
    n = max_events(recipe)
    with StandIn(recipe.endpoints(), rate=Window(1000, 1.0)) as vendor:  # shape, not rate
        for destination in recipe.lands:
            for worst in worst_events(recipe, 4102444799):  # 2099-12-31T23:59:59Z
                request = render(recipe, destination, [dict(worst) for _ in range(n)])
                answer = httpx.post(
                    vendor.url + path_of(request), content=request.body, headers=request.headers
                )
                assert answer.is_success, answer.text
    assert all(e.status < 300 for e in vendor.exchanges)


def path_of(request: OutboundRequest) -> str:
    parts = httpx.URL(request.url)
    return parts.raw_path.decode()


def most_requests(rate: float, seconds: float) -> float:
    """The most requests the relay sends to one destination in any ``seconds``-long window.

    Its limiter (relay/delivery.py) lets a burst of up to 3 requests through above the
    average rate, so that is added to ``rate * seconds``.
    """
    return rate * seconds + max(1.0, min(3.0, rate * 3))


@by_recipe
def test_rate_stays_under_the_documented_rate(recipe: Recipe) -> None:
    config = loaded(recipe)
    n = max_events(recipe)
    endpoints = recipe.endpoints()
    # Destinations of one recipe share the vendor's account limit: their requests add up.
    requests = events = 0.0
    for destination, (path, _) in recipe.lands.items():
        limits = endpoints[path].limits
        rate = config.destinations[destination].spec.rate_limit
        assert rate is not None, f"{destination}: a recipe sets rate_limit"
        if limits.requests is not None:
            requests += most_requests(float(rate), limits.requests.seconds)
        if limits.events is not None:
            events += most_requests(float(rate), limits.events.seconds) * n
    if limits.requests is not None:
        assert requests <= limits.requests.count
    if limits.events is not None:
        assert events <= limits.events.count


# -- end to end --------------------------------------------------------------------------------


@by_recipe
def test_burst_arrives_exactly_once_through_a_throttling_vendor(
    recipe: Recipe, tmp_path: Path
) -> None:
    n = max_events(recipe)
    count = 2 * n + n // 2 + 1  # three batches per destination
    events = [event(i) for i in range(count)]
    # Two requests per second: the burst's batches go out together, so some get 429.
    with StandIn(recipe.endpoints(), rate=Window(2, 1.0)) as vendor:
        env = {
            **recipe.env,
            **recipe.extra_env,
            recipe.url_var: vendor.url,
            f"{recipe.prefix}_RATE_LIMIT": "50/s",
            f"{recipe.prefix}_GROUP_WAIT": "300ms",
            f"{recipe.prefix}_GROUP_INTERVAL": "300ms",
            "RELAY_QUEUE_URL": f"sqlite:///{tmp_path}/queue.db",
        }
        server = Server(tmp_path, recipe.path, env=clean_env(**env))
        try:
            for start in range(0, count, 250):
                assert server.post(events[start : start + 250]).status_code == 200
            expected = {key(e) for _, key in recipe.lands.values() for e in events}
            deadline = time.time() + 30
            while time.time() < deadline:
                with vendor.lock:
                    if set(vendor.accepted) >= expected:
                        break
                time.sleep(0.1)
        finally:
            assert server.stop() == 0
        with vendor.lock:
            accepted = dict(vendor.accepted)
            exchanges = list(vendor.exchanges)
            latest = dict(vendor.latest)
    missing = expected - set(accepted)
    assert not missing, f"{len(missing)} events never arrived, e.g. {sorted(missing)[:3]}"
    assert set(accepted) == expected
    twice = {k: c for k, c in accepted.items() if c != 1}
    assert not twice, f"arrived more than once: {list(twice.items())[:3]}"
    statuses = {e.status for e in exchanges}
    assert 429 in statuses, "the burst never hit the rate limit"
    assert statuses <= {200, 201, 204, 429}, statuses
    endpoints = recipe.endpoints()
    for e in exchanges:
        limits = endpoints[e.path].limits
        assert e.events <= limits.max_events
        assert limits.max_bytes is None or e.size <= limits.max_bytes
    if "hubspot-contacts" in recipe.lands:
        for e in events:  # the contact holds the event it was last sent
            assert latest[e["hwid"].lower()]["pushwoosh_last_email_event"] == e["event_name"]


def test_hubspot_contacts_keep_only_the_latest_event_of_an_address() -> None:
    recipe = next(r for r in RECIPE_LIST if r.file == "hubspot.yaml")
    events = [
        event(1, hwid="Ann@Example.org", event_name="Email Opened", timestamp=200),
        event(2, hwid="bob@example.org", event_name="Email Sent", timestamp=100),
        event(3, hwid="ann@example.org", event_name="Email Delivered", timestamp=150),
        event(4, hwid="ann@example.org", event_name="Email Link Clicked", timestamp=200),
    ]
    body = json.loads(render(recipe, "hubspot-contacts", events).body or b"")
    latest = {
        i["id"].lower(): i["properties"]["pushwoosh_last_email_event"] for i in body["inputs"]
    }
    # Same time: the one accepted last wins; addresses differing in case are one contact.
    assert latest == {"ann@example.org": "Email Link Clicked", "bob@example.org": "Email Sent"}
    with StandIn(recipe.endpoints()) as vendor:
        status, _, _ = vendor.answer(
            "/crm/v3/objects/contacts/batch/upsert",
            {"authorization": "Bearer hubspot-token-1"},
            json.dumps(body).encode(),
        )
    assert status == 200


# -- the stand-ins really enforce the limits -----------------------------------------------------


def minimal_tracking_batch(n: int) -> bytes:
    """The smallest valid Segment-style batch of ``n`` track calls."""
    call = {"type": "track", "event": "E", "userId": "u", "timestamp": "2024-08-16T09:50:22Z"}
    return json.dumps({"batch": [{**call, "messageId": str(i)} for i in range(n)]}).encode()


@dataclass(frozen=True)
class Probe:
    """Requests to one recipe destination's stand-in, in the bodies the recipe renders."""

    recipe: Recipe
    destination: str

    @property
    def path(self) -> str:
        return self.recipe.lands[self.destination][0]

    @property
    def limits(self) -> Limits:
        return self.recipe.endpoints()[self.path].limits

    def post(self, vendor: StandIn, events: list[dict[str, Any]], **headers: str) -> httpx.Response:
        request = render(self.recipe, self.destination, events)
        return httpx.post(
            vendor.url + path_of(request),
            content=request.body,
            headers={**request.headers, **headers},
        )

    def post_batch(self, vendor: StandIn, n: int) -> httpx.Response:
        """``n`` small events in one request, as the recipe renders them where that fits.

        Segment's 2,501 calls as the recipe renders them are over 500 KB, which is refused
        first; there the count rule shows with the smallest calls the vendor takes.
        """
        request = render(self.recipe, self.destination, [event(i) for i in range(n)])
        body = request.body or b""
        limit = self.limits.max_bytes
        if limit is not None and len(body) > limit:
            body = minimal_tracking_batch(n)
        return httpx.post(vendor.url + path_of(request), content=body, headers=request.headers)


PROBES = [Probe(r, d) for r in RECIPE_LIST for d in r.lands]
by_probe = pytest.mark.parametrize("probe", PROBES, ids=[p.destination for p in PROBES])
COUNTED = [p for p in PROBES if p.limits.max_events != catalog.UNLIMITED]
SIZED = [p for p in PROBES if p.limits.max_bytes is not None]


@pytest.mark.parametrize(  # RudderStack and Customer.io document bytes only
    "probe", COUNTED, ids=[p.destination for p in COUNTED]
)
def test_stand_in_refuses_a_batch_over_the_documented_count(probe: Probe) -> None:
    limits = probe.limits
    with StandIn(probe.recipe.endpoints()) as vendor:
        over = probe.post_batch(vendor, limits.max_events + 1)
        assert over.status_code == limits.overcount_status
        assert not vendor.accepted, "an over-full batch was recorded"
        # One fewer is taken, so the limit is exactly the documented one.
        assert probe.post_batch(vendor, limits.max_events).is_success
        assert sum(vendor.accepted.values()) == limits.max_events


@pytest.mark.parametrize(  # HubSpot and Braze document counts only
    "probe", SIZED, ids=[p.destination for p in SIZED]
)
def test_stand_in_refuses_a_body_over_the_documented_size(probe: Probe) -> None:
    limits = probe.limits
    assert limits.max_bytes is not None
    with StandIn(probe.recipe.endpoints()) as vendor:
        big = event(0, hwid="x" * limits.max_bytes + "@example.org")
        answer = probe.post(vendor, [big])
        assert answer.status_code == limits.oversize_status
        assert not vendor.accepted


@pytest.mark.parametrize(
    "probe", [p for p in PROBES if p.limits.max_event_bytes], ids=["segment", "rudderstack"]
)
def test_stand_in_refuses_an_event_over_the_documented_size(probe: Probe) -> None:
    with StandIn(probe.recipe.endpoints()) as vendor:
        limits = probe.limits
        assert limits.max_event_bytes is not None
        big = event(0, hwid="x" * limits.max_event_bytes + "@example.org")
        assert probe.post(vendor, [event(1), big]).status_code == limits.oversize_status
        assert not vendor.accepted


@by_probe
def test_stand_in_checks_the_credential_and_the_body(probe: Probe) -> None:
    with StandIn(probe.recipe.endpoints()) as vendor:
        good = probe.post(vendor, [event(0)])
        assert good.is_success
        if probe.recipe.file == "amplitude.yaml":  # the key travels in the body
            request = render(probe.recipe, probe.destination, [event(1)])
            body = (request.body or b"").replace(b"amplitude-key-1", b"wrong-key")
            forged = httpx.post(vendor.url + probe.path, content=body, headers=request.headers)
        else:
            forged = probe.post(vendor, [event(1)], Authorization="Bearer wrong-token")
        assert forged.status_code == 401
        auth = render(probe.recipe, probe.destination, [event(2)]).headers
        garbled = httpx.post(
            vendor.url + probe.path + query_of(probe), content=b'{"oops"', headers=auth
        )
        assert garbled.status_code == 400
        wrong_shape = httpx.post(
            vendor.url + probe.path + query_of(probe), content=b'{"a": 1}', headers=auth
        )
        assert wrong_shape.status_code in (400, 401)
        assert sum(vendor.accepted.values()) == 1


def query_of(probe: Probe) -> str:
    url = httpx.URL(render(probe.recipe, probe.destination, [event(0)]).url)
    return "?" + url.query.decode() if url.query else ""


def test_stand_in_answers_429_with_retry_after_above_the_rate() -> None:
    recipe = next(r for r in RECIPE_LIST if r.file == "braze.yaml")
    probe = Probe(recipe, "braze")
    with StandIn(recipe.endpoints(), rate=Window(2, 1.0)) as vendor:
        answers = [probe.post(vendor, [event(i)]) for i in range(3)]
        assert [a.status_code for a in answers] == [201, 201, 429]
        assert answers[2].headers["retry-after"] == "1"
        time.sleep(1.05)
        assert probe.post(vendor, [event(3)]).status_code == 201
    assert sorted(vendor.accepted) == sorted(
        f"{e['hwid']}|{e['event_name']}|{iso(e['timestamp'])}|{e['message_code']}"
        for e in (event(0), event(1), event(3))
    )


def test_stand_in_counts_events_against_an_event_rate() -> None:
    recipe = next(r for r in RECIPE_LIST if r.file == "rudderstack.yaml")
    requests = [
        render(recipe, "rudderstack", [event(i) for i in range(start, start + 250)])
        for start in range(0, 1001, 250)
    ]
    with StandIn(recipe.endpoints()) as vendor:  # RudderStack Free: 1,000 events per minute
        answers = [
            httpx.post(vendor.url + "/v1/batch", content=r.body, headers=r.headers)
            for r in requests
        ]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429]
    assert 1 <= int(answers[-1].headers["retry-after"]) <= 60
    assert len(vendor.accepted) == 1000
