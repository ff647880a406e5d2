"""Many rows of a plain ``INSERT ... VALUES (:a, :b)`` as one statement per chunk.

The sqlite3 module's ``executemany`` steps the statement once per row, and each
step releases and retakes the GIL: with the receiver busy on the event loop, the
writer thread then waits for the GIL once per row, and every step pays SQLite's
per-call bookkeeping again. ``VALUES (...), (...), ...`` inserts a whole chunk in
one step. The statements of the catalogue stay as they are (named parameters,
shared with PostgreSQL); this module derives the positional many-row form from them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Rows per statement: few distinct statement texts (the sqlite3 module caches them),
#: far below SQLite's limit on bound parameters (32,766) for any of our tables.
CHUNK = 64

_PLAIN_INSERT = re.compile(r"^\s*(INSERT\s+INTO\s+[^;]*?\bVALUES)\s*\(([^()]*)\)\s*$", re.I | re.S)
_NAMED = re.compile(r"^:([A-Za-z_][A-Za-z0-9_]*)$")


@dataclass
class MultiRowInsert:
    """The many-row form of one single-row insert."""

    head: str
    names: tuple[str, ...]
    _texts: dict[int, str] = field(default_factory=dict)

    @classmethod
    def of(cls, sql: str) -> MultiRowInsert | None:
        """The many-row form, or None for anything but ``INSERT ... VALUES`` of named values
        (an upsert, a RETURNING, an expression among the values: run row by row)."""
        match = _PLAIN_INSERT.match(sql)
        if match is None:
            return None
        names = []
        for value in match.group(2).split(","):
            named = _NAMED.match(value.strip())
            if named is None:
                return None
            names.append(named.group(1))
        return cls(match.group(1) + " ", tuple(names))

    def text(self, rows: int) -> str:
        sql = self._texts.get(rows)
        if sql is None:
            one = "(" + ",".join("?" * len(self.names)) + ")"
            sql = self._texts[rows] = self.head + ",".join([one] * rows)
        return sql

    def chunks(self, rows: Sequence[Mapping[str, Any]]) -> Iterator[tuple[str, list[Any]]]:
        """(statement, parameters) per :data:`CHUNK` rows."""
        names = self.names
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            yield self.text(len(chunk)), [row[name] for row in chunk for name in names]
