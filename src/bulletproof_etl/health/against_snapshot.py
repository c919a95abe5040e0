"""The checks of a run against its snapshot (health/check.py): NULLed, lost and misattached rows.

Tables the snapshot keeps as keys are compared through :mod:`..snapshot.keys` (whole arrays first,
rows only where something changed); tables copied whole, row by row against ``snap_rows``.

A user's own change is not damage. While the run is in progress, a row whose reference differs
from the snapshot and whose current version another transaction committed (``written_here`` is
false: a user, through the app, while the import ran) holds what that user chose
(:func:`stage_user_changes`, ``_bp_user_changed``). Such a row is not misattached while its
reference has the key the chosen id had at snapshot time (the key the user saw), and a NULL the
user set is not counted. Rows the run's own transaction (or one of its savepoints) wrote are
judged against the snapshot as before.
"""

from __future__ import annotations

from psycopg2 import sql

from ..config import ENTITIES
from ..snapshot import keys as snapkeys
from ..state import copy_rows, pk_json, state, written_here


def _dep_filter(config, dep) -> tuple:
    if dep.filter_column:
        return sql.SQL(" AND t.{} ILIKE %s").format(sql.Identifier(dep.filter_column)), [dep.filter_pattern]
    if dep.table in config.user_rows_in_etl_tables and dep.owner == "etl":
        column, pattern = config.user_rows_in_etl_tables[dep.table]
        return sql.SQL(" AND t.{} NOT ILIKE %s").format(sql.Identifier(column)), [pattern]
    return sql.SQL(""), []


def snapshot_refs(keyed_pk: str | None, config, column: str) -> sql.Composed:
    """``(pk jsonb, old bigint)`` of the run's snapshot for one table and column, ``old`` not NULL
    (a FROM item taking the parameters run id, table)."""
    if keyed_pk is None:
        return sql.SQL("(SELECT r.pk, (r.row->>{c})::bigint AS old FROM {rows} r "
                       "WHERE r.run_id = %s AND r.table_name = %s AND r.row->>{c} IS NOT NULL)").format(
            c=sql.Literal(column), rows=state(config, "snap_rows"))
    return sql.SQL("(SELECT jsonb_build_object({k}, x.pk) AS pk, x.old FROM {snapped} x WHERE x.old IS NOT NULL)").format(
        k=sql.Literal(keyed_pk), snapped=snapkeys.snapped(config, column))


def during_run(cur, config, run_id) -> bool:
    """True when ``run_id`` is still running and this transaction has written: the run's own
    transaction (a later check, a repair against an old snapshot, forgives nothing)."""
    if run_id is None:
        return False
    cur.execute(sql.SQL("SELECT pg_current_xact_id_if_assigned() IS NOT NULL AND outcome = 'running' "
                        "FROM {} WHERE run_id = %s").format(state(config, "runs")), (run_id,))
    row = cur.fetchone()
    return bool(row and row[0])


def user_changes_table(cur) -> None:
    """``_bp_user_changed``: rows a user changed during the run, with the id the user chose."""
    cur.execute("CREATE TEMP TABLE IF NOT EXISTS _bp_user_changed (table_name text, column_name text, pk jsonb, "
                "chosen bigint, PRIMARY KEY (table_name, column_name, pk)) ON COMMIT DROP")


def stage_user_changes(cur, config, catalog, run_id, keyed_pks: dict, deps=None) -> int:
    """Record in ``_bp_user_changed`` (table, column, primary key, the id chosen) every row whose
    reference differs from the snapshot in a version another transaction committed: a user's
    change made while the run went on. A row already there keeps the newest choice.

    ``keyed_pks``: the run's keyed tables, ``{table: primary key column}``; ``deps``: the
    dependent columns to look at (default: every user-owned one). Returns the rows recorded.
    """
    user_changes_table(cur)
    n = 0
    for dep in catalog.user_dependents() if deps is None else deps:
        pk = catalog.primary_keys.get(dep.table)
        keyed_pk = keyed_pks.get(dep.table)
        if not pk or (keyed_pk is not None and list(pk) != [keyed_pk]):
            continue
        flt, params = _dep_filter(config, dep)
        cur.execute(
            # the rows that differ first, their writer after: xmin is looked up for those only
            sql.SQL("WITH d AS MATERIALIZED (SELECT s.pk, t.{col}::bigint AS chosen, t.xmin AS xmin FROM {tbl} t "
                    "JOIN {snap} s ON s.pk = {pkj} WHERE t.{col}::bigint IS DISTINCT FROM s.old{flt}) "
                    "INSERT INTO _bp_user_changed SELECT %s, %s, d.pk, d.chosen FROM d WHERE NOT {ours} "
                    "ON CONFLICT (table_name, column_name, pk) DO UPDATE SET chosen = excluded.chosen").format(
                col=sql.Identifier(dep.column), tbl=sql.Identifier(config.schema, dep.table),
                snap=snapshot_refs(keyed_pk, config, dep.column), pkj=pk_json(pk, "t"), ours=written_here("d"),
                flt=flt),
            [run_id, dep.table] + params + [dep.table, dep.column],
        )
        n += cur.rowcount
    return n


def _users_staged(cur, config, catalog, run_id, keyed, dep, users: set) -> None:
    """Stage ``dep``'s user changes once per check (only for a column where something counted)."""
    if (dep.table, dep.column) not in users:
        users.add((dep.table, dep.column))
        stage_user_changes(cur, config, catalog, run_id, keyed.tables, deps=[dep])


def _explain_user_changes(cur, config, dep, pk) -> None:
    """Rows of ``dep`` a user moved, still on the key the user chose, join ``_bp_health_explained``."""
    cur.execute(
        sql.SQL("INSERT INTO _bp_health_explained (table_name, column_name, pk) "
                "SELECT u.table_name, u.column_name, u.pk FROM _bp_user_changed u JOIN {tbl} t ON {pkj} = u.pk "
                "LEFT JOIN _bp_keys_before b ON b.entity = %s AND b.id = u.chosen "
                "LEFT JOIN _bp_keys_now a ON a.entity = %s AND a.id = t.{col}::bigint "
                "WHERE u.table_name = %s AND u.column_name = %s AND (b.key IS NULL OR a.key IS NOT DISTINCT FROM b.key) "
                "ON CONFLICT DO NOTHING").format(
            tbl=sql.Identifier(config.schema, dep.table), pkj=pk_json(pk, "t"), col=sql.Identifier(dep.column)),
        (dep.entity, dep.entity, dep.table, dep.column),
    )


def null_counts(cur, config, catalog, run_id, policy: str, keyed=None, *, users: set | None = None) -> dict:
    """NULL user references that the policy counts: all of them, or new ones without quarantine.

    ``users`` (during the run, see :func:`during_run`): a column where some are counted is looked
    at again without the NULLs its users set themselves (staged columns are added to the set).
    """
    out = {}
    if policy == "allowed" or (policy == "since_snapshot" and run_id is None):
        return out
    if policy == "since_snapshot" and keyed is None:
        keyed = snapkeys.Keyed(cur, config, run_id, catalog)
    for dep in catalog.user_dependents():
        if policy == "forbidden":
            flt, params = _dep_filter(config, dep)
            cur.execute(sql.SQL("SELECT count(*) FROM {} t WHERE t.{} IS NULL{}").format(
                sql.Identifier(config.schema, dep.table), sql.Identifier(dep.column), flt), params)
            n = cur.fetchone()[0]
        else:
            n = _nulled(cur, config, catalog, run_id, dep, keyed)
            if n and users is not None:
                _users_staged(cur, config, catalog, run_id, keyed, dep, users)
                cur.execute("INSERT INTO _bp_health_q SELECT table_name, pk, column_name FROM _bp_user_changed "
                            "WHERE table_name = %s AND column_name = %s AND chosen IS NULL ON CONFLICT DO NOTHING",
                            (dep.table, dep.column))
                if cur.rowcount:
                    n = _nulled(cur, config, catalog, run_id, dep, keyed)
        if n:
            out[dep.label] = n
    return out


def _nulled(cur, config, catalog, run_id, dep, keyed) -> int:
    """References of ``dep`` set at snapshot time, NULL now, without a quarantine entry."""
    pk = catalog.primary_keys.get(dep.table)
    if dep.column in keyed.same(dep.table):
        return 0
    if dep.table in keyed.tables:
        return snapkeys.nulled_keyed(cur, config, run_id, dep, keyed.tables[dep.table])
    if not pk:
        return 0
    flt, params = _dep_filter(config, dep)
    cur.execute(
        sql.SQL("SELECT count(*) FROM {snap} s JOIN {tbl} t ON {pk} WHERE s.run_id = %s "
                "AND s.table_name = %s AND s.row->>%s IS NOT NULL AND t.{col} IS NULL{flt} "
                "AND NOT EXISTS (SELECT 1 FROM _bp_health_q q WHERE q.table_name = s.table_name "
                "AND q.pk = s.pk AND q.column_name = %s)").format(
            snap=state(config, "snap_rows"), tbl=sql.Identifier(config.schema, dep.table),
            pk=keyed.pk_equals(dep.table, pk), col=sql.Identifier(dep.column), flt=flt),
        [run_id, dep.table, dep.column] + params + [dep.column],
    )
    return cur.fetchone()[0]


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


def misattached_rows(cur, config, catalog, run_id, keys_now: dict, keyed=None, *, users: set | None = None) -> dict:
    """Rows whose reference has another natural key now than at snapshot time, unexplained.

    The key now is computed from the rows now (not taken from the ledger), so an old id that
    came back under a placeholder parent counts as moved. Both key sets sit in analysed
    temporary tables keyed by (entity, id): the run's snapshot rows have no statistics yet,
    and a join on ``snap_entities`` by run alone would make the plan quadratic. The rows
    that moved are found first; only those are looked up among the explained ones. ``users``
    (during the run, see :func:`during_run`): a column where some are counted is counted again,
    the rows its users moved themselves and that are still on the key they chose explained.
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
        n = _moved(cur, config, run_id, dep, pk, keyed, rekeyed_ids[dep.entity])
        if n and users is not None:
            _users_staged(cur, config, catalog, run_id, keyed, dep, users)
            _explain_user_changes(cur, config, dep, pk)
            if cur.rowcount:
                n = _moved(cur, config, run_id, dep, pk, keyed, rekeyed_ids[dep.entity])
        if n:
            out[dep.label] = n
    cur.execute("DROP TABLE _bp_keys_now; DROP TABLE _bp_keys_before")
    return out


def _moved(cur, config, run_id, dep, pk, keyed, rekeyed_ids) -> int:
    """Rows of ``dep`` on another key than at snapshot time, not in ``_bp_health_explained``."""
    if dep.table in keyed.tables:
        return snapkeys.misattached_keyed(cur, config, run_id, dep, keyed.tables[dep.table],
                                          aligned="" in keyed.same(dep.table), rekeyed_ids=rekeyed_ids)
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
    return cur.fetchone()[0]


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
