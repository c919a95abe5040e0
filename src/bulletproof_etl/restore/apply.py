"""Applying the maps to the user tables, set-based: re-insert, remap, quarantine.

Works on two temporary tables built by entity_map.py: ``_bp_map`` (entity, old id -> new id,
strategy) and ``_bp_rowmap`` (table, primary key, column: old id -> new id, by content).
Every rewritten reference is recorded in ``mappings``; every reference no strategy maps,
and every snapshot row that cannot go back, gets a ``quarantine`` entry with the original
row. No row is deleted.
"""

from __future__ import annotations

import logging

import psycopg2
from psycopg2 import sql

from ..failures import must_abort
from ..health.against_snapshot import during_run, user_changes_table
from ..snapshot import keys as snapkeys
from ..snapshot import readback
from ..state import pk_json, state, written_here
from .report import TableRestore

logger = logging.getLogger(__name__)

REASON_NULL = "no strategy maps {entity} id {old} to exactly one {entity_one}; reference set to NULL"
REASON_PLACEHOLDER = ("no strategy maps {entity} id {old} to exactly one {entity_one}; the column is NOT NULL, "
                      "so the row stays on an inactive placeholder kept alive with that id")
REASON_WITHHELD = "could not be re-inserted: {error}"


def _flt(dep, alias="t"):
    if dep is not None and dep.filter_column:
        return sql.SQL(" AND {} ILIKE %s").format(sql.Identifier(alias, dep.filter_column)), [dep.filter_pattern]
    return sql.SQL(""), []


def _reason(template: str, dep) -> sql.Composed:
    """The reason text as SQL, with the stale id filled in per row from the column ``old``."""
    head, tail = template.split("{old}")
    one = dep.entity[:-1] if dep.entity != "series" else "series"
    return sql.SQL("{} || old::text || {}").format(
        sql.Literal(head.format(entity=dep.entity)), sql.Literal(tail.format(entity_one=one)))


# -- rows deleted since the snapshot ---------------------------------------------------------

def _stage_missing(cur, config, table, pk, run_id, tr, keyed_pk=None, integer=False) -> int:
    """The snapshot's rows that are gone, in ``_bp_missing``: copied whole, or read back (keyed)."""
    tbl = sql.Identifier(config.schema, table)
    cur.execute("DROP TABLE IF EXISTS _bp_missing; DROP TABLE IF EXISTS _bp_changes")
    if keyed_pk:
        missing, tr.left_deleted = readback.stage_missing_keyed(cur, config, run_id, table, keyed_pk)
    else:
        cur.execute(
            sql.SQL("CREATE TEMP TABLE _bp_missing ON COMMIT DROP AS SELECT s.pk, s.row, s.row AS original "
                    "FROM {snap} s WHERE s.run_id = %s AND s.table_name = %s AND NOT EXISTS "
                    "(SELECT 1 FROM {tbl} t WHERE {pk})").format(
                snap=state(config, "snap_rows"), tbl=tbl,
                pk=snapkeys.pk_equals(pk, integer)),
            (run_id, table),
        )
        missing = cur.rowcount
    cur.execute("ANALYZE _bp_missing")
    cur.execute("CREATE TEMP TABLE _bp_changes (pk jsonb, column_name text, old_id bigint, new_id bigint, "
                "strategy text, kind text) ON COMMIT DROP")
    return missing


def _rewrite_missing(cur, table, dep, unresolved: dict) -> None:
    """Rewrite one reference column of the staged rows; remember every change in _bp_changes."""
    col = dep.column
    cur.execute(
        "WITH u AS (UPDATE _bp_missing m SET row = jsonb_set(m.row, ARRAY[%s], to_jsonb(r.new_id)) "
        "FROM _bp_rowmap r WHERE r.table_name = %s AND r.column_name = %s AND r.pk = m.pk "
        "AND (m.row->>%s)::bigint = r.old_id RETURNING m.pk, r.old_id, r.new_id) "
        "INSERT INTO _bp_changes SELECT pk, %s, old_id, new_id, 'content', 'map' FROM u",
        (col, table, col, col, col),
    )
    cur.execute(
        "WITH u AS (UPDATE _bp_missing m SET row = jsonb_set(m.row, ARRAY[%s], to_jsonb(x.new_id)) "
        "FROM _bp_map x WHERE x.entity = %s AND (m.row->>%s)::bigint = x.old_id "
        "AND (m.original->>%s)::bigint = x.old_id RETURNING m.pk, x.old_id, x.new_id, x.strategy) "
        "INSERT INTO _bp_changes SELECT pk, %s, old_id, new_id, strategy, 'map' FROM u",
        (col, dep.entity, col, col, col),
    )
    ids = list(unresolved.get(dep.entity, ()))
    if not ids:
        return
    kind = "null" if dep.nullable else "placeholder"
    cur.execute(
        "INSERT INTO _bp_changes SELECT m.pk, %s, (m.row->>%s)::bigint, NULL, NULL, %s FROM _bp_missing m "
        "WHERE (m.row->>%s)::bigint = ANY(%s)",
        (col, col, kind, col, ids),
    )
    if dep.nullable:
        cur.execute("UPDATE _bp_missing m SET row = jsonb_set(m.row, ARRAY[%s], 'null'::jsonb) "
                    "WHERE (m.row->>%s)::bigint = ANY(%s)", (col, col, ids))


def _insert_missing(cur, config, table, pk) -> None:
    """All staged rows in one statement; if one row breaks it, row by row in savepoints."""
    tbl = sql.Identifier(config.schema, table)
    insert = sql.SQL("INSERT INTO {tbl} SELECT (jsonb_populate_record(NULL::{tbl}, m.row)).* FROM _bp_missing m "
                     "{where} ORDER BY m.pk ON CONFLICT DO NOTHING")
    cur.execute("SAVEPOINT bp_reinsert")
    try:
        cur.execute(insert.format(tbl=tbl, where=sql.SQL("")))
        cur.execute("RELEASE SAVEPOINT bp_reinsert")
        return
    except psycopg2.Error as exc:
        if must_abort(exc):  # a timeout or a lost connection: never quarantine for it
            raise
        cur.execute("ROLLBACK TO SAVEPOINT bp_reinsert")
        logger.warning("re-inserting %s in one statement failed (%s); row by row",
                       table, str(exc).strip().splitlines()[0])
    cur.execute("ALTER TABLE _bp_missing ADD COLUMN error text")
    cur.execute("SELECT pk::text FROM _bp_missing ORDER BY pk")
    for (pk_text,) in cur.fetchall():
        cur.execute("SAVEPOINT bp_reinsert_row")
        try:
            cur.execute(insert.format(tbl=tbl, where=sql.SQL("WHERE m.pk = %s::jsonb")), (pk_text,))
            cur.execute("RELEASE SAVEPOINT bp_reinsert_row")
        except psycopg2.Error as exc:
            cur.execute("ROLLBACK TO SAVEPOINT bp_reinsert_row")
            cur.execute("UPDATE _bp_missing SET error = %s WHERE pk = %s::jsonb",
                        (str(exc).strip().splitlines()[0], pk_text))


def _reinsert(cur, config, table, pk, deps, run_id, unresolved, tr, keyed_pk=None, integer=False) -> None:
    """Put back rows of the snapshot that are gone, their references rewritten through the maps."""
    if not _stage_missing(cur, config, table, pk, run_id, tr, keyed_pk, integer):
        return
    for dep in deps:
        _rewrite_missing(cur, table, dep, unresolved)
    cur.execute("ANALYZE _bp_missing; ANALYZE _bp_changes")
    _insert_missing(cur, config, table, pk)
    tbl = sql.Identifier(config.schema, table)
    cur.execute("ALTER TABLE _bp_missing ADD COLUMN IF NOT EXISTS error text")
    cur.execute(sql.SQL("UPDATE _bp_missing m SET error = coalesce(m.error, 'a row with the same unique key exists') "
                        "WHERE NOT EXISTS (SELECT 1 FROM {tbl} t WHERE {pk} = m.pk)").format(
        tbl=tbl, pk=pk_json(pk, "t")))
    tr.withheld = cur.rowcount
    cur.execute("SELECT count(*) FROM _bp_missing WHERE error IS NULL")
    tr.reinserted = cur.fetchone()[0]
    cur.execute(
        sql.SQL("INSERT INTO {q} (run_id, table_name, pk, original, reason) "
                "SELECT %s, %s, m.pk, m.original, 'could not be re-inserted: ' || m.error "
                "FROM _bp_missing m WHERE m.error IS NOT NULL").format(q=state(config, "quarantine")),
        (run_id, table),
    )
    # what happened to the rows that went back
    cur.execute(
        sql.SQL("INSERT INTO {m} (run_id, table_name, pk, column_name, old_id, new_id, strategy) "
                "SELECT %s, %s, c.pk, c.column_name, c.old_id, c.new_id, c.strategy FROM _bp_changes c "
                "JOIN _bp_missing m ON m.pk = c.pk AND m.error IS NULL WHERE c.kind = 'map' "
                "RETURNING strategy").format(m=state(config, "mappings")),
        (run_id, table),
    )
    for (strategy,) in cur.fetchall():
        tr.remapped[strategy] = tr.remapped.get(strategy, 0) + 1
    for dep in deps:
        kind = "null" if dep.nullable else "placeholder"
        template = REASON_NULL if dep.nullable else REASON_PLACEHOLDER
        cur.execute(
            sql.SQL("INSERT INTO {q} (run_id, table_name, pk, column_name, original, reason) "
                    "SELECT %s, %s, c.pk, %s, m.original, {reason} FROM (SELECT pk, old_id AS old FROM _bp_changes "
                    "WHERE kind = %s AND column_name = %s) c JOIN _bp_missing m ON m.pk = c.pk AND m.error IS NULL"
                    ).format(q=state(config, "quarantine"), reason=_reason(template, dep)),
            (run_id, table, dep.column, kind, dep.column),
        )
        if dep.nullable:
            tr.nulled += cur.rowcount
        else:
            tr.on_placeholder += cur.rowcount
    tr.quarantined += tr.withheld + tr.nulled + tr.on_placeholder


# -- live rows ---------------------------------------------------------------------------------

def _quarantine_live(cur, config, table, pk, dep, run_id, ids, tr) -> None:
    """One entry per live row whose reference nobody maps (content matches aside), as it was."""
    flt, params = _flt(dep)
    template = REASON_NULL if dep.nullable else REASON_PLACEHOLDER
    cur.execute(
        sql.SQL("INSERT INTO {q} (run_id, table_name, pk, column_name, original, reason) "
                "SELECT %s, %s, x.pk, %s, x.original, {reason} FROM ("
                "SELECT {pk} AS pk, to_jsonb(t) AS original, t.{col}::bigint AS old FROM {tbl} t "
                "WHERE t.{col} = ANY(%s){flt}) x WHERE NOT EXISTS (SELECT 1 FROM _bp_rowmap r "
                "WHERE r.table_name = %s AND r.column_name = %s AND r.pk = x.pk AND r.old_id = x.old)").format(
            q=state(config, "quarantine"), pk=pk_json(pk, "t"), reason=_reason(template, dep),
            tbl=sql.Identifier(config.schema, table), col=sql.Identifier(dep.column), flt=flt),
        [run_id, table, dep.column, ids] + params + [table, dep.column],
    )
    tr.quarantined += cur.rowcount
    if not dep.nullable:
        tr.on_placeholder += cur.rowcount


def _remap_live(cur, config, table, pk, dep, run_id, tr, touched: set, note_users: bool = False) -> None:
    tbl = sql.Identifier(config.schema, table)
    col = sql.Identifier(dep.column)
    flt, params = _flt(dep)
    mappings = state(config, "mappings")
    cur.execute(
        sql.SQL("WITH u AS (UPDATE {tbl} t SET {col} = r.new_id FROM _bp_rowmap r "
                "WHERE r.table_name = %s AND r.column_name = %s AND r.pk = {pk} AND t.{col} = r.old_id{flt} "
                "RETURNING {pk} AS pk, r.old_id, r.new_id) "
                "INSERT INTO {m} (run_id, table_name, pk, column_name, old_id, new_id, strategy) "
                "SELECT %s, %s, u.pk, %s, u.old_id, u.new_id, 'content' FROM u RETURNING pk::text, strategy").format(
            col=col, tbl=tbl, pk=pk_json(pk, "t"), flt=flt, m=mappings),
        [table, dep.column] + params + [run_id, table, dep.column],
    )
    rows = cur.fetchall()
    # a row a user moved during the run (its version not ours: o, the row before this update) is
    # carried on too; _bp_user_changed keeps the id the user chose, for health
    users = sql.SQL(", {} o").format(tbl) if note_users else sql.SQL("")
    cur.execute(
        sql.SQL("WITH u AS (UPDATE {tbl} t SET {col} = x.new_id FROM _bp_map x{users} "
                "WHERE x.entity = %s AND t.{col} = x.old_id{flt}{same} "
                "RETURNING {pk} AS pk, x.old_id, x.new_id, x.strategy, {theirs} AS theirs){note} "
                "INSERT INTO {m} (run_id, table_name, pk, column_name, old_id, new_id, strategy) "
                "SELECT %s, %s, u.pk, %s, u.old_id, u.new_id, u.strategy FROM u RETURNING pk::text, strategy").format(
            tbl=tbl, col=col, flt=flt, pk=pk_json(pk, "t"), m=mappings, users=users,
            same=sql.SQL(" AND o.ctid = t.ctid") if note_users else sql.SQL(""),
            theirs=sql.SQL("NOT {}").format(written_here("o")) if note_users else sql.SQL("false"),
            note=sql.SQL(", n AS (INSERT INTO _bp_user_changed SELECT {}, {}, u.pk, u.old_id FROM u WHERE u.theirs "
                         "ON CONFLICT (table_name, column_name, pk) DO UPDATE SET chosen = excluded.chosen)").format(
                sql.Literal(table), sql.Literal(dep.column)) if note_users else sql.SQL("")),
        [dep.entity] + params + [run_id, table, dep.column],
    )
    rows += cur.fetchall()
    for pk_text, strategy in rows:
        tr.remapped[strategy] = tr.remapped.get(strategy, 0) + 1
        touched.add(pk_text)


def _null_live(cur, config, table, pk, dep, ids, tr, touched: set) -> None:
    flt, params = _flt(dep)
    cur.execute(
        sql.SQL("UPDATE {tbl} t SET {col} = NULL WHERE t.{col} = ANY(%s){flt} RETURNING {pk}::text").format(
            tbl=sql.Identifier(config.schema, table), col=sql.Identifier(dep.column), flt=flt,
            pk=pk_json(pk, "t")),
        [ids] + params,
    )
    found = cur.fetchall()
    tr.nulled += len(found)
    touched.update(r[0] for r in found)


def apply_restore(cur, config, catalog, run_id, unresolved: dict, report) -> None:
    keyed = snapkeys.keyed_tables(cur, config, run_id)
    integer = snapkeys.integer_pks(cur, config)
    users = during_run(cur, config, run_id)  # users may have moved rows while the run went on
    if users:
        user_changes_table(cur)
    deps_of: dict = {}
    for dep in catalog.user_dependents():
        deps_of.setdefault(dep.table, []).append(dep)
    for table in catalog.user_tables():
        pk = catalog.primary_keys.get(table)
        if not pk:
            logger.warning("table %s has no primary key; its references are checked, not restored", table)
            continue
        tr = TableRestore(table)
        deps = deps_of.get(table, [])
        flt, params = _flt(next((d for d in deps if d.filter_column), None))
        count_sql = sql.SQL("SELECT count(*) FROM {} t WHERE true{}").format(sql.Identifier(config.schema, table), flt)
        cur.execute(count_sql, params)
        tr.rows_before = cur.fetchone()[0]
        touched: set = set()
        for dep in deps:  # entries first, while every live row is still as it was
            ids = list(unresolved.get(dep.entity, ()))
            if ids:
                _quarantine_live(cur, config, table, pk, dep, run_id, ids, tr)
        for dep in deps:
            _remap_live(cur, config, table, pk, dep, run_id, tr, touched, users)
        for dep in deps:
            ids = list(unresolved.get(dep.entity, ()))
            if ids and dep.nullable:
                _null_live(cur, config, table, pk, dep, ids, tr, touched)
        tr.kept = tr.rows_before - len(touched)
        if run_id is not None:
            _reinsert(cur, config, table, pk, deps, run_id, unresolved, tr, keyed.get(table),
                      integer.get(table) == pk[0] and len(pk) == 1)
        cur.execute(count_sql, params)
        tr.rows_after = cur.fetchone()[0]
        report.tables[table] = tr
