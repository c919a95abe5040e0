"""Indexes on the columns that reference an entity: installed once, outside any run.

PostgreSQL checks a foreign key to a deleted or renumbered row by one look-up in each
referencing table per row; a referencing column that leads no index is scanned whole each
time. A run that removes rows the import no longer names (``retirement.remove_unreferenced``)
or renumbers re-inserted parents (``ledger_ids``) builds a temporary index where that would be
slow, inside its transaction: the build blocks writes to that table until the commit, and
dropping it blocks reads. ``bulletproof-etl enable --create-indexes`` builds them for good
instead, with ``CREATE INDEX CONCURRENTLY`` (no lock that blocks the app's reads or writes),
so that no run needs one: a migration, run once, as the table owner.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg2 import sql

from ..config import PreservationConfig
from .ledger_ids import _UNINDEXED

ENTITIES = ("leagues", "clubs", "series", "teams")


@dataclass(frozen=True)
class MissingIndex:
    """A foreign key to ``entity`` whose columns lead no index."""

    entity: str
    schema: str
    table: str
    columns: tuple

    @property
    def name(self) -> str:  # a stable name: a second --create-indexes finds it
        return ("bp_fk_" + self.table + "_" + "_".join(self.columns))[:63]

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.table}({', '.join(self.columns)})"


def missing_indexes(conn, config: PreservationConfig) -> list:
    """Every foreign key to a league, club, series or team whose columns lead no valid index."""
    out = []
    with conn.cursor() as cur:
        for entity in ENTITIES:
            target = ".".join('"' + p.replace('"', '""') + '"' for p in (config.schema, config.table(entity)))
            cur.execute(_UNINDEXED, (target,))
            out.extend(MissingIndex(entity, schema, table, tuple(columns))
                       for schema, table, _relid, _attnums, columns, _pages in cur.fetchall())
    return sorted(set(out), key=lambda m: (m.schema, m.table, m.columns))


def create_indexes(conn, config: PreservationConfig) -> list:
    """Build the missing indexes concurrently (``conn`` must be in autocommit); those built.

    An index left invalid by an earlier, interrupted build is dropped and built again."""
    if not conn.autocommit:
        raise ValueError("create_indexes needs an autocommit connection (CREATE INDEX CONCURRENTLY)")
    made = []
    with conn.cursor() as cur:
        for missing in missing_indexes(conn, config):
            index = sql.Identifier(missing.schema, missing.name)
            cur.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(index))
            cur.execute(sql.SQL("CREATE INDEX CONCURRENTLY {} ON {} ({})").format(
                sql.Identifier(missing.name), sql.Identifier(missing.schema, missing.table),
                sql.SQL(", ").join(sql.Identifier(c) for c in missing.columns)))
            made.append(missing)
    return made
