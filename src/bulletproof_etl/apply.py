"""Applying the maps to the user tables, set-based: re-insert, remap, quarantine."""

from __future__ import annotations

import logging

import psycopg2
from psycopg2 import sql

from .snapshot import pk_json, state

logger = logging.getLogger(__name__)


def _flt(dep, alias="t"):
    if dep.filter_column:
        return sql.SQL(" AND {} ILIKE %s").format(sql.Identifier(alias, dep.filter_column)), [dep.filter_pattern]
    return sql.SQL(""), []


def _reinsert(cur, config, table, pk, deps, run_id, unresolved, tr) -> None:
    """Put back rows of the snapshot that are gone, their references rewritten through the maps."""
    tbl = sql.Identifier(config.schema, table)
    cur.execute("DROP TABLE IF EXISTS _bp_missing")
    cur.execute(
        sql.SQL("CREATE TEMP TABLE _bp_missing ON COMMIT DROP AS SELECT s.pk, s.row FROM {snap} s "
                "WHERE s.run_id = %s AND s.table_name = %s AND NOT EXISTS "
                "(SELECT 1 FROM {tbl} t WHERE {pk} = s.pk)").format(
            snap=state(config, "snap_rows"), tbl=tbl, pk=pk_json(pk, "t")),
        (run_id, table),
    )
    if not cur.rowcount:
        return
    mappings = state(config, "mappings")
    for dep in deps:
        col = dep.column
        cur.execute(
            sql.SQL("WITH u AS (UPDATE _bp_missing m SET row = jsonb_set(m.row, ARRAY[%s], to_jsonb(r.new_id)) "
                    "FROM _bp_rowmap r WHERE r.table_name = %s AND r.column_name = %s AND r.pk = m.pk "
                    "RETURNING m.pk, r.new_id) INSERT INTO {} (run_id, table_name, pk, column_name, new_id, strategy) "
                    "SELECT %s, %s, u.pk, %s, u.new_id, 'content' FROM u").format(mappings),
            (col, table, col, run_id, table, col),
        )
        cur.execute(
            sql.SQL("WITH u AS (UPDATE _bp_missing m SET row = jsonb_set(m.row, ARRAY[%s], to_jsonb(x.new_id)) "
                    "FROM _bp_map x WHERE x.entity = %s AND (m.row->>%s)::bigint = x.old_id "
                    "RETURNING m.pk, x.old_id, x.new_id, x.strategy) "
                    "INSERT INTO {} (run_id, table_name, pk, column_name, old_id, new_id, strategy) "
                    "SELECT %s, %s, u.pk, %s, u.old_id, u.new_id, u.strategy FROM u").format(mappings),
            (col, dep.entity, col, run_id, table, col),
        )
        ids = list(unresolved.get(dep.entity, ()))
        if dep.nullable and ids:
            cur.execute(
                sql.SQL("INSERT INTO {} (run_id, table_name, pk, column_name, original, reason) "
                        "SELECT %s, %s, m.pk, %s, m.row, %s FROM _bp_missing m "
                        "WHERE (m.row->>%s)::bigint = ANY(%s)").format(state(config, "quarantine")),
                (run_id, table, col, f"no strategy maps {dep.entity} id uniquely; re-inserted with NULL",
                 col, ids),
            )
            tr.quarantined += cur.rowcount
            tr.nulled += cur.rowcount
            cur.execute("UPDATE _bp_missing m SET row = jsonb_set(m.row, ARRAY[%s], 'null'::jsonb) "
                        "WHERE (m.row->>%s)::bigint = ANY(%s)", (col, col, ids))
    cur.execute("SAVEPOINT bp_reinsert")
    try:
        cur.execute(
            sql.SQL("INSERT INTO {tbl} SELECT (jsonb_populate_record(NULL::{tbl}, m.row)).* FROM _bp_missing m "
                    "ON CONFLICT DO NOTHING").format(tbl=tbl)
        )
        tr.reinserted += cur.rowcount
        cur.execute("RELEASE SAVEPOINT bp_reinsert")
    except psycopg2.Error as exc:
        cur.execute("ROLLBACK TO SAVEPOINT bp_reinsert")
        logger.warning("re-inserting %s failed: %s", table, str(exc).strip().splitlines()[0])
    # whatever could not go back (a conflict, a failed insert) waits in quarantine, whole
    cur.execute(
        sql.SQL("INSERT INTO {q} (run_id, table_name, pk, original, reason) "
                "SELECT %s, %s, m.pk, m.row, 'could not be re-inserted (conflict with a newer row)' "
                "FROM _bp_missing m WHERE NOT EXISTS (SELECT 1 FROM {tbl} t WHERE {pk} = m.pk)").format(
            q=state(config, "quarantine"), tbl=tbl, pk=pk_json(pk, "t")),
        (run_id, table),
    )
    tr.quarantined += cur.rowcount


def _remap_live(cur, config, table, pk, dep, run_id, tr) -> None:
    tbl = sql.Identifier(config.schema, table)
    col = sql.Identifier(dep.column)
    flt, params = _flt(dep)
    mappings = state(config, "mappings")
    cur.execute(
        sql.SQL("WITH x AS (SELECT t.ctid AS rid, t.{col} AS old_id, r.new_id FROM {tbl} t JOIN _bp_rowmap r "
                "ON r.table_name = %s AND r.column_name = %s AND r.pk = {pk} WHERE t.{col} IS DISTINCT FROM r.new_id"
                "{flt}), u AS (UPDATE {tbl} t SET {col} = x.new_id FROM x WHERE t.ctid = x.rid "
                "RETURNING {pk} AS pk, x.old_id, x.new_id) "
                "INSERT INTO {m} (run_id, table_name, pk, column_name, old_id, new_id, strategy) "
                "SELECT %s, %s, u.pk, %s, u.old_id, u.new_id, 'content' FROM u").format(
            col=col, tbl=tbl, pk=pk_json(pk, "t"), flt=flt, m=mappings),
        [table, dep.column] + params + [run_id, table, dep.column],
    )
    if cur.rowcount:
        tr.remapped["content"] = tr.remapped.get("content", 0) + cur.rowcount
    cur.execute(
        sql.SQL("WITH u AS (UPDATE {tbl} t SET {col} = x.new_id FROM _bp_map x "
                "WHERE x.entity = %s AND t.{col} = x.old_id{flt} RETURNING {pk} AS pk, x.old_id, x.new_id, x.strategy) "
                "INSERT INTO {m} (run_id, table_name, pk, column_name, old_id, new_id, strategy) "
                "SELECT %s, %s, u.pk, %s, u.old_id, u.new_id, u.strategy FROM u RETURNING strategy").format(
            tbl=tbl, col=col, flt=flt, pk=pk_json(pk, "t"), m=mappings),
        [dep.entity] + params + [run_id, table, dep.column],
    )
    for (strategy,) in cur.fetchall():
        tr.remapped[strategy] = tr.remapped.get(strategy, 0) + 1


def _quarantine_live(cur, config, table, pk, dep, run_id, ids, tr) -> None:
    tbl = sql.Identifier(config.schema, table)
    col = sql.Identifier(dep.column)
    flt, params = _flt(dep)
    if dep.nullable:
        reason = f"no strategy maps {dep.entity} id uniquely; reference set to NULL"
    else:
        reason = f"no strategy maps {dep.entity} id uniquely; kept on the inactive {dep.entity} brought back"
    cur.execute(
        sql.SQL("INSERT INTO {q} (run_id, table_name, pk, column_name, original, reason) "
                "SELECT %s, %s, {pk}, %s, to_jsonb(t), %s FROM {tbl} t WHERE t.{col} = ANY(%s){flt}").format(
            q=state(config, "quarantine"), pk=pk_json(pk, "t"), tbl=tbl, col=col, flt=flt),
        [run_id, table, dep.column, reason, ids] + params,
    )
    tr.quarantined += cur.rowcount
    if dep.nullable:
        cur.execute(
            sql.SQL("UPDATE {tbl} t SET {col} = NULL WHERE t.{col} = ANY(%s){flt}").format(tbl=tbl, col=col, flt=flt),
            [ids] + params,
        )
        tr.nulled += cur.rowcount


def apply_restore(cur, config, catalog, run_id, unresolved: dict, report) -> None:
    from .restore import TableRestore

    deps_of: dict = {}
    for dep in catalog.user_dependents():
        deps_of.setdefault(dep.table, []).append(dep)
    for table in catalog.user_tables():
        pk = catalog.primary_keys.get(table)
        if not pk:
            continue
        tr = TableRestore(table)
        deps = deps_of.get(table, [])
        flt_dep = next((d for d in deps if d.filter_column), None)
        flt, params = _flt(flt_dep) if flt_dep else (sql.SQL(""), [])
        count_sql = sql.SQL("SELECT count(*) FROM {} t WHERE true{}").format(sql.Identifier(config.schema, table), flt)
        cur.execute(count_sql, params)
        tr.rows_before = cur.fetchone()[0]
        if run_id is not None:
            _reinsert(cur, config, table, pk, deps, run_id, unresolved, tr)
        for dep in deps:
            _remap_live(cur, config, table, pk, dep, run_id, tr)
            ids = list(unresolved.get(dep.entity, ()))
            if ids:
                _quarantine_live(cur, config, table, pk, dep, run_id, ids, tr)
        cur.execute(count_sql, params)
        live = cur.fetchone()[0]
        tr.kept = live - tr.reinserted - sum(tr.remapped.values())
        report.tables[table] = tr
