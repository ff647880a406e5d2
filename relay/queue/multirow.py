"""Many rows of one statement as one statement per chunk, for SQLite's writer thread.

The sqlite3 module's ``executemany`` steps the statement once per row, and each
step releases and retakes the GIL: with the event loop busy, the writer thread
then waits for the GIL once per row (a step costs microseconds alone, up to a
switch interval of 5 ms when the other thread holds the GIL), and every step pays
SQLite's per-call bookkeeping again. Two shapes take many rows in one step:

* a plain ``INSERT ... VALUES (:a, :b)``, whose ``VALUES`` list grows;
* a statement that reads its parameters from a table of values,
  ``WITH v(a, b) AS (VALUES (:a, :b)) UPDATE ... FROM v ...``, whose table grows
  (how SQLite's catalogue writes the statements run for many rows that are not
  plain inserts: settling outcomes, recording attempts).

Either is ordinary SQL for one row, so the same text serves a single call. The
statements of the catalogue keep named parameters; this module derives the
positional many-row form from them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Rows per statement: few distinct statement texts (the sqlite3 module caches them),
#: far below SQLite's limit on bound parameters (32,766) for any of our tables.
CHUNK = 64

_PLAIN_INSERT = re.compile(
    r"^\s*(INSERT\s+INTO\s+[^;]*?\bVALUES)\s*\(([^()]*)\)()\s*$", re.I | re.S
)
_VALUES_TABLE = re.compile(
    r"^\s*(WITH\s+[A-Za-z_]\w*\s*\([^()]*\)\s+AS\s*\(\s*VALUES)\s*\(([^()]*)\)(\s*\)\s.*)$",
    re.I | re.S,
)
_NAMED = re.compile(r"^:([A-Za-z_][A-Za-z0-9_]*)$")


@dataclass
class MultiRow:
    """The many-row form of one single-row statement: ``head`` rows ``tail``."""

    head: str
    names: tuple[str, ...]
    tail: str = ""
    _texts: dict[int, str] = field(default_factory=dict)

    @classmethod
    def of(cls, sql: str) -> MultiRow | None:
        """The many-row form, or None for anything else (an upsert, a RETURNING, an
        expression among the values: run row by row)."""
        match = _PLAIN_INSERT.match(sql) or _VALUES_TABLE.match(sql)
        if match is None:
            return None
        names = []
        for value in match.group(2).split(","):
            named = _NAMED.match(value.strip())
            if named is None:
                return None
            names.append(named.group(1))
        return cls(match.group(1) + " ", tuple(names), match.group(3))

    def text(self, rows: int) -> str:
        sql = self._texts.get(rows)
        if sql is None:
            one = "(" + ",".join("?" * len(self.names)) + ")"
            sql = self._texts[rows] = self.head + ",".join([one] * rows) + self.tail
        return sql

    def chunks(self, rows: Sequence[Mapping[str, Any]]) -> Iterator[tuple[str, list[Any]]]:
        """(statement, parameters) per :data:`CHUNK` rows."""
        names = self.names
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            yield self.text(len(chunk)), [row[name] for row in chunk for name in names]
