"""The queue's SQL, read from one catalogue file per dialect (as procrastinate keeps it).

SQL lives in ``sql/<dialect>.sql`` as named blocks (``-- name: lease``) and in
numbered migration files under ``sql/migrations/<dialect>/``. Both dialects name
the same statements and the same migrations, so the one body of logic in
:mod:`relay.queue.core` can ask for a statement by name and never carry SQL of
its own; a test holds the two sets equal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

DIALECTS: Final = ("sqlite", "postgres")
_NAME: Final = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.M)
_MIGRATION: Final = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class CatalogueError(Exception):
    """The packaged SQL is malformed: a bug of the relay, never a user's mistake."""


@dataclass(frozen=True, slots=True)
class Migration:
    number: int
    name: str
    sql: str


@dataclass(frozen=True, slots=True)
class Catalogue:
    dialect: str
    statements: dict[str, str]
    migrations: tuple[Migration, ...]

    def sql(self, name: str, fragments: tuple[str, ...] = ()) -> str:
        """The statement ``name``; ``{where}`` becomes the named fragments joined by AND."""
        text = self.statements[name]
        if "{where}" in text:
            where = " AND ".join(f"({self.statements[f]})" for f in fragments) or "TRUE"
            text = text.replace("{where}", where)
        return text


def _strip_comments(block: str) -> str:
    lines = [line for line in block.splitlines() if not line.lstrip().startswith("--")]
    return "\n".join(lines).strip().rstrip(";").strip()


def parse(text: str) -> dict[str, str]:
    """``-- name: x`` blocks -> {name: statement}; comments dropped, one statement each."""
    parts = _NAME.split(text)
    statements: dict[str, str] = {}
    for name, block in zip(parts[1::2], parts[2::2], strict=True):
        if name in statements:
            raise CatalogueError(f"statement {name!r} is defined twice")
        sql = _strip_comments(block)
        if not sql:
            raise CatalogueError(f"statement {name!r} is empty")
        statements[name] = sql
    return statements


@cache
def load(dialect: str) -> Catalogue:
    """The packaged catalogue of ``dialect`` (read once per process)."""
    if dialect not in DIALECTS:
        raise CatalogueError(f"unknown dialect {dialect!r}")
    root = resources.files("relay.queue") / "sql"
    statements = parse((root / f"{dialect}.sql").read_text(encoding="utf-8"))
    migrations = []
    for entry in (root / "migrations" / dialect).iterdir():
        m = _MIGRATION.match(entry.name)
        if m:
            migrations.append(
                Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8"))
            )
    migrations.sort(key=lambda mig: mig.number)
    if [mig.number for mig in migrations] != list(range(1, len(migrations) + 1)):
        raise CatalogueError(f"{dialect} migrations are not numbered 1..n without gaps")
    return Catalogue(dialect, statements, tuple(migrations))
