"""Undoing what the ETL itself did to user rows during the run: NULLed, re-pointed references.

An ETL may have its own restore and orphan fixers (the real rally ETL re-inserts practice
times with ``home_team_id`` NULL where no team name matches, re-points polls through its own
team-name mapping, deletes polls it cannot place). Inside a protected run every such change
is damage: the snapshot says what each user row referenced before the run, the entity map
says where that entity is now. Rows the ETL deleted are re-inserted by :mod:`.apply`; this
module repairs the references of rows that still exist:

- a reference that the snapshot had (not NULL) and that now differs from it (NULL, or another
  id) is set back: to the snapshot's id while that id exists (before the entity map is built;
  the restore then carries it on, as for any row), else to the id the entity map gives it;
  each is recorded in ``mappings`` with strategy ``repaired`` (old id: what the ETL left, new
  id: the right one);
- only rows written by the run's own transaction are touched: a change a user committed
  while the run went on is the user's, never damage, and the restore's own writes come after.
  Health tells them apart the same way (health/against_snapshot.py); apply.py records the
  users' rows that the entity map carries on to another id.
"""

from __future__ import annotations

import logging

from psycopg2 import sql

from ..health.against_snapshot import snapshot_refs
from ..state import pk_json, state, written_here

logger = logging.getLogger(__name__)


def repair_damage(cur, config, catalog, run_id, keyed: dict, *, mapped: bool = False, counts=None) -> dict:
    """Set every reference the run's own writes changed back to where the snapshot had it.

    First pass (``mapped=False``, before the entity map is built): rows whose snapshot id still
    exists get exactly that id back; the restore then carries it on like any other id. Second
    pass (``mapped=True``, once ``_bp_map`` holds the map, before the restore writes anything):
    rows whose snapshot id is gone get the id the map gives it. Returns ``{table: count}``.
    """
    counts = {} if counts is None else counts
    for dep in catalog.user_dependents():
        pk = catalog.primary_keys.get(dep.table)
        if not pk:
            continue
        keyed_pk = keyed.get(dep.table)
        if keyed_pk is not None and list(pk) != [keyed_pk]:
            continue
        flt = sql.SQL("")
        params: list = []
        if dep.filter_column:
            flt = sql.SQL(" AND t.{} ILIKE %s").format(sql.Identifier(dep.filter_column))
            params = [dep.filter_pattern]
        if mapped:
            target = sql.SQL("(SELECT m.new_id FROM _bp_map m WHERE m.entity = {} AND m.old_id = s.old)").format(
                sql.Literal(dep.entity))
            where = sql.SQL("NOT EXISTS (SELECT 1 FROM {} x WHERE x.id = s.old)")
        else:
            target = sql.SQL("s.old")
            where = sql.SQL("EXISTS (SELECT 1 FROM {} x WHERE x.id = s.old)")
        statement = sql.SQL(
            "WITH d AS (SELECT {pkj} AS pk, t.{col}::bigint AS now, {target} AS right_id FROM {tbl} t "
            "JOIN {snap} s ON s.pk = {pkj} WHERE {where} AND {ours}{flt}), "
            "u AS (UPDATE {tbl} t SET {col} = d.right_id FROM d WHERE {pkj} = d.pk AND d.right_id IS NOT NULL "
            "AND t.{col} IS DISTINCT FROM d.right_id RETURNING d.pk, d.now, d.right_id) "
            "INSERT INTO {m} (run_id, table_name, pk, column_name, old_id, new_id, strategy) "
            "SELECT %s, %s, u.pk, %s, u.now, u.right_id, 'repaired' FROM u"
        ).format(snap=snapshot_refs(keyed_pk, config, dep.column), pkj=pk_json(pk, "t"), target=target,
                 where=where.format(sql.Identifier(config.schema, config.table(dep.entity))),
                 col=sql.Identifier(dep.column), tbl=sql.Identifier(config.schema, dep.table), ours=written_here("t"), flt=flt,
                 m=state(config, "mappings"))
        cur.execute(statement, [run_id, dep.table] + params + [run_id, dep.table, dep.column])
        if cur.rowcount:
            counts[dep.table] = counts.get(dep.table, 0) + cur.rowcount
            logger.info("set back %d references in %s that the run's own writes had changed", cur.rowcount, dep.label)
    return counts


def count_repaired(report, counts: dict) -> None:
    """Add what :func:`repair_damage` did to the restore report's tables."""
    for table, n in counts.items():
        tr = report.tables.get(table)
        if tr is not None:
            tr.repaired += n
            tr.remapped["repaired"] = tr.remapped.get("repaired", 0) + n
