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
from ..state import relname

ENTITIES = ("leagues", "clubs", "series", "teams")

# Foreign keys to the table whose referencing columns lead no valid, complete btree or hash
# index (the check PostgreSQL runs per changed id is "WHERE columns = values"), with the
# table's size in pages now (dead rows included: the checks scan those too).
_UNINDEXED = """
SELECT DISTINCT ON (con.conrelid, con.conkey) n.nspname, rel.relname, con.conrelid::bigint,
    con.conkey::int[],
    ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord),
    pg_relation_size(rel.oid) / current_setting('block_size')::bigint
FROM pg_constraint con
JOIN pg_class rel ON rel.oid = con.conrelid AND rel.relkind = 'r'
JOIN pg_namespace n ON n.oid = rel.relnamespace
WHERE con.contype = 'f' AND con.confrelid = %s::regclass
  AND NOT EXISTS (
    SELECT 1 FROM pg_index i
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_am am ON am.oid = ic.relam AND am.amname IN ('btree', 'hash')
    CROSS JOIN LATERAL (SELECT ARRAY(SELECT x FROM unnest(i.indkey::int2[]) WITH ORDINALITY u(x, o)
                                     WHERE o <= cardinality(con.conkey)) AS lead) l
    WHERE i.indrelid = con.conrelid AND i.indisvalid AND i.indisready AND i.indpred IS NULL
      AND i.indnkeyatts >= cardinality(con.conkey) AND l.lead @> con.conkey AND l.lead <@ con.conkey)
ORDER BY con.conrelid, con.conkey
"""


def unindexed_keys(cur, config: PreservationConfig, entity: str) -> list:
    """Foreign keys to ``entity`` whose columns lead no index: ``[(schema, table, relid, attnums,
    columns, pages)]`` (:data:`_UNINDEXED`)."""
    cur.execute(_UNINDEXED, (relname(config.schema, config.table(entity)),))
    return cur.fetchall()


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
            out.extend(MissingIndex(entity, schema, table, tuple(columns))
                       for schema, table, _relid, _attnums, columns, _pages in unindexed_keys(cur, config, entity))
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
