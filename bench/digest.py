"""The `digest` step: a bounce storm grouped into Slack digests.

The figure of the grouping feature: 10,000 "Email Bounced" events of 20 campaigns
become about 20 Slack messages per interval instead of 10,000. One `relay serve`
(SQLite queue in the run's temp dir) has a `slack` destination pointed at a
recording Slack stand-in (`bench.slack_sink`) and a route grouping bounces by
``campaign_id`` (wait 2 s, interval 5 s, max_events 1,000). The events are posted
as JSON arrays of 100 on a few connections (well under ``wait``), then the stand-in
is watched for ``wait`` + 2 intervals. Every body is checked to be a Slack digest
(JSON with ``blocks``), and the counts in the digests' headers ("N x Email Bounced",
with a multiplication sign) must add up to the events posted.

The destination has ``rate_limit: 100/s``: at Slack's 1/s default the 20 messages of
one flush would go out over 20 s and the step would measure the rate limit.
"""

from __future__ import annotations

import http.client
import json
import re
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from .context import Bench
from .procs import REPO, BenchError, free_port, python
from .relayenv import PATH, base_config, remove_db, serve_argv
from .report import Row

StepResult = tuple[list[Row], dict[str, Any]]

EVENTS = 10_000
CAMPAIGNS = 20
ARRAY = 100  # events per POST
POSTERS = 4  # connections posting in parallel
WAIT, INTERVAL, MAX_EVENTS = 2.0, 5.0, 1_000
RATE_LIMIT = "100/s"
INTERVALS_WATCHED = 2
SLACK_PATH = "/services/T0BENCH/B0BENCH/digest"
FIRST_CAMPAIGN = 961_200
# "<emoji> 500 \u00d7 Email Bounced": relay.slack_format.digest_message's header
HEADER_COUNT = re.compile(r"(\d+) \u00d7 (.+)$")
CAMPAIGN_IN_TEXT = re.compile(r"campaign_id: (\S+?)\)?$")


def write_config(path: Path, *, db: Path, slack_port: int) -> Path:
    doc = {
        **base_config(f"sqlite:///{db.resolve()}", dedupe=True),
        "destinations": {
            "bounce-alerts": {
                "type": "slack",
                "url": f"http://127.0.0.1:{slack_port}{SLACK_PATH}",
                # Slack allows 1/s per webhook (the relay's default for slack); here the
                # grouping is measured, not the rate limit.
                "rate_limit": RATE_LIMIT,
            }
        },
        "routes": [
            {
                "name": "bounce-digest",
                "when": {"event_name": "Email Bounced"},
                "to": ["bounce-alerts"],
                "group": {
                    "by": ["campaign_id"],
                    "wait": f"{WAIT:g}s",
                    "interval": f"{INTERVAL:g}s",
                    "max_events": MAX_EVENTS,
                },
            }
        ],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def bodies() -> list[bytes]:
    """``EVENTS`` bounces (distinct hwid, campaign_id cycling) as JSON arrays of ``ARRAY``."""
    base = json.loads((REPO / "examples/email-bounced.json").read_text())
    events = [
        {
            **base,
            "hwid": f"bounce-{i:05d}@example.org",
            "campaign_id": FIRST_CAMPAIGN + i % CAMPAIGNS,
            "message_id": base["message_id"] + i,
            "user_id": str(10_000 + i),
            "timestamp": base["timestamp"] + i // 1000,
        }
        for i in range(EVENTS)
    ]
    return [json.dumps(events[i : i + ARRAY]).encode() for i in range(0, EVENTS, ARRAY)]


def _get(port: int, path: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def post_all(port: int, chunks: list[bytes]) -> tuple[int, int]:
    """POST every chunk on ``POSTERS`` keep-alive connections; (events accepted, failures)."""

    def worker(part: list[bytes]) -> tuple[int, int]:
        accepted = failed = 0
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            for body in part:
                conn.request("POST", PATH, body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                answer = resp.read()
                if resp.status == 200:
                    accepted += int(json.loads(answer)["accepted"])
                else:
                    failed += 1
        finally:
            conn.close()
        return accepted, failed

    parts = [chunks[i::POSTERS] for i in range(POSTERS)]
    with ThreadPoolExecutor(POSTERS) as pool:
        out = list(pool.map(worker, parts))
    return sum(a for a, _ in out), sum(f for _, f in out)


def parse_digest(text: str) -> tuple[int, str, str] | None:
    """(count, event name, campaign) of one Slack digest body, or None if it is not one."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    blocks = doc.get("blocks") if isinstance(doc, dict) else None
    if not isinstance(blocks, list) or not blocks:
        return None
    header = next((bl for bl in blocks if bl.get("type") == "header"), None)
    m = HEADER_COUNT.search(header["text"]["text"]) if header else None
    if m is None:
        return None
    c = CAMPAIGN_IN_TEXT.search(str(doc.get("text", "")))
    return int(m.group(1)), m.group(2), c.group(1) if c else "?"


def clusters(times: list[float], gap: float) -> list[int]:
    """Sizes of the bursts in sorted ``times`` (a new burst after a pause of ``gap``)."""
    sizes: list[int] = []
    last = None
    for t in times:
        if last is None or t - last >= gap:
            sizes.append(0)
        sizes[-1] += 1
        last = t
    return sizes


def digest(b: Bench) -> StepResult:
    chunks = bodies()
    slack_port = free_port()
    slack = b.start(
        "slack-sink",
        python("-m", "bench.slack_sink", "--port", str(slack_port)),
        slack_port,
        "/_stats",
    )
    db = b.new_db()
    relay_port = free_port()
    config = write_config(b.workdir / f"digest-{relay_port}.yaml", db=db, slack_port=slack_port)
    try:
        relay = b.start("relay-digest", serve_argv(config, relay_port), relay_port, "/healthz")
        try:
            b.say(
                f"digest: posting {EVENTS:,} Email Bounced events of {CAMPAIGNS} campaigns "
                f"in arrays of {ARRAY} on {POSTERS} connections"
            )
            t_post = time.time()
            accepted, failed = post_all(relay_port, chunks)
            post_s = time.time() - t_post
            watch_until = t_post + WAIT + INTERVALS_WATCHED * INTERVAL + 0.5
            b.say(
                f"digest: posted in {post_s:.2f}s; watching the Slack stand-in until "
                f"{watch_until - t_post:.1f}s after the first post"
            )
            first_msg: float | None = None
            while time.time() < watch_until:
                if first_msg is None:
                    reqs = _get(slack_port, "/_stats")["requests"]
                    if reqs:
                        first_msg = min(r["t"] for r in reqs)
                        # Two whole intervals after the first flush, even when it was late.
                        watch_until = max(
                            watch_until, first_msg + INTERVALS_WATCHED * INTERVAL + 0.5
                        )
                time.sleep(0.1)
            stats = _get(slack_port, "/_stats?bodies=1")
        finally:
            b.stop(relay)
    finally:
        b.stop(slack)
        remove_db(db)

    reqs = stats["requests"]
    times = sorted(r["t"] for r in reqs)
    messages = len(reqs)
    parsed = [parse_digest(text) for text in stats["bodies"]]
    not_digests = sum(p is None for p in parsed)
    named = sum(p[0] for p in parsed if p)
    names = sorted({p[1] for p in parsed if p})
    campaigns = {p[2] for p in parsed if p}
    bursts = clusters(times, INTERVAL / 2)
    per_interval: list[int] = []
    if times:
        per_interval = [
            sum(1 for t in times if times[0] + k * INTERVAL <= t < times[0] + (k + 1) * INTERVAL)
            for k in range(INTERVALS_WATCHED)
        ]
    latency = times[0] - t_post if times else None
    sizes = [r["bytes"] for r in reqs]
    raw = {
        "events": EVENTS,
        "campaigns": CAMPAIGNS,
        "array": ARRAY,
        "posters": POSTERS,
        "group": {
            "by": ["campaign_id"],
            "wait_s": WAIT,
            "interval_s": INTERVAL,
            "max_events": MAX_EVENTS,
        },
        "rate_limit": RATE_LIMIT,
        "accepted": accepted,
        "failed_posts": failed,
        "post_s": round(post_s, 3),
        "messages": messages,
        "paths": stats["paths"],
        "bursts": bursts,
        "per_interval": per_interval,
        "first_message_after_s": None if latency is None else round(latency, 3),
        "arrivals_s": [round(t - t_post, 3) for t in times],
        "body_bytes": sizes,
        "not_digests": not_digests,
        "events_named": named,
        "event_names": names,
        "campaigns_named": len(campaigns),
    }
    if messages == 0:
        raise BenchError(
            f"the Slack stand-in received nothing in {watch_until - t_post:.0f}s (log: {b.workdir})"
        )

    post_note = (
        f"posted as {len(chunks)} JSON arrays of {ARRAY} on {POSTERS} connections in "
        f"{post_s:.2f}s (wait {WAIT:g}s); group by campaign_id, wait {WAIT:g}s, interval "
        f"{INTERVAL:g}s, max_events {MAX_EVENTS:,}; slack destination at rate_limit "
        f"{RATE_LIMIT} (Slack's own 1/s would spread one flush over ~{CAMPAIGNS} s)"
    )
    if failed or accepted != EVENTS:
        post_note += f"; {failed} POST(s) failed, {accepted:,} events accepted"
    if post_s >= WAIT:
        post_note += "; posting took longer than wait: late events go to the next interval"
    check_note = (
        f"{messages - not_digests} of {messages} bodies are Slack digests (JSON with blocks), "
        f"naming {len(campaigns)} campaigns, event name(s): {', '.join(names) or '-'}; "
        f"body bytes median {statistics.median(sizes):,.0f}, max {max(sizes):,}"
    )
    rows = [
        Row(
            "digest",
            f"Email Bounced events posted ({CAMPAIGNS} campaigns)",
            accepted,
            note=post_note,
        ),
        Row("digest", "Slack messages, first flush", bursts[0] if bursts else 0),
        Row("digest", f"Slack messages, total in {INTERVALS_WATCHED} intervals", messages),
        Row(
            "digest",
            f"messages per {INTERVAL:g} s interval",
            ", ".join(str(n) for n in per_interval),
        ),
        Row("digest", f"first post → first message, s (wait {WAIT:g} s)", latency),
        Row(
            "digest",
            "events named by the digests (vs posted)",
            named,
            accepted,
            named / accepted if accepted else None,
            note=check_note,
        ),
    ]
    return rows, raw
