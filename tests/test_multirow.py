"""Many-row statements: which catalogue statements take the form, and that no row is lost.

The transport writes a batch's rows in chunks of :data:`relay.queue.multirow.CHUNK`
per statement (a growing ``VALUES`` list, or a growing table of values); the counts
below straddle the chunk size so a partial last chunk, an exact multiple and a single
row all go through a real SQLite file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.model import DeliveryState
from relay.queue import EventFilter, open_queue
from relay.queue.catalogue import load
from relay.queue.multirow import CHUNK, MultiRow

from .queuekit import event, grouped, settlement, stored_deliveries


def test_plain_inserts_and_tables_of_values_take_the_many_row_form_and_nothing_else_does() -> None:
    catalogue = load("sqlite")
    forms = {name: MultiRow.of(catalogue.sql(name)) for name in catalogue.statements}
    taking = {name for name, form in forms.items() if form is not None}
    assert {"insert_event", "insert_delivery", "insert_group_item"} <= taking
    assert {"settle", "insert_attempt"} <= taking  # outcomes: one step per batch
    for name in taking:
        sql = catalogue.sql(name).upper()
        assert "ON CONFLICT" not in sql and "RETURNING" not in sql, name
        if not sql.startswith("WITH"):
            assert "SELECT" not in sql, name


def test_a_value_that_is_not_a_plain_parameter_keeps_the_row_by_row_form() -> None:
    assert MultiRow.of("INSERT INTO t (a, b) VALUES (:a, :b + 1)") is None
    assert MultiRow.of("INSERT INTO t (a) VALUES (:a) ON CONFLICT (a) DO NOTHING") is None
    assert MultiRow.of("INSERT INTO t (a) SELECT :a") is None
    assert MultiRow.of("UPDATE t SET a = :a") is None
    assert MultiRow.of("WITH v(a) AS (VALUES (:a + 1)) UPDATE t SET a = v.a FROM v") is None


def test_a_table_of_values_grows_and_keeps_what_follows_it() -> None:
    form = MultiRow.of(
        "WITH v(id, s) AS (VALUES (:id, :s)) UPDATE t SET s = v.s FROM v WHERE t.id = v.id"
    )
    assert form is not None and form.names == ("id", "s")
    [(text, values)] = list(form.chunks([{"id": 1, "s": "a"}, {"id": 2, "s": "b"}]))
    assert (
        text
        == "WITH v(id, s) AS (VALUES (?,?),(?,?)) UPDATE t SET s = v.s FROM v WHERE t.id = v.id"
    )
    assert values == [1, "a", 2, "b"]


def test_chunks_keep_every_row_in_order_with_repeated_parameters() -> None:
    form = MultiRow.of("INSERT INTO t (a, b, c) VALUES (:a, :now, :now)")
    assert form is not None
    rows = [{"a": i, "now": -i} for i in range(2 * CHUNK + 3)]
    chunks = list(form.chunks(rows))
    assert [len(values) // 3 for _, values in chunks] == [CHUNK, CHUNK, 3]
    flat = [value for _, values in chunks for value in values]
    assert flat == [v for i in range(len(rows)) for v in (i, -i, -i)]
    assert chunks[-1][0].count("(?,?,?)") == 3


@pytest.mark.parametrize("count", [1, CHUNK, CHUNK + 1, 3 * CHUNK - 1])
async def test_a_batch_of_any_size_is_stored_whole(tmp_path: Path, count: int) -> None:
    queue = open_queue(f"sqlite:///{tmp_path / 'q.db'}")
    await queue.open()
    try:
        plain = [event("a", "b") for _ in range(count)]
        items = [grouped(n=i) for i in range(count)]
        events = [*plain, *items]
        accepted = await queue.enqueue(events, 0.0, 1000.0)
        assert [a.event_id for a in accepted] == [e.id for e in events]
        page = await queue.events(EventFilter(), limit=10_000)
        assert {e.id: e.body for e in page.events} == {e.id: e.body for e in events}
        assert await stored_deliveries(queue) == {d.id for e in events for d in e.deliveries}
        depth = await queue.depth(1000.0)
        assert depth.counts[("a", "pending")] == depth.counts[("b", "pending")] == count
    finally:
        await queue.close()


@pytest.mark.parametrize("count", [1, CHUNK, CHUNK + 1, 2 * CHUNK + 3])
async def test_a_batch_of_outcomes_of_any_size_is_settled_whole(tmp_path: Path, count: int) -> None:
    """Each outcome lands on its own delivery, and only while the lease is the settler's:
    another instance's outcome for it is recorded as an attempt, nothing more."""
    url = f"sqlite:///{tmp_path / 'q.db'}"
    queue, other = open_queue(url), open_queue(url)
    await queue.open()
    await other.open()
    try:
        await queue.enqueue([event("a") for _ in range(count + 1)], 0.0, 1000.0)
        leased = await queue.lease("a", count + 1, 60, 1000.0)
        assert len(leased) == count + 1
        ours, theirs = leased[:count], leased[count]
        states = [DeliveryState.SUCCEEDED, DeliveryState.PENDING, DeliveryState.DEAD]
        await queue.settle_many(
            [
                settlement(d, states[i % 3], 1001.0 + i, status=200 + i, at=5000.0, error=_error(i))
                for i, d in enumerate(ours)
            ]
        )
        await other.settle_many([settlement(theirs, DeliveryState.SUCCEEDED, 1001.0, status=299)])
        views = {}
        for d in leased:  # one event each, shown with its attempts
            shown_event = await queue.event(d.event_id)
            assert shown_event is not None
            views.update({v.id: v for v in shown_event.deliveries})
        for i, d in enumerate(ours):
            view, state = views[d.id], states[i % 3]
            shown = DeliveryState.RETRYING if state is DeliveryState.PENDING else state
            assert (view.state, view.status_code, view.updated_at) == (shown, 200 + i, 1001.0 + i)
            assert view.last_error == _error(i)
            assert [(a.n, a.status_code) for a in view.attempts] == [(1, 200 + i)]
        stranger = views[theirs.id]
        assert stranger.state is DeliveryState.PENDING and stranger.status_code is None
        assert [(a.n, a.status_code) for a in stranger.attempts] == [(1, 299)]
        # Due next: the other instance's delivery, whose lease (ours, 60 s) still holds it.
        assert await queue.next_due("a") == 1060.0
    finally:
        await other.close()
        await queue.close()


def _error(i: int) -> str | None:
    """Every third outcome succeeded (see the states above), the others failed."""
    return None if i % 3 == 0 else f"HTTP {500 + i}"
