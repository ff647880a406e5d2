"""The commands that read or change what is stored: `dlq`, `events`, `forget`, `migrate`.

Each one parses its flags, calls one function of :mod:`relay.operations` (the
same the admin API and the console call) on the configured queue, and prints
the result as a table or, with ``--json``, as the document the API answers.
They work while `relay serve` runs on the same queue.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import msgspec

from .. import operations
from ..errors import CliError
from ..queue import EventFilter, Queue, from_settings
from ..units import parse_instant
from .args import int_in, load, with_config

T = TypeVar("T")
_limit = int_in(1, operations.MAX_PAGE, "limit")


def add_commands(sub: Any) -> None:
    """The store commands' parsers, on the `relay` parser's subcommands."""
    with_config(sub.add_parser("migrate", help="bring the queue's schema up to date"))

    dlq = sub.add_parser("dlq", help="dead letters")
    dsub = dlq.add_subparsers(dest="dlq_command", required=True, parser_class=type(dlq))
    dlist = with_config(dsub.add_parser("list", help="list dead deliveries"))
    dlist.add_argument("--destination", default=None)
    dlist.add_argument("--json", action="store_true", help="one JSON object per line")
    replay = with_config(dsub.add_parser("replay", help="dead deliveries back to pending"))
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true")
    which.add_argument("--id", nargs="+", dest="ids", metavar="ID")
    replay.add_argument("--destination", default=None)

    events = sub.add_parser("events", help="stored events and every attempt")
    esub = events.add_subparsers(dest="events_command", required=True, parser_class=type(events))
    elist = with_config(esub.add_parser("list", help="stored events, newest first"))
    elist.add_argument("--destination", default=None)
    elist.add_argument(
        "--state", default=None, help="pending, retrying, succeeded or dead (per destination)"
    )
    elist.add_argument("--event-name", default=None)
    elist.add_argument("--hwid", default=None, help="an address (case-insensitive)")
    elist.add_argument("--user-id", default=None)
    elist.add_argument("--campaign-id", default=None)
    elist.add_argument("--since", default=None, help="1h (ago), 2026-11-28T10:00Z or epoch")
    elist.add_argument("--until", default=None, help="the same forms as --since")
    elist.add_argument("--limit", type=_limit, default=50, help="at most this many (1-500)")
    elist.add_argument("--before", default=None, metavar="CURSOR", help="the page after this")
    elist.add_argument("--json", action="store_true", help='{"events": [...], "next": ...}')
    elist.add_argument("--unmask", action="store_true", help="show addresses in full")
    show = with_config(esub.add_parser("show", help="one event, its deliveries and attempts"))
    show.add_argument("id", metavar="ID")
    show.add_argument("--json", action="store_true")
    show.add_argument("--unmask", action="store_true", help="show the address in full")
    resend = with_config(
        esub.add_parser("replay", help="send an event again (any state), new deliveries")
    )
    resend.add_argument("id", metavar="ID")
    resend.add_argument("--destination", default=None)

    dests = sub.add_parser("destinations", help="destination health: list, pause, resume")
    dsub2 = dests.add_subparsers(dest="dest_command", required=True, parser_class=type(dests))
    dl = with_config(dsub2.add_parser("list", help="state, backlog, success rate, p95, last error"))
    dl.add_argument("--json", action="store_true")
    pause = with_config(dsub2.add_parser("pause", help="hold a destination (every instance)"))
    pause.add_argument("name", metavar="NAME")
    pause.add_argument("--reason", default=None, help="why (shown in listings and notices)")
    resume = with_config(dsub2.add_parser("resume", help="release a pause; the backlog drains"))
    resume.add_argument("name", metavar="NAME")

    forget = with_config(
        sub.add_parser("forget", help="erase every stored trace of one address (GDPR)")
    )
    forget.add_argument("address", metavar="ADDRESS")
    forget.add_argument("--yes", action="store_true", help="erase; without it, a dry run")


def _on_queue(args: argparse.Namespace, work: Callable[[Queue], Awaitable[T]]) -> T:
    """Open the configured queue, run ``work`` on it, close it."""
    config = load(args)

    async def run() -> T:
        queue = from_settings(config.settings.queue)
        await queue.open()
        try:
            return await work(queue)
        finally:
            await queue.close()

    return asyncio.run(run())


def cmd_migrate(args: argparse.Namespace) -> int:
    config = load(args)
    scheme = config.settings.queue.url.split(":", 1)[0].lower()
    backend = "postgresql" if scheme == "postgres" else scheme

    async def work(queue: Queue) -> int:  # opening applies the missing migrations
        print(f"migrated: {backend} schema version {queue.schema_version}")
        return 0

    return _on_queue(args, work)


def cmd_dlq(args: argparse.Namespace) -> int:
    async def work(queue: Queue) -> int:
        if args.dlq_command == "list":
            letters = await operations.dead_letters(queue, args.destination, limit=100_000)
            _print_dead(letters, args.json)
            return 0
        ids = None if args.all else list(args.ids)
        n = await operations.replay_dead(queue, ids, args.destination)
        print(f"replayed {n} dead deliveries")
        if ids and n < len(ids):
            print(
                f"warning: {len(ids) - n} of the given ids are not dead deliveries"
                + (f" of {args.destination}" if args.destination else ""),
                file=sys.stderr,
            )
        return 0

    return _on_queue(args, work)


def cmd_events(args: argparse.Namespace) -> int:
    mask = load(args).settings.logging.mask_hwid and not getattr(args, "unmask", False)
    try:
        if args.events_command == "list":
            flt = _filter(args)
            page = _on_queue(
                args, lambda q: operations.list_events(q, flt, args.limit, args.before, mask=mask)
            )
            _print_events(page, args.json)
        elif args.events_command == "show":
            doc = _on_queue(args, lambda q: operations.show_event(q, args.id, mask=mask))
            _print_event(doc, args.json)
        else:
            done = _on_queue(args, lambda q: operations.resend_event(q, args.id, args.destination))
            made = done["deliveries"]
            print(f"resent event {args.id}: {len(made)} new deliveries: {' '.join(made)}")
    except operations.NotFound as exc:
        raise CliError(str(exc)) from None
    return 0


def cmd_destinations(args: argparse.Namespace) -> int:
    config = load(args)
    try:
        if args.dest_command == "list":
            rows = _on_queue(args, lambda q: operations.destinations(q, config))
            _print_destinations(rows, args.json)
        elif args.dest_command == "pause":
            done = _on_queue(
                args, lambda q: operations.pause_destination(q, config, args.name, args.reason)
            )
            print(f"{args.name}: paused" + ("" if done["changed"] else " (it already was)"))
        else:
            done = _on_queue(args, lambda q: operations.resume_destination(q, config, args.name))
            was = "" if done["changed"] else " (it was not paused)"
            print(f"{args.name}: {done['state']}{was}")
    except operations.NotFound as exc:
        raise CliError(str(exc)) from None
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    address = args.address.strip()
    if not address:
        raise CliError("give the address to forget, e.g. relay forget someone@example.com")
    report = _on_queue(args, lambda q: operations.forget_address(q, address, dry_run=not args.yes))
    counts = ", ".join(
        f"{report[k]} {k.replace('_', ' ')}"
        for k in ("events", "deliveries", "attempts", "group_items", "fingerprints")
    )
    if args.yes:
        print(f"erased: {counts} ({report['cancelled']} pending deliveries cancelled)")
    else:
        print(f"would erase: {counts} ({report['cancelled']} pending deliveries cancelled)")
        print("dry run: nothing was erased; run again with --yes to erase")
    if report["shared_deliveries"]:
        print(
            f"{report['shared_deliveries']} grouped deliveries also carry other events: "
            "kept, with the address masked in what they stored"
        )
    return 0


def _filter(args: argparse.Namespace) -> EventFilter:
    now = time.time()
    try:
        state = operations.state_filter(args.state)
        since = None if args.since is None else parse_instant(args.since, now)
        until = None if args.until is None else parse_instant(args.until, now)
    except ValueError as exc:
        raise CliError(str(exc), code=2) from None
    return EventFilter(
        destination=args.destination,
        state=state,
        event_name=args.event_name,
        hwid=args.hwid,
        user_id=args.user_id,
        campaign_id=args.campaign_id,
        since=since,
        until=until,
    )


# -- printing -------------------------------------------------------------------------------
def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _table(rows: Sequence[Sequence[str]]) -> None:
    """Columns padded to their widest cell; the last column is never padded."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])


def _one_line(text: str | None, width: int = 80) -> str:
    return " ".join((text or "").split())[:width]


def _print_dead(letters: Sequence[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        for d in letters:
            print(_json(d))
        return
    if not letters:
        print("no dead deliveries")
        return
    rows = [("ID", "DESTINATION", "EVENT", "ATTEMPTS", "LAST ERROR")]
    rows += [
        (d["id"], d["destination"], d["event_name"], str(d["attempts"]), _one_line(d["last_error"]))
        for d in letters
    ]
    _table(rows)


def _print_events(page: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(_json(page))
        return
    if not page["events"]:
        print("no stored events match")
        return
    rows = [("ID", "RECEIVED", "EVENT", "HWID", "DELIVERIES")]
    for e in page["events"]:
        deliveries = ", ".join(
            f"{d['destination']}: {d['state']} ({d['attempts']})" for d in e["deliveries"]
        )
        rows.append(
            (
                e["id"],
                e["received_at"],
                _one_line(e["event_name"], 30),
                _one_line(str(e["hwid"] or ""), 40),
                deliveries or "(no route matched)",
            )
        )
    _table(rows)
    if page["next"]:
        print(f"more: relay events list ... --before {page['next']}")


def _print_destinations(rows: Sequence[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(_json(rows))
        return
    if not rows:
        print("no destinations configured")
        return
    table = [
        ("NAME", "TYPE", "STATE", "PENDING", "RETRYING", "DEAD", "OK 5M", "P95 5M", "LAST ERROR")
    ]
    for d in rows:
        rate = "-" if d["success_rate_5m"] is None else f"{d['success_rate_5m'] * 100:.0f}%"
        p95 = "-" if d["p95_ms_5m"] is None else f"{d['p95_ms_5m']:.0f} ms"
        why = d["paused_reason"] or d["circuit_reason"] or d["disabled_reason"]
        error = _one_line(d["last_error"], 60) if d["last_error"] else ""
        table.append(
            (
                d["name"],
                d["type"],
                d["state"] + (f" ({_one_line(why, 40)})" if why else ""),
                str(d["pending"]),
                str(d["retrying"]),
                str(d["dead"]),
                rate,
                p95,
                error,
            )
        )
    _table(table)


def _print_event(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(_json(doc))
        return
    event = doc["event"]
    print(f"event {event['id']} received {event['received_at']}")
    print(msgspec.json.format(msgspec.json.encode(event["body"])).decode())
    if not doc["deliveries"]:
        print("\nno deliveries: no route matched")
    for d in doc["deliveries"]:
        group = f", group {_json(d['group'])}" if "group" in d else ""
        print(
            f"\n{d['destination']} (route {d['route']}{group}): {d['state']}, "
            f"{d['attempts']} attempts, delivery {d['id']}"
        )
        for a in d["attempts"]:
            status = f"HTTP {a['status_code']}" if a["status_code"] is not None else "no answer"
            line = (
                f"  #{a['n']}  {a['at']}  {a['duration_ms']:>8.1f} ms  {status:<9}  {a['outcome']}"
            )
            print(line + (f"  {_one_line(a['error'], 100)}" if a["error"] else ""))
            if a["response"]:
                print(f"      answer: {_one_line(a['response'], 160)}")
