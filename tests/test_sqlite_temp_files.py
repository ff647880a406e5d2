"""The SQLite queue writes no temporary files: statement journals stay in memory.

A batch of events used to open, unlink and fill a statement journal in the
temporary directory: system calls per batch, and copies of the pages it changed
(event bodies, addresses) in a file no `relay forget` reaches. SQLite reads
SQLITE_TMPDIR once per process, so the queue runs in a child process; creating
a file there (even one unlinked at once) changes the directory's mtime.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from .process import clean_env

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, sys.argv[2])
    from tests.queuekit import event, settlement
    from relay.model import DeliveryState
    from relay.queue import open_queue

    async def main() -> None:
        queue = open_queue(f"sqlite:///{sys.argv[1]}")
        await queue.open()
        try:
            for n in range(20):  # batches of many events, as the receiver merges them
                await asyncio.gather(*(queue.enqueue([event("a", "b")], 0.0, 1000.0 + n)
                                       for _ in range(50)))
            leased = await queue.lease("a", 500, 60, 2000.0)
            await queue.settle_many(
                [settlement(d, DeliveryState.SUCCEEDED, 2001.0) for d in leased])
        finally:
            await queue.close()

    asyncio.run(main())
    """
)


def test_batches_of_events_and_outcomes_leave_the_temporary_directory_untouched(
    tmp_path: Path,
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    before = os.stat(scratch).st_mtime_ns
    env = {**clean_env(), "SQLITE_TMPDIR": str(scratch), "TMPDIR": str(scratch)}
    repo = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "q.db"), repo],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert os.stat(scratch).st_mtime_ns == before
    assert list(scratch.iterdir()) == []
