"""A minute of attacks mixed with normal traffic: nothing acknowledged is lost or sent twice.

Issue 9, "How it is checked": one real `relay serve` on SQLite, two real destinations
(one steady, one flaky: 500s, slow answers, an endless answer as a 500 and as a 200),
and for ``SOAK_SECONDS`` (default 60) at once:

- normal senders posting valid events and arrays, recording every acknowledged event;
- attackers: deeply nested bodies, 1 MB arrays of ``{}``, invalid UTF-8 / NaN /
  duplicate keys, bodies over the limit (with a length and chunked), connections
  that trickle their headers or send nothing, and bursts of connections beyond the cap;
- a prober on ``/healthz`` and a sampler of the relay's resident memory.

Then the attacks stop, the queue drains, and: every acknowledged event reached each
destination exactly once (a 2xx answered once per Idempotency-Key, and once per
event); no answer was a 5xx other than 503; ``/healthz`` answered every probe; the
resident memory stayed bounded. The sinks answer well within the destinations'
timeout, so no attempt can time out after a destination accepted it, and exactly once
is what must hold. The worst ``/healthz`` latency, the peak RSS and the counts are
printed (``pytest -s``). It runs in CI with the rest; ``SOAK_SECONDS`` shortens or
lengthens it, and ``-m "not soak"`` leaves it out of a quick local run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from .process import Server, wait
from .sink import Answer, Received, Sink
from .store import store
from .test_slow_clients import parse_head, request

pytestmark = pytest.mark.soak

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))
PATH = "/webhooks/pushwoosh"
MIB = 1024 * 1024
HEADER_TIMEOUT = 2.0  # server.header_timeout: idle and trickling clients are cut after it
MAX_CONNECTIONS = 256  # server.max_connections: bursts go beyond it
BURST = 300
IDLE = 16  # connections that never send a byte, reopened as the relay closes them
TRICKLERS = 6  # connections sending their head a byte at a time
SLOW_ANSWER = 0.5  # the flaky destination's slow answers; its timeout is 10 s
#: Peak resident memory allowed: several times what a soak takes (about 100 MiB), far
#: below what one unbounded answer or error report would cost (hundreds of MiB each).
RSS_BOUND = 400 * MIB


def write_config(tmp_path: Path, steady: Sink, flaky: Sink) -> Path:
    retry = "{max_attempts: 1000, max_age: 1h, initial_delay: 100ms, max_delay: 1s}"
    cfg = tmp_path / "relay.yaml"
    cfg.write_text(f"""
server:
  dedupe_window: 0
  header_timeout: {HEADER_TIMEOUT}s
  body_timeout: 5s
  keepalive_timeout: 5s
  max_connections: {MAX_CONNECTIONS}
  shutdown_grace: 5s
queue: {{url: "sqlite:///{tmp_path}/queue.db", poll_interval: 200ms}}
logging: {{level: warning, format: json}}
destinations:
  steady: {{type: http, url: "{steady.url}/in", concurrency: 8, timeout: 10s, retry: {retry}}}
  flaky: {{type: http, url: "{flaky.url}/in", concurrency: 8, timeout: 10s, retry: {retry}}}
routes:
  - {{name: all, to: [steady, flaky]}}
""")
    return cfg


class Ledger:
    """What the destinations accepted: (Idempotency-Key, event marker) per 2xx they answered."""

    def __init__(self) -> None:
        self.accepted: dict[str, list[tuple[str, str]]] = {"steady": [], "flaky": []}
        self.answers: dict[str, Counter[str]] = {"steady": Counter(), "flaky": Counter()}

    def steady(self, request: Received) -> Answer:
        return self._record("steady", request, Answer(200))

    def flaky(self, request: Received) -> Answer:
        """Mostly 200; every tenth a 500, every tenth slow; one endless 500 and one endless 200."""
        n = sum(self.answers["flaky"].values())
        if n == 40:
            answer = Answer(500, body=b"<html>", endless=True)
        elif n == 120:
            answer = Answer(200, body=b"<html>", endless=True)
        elif n % 10 == 3:
            answer = Answer(500, body=b"try again")
        elif n % 10 == 7:
            answer = Answer(200, delay=SLOW_ANSWER)
        else:
            answer = Answer(200)
        return self._record("flaky", request, answer)

    def _record(self, destination: str, request: Received, answer: Answer) -> Answer:
        # Called under the sink's lock.
        kind = ("endless " if answer.endless else "slow " if answer.delay else "") + str(
            answer.status
        )
        self.answers[destination][kind] += 1
        if 200 <= answer.status < 300:
            marker = json.loads(request.body)["user_id"]
            self.accepted[destination].append((request.headers["idempotency-key"], marker))
        return answer


class Soak:
    """The clients of one soak, each a thread until ``stop`` is set; what they saw."""

    def __init__(self, server: Server, template: dict[str, Any]) -> None:
        self.server = server
        self.template = template
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.statuses: Counter[tuple[str, int]] = Counter()  # (client, status)
        self.failures: Counter[str] = Counter()  # client: requests that got no answer
        self.acked: set[str] = set()
        self.sent = 0
        self.healthz: list[float] = []
        self.rss: list[int] = []

    def saw(self, who: str, status: int) -> None:
        with self.lock:
            self.statuses[who, status] += 1

    def failed(self, who: str) -> None:
        with self.lock:
            self.failures[who] += 1

    def seen(self, who: str) -> set[int]:
        with self.lock:
            return {status for (client, status) in self.statuses if client == who}

    # -- normal traffic -------------------------------------------------------------------
    def sender(self, seed: int) -> None:
        """Valid events, alone or in arrays, each marked by a unique user_id."""
        rng = random.Random(seed)
        made = 0
        with httpx.Client(base_url=self.server.url, timeout=30) as client:
            while not self.stop.is_set():
                markers = [f"soak-{seed}-{made + i}" for i in range(rng.choice([1, 1, 3, 8]))]
                made += len(markers)
                with self.lock:
                    self.sent += len(markers)
                events = [dict(self.template, user_id=m) for m in markers]
                body: Any = events[0] if len(events) == 1 and rng.random() < 0.5 else events
                try:
                    r = client.post(PATH, json=body)
                except httpx.HTTPError:
                    self.failed("sender")
                    continue
                self.saw("sender", r.status_code)
                if r.status_code == 200:
                    assert r.json()["accepted"] == len(markers), r.text
                    with self.lock:
                        self.acked.update(markers)
                self.stop.wait(0.05)

    # -- hostile bodies -------------------------------------------------------------------
    def poster(self, who: str, bodies: list[bytes], pause: float) -> None:
        """Post ``bodies`` in turn (each one hostile) until stopped."""
        with httpx.Client(base_url=self.server.url, timeout=30) as client:
            for i in range(10**9):
                if self.stop.is_set():
                    return
                body = bodies[i % len(bodies)]
                try:
                    r = client.post(PATH, content=body)
                except httpx.HTTPError:
                    self.failed(who)  # the relay may hang up on a body it refuses early
                    continue
                self.saw(who, r.status_code)
                assert len(r.content) < 4096, f"{who}: a {len(r.content)}-byte answer"
                self.stop.wait(pause)

    def chunked_oversized(self) -> None:
        """A body over the limit with no Content-Length: refused as it streams in."""
        chunk = b" " * 65536
        with httpx.Client(base_url=self.server.url, timeout=30) as client:
            while not self.stop.is_set():
                try:
                    r = client.post(PATH, content=iter([chunk] * 40))
                    self.saw("chunked oversized", r.status_code)
                except httpx.HTTPError:
                    self.failed("chunked oversized")
                self.stop.wait(0.3)

    # -- hostile connections --------------------------------------------------------------
    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=30)
        sock.settimeout(HEADER_TIMEOUT * 5)
        return sock

    def idle(self) -> None:
        """A connection that sends nothing, until the relay closes it; then another."""
        while not self.stop.is_set():
            with self.connect() as sock:
                try:
                    answer = sock.recv(65536)
                except TimeoutError:
                    self.failed("idle")  # never cut off
                    continue
                except ConnectionResetError:
                    answer = b""
                self.saw("idle", parse_head(answer.split(b"\r\n\r\n")[0])[0] if answer else 0)

    def trickle(self) -> None:
        """A request head sent a byte every 0.2 s: the deadline is per request, not per byte."""
        head = request("/webhooks/pushwoosh").replace(b"GET", b"POST")
        while not self.stop.is_set():
            with self.connect() as sock:
                answer = b""
                try:
                    for byte in head:
                        sock.sendall(bytes([byte]))
                        if self.stop.wait(0.2):
                            break
                    answer = sock.recv(65536)
                except (BrokenPipeError, ConnectionResetError):
                    with contextlib.suppress(OSError):  # the answer it sent before closing
                        answer = sock.recv(65536)
                except TimeoutError:
                    self.failed("trickle")
                status = parse_head(answer.split(b"\r\n\r\n")[0])[0] if answer else 0
                self.saw("trickle", status)

    def bursts(self) -> None:
        """Every few seconds, BURST connections at once, each asking for /healthz."""
        while not self.stop.wait(3):
            socks = []
            try:
                for _ in range(BURST):
                    socks.append(self.connect())
                time.sleep(0.5)  # until the relay has taken them all: then they are over the cap
                for sock in socks:
                    sock.sendall(request(close=True))
                for sock in socks:
                    try:
                        raw = b""
                        while b"\r\n\r\n" not in raw:
                            chunk = sock.recv(65536)
                            if not chunk:
                                break
                            raw += chunk
                    except OSError:
                        raw = b""
                    if raw:
                        self.saw("burst", parse_head(raw.split(b"\r\n\r\n")[0])[0])
                    else:
                        self.failed("burst")
            finally:
                for sock in socks:
                    sock.close()

    # -- watching -------------------------------------------------------------------------
    def probe_healthz(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=10) as client:
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    r = client.get("/healthz")
                except httpx.HTTPError:
                    self.failed("healthz")
                    continue
                self.healthz.append(time.perf_counter() - started)
                self.saw("healthz", r.status_code)
                self.stop.wait(0.1)

    def sample_rss(self) -> None:
        status = Path(f"/proc/{self.server.proc.pid}/status")
        while not self.stop.wait(0.25):
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.rss.append(int(line.split()[1]) * 1024)


def hostile_bodies() -> dict[str, tuple[list[bytes], float]]:
    """Poster name -> (bodies it sends in turn, pause between two)."""
    deep = 50_000
    nested = b'{"event_name": "x", "x": ' + b"[" * deep + b"]" * deep + b"}"
    empties = b"[" + b",".join([b"{}"] * ((MIB - 2) // 3)) + b"]"
    malformed = [
        b'{"event_name": "Email Sent", "hwid": "\xff\xfe"}',
        b'{"event_name": "a", "event_name": "b"}',
        b'[{"timestamp": NaN}]',
        b'{"event_name": "\xc3"}',
    ]
    return {
        "nested": ([nested], 0.2),
        "empty objects": ([empties], 0.5),
        "malformed": (malformed, 0.05),
        "oversized": ([b" " * (MIB + 1)], 0.3),
    }


def pending(stored: Any) -> int:
    depth = stored.call(lambda: stored.queue.depth(time.time()))
    return sum(n for (_, state), n in depth.counts.items() if state == "pending")


def test_a_minute_of_attacks_loses_and_duplicates_nothing(
    tmp_path: Path, bounced: dict[str, Any]
) -> None:
    ledger = Ledger()
    with Sink() as steady, Sink() as flaky:
        steady.respond, flaky.respond = ledger.steady, ledger.flaky
        server = Server(tmp_path, write_config(tmp_path, steady, flaky))
        soak = Soak(server, bounced)
        clients: list[Callable[[], None]] = [
            soak.probe_healthz,
            soak.sample_rss,
            soak.bursts,
            soak.chunked_oversized,
            *(lambda seed=seed: soak.sender(seed) for seed in range(2)),
            *(
                lambda name=name, bodies=bodies, pause=pause: soak.poster(name, bodies, pause)
                for name, (bodies, pause) in hostile_bodies().items()
            ),
            *([soak.idle] * IDLE),
            *([soak.trickle] * TRICKLERS),
        ]
        try:
            with ThreadPoolExecutor(len(clients)) as pool:
                running: list[Future[None]] = [pool.submit(c) for c in clients]
                soak.stop.wait(SOAK_SECONDS)
                soak.stop.set()
                for future in running:
                    future.result()  # a client's failed assertion fails the test here
            assert server.proc.poll() is None, "the relay died during the soak"
            with store(tmp_path / "queue.db") as stored:
                wait(lambda: pending(stored) == 0, timeout=120)
                dead = [d for d in stored.deliveries() if str(d.state) == "dead"]
            time.sleep(1)  # a duplicate would arrive now
        finally:
            code = server.stop()
    assert code == 0
    assert dead == []

    # Every acknowledged event reached each destination once; nothing reached it twice.
    assert soak.acked, "no event was acknowledged"
    for destination, accepted in ledger.accepted.items():
        keys = Counter(key for key, _ in accepted)
        markers = Counter(marker for _, marker in accepted)
        assert max(keys.values()) == 1, f"{destination}: a delivery accepted twice"
        assert max(markers.values()) == 1, f"{destination}: an event accepted twice"
        missing = soak.acked - set(markers)
        assert not missing, f"{destination}: {len(missing)} acknowledged events never arrived"
    assert ledger.answers["flaky"]["endless 500"] == ledger.answers["flaky"]["endless 200"] == 1

    # No 5xx but 503; every attack was answered as documented; the relay did not log a bug.
    statuses = {status for _, status in soak.statuses}
    assert {s for s in statuses if s >= 500} <= {503}, soak.statuses
    assert soak.seen("nested") == {400}
    assert soak.seen("empty objects") == {422}
    assert soak.seen("malformed") == {400}
    assert soak.seen("oversized") | soak.seen("chunked oversized") <= {413}
    assert soak.seen("oversized") and soak.seen("chunked oversized")
    assert soak.seen("idle") <= {0}  # closed without a word
    assert soak.seen("trickle") <= {0, 408} and soak.seen("trickle")
    assert soak.seen("burst") == {200, 503}
    assert soak.seen("sender") <= {200, 503}
    assert soak.failures["idle"] == soak.failures["trickle"] == 0
    lines = server.lines()
    assert not [x for x in lines if x["event"] in ("receiver.failed", "<not json>")]

    # /healthz answered throughout; memory stayed bounded.
    assert soak.failures["healthz"] == 0 and soak.seen("healthz") == {200}
    assert soak.rss and max(soak.rss) < RSS_BOUND, f"peak RSS {max(soak.rss) / MIB:.0f} MiB"
    answers = ", ".join(
        f"{who} {status}: {n}" for (who, status), n in sorted(soak.statuses.items())
    )
    print(
        f"\nsoak {SOAK_SECONDS:.0f}s: {len(soak.acked)} events acknowledged ({soak.sent} sent),"
        " each delivered once to each of 2 destinations"
        f"\n/healthz worst {max(soak.healthz) * 1000:.0f} ms over {len(soak.healthz)} probes"
        f"\nRSS {soak.rss[0] / MIB:.0f} MiB at the start, peak {max(soak.rss) / MIB:.0f} MiB"
        f"\nflaky destination answered {dict(ledger.answers['flaky'])}"
        f"\nthe relay answered {answers}; no answer: {dict(soak.failures) or 'none'}"
    )
