"""How staged rows become rows of one table, and the row-by-row path when one statement fails.

:class:`Write` describes the columns and values; :mod:`.upsert` runs them as one set-based
statement, and on failure (a unique constraint it could not foresee)
:func:`write_row_by_row` selects, then updates or inserts, one row at a time inside
savepoints, so the transaction survives.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg2
from psycopg2 import sql

from ..failures import first_line


@dataclass(frozen=True)
class Write:
    """How staged rows become rows of one table: the columns and the value of each.

    ``values`` are expressions over the staging row ``s`` and the row now in the table
    ``cur`` (NULL when there is none); ``touch`` is set on update only (``updated_at``).
    """

    table: sql.Composable
    columns: tuple
    values: tuple
    touch: tuple = ()  # ((column, expression), ...)


def idents(names) -> list:
    return [sql.Identifier(n) for n in names]


def source(write: Write) -> sql.Composed:
    return sql.SQL("FROM _bp_stage s LEFT JOIN {tbl} cur ON cur.id = s.id WHERE s.id IS NOT NULL").format(
        tbl=write.table)


#: Rows that failed in the manual path are retried while a pass makes progress (name swaps).
MANUAL_PASSES = 3



def write_row_by_row(cur, write: Write, result) -> list:
    """Select, then update or insert, one row at a time inside savepoints.

    Needs no unique constraint at all (not even on ``id``). Rows that fail are retried
    while a pass makes progress (two teams swapping names), then reported; a failed new
    row gets no id, a failed existing row keeps its id and its old values. ``result`` is the
    entity's :class:`~.upsert.UpsertResult`: the failures go to its ``errors``.
    """
    cols = sql.SQL(", ").join(idents(write.columns))
    marks = sql.SQL(", ").join(sql.Placeholder() * len(write.columns))
    tcols = sql.SQL(", ").join(sql.SQL("t.{}").format(c) for c in idents(write.columns))
    touch = sql.SQL("").join(sql.SQL(", {} = {}").format(sql.Identifier(c), e) for c, e in write.touch)
    update = sql.SQL("UPDATE {tbl} t SET ({cols}) = ROW({marks}){touch} WHERE t.id = %s "
                     "AND ({tcols}) IS DISTINCT FROM ({marks})").format(
        tbl=write.table, cols=cols, marks=marks, touch=touch, tcols=tcols)
    exists = sql.SQL("SELECT 1 FROM {tbl} WHERE id = %s").format(tbl=write.table)
    insert = sql.SQL("INSERT INTO {tbl} (id, {cols}) VALUES (%s, {marks})").format(
        tbl=write.table, cols=cols, marks=marks)
    cur.execute(sql.SQL("SELECT s.ord, s.id, s.existed, {vals} {src} ORDER BY s.ord").format(
        vals=sql.SQL(", ").join(write.values), src=source(write)))
    pending = cur.fetchall()
    written: list = []
    failures: dict = {}
    for _ in range(MANUAL_PASSES):
        retry = []
        for row in pending:
            ord_, id_, _existed, *values = row
            cur.execute("SAVEPOINT bp_row")
            try:
                cur.execute(update, (*values, id_, *values))
                if cur.rowcount:
                    written.append((id_, False))
                else:
                    cur.execute(exists, (id_,))
                    if cur.fetchone() is None:
                        cur.execute(insert, (id_, *values))
                        written.append((id_, True))
                cur.execute("RELEASE SAVEPOINT bp_row")
                failures.pop(ord_, None)
            except psycopg2.Error as exc:
                cur.execute("ROLLBACK TO SAVEPOINT bp_row")
                cur.execute("RELEASE SAVEPOINT bp_row")
                failures[ord_] = exc
                retry.append(row)
        if not retry or len(retry) == len(pending):
            pending = retry
            break
        pending = retry
    for ord_, id_, existed, *_values in pending:
        exc = failures[ord_]
        result.errors.append({
            "record": ord_, "id": id_,
            "constraint": getattr(getattr(exc, "diag", None), "constraint_name", None),
            "error": first_line(exc),
        })
        if not existed:
            cur.execute("UPDATE _bp_stage SET id = NULL WHERE ord = %s", (ord_,))
    return written
