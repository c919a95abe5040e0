"""Putting id sequences back after a rollback (a dry run, or a run that failed).

A rolled-back transaction undoes every row but not ``nextval()``: sequences are outside
transactions. A rolled-back run would therefore still move the id sequences of the tables the
import writes (entities, ETL-owned tables, the state schema's run log). They are read at
the start and set back at the end, under the advisory lock, and only where no row holds
an id beyond the value read (so nobody's id can be handed out twice). User tables'
sequences are never touched: the app inserts into them concurrently.
"""

from __future__ import annotations

import logging

from psycopg2 import sql

from ..config import ENTITIES, PreservationConfig

logger = logging.getLogger(__name__)


def owned_tables(config: PreservationConfig) -> list:
    """``[(schema, table)]`` whose sequences a dry run may move."""
    tables = [(config.schema, config.table(e)) for e in ENTITIES]
    tables += [(config.schema, t) for t in sorted(config.etl_tables)]
    tables += [(config.state_schema, "runs"), (config.state_schema, "quarantine")]
    return tables


_OWNED = """
SELECT t.schema_name, t.table_name, a.attname, s.oid::regclass::text, q.seqstart,
       pg_sequence_last_value(s.oid)
FROM unnest(%s::text[], %s::text[]) AS t(schema_name, table_name)
JOIN pg_namespace n ON n.nspname = t.schema_name
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.table_name
JOIN pg_depend d ON d.refobjid = c.oid AND d.refclassid = 'pg_class'::regclass
     AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_sequence q ON q.seqrelid = s.oid
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.refobjsubid
ORDER BY 1, 2, 3
"""


def capture(conn, config: PreservationConfig) -> list:
    """``[(schema, table, column, sequence, last_value, is_called)]`` for the tables a run writes.

    One statement, whatever the number of tables (a run should not pay per table for this).
    """
    tables = owned_tables(config)
    with conn.cursor() as cur:
        cur.execute(_OWNED, ([t[0] for t in tables], [t[1] for t in tables]))
        return [(schema, table, column, seq, start if last is None else last, last is not None)
                for schema, table, column, seq, start, last in cur.fetchall()]


def reset(conn, captured: list) -> int:
    """Set each captured sequence back where no row uses a later value; returns how many moved back."""
    if not captured:
        return 0
    moved = 0
    with conn.cursor() as cur:
        cur.execute(
            "SELECT x.seq, q.seqstart, pg_sequence_last_value(q.seqrelid) FROM unnest(%s::text[]) AS x(seq) "
            "JOIN pg_sequence q ON q.seqrelid = to_regclass(x.seq)", ([c[3] for c in captured],))
        now = {seq: (start if last is None else last, last is not None) for seq, start, last in cur.fetchall()}
        for schema, table, column, seq, last, called in captured:
            if seq not in now or now[seq] == (last, called):  # gone with the rollback, or unmoved
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
