"""Many-row inserts: which catalogue statements take the form, and that no row is lost.

The transport inserts a batch's rows in chunks of :data:`relay.queue.multirow.CHUNK`
per statement; the counts below straddle the chunk size so a partial last chunk, an
exact multiple and a single row all go through a real SQLite file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.queue import EventFilter, open_queue
from relay.queue.catalogue import load
from relay.queue.multirow import CHUNK, MultiRowInsert

from .queuekit import event, grouped, stored_deliveries


def test_plain_inserts_take_the_many_row_form_and_nothing_else_does() -> None:
    catalogue = load("sqlite")
    forms = {name: MultiRowInsert.of(catalogue.sql(name)) for name in catalogue.statements}
    assert {"insert_event", "insert_delivery", "insert_group_item"} <= {
        name for name, form in forms.items() if form is not None
    }
    for name, form in forms.items():
        if form is None:
            continue
        sql = catalogue.sql(name).upper()
        assert "ON CONFLICT" not in sql and "RETURNING" not in sql and "SELECT" not in sql, name


def test_a_value_that_is_not_a_plain_parameter_keeps_the_row_by_row_form() -> None:
    assert MultiRowInsert.of("INSERT INTO t (a, b) VALUES (:a, :b + 1)") is None
    assert MultiRowInsert.of("INSERT INTO t (a) VALUES (:a) ON CONFLICT (a) DO NOTHING") is None
    assert MultiRowInsert.of("INSERT INTO t (a) SELECT :a") is None
    assert MultiRowInsert.of("UPDATE t SET a = :a") is None


def test_chunks_keep_every_row_in_order_with_repeated_parameters() -> None:
    form = MultiRowInsert.of("INSERT INTO t (a, b, c) VALUES (:a, :now, :now)")
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
