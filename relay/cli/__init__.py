"""`relay` command line: argument parsing, exit codes and one-line errors only.

Every error a person can cause ends with one clear line on stderr and a
non-zero exit, never a traceback (CONTRACT section 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec

from .. import __version__
from ..config import default_path, json_schema
from ..errors import CliError, ConfigError, RelayError
from ..logs import configure
from . import store
from .args import Parser, int_in, load, with_config

#: What a `relay serve` process does (see relay.serve.serve).
ROLES = ("all", "receiver", "worker")


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="relay", description="Pushwoosh webhook relay.")
    p.add_argument("--version", action="version", version=f"pushwoosh-relay {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    serve = with_config(sub.add_parser("serve", help="run the receiver and delivery workers"))
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=_port, default=None)
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="server processes sharing the port (default 1; one per core)",
    )
    serve.add_argument(
        "--role",
        choices=ROLES,
        default=None,
        help="all: receive and deliver; receiver: receive only, another process delivers; "
        "worker: deliver only, no webhook path (health, metrics, console stay). Default: "
        "all for one process; with --workers N, N//2 workers and the rest receivers",
    )
    with_config(sub.add_parser("check", help="validate the config"))
    route = with_config(sub.add_parser("route", help="dry run: what would FILE's event do"))
    route.add_argument("file", metavar="FILE", help="event JSON file, - for stdin")
    with_config(sub.add_parser("schema", help="print the config's JSON Schema"))
    store.add_commands(sub)
    return p


_port = int_in(0, 65535, "port")
_positive = int_in(1, 64, "number of workers")


def cmd_check(args: argparse.Namespace) -> int:
    config = load(args)
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(config.summary())
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(json_schema())).decode() + "\n")
    return 0


def cmd_route(args: argparse.Namespace) -> int:
    from ..dryrun import EventFileInvalid, dry_run

    config = load(args)
    name = "<stdin>" if args.file == "-" else args.file
    try:
        body = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    try:
        result = dry_run(config, body)
    except EventFileInvalid as exc:
        raise CliError(f"{name}: {exc}") from None
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(result)).decode() + "\n")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ..serve import serve

    return serve(args.config or default_path(), args.host, args.port, args.workers, args.role)


COMMANDS = {
    "serve": cmd_serve,
    "check": cmd_check,
    "route": cmd_route,
    "dlq": store.cmd_dlq,
    "events": store.cmd_events,
    "forget": store.cmd_forget,
    "destinations": store.cmd_destinations,
    "schema": cmd_schema,
    "migrate": store.cmd_migrate,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "serve":
        # A command's output is its stdout; the library's log lines are for a person,
        # on stderr, and only when something is wrong.
        configure("warning", "auto", stream=sys.stderr)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except RelayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
