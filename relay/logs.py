"""Structured logs: JSON lines on stdout (console renderer on a terminal), via structlog.

Two processors guard what leaves the process: :class:`Redactor` replaces every
configured secret (inbound token, destination URLs, header values, signing
secrets) wherever it appears in a line, and :func:`mask_hwid` hides most of an
email address. Both are updated in place on reload, so cached loggers keep
working.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import msgspec
import structlog

from .masking import MASK, SecretMasker, mask_hwid

__all__ = ["MASK", "REDACTOR", "Redactor", "configure", "get_logger", "mask_hwid"]
_ENCODER = msgspec.json.Encoder(enc_hook=str)


class Redactor:
    """A processor that masks known secret strings in every value of a log line."""

    def __init__(self) -> None:
        self._masker = SecretMasker()
        self.mask_hwid = True

    def update(self, secrets: Iterable[str], mask_hwid: bool = True) -> None:
        self._masker = SecretMasker(secrets)
        self.mask_hwid = mask_hwid

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._masker(value)
        if isinstance(value, dict):
            return {
                k: mask_hwid(self._clean(v)) if k == "hwid" and self.mask_hwid else self._clean(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._clean(v) for v in value]
        return value

    def __call__(
        self, _: Any, __: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if not self._masker and not self.mask_hwid:
            return event_dict
        return self._clean(event_dict)  # type: ignore[no-any-return]


REDACTOR = Redactor()


class LineLogger:
    """Writes each line with one ``write(2)`` on the stream's file descriptor.

    With ``--workers`` several processes share stdout; ``print`` writes a line and
    its newline separately (or in buffer-sized pieces), so lines of two processes
    could interleave. One write per line keeps every line whole.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        try:
            self._fd: int | None = stream.fileno()
        except (AttributeError, OSError, ValueError):  # e.g. a StringIO in tests
            self._fd = None

    def msg(self, message: str) -> None:
        # A log line must never take the relay down: a closed or broken stream loses it.
        with contextlib.suppress(ValueError, OSError):
            self._write(message)

    def _write(self, message: str) -> None:
        data = (message + "\n").encode("utf-8", "replace")
        if self._fd is None:
            self._stream.write(message + "\n")
            self._stream.flush()
            return
        self._stream.flush()  # anything printed before us goes first
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


class LineLoggerFactory:
    def __init__(self, stream: TextIO) -> None:
        self._logger = LineLogger(stream)

    def __call__(self, *args: Any) -> LineLogger:
        return self._logger


def _serialize(event_dict: Any, **_: Any) -> str:
    return _ENCODER.encode(event_dict).decode()


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Set up structlog once per process; ``fmt`` is auto, json or console."""
    stream = stream or sys.stdout
    console = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=True)
        if console
        else structlog.processors.JSONRenderer(serializer=_serialize)
    )
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *shared,
            REDACTOR,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=LineLoggerFactory(stream),
        cache_logger_on_first_use=True,  # the redactor is updated in place on reload
    )
    # Libraries (uvicorn, asyncio) log through stdlib logging: same format, same redaction,
    # warnings and up only.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                REDACTOR,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "litestar"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
        lg.setLevel(logging.WARNING)


def get_logger(name: str = "relay") -> Any:
    return structlog.get_logger(name)
