"""The user rows of the snapshot: copied whole where a run can delete them, else as keys.

Rows in ``snap_rows`` carry the natural key of every entity they point at, read from this
run's ``snap_entities`` (so :mod:`.entities` runs first); :mod:`.keys` keeps the others.
"""

from __future__ import annotations

import logging

from psycopg2 import sql

from ..catalog import Catalog
from ..config import PreservationConfig
from ..state import add_counts, analyze_if_grown, pk_json, state
from .keys import compact_tables, integer_pks, snapshot_keys

logger = logging.getLogger(__name__)


def snapshot_user_rows(conn, config: PreservationConfig, run_id: int, catalog: Catalog) -> dict:
    """Snapshot every user-owned row; returns counts per table.

    Rows the run could delete are copied whole into ``snap_rows``; each carries ``refs``:
    for every reference column of the row, the natural key of the entity it pointed at,
    read from this run's ``snap_entities`` (so :func:`snapshot_entities` runs first; a
    reference to a missing row has no key). The other tables go to ``snap_keys`` as primary
    keys and referenced ids (:mod:`.keys`).
    """
    counts = {}
    filters = {}
    refs_of: dict = {}
    for dep in catalog.user_dependents():
        if dep.filter_column:
            filters[dep.table] = (dep.filter_column, dep.filter_pattern)
        refs_of.setdefault(dep.table, []).append(dep)
    with conn.cursor() as cur:
        # this run's keys, joined by hash (a sub-select per reference and row cost a third more)
        cur.execute(sql.SQL("CREATE TEMP TABLE _bp_refkeys ON COMMIT DROP AS SELECT entity, id, to_jsonb(key) AS key "
                            "FROM {} WHERE run_id = %s").format(state(config, "snap_entities")), (run_id,))
        # indexed: a user table the planner has no statistics for (filled by the ETL on a new
        # database) may be estimated at one row, and a nested loop then scans all keys per row
        cur.execute("CREATE INDEX ON _bp_refkeys (entity, id); ANALYZE _bp_refkeys")
        compact = compact_tables(cur, config, catalog)
        integer = integer_pks(cur, config)
        for table in catalog.user_tables():
            pk = catalog.primary_keys.get(table)
            if not pk:
                logger.warning("table %s has no primary key; it is checked but not snapshotted", table)
                continue
            if table in compact:
                counts[table] = snapshot_keys(cur, config, run_id, table, compact[table],
                                              [d.column for d in refs_of.get(table, [])])
                continue
            where = sql.SQL("")
            params: list = [run_id, table]
            refs, joins, ref_params = _refs_expression(refs_of.get(table, []))
            params.extend(ref_params)
            if table in filters:
                where = sql.SQL(" WHERE t.{} ILIKE %s").format(sql.Identifier(filters[table][0]))
                params.append(filters[table][1])
            if integer.get(table) == pk[0] and len(pk) == 1:  # arrays besides: cheap checks when unchanged
                snapshot_keys(cur, config, run_id, table, pk[0], [d.column for d in refs_of.get(table, [])],
                              where=filters.get(table), whole=True)
            cur.execute(
                sql.SQL(
                    "INSERT INTO {snap} (run_id, table_name, pk, row, refs) "
                    "SELECT %s, %s, {pk}, to_jsonb(t), {refs} FROM {tbl} t{joins}{where}"
                ).format(
                    snap=state(config, "snap_rows"),
                    pk=pk_json(pk, "t"),
                    refs=refs,
                    tbl=sql.Identifier(config.schema, table),
                    joins=joins,
                    where=where,
                ),
                params,
            )
            counts[table] = cur.rowcount
        # The run's rows are new to the planner: without statistics for this run id every
        # later query of the run (restore, health) expects one row and nests loops over
        # thousands. Sampling the two filter columns keeps those plans linear.
        analyze_if_grown(cur, config, "snap_rows", sum(n for t, n in counts.items() if t not in compact),
                         columns=("run_id", "table_name"))
        cur.execute("DROP TABLE _bp_refkeys")
    add_counts(conn, config, run_id, "rows", counts)
    return counts


def _refs_expression(deps: list) -> tuple:
    """``jsonb_build_object('team_id', r0.key, ...)``, the joins to ``_bp_refkeys`` it reads
    (this run's key of the entity each reference column points at) and their parameters."""
    if not deps:
        return sql.SQL("NULL::jsonb"), sql.SQL(""), []
    parts, joins, params = [], [], []
    for i, (column, entity) in enumerate(sorted({(d.column, d.entity) for d in deps})):
        alias = sql.Identifier(f"r{i}")
        parts.append(sql.SQL("{name}, {alias}.key").format(name=sql.Literal(column), alias=alias))
        joins.append(sql.SQL(" LEFT JOIN _bp_refkeys {alias} ON {alias}.entity = %s AND {alias}.id = t.{col}::bigint")
                     .format(alias=alias, col=sql.Identifier(column)))
        params.append(entity)
    return sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(parts)), sql.SQL("").join(joins), params
