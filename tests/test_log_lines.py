"""The log writer: whole lines, one write per loop turn, nothing left behind."""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import select
import time
from typing import Any

import pytest
import structlog

from relay import logs
from relay.logs import LineLogger


def _reader(fd: int) -> bytes:
    out = b""
    while select.select([fd], [], [], 0.2)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        out += chunk
    return out


@pytest.fixture
def pipe() -> Any:
    r, w = os.pipe()
    stream = os.fdopen(w, "w")
    yield r, stream
    stream.close()
    os.close(r)


def test_without_a_loop_each_line_is_written_at_once(pipe: Any) -> None:
    r, stream = pipe
    logger = LineLogger(stream)
    logger.msg('{"event":"one"}')
    assert os.read(r, 1000) == b'{"event":"one"}\n'


def test_lines_of_one_loop_turn_are_written_together_at_its_end(
    pipe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    r, stream = pipe
    logger = LineLogger(stream)
    writes: list[int] = []
    real_write = os.write

    def counting(fd: int, data: Any) -> int:
        writes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(logs.os, "write", counting)

    async def turn() -> bytes:
        for i in range(300):
            logger.msg(f'{{"event":"line","n":{i}}}')
        assert _reader(r) == b""  # nothing yet: the turn is not over
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return _reader(r)

    out = asyncio.run(turn())
    lines = out.decode().splitlines()
    assert lines == [f'{{"event":"line","n":{i}}}' for i in range(300)]
    # Far fewer writes than lines, none above PIPE_BUF, each ending on a whole line.
    assert 1 < len(writes) < 300 // 10
    assert all(n <= select.PIPE_BUF for n in writes)


def test_a_line_longer_than_pipe_buf_is_written_alone_and_whole(pipe: Any) -> None:
    r, stream = pipe
    logger = LineLogger(stream)
    long = "x" * (select.PIPE_BUF * 2)

    async def turn() -> None:
        logger.msg("a")
        logger.msg(long)
        logger.msg("b")

    asyncio.run(turn())
    logs.flush()
    assert _reader(r).decode().splitlines() == ["a", long, "b"]


def test_flush_writes_what_a_stopped_loop_left_waiting(pipe: Any) -> None:
    r, stream = pipe
    logger = LineLogger(stream)
    loop = asyncio.new_event_loop()
    try:
        # Logged from a callback, then the loop stops before the flush callback runs.
        loop.call_soon(logger.msg, "last words")
        loop.call_soon(loop.stop)
        loop.run_forever()
    finally:
        loop.close()
    logs.flush()
    assert b"last words\n" in _reader(r)


# -- what each line goes through: the redactor and the timestamp ----------------------------
SECRET = "s3cr3t-token-value"


@pytest.fixture
def redactor() -> logs.Redactor:
    r = logs.Redactor()
    r.update([SECRET], mask_hwid=True)
    return r


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        ({"event": "x", "error": f"bad {SECRET}!", "n": 1}, {"error": "bad ***!"}),
        ({"event": "x", "routes": ["a", f"{SECRET}-b"], "ok": True}, {"routes": ["a", "***-b"]}),
        (
            {"event": "x", "request": {"url": f"http://h/?k={SECRET}"}},
            {"request": {"url": "http://h/?k=***"}},
        ),
        ({"event": "x", "items": [{"note": SECRET}]}, {"items": [{"note": "***"}]}),
        ({"event": "x", "hwid": "someone@example.com"}, {"hwid": "so***@example.com"}),
        (
            {"event": "x", "event_": {"hwid": "someone@example.com"}},
            {"event_": {"hwid": "so***@example.com"}},
        ),
    ],
)
def test_secrets_and_addresses_are_masked_wherever_they_sit(
    redactor: logs.Redactor, line: dict[str, Any], masked: dict[str, Any]
) -> None:
    out = redactor(None, "info", dict(line))
    for key, value in masked.items():
        assert out[key] == value
    assert SECRET not in repr(out)


def test_a_plain_line_without_secrets_passes_as_it_is(redactor: logs.Redactor) -> None:
    line = {
        "event": "delivery.succeeded",
        "delivery_id": "d1",
        "attempt": 1,
        "ms": 0.5,
        "status_code": None,
        "routes": ["all"],
    }
    assert redactor(None, "info", line) is line  # the hot path: no copy, no substitution


def test_a_secret_split_across_two_values_is_no_secret(redactor: logs.Redactor) -> None:
    half = len(SECRET) // 2
    line = {"event": "x", "a": SECRET[:half], "b": SECRET[half:]}
    assert redactor(None, "info", dict(line)) == line


def test_timestamps_are_iso_utc_with_microseconds_as_structlog_writes_them() -> None:
    before = time.time()
    ours = logs._timestamp(None, "info", {})["timestamp"]
    theirs = structlog.processors.TimeStamper(fmt="iso", utc=True)(None, "info", {})["timestamp"]
    after = time.time()
    pattern = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"
    assert re.fullmatch(pattern, ours) and re.fullmatch(pattern, theirs)
    stamp = datetime.datetime.fromisoformat(ours.replace("Z", "+00:00")).timestamp()
    assert before - 1e-6 <= stamp <= after + 1e-6
