"""What every `relay` subcommand shares: the parser class, bounded numbers, the config.

Argument mistakes end as one line and exit 2 (argparse's convention), never a
usage dump followed by a traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn

from ..config import RelayConfig, default_path, load_config


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def int_in(low: int, high: int, what: str) -> Callable[[str], int]:
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


def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sp.add_argument(
        "--config",
        default=None,
        help="config file (default: $RELAY_CONFIG, else config/relay.yaml)",
    )
    return sp


def load(args: argparse.Namespace) -> RelayConfig:
    """The config the command names (``--config``, ``$RELAY_CONFIG``, the default path)."""
    return load_config(args.config or default_path())
