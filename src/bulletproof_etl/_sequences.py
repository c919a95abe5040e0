"""Putting id sequences back after a dry run.

A rolled-back transaction undoes every row but not ``nextval()``: sequences are outside
transactions. A dry run would therefore still move the id sequences of the tables the
import writes (entities, ETL-owned tables, the state schema's run log). They are read at
the start and set back at the end, under the advisory lock, and only where no row holds
an id beyond the value read (so nobody's id can be handed out twice). User tables'
sequences are never touched: the app inserts into them concurrently.
"""

from __future__ import annotations

import logging

from psycopg2 import sql

from .config import ENTITIES, PreservationConfig

logger = logging.getLogger(__name__)


def _quoted(schema: str, table: str) -> str:
    def q(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'
    return f"{q(schema)}.{q(table)}"


def owned_tables(config: PreservationConfig) -> list:
    """``[(schema, table)]`` whose sequences a dry run may move."""
    tables = [(config.schema, config.table(e)) for e in ENTITIES]
    tables += [(config.schema, t) for t in sorted(config.etl_tables)]
    tables += [(config.state_schema, "runs"), (config.state_schema, "quarantine")]
    return tables


def _state(cur, seq: str) -> tuple:
    """``(last value, is_called)`` of a sequence, read without writing it."""
    cur.execute("SELECT s.seqstart, pg_sequence_last_value(s.seqrelid) FROM pg_sequence s "
                "WHERE s.seqrelid = %s::regclass", (seq,))
    start, last = cur.fetchone()
    return (start, False) if last is None else (last, True)


_OWNED = """
SELECT d.objid::regclass::text, a.attname
FROM pg_depend d
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.refobjid = %s::regclass AND d.deptype IN ('a', 'i')
ORDER BY 1
"""


def capture(conn, config: PreservationConfig) -> list:
    """``[(schema, table, column, sequence, last_value, is_called)]`` for the tables a run writes."""
    out = []
    with conn.cursor() as cur:
        for schema, table in owned_tables(config):
            cur.execute("SELECT to_regclass(%s)", (_quoted(schema, table),))
            if cur.fetchone()[0] is None:
                continue
            cur.execute(_OWNED, (_quoted(schema, table),))
            for seq, column in cur.fetchall():
                last, called = _state(cur, seq)
                out.append((schema, table, column, seq, last, called))
    return out


def reset(conn, captured: list) -> int:
    """Set each captured sequence back where no row uses a later value; returns how many moved back."""
    moved = 0
    with conn.cursor() as cur:
        for schema, table, column, seq, last, called in captured:
            cur.execute("SELECT to_regclass(%s)", (seq,))
            if cur.fetchone()[0] is None:  # created inside the run and rolled back with it
                continue
            if _state(cur, seq) == (last, called):
                continue
            cur.execute(sql.SQL("SELECT coalesce(max({}), 0) FROM {}").format(
                sql.Identifier(column), sql.Identifier(schema, table)))
            highest = cur.fetchone()[0]
            if highest > (last if called else last - 1):
                logger.warning("sequence %s left as it is: %s holds %s beyond %s", seq, table, highest, last)
                continue
            cur.execute("SELECT setval(%s, %s, %s)", (seq, last, called))
            moved += 1
    return moved
