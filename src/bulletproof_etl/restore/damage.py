"""Undoing what the ETL itself did to user rows during the run: NULLed, re-pointed references.

An ETL may have its own restore and orphan fixers (the real rally ETL re-inserts practice
times with ``home_team_id`` NULL where no team name matches, re-points polls through its own
team-name mapping, deletes polls it cannot place). Inside a protected run every such change
is damage: the snapshot says what each user row referenced before the run, the entity map
says where that entity is now. Rows the ETL deleted are re-inserted by :mod:`.apply`; this
module repairs the references of rows that still exist:

- a reference that the snapshot had (not NULL) and that now differs from the snapshot's id
  carried through the map (NULL, or another entity) is set back to it, and recorded in
  ``mappings`` with strategy ``repaired`` (old id: what the ETL left, new id: what is right);
- only rows written by the run's own transaction are touched: a change a user committed
  while the run went on is the user's, never damage;
- a reference whose snapshot id maps to nothing (no entity now, no strategy) is left to the
  quarantine, as before.
"""

from __future__ import annotations

import logging

from psycopg2 import sql

from ..state import pk_json, state

logger = logging.getLogger(__name__)

# true for a row version written by this transaction (or one of its subtransactions): an
# in-progress writer whose row we can see can only be ourselves
_OURS = sql.SQL(
    "pg_xact_status((((pg_current_xact_id()::text::bigint >> 32) << 32) | t.xmin::text::bigint)::text::xid8) "
    "= 'in progress'")


def _snapshot_refs(keyed_pk: str | None, config, column: str) -> sql.Composed:
    """``(pk jsonb, old bigint)`` of the run's snapshot for one table and column (params: run, table)."""
    if keyed_pk is None:
        return sql.SQL("(SELECT r.pk, (r.row->>{c})::bigint AS old FROM {rows} r "
                       "WHERE r.run_id = %s AND r.table_name = %s AND r.row->>{c} IS NOT NULL)").format(
            c=sql.Literal(column), rows=state(config, "snap_rows"))
    return sql.SQL("(SELECT jsonb_build_object({k}, u.pk) AS pk, u.old FROM {keys} k, unnest(k.pks, k.ids) u(pk, old) "
                   "WHERE k.run_id = %s AND k.table_name = %s AND k.column_name = {c} AND u.old IS NOT NULL)").format(
        k=sql.Literal(keyed_pk), keys=state(config, "snap_keys"), c=sql.Literal(column))


def repair_damage(cur, config, catalog, run_id, keyed: dict, report) -> int:
    """Set back every reference the run's own writes changed; returns how many."""
    total = 0
    for dep in catalog.user_dependents():
        pk = catalog.primary_keys.get(dep.table)
        if not pk:
            continue
        keyed_pk = keyed.get(dep.table)
        if keyed_pk is not None and list(pk) != [keyed_pk]:
            continue
        entity_tbl = sql.Identifier(config.schema, config.table(dep.entity))
        flt = sql.SQL("")
        params: list = []
        if dep.filter_column:
            flt = sql.SQL(" AND t.{} ILIKE %s").format(sql.Identifier(dep.filter_column))
            params = [dep.filter_pattern]
        statement = sql.SQL(
            "WITH e AS (SELECT s.pk, coalesce(m.new_id, (SELECT x.id FROM {ent} x WHERE x.id = s.old)) AS expected "
            "FROM {snap} s LEFT JOIN _bp_map m ON m.entity = %s AND m.old_id = s.old), "
            "d AS (SELECT {pkj} AS pk, t.{col}::bigint AS now, e.expected FROM {tbl} t JOIN e ON e.pk = {pkj} "
            "WHERE e.expected IS NOT NULL AND t.{col} IS DISTINCT FROM e.expected AND {ours}{flt} "
            # a reference the restore itself mapped, NULLed or quarantined in this run is its decision
            "AND NOT EXISTS (SELECT 1 FROM {m} x WHERE x.run_id = %s AND x.table_name = %s AND x.column_name = %s "
            "AND x.pk = {pkj}) AND NOT EXISTS (SELECT 1 FROM {q} x WHERE x.run_id = %s AND x.table_name = %s "
            "AND x.pk = {pkj})), "
            "u AS (UPDATE {tbl} t SET {col} = d.expected FROM d WHERE {pkj} = d.pk RETURNING d.pk, d.now, d.expected) "
            "INSERT INTO {m} (run_id, table_name, pk, column_name, old_id, new_id, strategy) "
            "SELECT %s, %s, u.pk, %s, u.now, u.expected, 'repaired' FROM u"
        ).format(ent=entity_tbl, snap=_snapshot_refs(keyed_pk, config, dep.column), pkj=pk_json(pk, "t"),
                 col=sql.Identifier(dep.column), tbl=sql.Identifier(config.schema, dep.table), ours=_OURS, flt=flt,
                 m=state(config, "mappings"), q=state(config, "quarantine"))
        cur.execute(statement, [run_id, dep.table, dep.entity] + params
                    + [run_id, dep.table, dep.column, run_id, dep.table] + [run_id, dep.table, dep.column])
        if cur.rowcount:
            tr = report.tables.get(dep.table)
            if tr is not None:
                tr.repaired += cur.rowcount
                tr.remapped["repaired"] = tr.remapped.get("repaired", 0) + cur.rowcount
            logger.info("repaired %d references in %s that the run's own writes had changed", cur.rowcount, dep.label)
            total += cur.rowcount
    return total
