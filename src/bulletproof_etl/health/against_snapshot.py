"""The checks of a run against its snapshot (health/check.py): NULLed, lost and misattached rows.

Tables the snapshot keeps as keys are compared through :mod:`..snapshot.keys` (whole arrays first,
rows only where something changed); tables copied whole, row by row against ``snap_rows``.
"""

from __future__ import annotations

from psycopg2 import sql

from ..config import ENTITIES
from ..snapshot import keys as snapkeys
from ..state import copy_rows, state


def _dep_filter(config, dep) -> tuple:
    if dep.filter_column:
        return sql.SQL(" AND t.{} ILIKE %s").format(sql.Identifier(dep.filter_column)), [dep.filter_pattern]
    if dep.table in config.user_rows_in_etl_tables and dep.owner == "etl":
        column, pattern = config.user_rows_in_etl_tables[dep.table]
        return sql.SQL(" AND t.{} NOT ILIKE %s").format(sql.Identifier(column)), [pattern]
    return sql.SQL(""), []


def null_counts(cur, config, catalog, run_id, policy: str, keyed=None) -> dict:
    """NULL user references that the policy counts: all of them, or new ones without quarantine."""
    out = {}
    if policy == "allowed" or (policy == "since_snapshot" and run_id is None):
        return out
    if policy == "since_snapshot" and keyed is None:
        keyed = snapkeys.Keyed(cur, config, run_id, catalog)
    for dep in catalog.user_dependents():
        pk = catalog.primary_keys.get(dep.table)
        flt, params = _dep_filter(config, dep)
        tbl = sql.Identifier(config.schema, dep.table)
        col = sql.Identifier(dep.column)
        if policy == "forbidden":
            cur.execute(sql.SQL("SELECT count(*) FROM {} t WHERE t.{} IS NULL{}").format(tbl, col, flt), params)
        elif keyed and dep.table in keyed.tables:
            n = 0 if dep.column in keyed.same(dep.table) else snapkeys.nulled_keyed(
                cur, config, run_id, dep, keyed.tables[dep.table])
            if n:
                out[dep.label] = n
            continue
        elif dep.column in keyed.same(dep.table):
            continue
        elif pk:
            cur.execute(
                sql.SQL("SELECT count(*) FROM {snap} s JOIN {tbl} t ON {pk} WHERE s.run_id = %s "
                        "AND s.table_name = %s AND s.row->>%s IS NOT NULL AND t.{col} IS NULL{flt} "
                        "AND NOT EXISTS (SELECT 1 FROM _bp_health_q q WHERE q.table_name = s.table_name "
                        "AND q.pk = s.pk AND q.column_name = %s)").format(
                    snap=state(config, "snap_rows"), tbl=tbl, pk=keyed.pk_equals(dep.table, pk), col=col, flt=flt),
                [run_id, dep.table, dep.column] + params + [dep.column],
            )
        else:
            continue
        n = cur.fetchone()[0]
        if n:
            out[dep.label] = n
    return out


def lost_rows(cur, config, catalog, run_id, keyed=None) -> dict:
    out = {}
    keyed = keyed or snapkeys.Keyed(cur, config, run_id, catalog)
    for table in catalog.user_tables():
        pk = catalog.primary_keys.get(table)
        if not pk:
            continue
        if "" in keyed.same(table):
            continue  # the same primary keys as at snapshot time
        if table in keyed.tables:
            n = snapkeys.lost_keyed(cur, config, run_id, table, keyed.tables[table])
            if n:
                out[table] = n
            continue
        cur.execute(
            sql.SQL("SELECT count(*) FROM {snap} s WHERE s.run_id = %s AND s.table_name = %s "
                    "AND NOT EXISTS (SELECT 1 FROM {tbl} t WHERE {pk}) "
                    "AND NOT EXISTS (SELECT 1 FROM _bp_health_q q WHERE q.table_name = s.table_name "
                    "AND q.pk = s.pk AND q.column_name = '')").format(
                snap=state(config, "snap_rows"), tbl=sql.Identifier(config.schema, table),
                pk=keyed.pk_equals(table, pk)),
            (run_id, table),
        )
        n = cur.fetchone()[0]
        if n:
            out[table] = n
    return out


def misattached_rows(cur, config, catalog, run_id, keys_now: dict, keyed=None) -> dict:
    """Rows whose reference has another natural key now than at snapshot time, unexplained.

    The key now is computed from the rows now (not taken from the ledger), so an old id that
    came back under a placeholder parent counts as moved. Both key sets sit in analysed
    temporary tables keyed by (entity, id): the run's snapshot rows have no statistics yet,
    and a join on ``snap_entities`` by run alone would make the plan quadratic. The rows
    that moved are found first; only those are looked up among the explained ones.
    """
    out = {}
    keyed = keyed or snapkeys.Keyed(cur, config, run_id, catalog)
    before = _keys_before(cur, config, run_id)
    rekeyed_ids = {e: [i for i, k in before.get(e, {}).items() if keys_now[e].get(i, k) != k] for e in ENTITIES}
    rekeyed = {e for e, ids in rekeyed_ids.items() if ids}  # entities with an id whose key changed
    deps = [d for d in catalog.user_dependents() if catalog.primary_keys.get(d.table)
            and not (d.column in keyed.same(d.table) and d.entity not in rekeyed)]
    if not deps:
        return out  # every reference holds the id it held, and every id its key
    cur.execute("DROP TABLE IF EXISTS _bp_keys_now; DROP TABLE IF EXISTS _bp_keys_before")
    cur.execute("CREATE TEMP TABLE _bp_keys_now (entity text, id bigint, key text[], PRIMARY KEY (entity, id)) "
                "ON COMMIT DROP")
    copy_rows(cur, sql.Identifier("_bp_keys_now"), ("entity", "id", "key"),
              ((e, i, list(k) if k else None) for e in ENTITIES for i, k in keys_now[e].items()))
    cur.execute(sql.SQL("CREATE TEMP TABLE _bp_keys_before ON COMMIT DROP AS SELECT entity, id, key FROM {} "
                        "WHERE run_id = %s AND key IS NOT NULL").format(state(config, "snap_entities")), (run_id,))
    cur.execute("ALTER TABLE _bp_keys_before ADD PRIMARY KEY (entity, id); ANALYZE _bp_keys_now; "
                "ANALYZE _bp_keys_before")
    for dep in deps:
        pk = catalog.primary_keys[dep.table]
        if dep.table in keyed.tables:
            n = snapkeys.misattached_keyed(cur, config, run_id, dep, keyed.tables[dep.table],
                                           aligned="" in keyed.same(dep.table), rekeyed_ids=rekeyed_ids[dep.entity])
            if n:
                out[dep.label] = n
            continue
        cur.execute(
            sql.SQL(
                "WITH moved AS MATERIALIZED (SELECT s.pk FROM {snap} s JOIN {tbl} t ON {pk} "
                "JOIN _bp_keys_before b ON b.entity = %s AND b.id = (s.row->>%s)::bigint "
                "JOIN _bp_keys_now a ON a.entity = %s AND a.id = t.{col} "
                "WHERE s.run_id = %s AND s.table_name = %s AND a.key IS DISTINCT FROM b.key) "
                "SELECT count(*) FROM moved WHERE NOT EXISTS (SELECT 1 FROM _bp_health_explained x "
                "WHERE x.table_name = %s AND x.column_name = %s AND x.pk = moved.pk)"
            ).format(snap=state(config, "snap_rows"), tbl=sql.Identifier(config.schema, dep.table),
                     pk=keyed.pk_equals(dep.table, pk), col=sql.Identifier(dep.column)),
            (dep.entity, dep.column, dep.entity, run_id, dep.table, dep.table, dep.column),
        )
        n = cur.fetchone()[0]
        if n:
            out[dep.label] = n
    cur.execute("DROP TABLE _bp_keys_now; DROP TABLE _bp_keys_before")
    return out


def _keys_before(cur, config, run_id) -> dict:
    """``{entity: {id: key}}`` of the run's entity snapshot (ids that had a key)."""
    cur.execute(sql.SQL("SELECT entity, id, key FROM {} WHERE run_id = %s AND key IS NOT NULL").format(
        state(config, "snap_entities")), (run_id,))
    out: dict = {}
    for entity, id_, key in cur.fetchall():
        out.setdefault(entity, {})[id_] = tuple(key)
    return out


def _stage_run_state(cur, config, run_id) -> None:
    """The run's quarantine entries and context/content mappings, keyed and analysed."""
    cur.execute("DROP TABLE IF EXISTS _bp_health_q; DROP TABLE IF EXISTS _bp_health_explained")
    cur.execute(sql.SQL("CREATE TEMP TABLE _bp_health_q ON COMMIT DROP AS SELECT DISTINCT table_name, pk, "
                        "coalesce(column_name, '') AS column_name FROM {} WHERE run_id = %s").format(
        state(config, "quarantine")), (run_id,))
    cur.execute(sql.SQL("CREATE TEMP TABLE _bp_health_explained ON COMMIT DROP AS SELECT DISTINCT table_name, "
                        "column_name, pk FROM {} WHERE run_id = %s AND (strategy IN ('context', 'content') "
                        "OR strategy = ANY(%s))").format(  # custom strategies are deliberate moves too (issue 15)
        state(config, "mappings")), (run_id, [s.name for s in getattr(config, "custom_strategies", ())]))
    cur.execute("ALTER TABLE _bp_health_q ADD PRIMARY KEY (table_name, pk, column_name); "
                "ALTER TABLE _bp_health_explained ADD PRIMARY KEY (table_name, column_name, pk); "
                "ANALYZE _bp_health_q; ANALYZE _bp_health_explained")
