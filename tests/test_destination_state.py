"""Destination state in the queue: pause, the circuit's transitions, order per key.

Queue-level, on both backends; the rules (relay/circuit.py) and notices
(relay/notices.py) are tested pure here too. tests/test_destination_health.py runs
them end to end against real processes.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest

from relay import circuit, notices
from relay.circuit import Mode, State
from relay.config import parse_config
from relay.model import NewDelivery, NewEvent, new_id, search_fields
from relay.queue import DestinationState, Queue
from relay.settings import Circuit
from relay.slack_format import notice_message
from relay.units import Duration, Percent

from .conftest import OpenInstance
from .queuekit import bury, event, put, retry, succeed


def keyed(key: str | None, n: int, destination: str = "crm") -> NewEvent:
    body = {"event_name": "Email Opened", "hwid": f"{key}@x", "n": n}
    return NewEvent(
        new_id(),
        msgspec.json.encode(body),
        (NewDelivery(new_id(), destination, "ordered", order_key=key),),
        None,
        search_fields(body),
    )


def numbers(leased: list[Any]) -> list[int]:
    return sorted(msgspec.json.decode(d.event_body)["n"] for d in leased)


# -- pause ----------------------------------------------------------------------------------
async def test_pause_and_resume_move_budgets_forward_by_the_hold(queue: Queue) -> None:
    t0 = time.time() - 1000
    before = event("crm")
    await put(queue, before, now=t0)
    assert await queue.pause("crm", "maintenance", t0 + 10) is True
    assert await queue.pause("crm", "again", t0 + 11) is False  # already paused
    during = event("crm")
    await put(queue, during, now=t0 + 50)
    [state] = (await queue.destination_states()).values()
    assert (state.paused, state.paused_reason, state.held_since) == (True, "maintenance", t0 + 10)

    assert await queue.resume("crm", t0 + 110) is True
    assert await queue.resume("crm", t0 + 111) is False
    budgets = {d.event_id: d.created_at for d in await queue.lease("crm", 10, 30, t0 + 110)}
    # 10 s of budget were spent before the pause, none during it.
    assert budgets[before.id] == pytest.approx(t0 + 100)
    assert budgets[during.id] == pytest.approx(t0 + 110)
    assert not (await queue.destination_states())["crm"].paused


async def test_a_held_destination_gives_no_lease_whatever_a_cache_says(
    queue: Queue, instances: OpenInstance
) -> None:
    other = await instances()
    now = time.time()
    await put(queue, event("crm"), event("crm"), event("slack"), now=now)
    await other.pause("crm", None, now)  # this instance has not read the state yet
    assert await queue.lease("crm", 10, 30, now) == []
    assert len(await queue.lease("slack", 10, 30, now)) == 1  # others are not held
    await other.resume("crm", now)
    await queue.open_circuit("crm", "down", 10, now)
    assert await queue.lease("crm", 10, 30, now + 20) == []  # open: nothing
    assert await other.claim_probe("crm", now + 100, now + 20)
    assert await queue.lease("crm", 10, 30, now + 20) == []  # half-open, not our probe
    assert len(await other.lease("crm", 1, 30, now + 20)) == 1  # the prober's one


async def test_the_state_is_shared_by_every_instance(queue: Queue, instances: OpenInstance) -> None:
    other = await instances()
    now = time.time()
    await queue.pause("crm", None, now)
    assert (await other.destination_states())["crm"].paused
    assert await other.resume("crm", now + 1)
    assert not (await queue.destination_states())["crm"].paused


# -- circuit --------------------------------------------------------------------------------
async def test_one_instance_opens_probes_and_closes(queue: Queue, instances: OpenInstance) -> None:
    other = await instances()
    t0 = time.time() - 1000
    await put(queue, event("crm"), now=t0)
    assert await queue.open_circuit("crm", "20 of 20 failed", 30, t0) is True
    assert await other.open_circuit("crm", "again", 30, t0) is False  # one opener
    state = (await queue.destination_states())["crm"]
    assert (state.circuit, state.reopen_at, state.held_since) == ("open", t0 + 30, t0)
    assert circuit.mode(state, queue.owner, t0 + 29) is Mode.HOLD
    assert circuit.mode(state, queue.owner, t0 + 30) is Mode.CLAIM

    assert await queue.claim_probe("crm", t0 + 29 + 60, t0 + 29) is False  # cooldown not over
    assert await queue.claim_probe("crm", t0 + 90, t0 + 30) is True
    assert await other.claim_probe("crm", t0 + 90, t0 + 31) is False  # one prober
    state = (await queue.destination_states())["crm"]
    assert circuit.mode(state, queue.owner, t0 + 31) is Mode.PROBE
    assert circuit.mode(state, other.owner, t0 + 31) is Mode.HOLD
    assert circuit.mode(state, other.owner, t0 + 91) is Mode.CLAIM  # a silent prober is replaced

    assert await other.close_circuit("crm", t0 + 40) is False  # not its probe
    assert await queue.reopen_circuit("crm", "probe failed", 60, t0 + 40) is True
    state = (await queue.destination_states())["crm"]
    assert (state.circuit, state.reopen_at, state.cooldown) == ("open", t0 + 100, 60)

    assert await queue.claim_probe("crm", t0 + 160, t0 + 100) is True
    assert await queue.close_circuit("crm", t0 + 100) is True
    state = (await queue.destination_states())["crm"]
    assert (state.circuit, state.held_since, state.closed_at) == ("closed", None, t0 + 100)
    [d] = await queue.lease("crm", 10, 30, t0 + 100)
    assert d.created_at == pytest.approx(t0 + 100)  # the open circuit spent no budget


async def test_a_pause_outlasts_a_closing_circuit(queue: Queue) -> None:
    t0 = time.time() - 1000
    await queue.open_circuit("crm", "down", 10, t0)
    await queue.pause("crm", "and paused", t0 + 5)
    await queue.claim_probe("crm", t0 + 100, t0 + 20)
    assert await queue.close_circuit("crm", t0 + 20)
    state = (await queue.destination_states())["crm"]
    assert (state.paused, state.circuit, state.held_since) == (True, "closed", t0)
    assert circuit.mode(state, queue.owner, t0 + 21) is Mode.HOLD


async def test_health_window_counts_what_counts_against_the_destination(queue: Queue) -> None:
    now = time.time()
    await put(queue, *(event("crm") for _ in range(4)), now=now)
    leased = await queue.lease("crm", 4, 30, now)
    await retry(queue, leased[0], now + 60, now)  # a 503: counts
    await bury(queue, leased[1], now, "HTTP 404", 404)  # a 404 kills one delivery: does not
    await succeed(queue, leased[2], now)
    await settle_failed(queue, leased[3], now)
    assert await queue.health_window("crm", now - 1) == (4, 2)
    assert await queue.health_window("crm", now + 1) == (0, 0)
    activity = await queue.activity("crm", now - 1, now - 1)
    assert (activity.attempts, activity.succeeded) == (4, 1)
    assert activity.p95_ms == pytest.approx(1.5)
    assert activity.last_error is not None


async def settle_failed(queue: Queue, d: Any, now: float) -> None:
    """A connection failure that used up the budget: dead, and the destination's fault."""
    from relay.model import AttemptOutcome, DeliveryState
    from relay.queue import Settlement
    from relay.queue.records import AttemptRecord

    attempt = AttemptRecord(
        d.attempts, now, 1.5, AttemptOutcome.DEAD, None, "connect refused", failed=True
    )
    await queue.settle(
        Settlement(d.id, d.destination, DeliveryState.DEAD, now, now, attempt, "connect refused")
    )


async def test_a_dead_letter_notice_at_most_once_per_interval(queue: Queue) -> None:
    now = time.time()
    await put(queue, event("crm"), event("crm"), now=now)
    for d in await queue.lease("crm", 2, 30, now):
        await bury(queue, d, now)
    assert await queue.dead_letters_notice("crm", now, 600) == 2
    assert await queue.dead_letters_notice("crm", now + 599, 600) is None
    assert await queue.dead_letters_notice("crm", now + 600, 600) == 2


# -- order per key --------------------------------------------------------------------------
async def test_one_delivery_at_a_time_per_key_in_acceptance_order(queue: Queue) -> None:
    now = time.time()
    a = [keyed("a", i) for i in range(3)]
    b = [keyed("b", 10 + i) for i in range(2)]
    plain = keyed(None, 99)
    await put(queue, a[0], b[0], a[1], plain, b[1], a[2], now=now)

    first = await queue.lease("crm", 10, 30, now)
    assert numbers(first) == [0, 10, 99]  # the heads of a and b, and the unordered one
    assert await queue.lease("crm", 10, 30, now) == []
    by_n = {msgspec.json.decode(d.event_body)["n"]: d for d in first}

    await retry(queue, by_n[0], now + 5, now)  # a's head retries: a waits, b goes on
    await succeed(queue, by_n[10], now)
    assert numbers(await queue.lease("crm", 10, 30, now)) == [11]
    assert await queue.lease("crm", 10, 30, now + 4) == []
    [again] = await queue.lease("crm", 10, 30, now + 5)
    assert msgspec.json.decode(again.event_body)["n"] == 0
    await bury(queue, again, now + 5)  # a dead head lets the next one go
    assert numbers(await queue.lease("crm", 10, 30, now + 5)) == [1]


async def test_order_holds_across_instances(queue: Queue, instances: OpenInstance) -> None:
    other = await instances()
    now = time.time()
    await put(queue, *(keyed("k", i) for i in range(5)), now=now)
    seen: list[int] = []
    for turn in range(5):
        mine, theirs = (queue, other) if turn % 2 else (other, queue)
        leased = await mine.lease("crm", 10, 30, now)
        assert await theirs.lease("crm", 10, 30, now) == []  # the head is out: the key waits
        assert len(leased) == 1
        seen += numbers(leased)
        await succeed(mine, leased[0], now)
    assert seen == [0, 1, 2, 3, 4]


async def test_a_resend_of_an_ordered_event_keeps_its_key(queue: Queue) -> None:
    now = time.time()
    first, second = keyed("k", 1), keyed("k", 2)
    await put(queue, first, now=now)
    [d] = await queue.lease("crm", 10, 30, now)
    await succeed(queue, d, now)
    await put(queue, second, now=now)
    [made] = await queue.resend(first.id, None, now) or [""]
    leased = await queue.lease("crm", 10, 30, now)
    assert numbers(leased) == [2]  # the resend waits behind the one accepted before it
    await succeed(queue, leased[0], now)
    [resent] = await queue.lease("crm", 10, 30, now)
    assert resent.id == made


# -- the rules, pure ------------------------------------------------------------------------
BREAKER = Circuit(
    failure_rate=Percent(0.5),
    min_attempts=4,
    window=Duration(60),
    cooldown=Duration(10),
    max_cooldown=Duration(35),
)


@pytest.mark.parametrize(
    ("attempts", "failures", "opens"),
    [(3, 3, False), (4, 2, True), (4, 1, False), (100, 50, True), (100, 49, False), (0, 0, False)],
)
def test_should_open(attempts: int, failures: int, opens: bool) -> None:
    assert circuit.should_open(attempts, failures, BREAKER) is opens


def test_cooldown_doubles_up_to_the_maximum() -> None:
    cooldowns = [circuit.next_cooldown(None, BREAKER)]
    for _ in range(4):
        cooldowns.append(circuit.next_cooldown(cooldowns[-1], BREAKER))
    assert cooldowns == [10, 20, 35, 35, 35]


def test_the_window_starts_after_the_last_close() -> None:
    state = DestinationState("crm", closed_at=990.0)
    assert circuit.window_start(None, BREAKER, 1000) == 940
    assert circuit.window_start(state, BREAKER, 1000) == 990


@pytest.mark.parametrize(
    ("state", "enabled", "shown"),
    [
        (None, True, State.ACTIVE),
        (None, False, State.DISABLED),
        (DestinationState("x", paused=True, circuit="open"), True, State.PAUSED),
        (DestinationState("x", circuit="open"), True, State.OPEN),
        (DestinationState("x", circuit="half-open"), True, State.HALF_OPEN),
    ],
)
def test_shown_state(state: DestinationState | None, enabled: bool, shown: State) -> None:
    assert circuit.shown(state, enabled) is shown


def test_notices_never_go_to_the_destination_they_are_about() -> None:
    config = parse_config(
        """
        destinations:
          crm: {type: http, url: "http://127.0.0.1:9/"}
          ops: {type: http, url: "http://127.0.0.1:9/ops"}
          shut: {type: http, url: "", enabled: false}
          log: {type: log}
        alerts: {to: [ops, shut, log, ops]}
        routes: [{name: all, to: [crm]}]
        """.replace("\n        ", "\n"),
        env={},
    )
    assert notices.recipients(config, "crm") == ["ops", "log"]
    assert notices.recipients(config, "ops") == ["log"]
    document = notices.notice(notices.Kind.CIRCUIT_OPENED, "crm", "open", "down", 0.0, 3, 1)
    record = notices.as_event(config, document)
    assert record is not None
    assert [d.destination for d in record.deliveries] == ["ops", "log"]
    assert {d.route for d in record.deliveries} == {notices.ROUTE}
    assert msgspec.json.decode(record.body) == {
        "type": "relay.circuit_opened",
        "destination": "crm",
        "state": "open",
        "reason": "down",
        "at": "1970-01-01T00:00:00.000Z",
        "pending": 3,
        "dead": 1,
    }


def test_a_slack_notice_escapes_what_it_quotes() -> None:
    document = notices.notice(
        notices.Kind.CIRCUIT_OPENED, "crm", "open", "<!channel> <http://evil|click>", 0.0, 1, 2
    )
    text = notice_message(document)["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert text.startswith(":rotating_light: pushwoosh-relay: crm circuit opened (open)")


def test_circuit_settings_are_validated() -> None:
    with pytest.raises(Exception, match="failure_rate"):
        parse_config(
            'destinations: {crm: {type: http, url: "http://x/", circuit: {failure_rate: 150%}}}',
            env={},
        )
    config = parse_config(
        'destinations: {a: {type: http, url: "http://x/", circuit: off},'
        ' b: {type: slack, url: "http://x/"}, c: {type: log}}',
        env={},
    )
    assert [config.destinations[n].spec.breaker() is None for n in "abc"] == [True, False, True]
