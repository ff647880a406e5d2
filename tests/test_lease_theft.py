"""Live instances never take each other's leases, whatever their hostname and pid say.

Issue 9, item 9: lease owners used to be ``hostname:pid``, and an instance that saw an
owner with its own hostname and a pid missing from its process table took that owner's
leases. Two containers with host networking, or two pods given the same hostname, run
in separate PID namespaces: each sees the same hostname and cannot see the other's
pids, so each judged the other dead and took its live leases, and events went out
twice without any crash. An instance is now a random id with a heartbeat in the queue;
only a stale heartbeat makes an owner dead. These tests pin that down on both levels:
real processes in real PID namespaces, and the queue on both backends.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from relay.queue import Queue

from .conftest import OpenInstance
from .process import Server
from .queuekit import event, put, succeed
from .sink import Answer, Sink

HEARTBEAT = 0.2  # queue.heartbeat: dead after 5 of them (1 s) without one
SLOW = 1.5  # seconds the destination takes per request: leases are held that long
CONCURRENCY = 4  # per instance, so each holds up to 4 leases at once
EVENTS = 32


def unshare_works() -> str | None:
    """Why the test cannot make PID namespaces here, or None when it can."""
    try:
        done = subprocess.run(
            ["unshare", "--pid", "--fork", "--kill-child", "true"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare cannot run: {exc}"
    if done.returncode != 0:
        return f"unshare --pid fails here (needs root or user namespaces): {done.stderr.strip()}"
    return None


def in_pid_namespace(before: str) -> Callable[[list[str]], list[str]]:
    """Run a command line as a child of ``sh`` (pid 1) in a new PID namespace.

    ``before`` runs first, so it decides which pid the relay gets in there: nothing
    (the relay is pid 2) or one short-lived command (pid 2 taken: the relay is pid 3).
    The trailing ``exit`` keeps ``sh`` from exec-ing the relay in its own place (pid 1).
    """

    def wrap(argv: list[str]) -> list[str]:
        command = shlex.join(argv)
        script = f"{before}{command}; exit $?"
        return ["unshare", "--pid", "--fork", "--kill-child", "sh", "-c", script]

    return wrap


def descendants(pid: int) -> Iterator[int]:
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                yield int(child)
                yield from descendants(int(child))


class Contained(Server):
    """`relay serve` under `unshare --pid`: signals go to the relay itself.

    unshare neither forwards SIGTERM nor dies of it, and ``sh``, being pid 1 of the
    namespace, ignores it, so a graceful stop signals the relay process directly.
    """

    def relay_pid(self) -> int:
        """The relay's pid as this (the outer) namespace sees it."""
        for pid in descendants(self.proc.pid):
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if b"relay" in argv and b"serve" in argv:
                    return pid
        raise AssertionError(f"no relay process under {self.proc.pid}: {self.output()}")

    def inner_pid(self) -> int:
        """The relay's pid inside its own namespace (the last NSpid column)."""
        status = Path(f"/proc/{self.relay_pid()}/status").read_text()
        [line] = [x for x in status.splitlines() if x.startswith("NSpid:")]
        return int(line.split()[-1])

    def pid_namespace(self) -> str:
        return os.readlink(f"/proc/{self.relay_pid()}/ns/pid")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        with contextlib.suppress(ProcessLookupError, AssertionError):
            os.kill(self.relay_pid(), sig)
        return super().stop(sig, timeout)


def busy_span(arrivals: list[float]) -> tuple[float, float]:
    """From the first request's arrival to the end of the last one (each takes SLOW)."""
    return min(arrivals), max(arrivals) + SLOW


@pytest.mark.postgres
def test_two_instances_in_separate_pid_namespaces_deliver_each_event_once(
    tmp_path: Path, pg_url: str, bounced: dict[str, Any]
) -> None:
    """Two relays, one hostname, one PostgreSQL queue, pids 2 and 3 in their namespaces.

    Why the old logic fails this test: the relay under ``sh -c 'relay'`` is pid 2 in
    its namespace and the one under ``sh -c '/bin/true; relay'`` is pid 3 (pid 2 was
    /bin/true, gone at once). Both report the same hostname. The second one's
    maintenance, every heartbeat, looked at the first one's leases (owner
    ``<host>:2``), found no pid 2 in its own namespace and released them; its workers
    then leased those deliveries again and sent them while the first one's requests
    were still in flight: the sink would count some Idempotency-Keys twice, and
    ``queue.leases_released`` would be logged by an instance that saw nobody die. (The
    reverse need not happen: pid 3 may exist in the first namespace as one of the first
    relay's own threads.) With leases held for ``SLOW`` seconds by both instances at
    once, for many heartbeats, the theft had every chance to happen.
    """
    reason = unshare_works()
    if reason is not None:
        pytest.skip(reason)
    cfg = tmp_path / "relay.yaml"
    with Sink() as sink:
        sink.default = Answer(200, delay=SLOW)
        cfg.write_text(f"""
server: {{dedupe_window: 0, shutdown_grace: 5s}}
queue: {{url: "{pg_url}", poll_interval: 100ms, heartbeat: {int(HEARTBEAT * 1000)}ms}}
logging: {{level: info, format: json}}
destinations:
  sink: {{type: http, url: "{sink.url}/hook", concurrency: {CONCURRENCY}, timeout: 10s}}
routes:
  - {{name: all, to: [sink]}}
""")
        servers = [
            Contained(tmp_path, cfg, wrap=in_pid_namespace("")),
            Contained(tmp_path, cfg, wrap=in_pid_namespace("/bin/true; ")),
        ]
        try:
            # The arrangement the old logic broke on: one hostname, distinct namespaces,
            # and each relay's pid free (or not a process) in the other's namespace.
            assert sorted(s.inner_pid() for s in servers) == [2, 3]
            assert servers[0].pid_namespace() != servers[1].pid_namespace()

            def post(i: int) -> str:
                r = servers[i % 2].post(dict(bounced, user_id=f"user-{i}"))
                assert r.status_code == 200, r.text
                [event_id] = r.json()["ids"]
                return str(event_id)

            with ThreadPoolExecutor(8) as pool:
                accepted = list(pool.map(post, range(EVENTS)))
            sink.wait_for(EVENTS, timeout=EVENTS * SLOW)
            time.sleep(5 * HEARTBEAT + SLOW)  # time for a stolen lease to go out again
        finally:
            codes = [s.stop() for s in servers]
        received = list(sink.received)
    assert codes == [0, 0], [s.output()[-2000:] for s in servers]

    keys = Counter(r.headers["idempotency-key"] for r in received)
    twice = {k: n for k, n in keys.items() if n > 1}
    assert not twice, f"delivered more than once: {twice}"
    users = Counter(r.json()["user_id"] for r in received)
    assert users == Counter(f"user-{i}" for i in range(EVENTS))
    assert len(set(accepted)) == EVENTS

    # Both held leases at the same time, for longer than an owner takes to be judged dead.
    sent_by: list[set[str]] = [
        {x["delivery_id"] for x in s.lines() if x["event"] == "delivery.succeeded"} for s in servers
    ]
    assert sent_by[0] and sent_by[1], "one instance delivered everything: nothing was at stake"
    assert sent_by[0].isdisjoint(sent_by[1])
    spans = [
        busy_span([r.at for r in received if r.headers["idempotency-key"] in ids])
        for ids in sent_by
    ]
    overlap = min(end for _, end in spans) - max(start for start, _ in spans)
    assert overlap > 5 * HEARTBEAT * 2, f"instances held leases together for only {overlap:.2f}s"
    for s in servers:
        assert not [x for x in s.lines() if x["event"] == "queue.leases_released"]
        assert not [x for x in s.lines() if x["event"] == "<not json>"]
    print(f"\n{EVENTS} events; both instances busy together for {overlap:.1f}s")


async def test_a_fresh_heartbeat_keeps_leases_whatever_the_pid_and_host(
    queue: Queue, instances: OpenInstance
) -> None:
    """An owner that keeps its heartbeat never loses a lease, even when it reports this
    host's name with our own pid, a pid that runs nothing here, or pid 1 (what a
    container's process is): the old ``hostname:pid`` check took the second kind's
    leases. Only the owner that falls silent loses its leases, after ``dead_after``.
    """
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    unused = max(int(p) for p in os.listdir("/proc") if p.isdigit()) + 10_000
    holders = [await instances() for _ in range(4)]
    for holder, pid in zip(holders, [me["pid"], unused, 1, unused], strict=True):
        holder._instance.update(host=me["host"], pid=pid)  # what another container reports
    now = time.time()
    spare = event("crm")
    await put(queue, *(event("crm") for _ in holders), spare, now=now)
    leases = [(await h.lease("crm", 1, 600, now))[0] for h in holders]
    live, silent = holders[:-1], holders[-1]
    held = {d.id for d in leases[:-1]}

    step = queue.heartbeat_every
    came_back: list[float] = []
    released = 0
    for k in range(int(queue.dead_after / step) * 3):  # well past the silent owner's death
        t = now + k * step
        for q in (queue, *live):  # every live instance beats and sweeps, as maintenance does
            await q.heartbeat(t)
        if k == 0:
            await silent.heartbeat(t)
        for q in (queue, *live):
            released += await q.release_orphans(t)
        taken = {d.id for d in await queue.lease("crm", 10, 0.001, t)}
        assert spare.deliveries[0].id in taken  # leasing works: what is free is taken
        assert taken.isdisjoint(held), f"a live owner's lease was taken at +{t - now}s"
        if leases[-1].id in taken:
            came_back.append(t - now)

    assert released == 1
    assert came_back and came_back[0] > silent.dead_after  # only once its heartbeat went stale
    # The live owners still hold their leases: their results are recorded.
    for holder, leased in zip(live, leases, strict=False):
        await succeed(holder, leased, now + 1)
        stored = await queue.event(leased.event_id)
        assert stored is not None
        assert [str(d.state) for d in stored.deliveries] == ["succeeded"]
