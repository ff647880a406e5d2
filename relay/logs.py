"""Structured logs: JSON lines on stdout (console renderer on a terminal), via structlog.

Two processors guard what leaves the process: :class:`Redactor` replaces every
configured secret (inbound token, destination URLs, header values, signing
secrets) wherever it appears in a line, and :func:`mask_hwid` hides most of an
email address. Both are updated in place on reload, so cached loggers keep
working.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import select
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any, TextIO

import msgspec
import structlog

from .masking import MASK, SecretMasker, mask_hwid

__all__ = ["MASK", "REDACTOR", "Redactor", "configure", "flush", "get_logger", "mask_hwid"]
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

    def _flat_and_clean(self, event_dict: MutableMapping[str, Any]) -> bool:
        """A line of plain values or lists of them (the hot path's lines), no secret in any.

        One search over the strings joined, instead of a substitution per value and a
        new dict: a line per delivery spent a third of its cost here. A match, or any
        nested value, takes the full walk.
        """
        texts = []
        for value in event_dict.values():
            kind = type(value)
            if kind is str:
                texts.append(value)
            elif kind is list or kind is tuple:  # e.g. the routes an event took
                for item in value:
                    if type(item) is str:
                        texts.append(item)
                    elif type(item) not in _SCALARS:
                        return False
            elif kind not in _SCALARS:
                return False
        return not self._masker.found("\0".join(texts))

    def __call__(
        self, _: Any, __: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if not self._masker and not self.mask_hwid:
            return event_dict
        if (not self.mask_hwid or "hwid" not in event_dict) and self._flat_and_clean(event_dict):
            return event_dict
        return self._clean(event_dict)  # type: ignore[no-any-return]


_SCALARS = frozenset({int, float, bool, type(None)})


def _timestamp(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """ISO 8601 in UTC with microseconds, as structlog's ``TimeStamper(fmt="iso",
    utc=True)`` writes it, with the date and time of day formatted once a second."""
    now = time.time()
    second = int(now)
    if second != _STAMP[0]:
        _STAMP[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    event_dict["timestamp"] = f"{_STAMP[1]}.{int((now - second) * 1_000_000):06d}Z"
    return event_dict


_STAMP: list[Any] = [None, ""]


REDACTOR = Redactor()


class LineLogger:
    """Writes whole lines with ``write(2)`` on the stream's file descriptor.

    With ``--workers`` several processes share stdout; ``print`` writes a line and
    its newline separately (or in buffer-sized pieces), so lines of two processes
    could interleave. Each ``write`` here holds whole lines, at most ``PIPE_BUF``
    bytes of them (longer lines alone), which a pipe keeps in one piece.

    On the event loop the lines of one turn of the loop are written together at its
    end: a system call per line was a tenth of a drain's time at ``info`` (one line
    per delivery). A line waits at most for the callbacks of that turn; at exit
    whatever waits is written.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        try:
            self._fd: int | None = stream.fileno()
        except (AttributeError, OSError, ValueError):  # e.g. a StringIO in tests
            self._fd = None
        self._batch: list[bytes] | None = None  # lines waiting for the end of this turn
        self._batch_thread = 0
        if self._fd is not None:
            _LINE_LOGGERS.add(self)

    def msg(self, message: str) -> None:
        # A log line must never take the relay down: a closed or broken stream loses it.
        with contextlib.suppress(ValueError, OSError):
            self._write(message)

    def _write(self, message: str) -> None:
        if self._fd is None:
            self._stream.write(message + "\n")
            self._stream.flush()
            return
        data = (message + "\n").encode("utf-8", "replace")
        thread = threading.get_ident()
        if self._batch is not None:
            if thread == self._batch_thread:
                self._batch.append(data)
            else:  # another thread: its own line now, after what is already waiting
                self.flush()
                self._write_all([data])
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread: write at once
            self._write_all([data])
            return
        self._batch, self._batch_thread = [data], thread
        loop.call_soon(self.flush)

    def flush(self) -> None:
        batch, self._batch = self._batch, None
        if batch:
            with contextlib.suppress(ValueError, OSError):
                self._write_all(batch)

    def _write_all(self, lines: list[bytes]) -> None:
        assert self._fd is not None
        self._stream.flush()  # anything printed before us goes first
        for chunk in _chunks(lines, select.PIPE_BUF):
            view = memoryview(chunk)
            while view:
                view = view[os.write(self._fd, view) :]

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


_LINE_LOGGERS: weakref.WeakSet[LineLogger] = weakref.WeakSet()


@atexit.register
def flush() -> None:
    """Write the lines still waiting for the end of their loop turn (at exit, and before
    a forked server process leaves with ``os._exit``)."""
    for logger in list(_LINE_LOGGERS):
        logger.flush()


def _chunks(lines: list[bytes], size: int) -> Iterator[bytes]:
    """Whole lines joined into pieces of at most ``size`` bytes (a longer line alone)."""
    piece: list[bytes] = []
    length = 0
    for line in lines:
        if piece and length + len(line) > size:
            yield b"".join(piece)
            piece, length = [], 0
        piece.append(line)
        length += len(line)
    if piece:
        yield b"".join(piece)


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
        _timestamp,
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
