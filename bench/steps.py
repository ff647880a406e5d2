"""The steps. Each takes the shared :class:`Bench` and returns table rows plus raw data."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .context import Bench, Ingest, relay_key
from .digest import digest
from .history import history
from .loadgen import run_count
from .relayenv import (
    PARKED_DEST,
    SINK_DEST,
    delivery_states,
    prefill,
    remove_db,
    workers_flag,
)
from .report import NA, Row, judge
from .scaleout import scaleout

StepResult = tuple[list[Row], dict[str, Any]]

INGEST_MIN_RATIO = 0.50
INGEST_MAX_P99_MS = 30.0
DRAIN_MIN_RATIO = 0.50
E2E_MIN_RATIO = 1 / 3
SCALE_MIN_RATIO = 0.90
SCALE_MAX_RSS_MB = 250.0
PROCESSES_MIN_RATIO = 1.6


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _times(step: str, metric: str, relay: float, ceiling: float, **kw: Any) -> Row:
    """A row whose ratio is a factor (2 processes vs 1, one server vs another)."""
    return Row(step, metric, relay, ceiling, _ratio(relay, ceiling), ratio_style="x", **kw)


def _errors_note(*items: tuple[str, Ingest]) -> str:
    bad = [f"{name}: {i.errors} failed requests" for name, i in items if i.errors]
    return "; ".join(bad)


# -- ingest -------------------------------------------------------------------------------
def ingest(b: Bench) -> StepResult:
    bare = b.ingest_bare()
    fwd = b.ingest_relay()
    rx = b.ingest_relay(throttled=True)
    c = b.s.connections
    r_fwd, r_rx = _ratio(fwd.rps, bare.rps), _ratio(rx.rps, bare.rps)
    rows = [
        Row(
            "ingest",
            f"req/s, {c} conns (relay: forwarding on, shipped defaults)",
            fwd.rps,
            bare.rps,
            r_fwd,
            ">= 50 %",
            judge((r_fwd or 0) >= INGEST_MIN_RATIO),
            note=_errors_note(("relay", fwd), ("bare", bare)),
        ),
        Row("ingest", "p50 ms (forwarding on)", fwd.p50_ms, bare.p50_ms),
        Row(
            "ingest",
            "p99 ms (forwarding on)",
            fwd.p99_ms,
            bare.p99_ms,
            None,
            "<= 30 ms",
            judge(fwd.p99_ms <= INGEST_MAX_P99_MS),
        ),
        Row(
            "ingest",
            "req/s, receiver only (forwarding 1/s)",
            rx.rps,
            bare.rps,
            r_rx,
            ">= 50 %",
            judge((r_rx or 0) >= INGEST_MIN_RATIO),
            note=_errors_note(("relay, receiver only", rx)),
        ),
        Row(
            "ingest",
            "p99 ms, receiver only",
            rx.p99_ms,
            bare.p99_ms,
            None,
            "<= 30 ms",
            judge(rx.p99_ms <= INGEST_MAX_P99_MS),
        ),
    ]
    return rows, {
        "bare": bare.as_dict(),
        "relay_forwarding": fwd.as_dict(),
        "relay_receiver_only": rx.as_dict(),
    }


# -- drain --------------------------------------------------------------------------------
def _drain_once(b: Bench, n: int, concurrency: int) -> dict[str, Any]:
    _, sink = b.sink()
    db = b.new_db()
    fill_s = prefill(db, SINK_DEST, n, b.body)
    b.say(
        f"drain: {n:,} deliveries pre-filled in {fill_s:.1f}s; relay forwarding them, "
        f"concurrency {concurrency}"
    )
    sink.reset()
    timeout = max(120.0, n / 100)
    rss_peak = 0.0
    try:
        with b.relay(db=db, concurrency=concurrency) as server:
            first: tuple[float, int] | None = None
            next_rss = 0.0
            deadline = time.monotonic() + timeout
            while True:
                count, now = sink.count(), time.monotonic()
                if first is None and count > 0:
                    first = (now, count)
                if count >= n or now > deadline:
                    break
                if now >= next_rss:
                    rss_peak, next_rss = max(rss_peak, server.rss_mb()[0]), now + 1.0
                time.sleep(0.02)
        states = delivery_states(db)
    finally:
        remove_db(db)
    if first is None or now <= first[0]:
        return {"rate": 0.0, "delivered": count, "complete": False, "states": states}
    return {
        "rate": (count - first[1]) / (now - first[0]),
        "delivered": count,
        "complete": count >= n,
        "seconds": round(now - first[0], 2),
        "states": states,
        "rss_peak_mb": round(rss_peak, 1),
        "prefill_s": round(fill_s, 2),
    }


def _ceiling_once(b: Bench, n: int, concurrency: int) -> dict[str, Any]:
    sink_port, sink = b.sink()
    sink.reset()
    result = run_count(
        f"http://127.0.0.1:{sink_port}/hook",
        b.body_path,
        n,
        concurrency,
        timeout=max(120.0, n / 50),
    )
    return {**result.as_dict(), "sink_count": sink.count()}


def _has_aiohttp() -> bool:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return False
    return True


def _drain_at(b: Bench, concurrency: int, label: str) -> tuple[Row, dict[str, Any]]:
    """The relay draining the backlog at ``concurrency`` vs aiohttp with as many in flight,
    alternated round by round so that both see the same machine."""
    import statistics

    n, rounds = b.s.backlog, b.s.drain_rounds
    relay_runs: list[dict[str, Any]] = []
    ceiling_runs: list[dict[str, Any]] = []
    for _ in range(rounds):
        relay_runs.append(_drain_once(b, n, concurrency))
        if _has_aiohttp():
            b.say(f"drain: ceiling, plain aiohttp, {n:,} POSTs, {concurrency} in flight")
            ceiling_runs.append(_ceiling_once(b, n, concurrency))
    relay_rate = statistics.median(r["rate"] for r in relay_runs)
    ceiling = statistics.median(r["rps"] for r in ceiling_runs) if ceiling_runs else None
    notes = []
    incomplete = [r for r in relay_runs if not r["complete"]]
    if incomplete:
        notes.append(f"{len(incomplete)} drain(s) did not finish in time; rate from progress")
    dupes = [r["delivered"] - n for r in relay_runs if r["delivered"] > n]
    if dupes:
        notes.append(f"sink saw {max(dupes)} more requests than deliveries (retries)")
    if ceiling is None:
        notes.append("aiohttp is not installed (pip install aiohttp): no client ceiling")
    ratio = _ratio(relay_rate, ceiling) if ceiling else None
    row = Row(
        "drain",
        f"deliveries/s, {n:,} backlog → sink, {label} (vs aiohttp, {concurrency} in flight)",
        relay_rate,
        ceiling,
        ratio,
        ">= 50 %",
        judge((ratio or 0) >= DRAIN_MIN_RATIO) if ceiling else NA,
        note="; ".join(notes),
    )
    return row, {"concurrency": concurrency, "relay": relay_runs, "aiohttp_ceiling": ceiling_runs}


def drain(b: Bench) -> StepResult:
    sink_port, _ = b.sink()
    sink_alone = b.memo(
        "sink-alone", lambda: b.load.run(f"http://127.0.0.1:{sink_port}/hook", 64, b.s.duration)
    )
    c = b.s.relay_concurrency
    shipped, shipped_raw = _drain_at(b, c, f"concurrency {c}, {b.s.log_level} logs")
    wide, wide_raw = _drain_at(
        b, b.s.concurrency, f"concurrency {b.s.concurrency}, {b.s.log_level} logs"
    )
    rows = [
        shipped,
        wide,
        Row("drain", f"sink alone, req/s ({b.load.name}, 64 conns)", sink_alone.rps),
    ]
    return rows, {
        "backlog": b.s.backlog,
        "shipped": shipped_raw,
        "wide": wide_raw,
        "sink_alone": sink_alone.as_dict(),
    }


# -- end to end ---------------------------------------------------------------------------
def _e2e_probe(b: Bench, rate: float, workers: int = 1) -> dict[str, Any]:
    _, sink = b.sink()
    with b.relay(workers=workers) as server:
        c0 = sink.count()
        load = b.load.start(b.url(server), b.s.connections, b.s.duration, rate=rate)
        t0 = time.monotonic()
        samples: list[tuple[float, int]] = []
        while load.running():
            samples.append((time.monotonic() - t0, sink.count() - c0))
            time.sleep(0.25)
        t_end, delivered = time.monotonic() - t0, sink.count() - c0
        result = load.wait(60)
    accepted = result.ok
    achieved = accepted / result.duration_s if result.duration_s else 0.0
    backlog = accepted - delivered
    mid = min(samples, key=lambda s: abs(s[0] - t_end / 2), default=(0.0, 0))
    second_half = (delivered - mid[1]) / (t_end - mid[0]) if t_end > mid[0] else 0.0
    # The second-half check needs a probe long enough for its halves to mean something.
    steady = second_half >= 0.95 * achieved or b.s.duration < 4
    flat = (
        result.errors == 0
        and achieved >= 0.95 * rate
        and steady
        and backlog <= max(2.0 * rate, b.s.relay_concurrency * 2)
    )
    return {
        "rate": round(rate),
        "achieved": round(achieved, 1),
        "accepted": accepted,
        "delivered": delivered,
        "backlog_end": backlog,
        "delivered_per_s_second_half": round(second_half, 1),
        "errors": result.errors,
        "p99_ms": round(result.p99_ms, 2),
        "flat": flat,
    }


def _e2e_search(b: Bench, workers: int) -> tuple[Row, dict[str, Any]]:
    """The highest arrival rate whose backlog stays flat, by bisection."""
    bare = b.ingest_bare()
    target = bare.rps * E2E_MIN_RATIO
    relay_ingest: Ingest | None = b.known(relay_key(workers))
    hi = relay_ingest.rps if relay_ingest else bare.rps
    lo = 0.0
    probes = []
    rate = target
    how = "one process" if workers == 1 else f"--workers {workers} (receiver + worker)"
    for _ in range(b.s.e2e_probes):
        b.say(f"end to end ({how}): posting {rate:,.0f} events/s for {b.s.duration:g}s")
        p = _e2e_probe(b, rate, workers)
        probes.append(p)
        b.say(
            f"  -> {'flat' if p['flat'] else 'growing'}: accepted {p['achieved']:,.0f}/s, "
            f"backlog at end {p['backlog_end']:,}"
        )
        if p["flat"]:
            lo = rate
        else:
            # Never probe above what the relay accepted in the ingest step (+5 %).
            hi = min(rate, relay_ingest.rps * 1.05) if relay_ingest else rate
        if hi <= lo * 1.03:
            break
        rate = (lo + hi) / 2
    best = max((p["achieved"] for p in probes if p["flat"]), default=0.0)
    tried = ", ".join(f"{p['rate']} {'flat' if p['flat'] else 'grew'}" for p in probes)
    note = f"highest probed rate whose backlog stayed flat; probes (events/s): {tried}"
    ratio = _ratio(best, bare.rps)
    row = Row(
        "end to end",
        f"sustained events/s, backlog flat, {how}",
        best if probes else None,
        bare.rps,
        ratio,
        ">= 33 %",
        judge((ratio or 0) >= E2E_MIN_RATIO),
        note=note,
    )
    return row, {"target_rate": round(target), "probes": probes, "sustained": best}


def e2e(b: Bench) -> StepResult:
    one, one_raw = _e2e_search(b, workers=1)
    two, two_raw = _e2e_search(b, workers=2)
    return [one, two], {
        "bare_rps": round(b.ingest_bare().rps, 1),
        "one_process": one_raw,
        "receiver_and_worker": two_raw,
    }


# -- scale --------------------------------------------------------------------------------
def scale(b: Bench) -> StepResult:
    n = b.s.scale_pending
    if n <= 0:
        why = "skipped (--quick)" if b.s.quick else "skipped (--scale-pending 0)"
        return [Row("scale", "ingest with 1,000,000 pending", why, result=NA)], {"skipped": True}
    empty = b.ingest_relay()
    template = b.workdir / "scale-template.db"
    remove_db(template)
    b.say(f"scale: pre-filling {n:,} pending deliveries (destination '{PARKED_DEST}', disabled)")
    fill_s = prefill(template, PARKED_DEST, n, b.body)
    b.say(f"scale: filled in {fill_s:.0f}s ({template.stat().st_size / 2**20:,.0f} MiB)")
    try:
        full = b.ingest_relay(template=template, label=f"{n:,} pending")
    finally:
        remove_db(template)
    ratio = _ratio(full.rps, empty.rps)
    rss = full.rss_mb or 0.0
    rows = [
        Row(
            "scale",
            f"ingest req/s, {n:,} pending (vs empty)",
            full.rps,
            empty.rps,
            ratio,
            ">= 90 %",
            judge((ratio or 0) >= SCALE_MIN_RATIO),
            note=_errors_note(("relay", full)),
        ),
        Row("scale", f"p99 ms, {n:,} pending (vs empty)", full.p99_ms, empty.p99_ms),
        Row(
            "scale",
            f"RSS MiB, {n:,} pending (vs empty)",
            rss,
            empty.rss_mb,
            None,
            "< 250 MB",
            judge(rss < SCALE_MAX_RSS_MB),
        ),
    ]
    return rows, {
        "pending": n,
        "prefill_s": round(fill_s, 1),
        "empty": empty.as_dict(),
        "full": full.as_dict(),
    }


# -- processes ----------------------------------------------------------------------------
def processes(b: Bench) -> StepResult:
    bare1, bare2 = b.ingest_bare(1), b.ingest_bare(2)
    bare_row = _times(
        "processes",
        "bare Litestar req/s, 2 processes (vs 1)",
        bare2.rps,
        bare1.rps,
        note="the machine's own scaling with the load generator on the same cores",
    )
    raw: dict[str, Any] = {"bare_1": bare1.as_dict(), "bare_2": bare2.as_dict()}
    if not workers_flag():
        return [
            Row(
                "processes",
                "relay req/s, 2 processes (vs 1)",
                "not available",
                result=NA,
                target=">= 1.6x",
                note="`relay serve --workers N` does not exist yet",
            ),
            bare_row,
        ], raw
    one, two = b.ingest_relay(workers=1), b.ingest_relay(workers=2)
    both = b.ingest_relay(workers=2, role="all")
    ratio = _ratio(two.rps, one.rps)
    r_both = _ratio(both.rps, one.rps)
    rows = [
        Row(
            "processes",
            "relay req/s, --workers 2: a receiver + a worker (vs 1)",
            two.rps,
            one.rps,
            ratio,
            ">= 1.6x",
            judge((ratio or 0) >= PROCESSES_MIN_RATIO),
            ratio_style="x",
            note=_errors_note(("relay, 2 processes", two)),
        ),
        Row("processes", "relay p99 ms, --workers 2 (vs 1)", two.p99_ms, one.p99_ms),
        Row("processes", "relay RSS MiB, --workers 2 (vs 1)", two.rss_mb, one.rss_mb),
        Row(
            "processes",
            "relay req/s, --workers 2 --role all: both do both (vs 1)",
            both.rps,
            one.rps,
            r_both,
            ratio_style="x",
            note=_errors_note(("relay, 2 processes, --role all", both)),
        ),
        bare_row,
    ]
    raw.update({"relay_1": one.as_dict(), "relay_2": two.as_dict(), "relay_2_all": both.as_dict()})
    return rows, raw


# -- servers ------------------------------------------------------------------------------
def _has_granian() -> bool:
    try:
        import granian  # noqa: F401
    except ImportError:
        return False
    return True


def servers(b: Bench) -> StepResult:
    """uvicorn (what `relay serve` runs) against granian, the same app, receiving only.

    granian lacks the receiver's connection hardening (it lives in uvicorn's protocol):
    this says what a port would gain, not a way to run the relay.
    """
    if not _has_granian():
        na = "granian not installed (pip install -e '.[bench]')"
        return [
            Row("servers", "relay req/s under granian", "not available", result=NA, note=na)
        ], {}
    uv_relay, uv_bare = b.ingest_relay(throttled=True), b.ingest_bare()
    gr_relay, gr_bare = b.ingest_granian(relay=True), b.ingest_granian(relay=False)
    rows = [
        _times(
            "servers",
            "relay req/s, receiver only: granian (vs uvicorn, `relay serve`)",
            gr_relay.rps,
            uv_relay.rps,
            note=_errors_note(("relay under granian", gr_relay)),
        ),
        Row(
            "servers",
            "relay p99 ms, receiver only: granian (vs uvicorn)",
            gr_relay.p99_ms,
            uv_relay.p99_ms,
        ),
        _times("servers", "bare Litestar req/s: granian (vs uvicorn)", gr_bare.rps, uv_bare.rps),
        Row(
            "servers",
            "relay receiver only under granian vs bare Litestar under granian",
            gr_relay.rps,
            gr_bare.rps,
            _ratio(gr_relay.rps, gr_bare.rps),
        ),
    ]
    return rows, {"granian_relay": gr_relay.as_dict(), "granian_bare": gr_bare.as_dict()}


STEPS: dict[str, Callable[[Bench], StepResult]] = {
    "ingest": ingest,
    "drain": drain,
    "e2e": e2e,
    "scale": scale,
    "processes": processes,
    "scaleout": scaleout,
    "digest": digest,
    "history": history,
    "servers": servers,
}
#: Steps a --quick run skips unless --only names them (each takes ~15 s or more).
NOT_QUICK = ("scaleout", "digest")
