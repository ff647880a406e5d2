"""`relay` command line: argument parsing, exit codes and one-line errors only.

Every error a person can cause ends with one clear line on stderr and a
non-zero exit, never a traceback (CONTRACT section 2).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import msgspec

from . import __version__
from .config import RelayConfig, default_path, json_schema, load_config
from .errors import ConfigError, RelayError


class CliError(RelayError):
    """A mistake on the command line or in its inputs; exit with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="relay", description="Pushwoosh webhook relay.")
    p.add_argument("--version", action="version", version=f"pushwoosh-relay {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument(
            "--config",
            default=None,
            help="config file (default: $RELAY_CONFIG, else config/relay.yaml)",
        )
        return sp

    serve = with_config(sub.add_parser("serve", help="run the receiver and delivery workers"))
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=_port, default=None)
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="server processes sharing the port (default 1; one per core)",
    )
    with_config(sub.add_parser("check", help="validate the config"))
    route = with_config(sub.add_parser("route", help="dry run: what would FILE's event do"))
    route.add_argument("file", metavar="FILE", help="event JSON file, - for stdin")
    with_config(sub.add_parser("schema", help="print the config's JSON Schema"))
    with_config(sub.add_parser("migrate", help="bring the queue's schema up to date"))

    dlq = sub.add_parser("dlq", help="dead letters")
    dsub = dlq.add_subparsers(dest="dlq_command", required=True, parser_class=_Parser)
    dlist = with_config(dsub.add_parser("list", help="list dead deliveries"))
    dlist.add_argument("--destination", default=None)
    dlist.add_argument("--json", action="store_true", help="one JSON object per line")
    replay = with_config(dsub.add_parser("replay", help="dead deliveries back to pending"))
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true")
    which.add_argument("--id", nargs="+", dest="ids", metavar="ID")
    replay.add_argument("--destination", default=None)
    return p


def _int_in(low: int, high: int, what: str) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``, with a one-line error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} {value} is not in {low}-{high}")
        return value

    return parse


_port = _int_in(0, 65535, "port")
_positive = _int_in(1, 64, "number of workers")


def _load(args: argparse.Namespace) -> RelayConfig:
    return load_config(args.config or default_path())


def cmd_check(args: argparse.Namespace) -> int:
    config = _load(args)
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(config.summary())
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(json_schema())).decode() + "\n")
    return 0


def cmd_route(args: argparse.Namespace) -> int:
    from .dryrun import EventFileInvalid, dry_run

    config = _load(args)
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


def cmd_dlq(args: argparse.Namespace) -> int:
    from .queue import from_settings

    config = _load(args)

    async def run() -> int:
        queue = from_settings(config.settings.queue)
        await queue.open()
        try:
            if args.dlq_command == "list":
                letters = await queue.dead_letters(args.destination, limit=100_000)
                _print_dead(letters, args.json)
                return 0
            n = await queue.replay(None if args.all else args.ids, args.destination, time.time())
            print(f"replayed {n} dead deliveries")
            if args.ids and n < len(args.ids):
                print(
                    f"warning: {len(args.ids) - n} of the given ids are not dead deliveries"
                    + (f" of {args.destination}" if args.destination else ""),
                    file=sys.stderr,
                )
            return 0
        finally:
            await queue.close()

    return asyncio.run(run())


def cmd_migrate(args: argparse.Namespace) -> int:
    from .queue import from_settings

    config = _load(args)
    url = config.settings.queue.url
    scheme = url.split(":", 1)[0].lower()
    backend = "postgresql" if scheme == "postgres" else scheme

    async def run() -> int:
        queue = from_settings(config.settings.queue)
        await queue.open()  # opening applies the missing migrations
        try:
            print(f"migrated: {backend} schema version {queue.schema_version}")
            return 0
        finally:
            await queue.close()

    return asyncio.run(run())


def _print_dead(letters: Sequence[Any], as_json: bool) -> None:
    if as_json:
        for d in letters:
            print(
                msgspec.json.encode(
                    {
                        "id": d.id,
                        "destination": d.destination,
                        "event_id": d.event_id,
                        "event_name": d.event_name,
                        "attempts": d.attempts,
                        "last_error": d.last_error,
                    }
                ).decode()
            )
        return
    if not letters:
        print("no dead deliveries")
        return
    rows = [("ID", "DESTINATION", "EVENT", "ATTEMPTS", "LAST ERROR")]
    rows += [
        (d.id, d.destination, d.event_name, str(d.attempts), d.last_error[:80]) for d in letters
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    return serve(args.config or default_path(), args.host, args.port, args.workers)


COMMANDS = {
    "serve": cmd_serve,
    "check": cmd_check,
    "route": cmd_route,
    "dlq": cmd_dlq,
    "schema": cmd_schema,
    "migrate": cmd_migrate,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
