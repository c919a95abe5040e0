"""The compact part of the snapshot: user rows that no run can delete, kept as keys.

A user-owned row can disappear in a run only where something deletes it: the ETL's clear of
a table it owns (practice rows in ``schedule``), or a foreign key with ``ON DELETE CASCADE``,
``SET NULL`` or ``SET DEFAULT`` from an entity table, an ETL-owned table or another such
table (``videos``). Those tables are *at risk*: :func:`snapshot.snapshot_user_rows` copies
their rows whole into ``snap_rows``, so the restore can put them back.

Every other user-owned table with a one-column integer primary key is snapshotted here, in
``snap_keys``: one row per table and reference column (not one per user row) holding the
primary keys and, aligned with them, the id each row referenced. That is what the checks of
a run need (G2: which rows existed; G4: what each row pointed at, whose natural key is in the
run's ``snap_entities``), at the cost of one aggregate per table instead of a JSON row per
user row. A row of such a table that the run deletes anyway (an ETL deleting users' rows
itself) is read back from the committed state and put back (:mod:`.readback`); one a user
deleted and committed meanwhile stays deleted; without a durable snapshot such a row counts
as lost. ``PreservationConfig.snapshot_rows = "all"`` copies every table whole instead.
"""

from __future__ import annotations

from psycopg2 import sql

from ..catalog import Catalog
from ..config import ENTITIES, PreservationConfig
from ..state import pk_json, state

# foreign keys whose delete action changes or removes the referencing row
_DELETING_FKS = """
SELECT rel.relname, tr.relname
FROM pg_constraint con
JOIN pg_class rel ON rel.oid = con.conrelid
JOIN pg_namespace n ON n.oid = rel.relnamespace
JOIN pg_class tr ON tr.oid = con.confrelid
JOIN pg_namespace tn ON tn.oid = tr.relnamespace
WHERE con.contype = 'f' AND con.confdeltype IN ('c', 'n', 'd') AND n.nspname = %s AND tn.nspname = %s
"""

# tables whose primary key is one integer column, with that column
_INTEGER_PKS = """
SELECT c.relname, a.attname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indisprimary AND i.indnatts = 1 AND n.nspname = %s
  AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)
"""


def integer_pks(cur, config: PreservationConfig) -> dict:
    """``{table: column}`` of the tables whose primary key is one integer column."""
    cur.execute(_INTEGER_PKS, (config.schema,))
    return dict(cur.fetchall())


def pk_equals(pk: list, integer: bool, alias: str = "t", snap: str = "s") -> sql.Composed:
    """``t.pk = s.pk`` for a live row and a snapshot row (``pk`` JSON): by the integer where the
    key is one integer column (an index or hash lookup), else by building the JSON."""
    if integer and len(pk) == 1:
        return sql.SQL("{} = ({}->>{})::bigint").format(sql.Identifier(alias, pk[0]), sql.Identifier(snap, "pk"),
                                                        sql.Literal(pk[0]))
    return sql.SQL("{} = {}").format(pk_json(pk, alias), sql.Identifier(snap, "pk"))


def compact_tables(cur, config: PreservationConfig, catalog: Catalog) -> dict:
    """``{table: primary key column}`` of the user tables to snapshot as keys, not whole."""
    if config.snapshot_rows == "all":
        return {}
    if config.snapshot_rows != "at_risk":
        raise ValueError(f"PreservationConfig.snapshot_rows must be 'at_risk' or 'all', "
                         f"not {config.snapshot_rows!r}")
    at_risk = set(config.user_rows_in_etl_tables)
    sources = {config.table(e) for e in ENTITIES} | set(config.etl_tables) | at_risk
    cur.execute(_DELETING_FKS, (config.schema, config.schema))
    edges = cur.fetchall()
    changed = True
    while changed:  # a cascade from a table at risk puts its children at risk too
        changed = False
        for child, parent in edges:
            if parent in sources and child not in at_risk:
                at_risk.add(child)
                sources.add(child)
                changed = True
    integer_pk = integer_pks(cur, config)
    return {t: integer_pk[t] for t in catalog.user_tables() if t not in at_risk and t in integer_pk}


def _filter(where) -> tuple:
    """`` WHERE t.col ILIKE %s`` and its parameter for a (column, pattern), else nothing."""
    if not where:
        return sql.SQL(""), []
    return sql.SQL(" WHERE {} ILIKE %s").format(sql.Identifier(where[0])), [where[1]]


def _arrays(config: PreservationConfig, table: str, pk_column: str, columns: list, where=None) -> tuple:
    """``(SELECT array_agg(pk) AS pks, array_agg(c0) AS a0, ... FROM (... ORDER BY pk) t)`` and its
    parameters: the table's rows read once in key order, so position i of every array is one
    row, in the snapshot and in every comparison with it alike."""
    flt, params = _filter(where)
    aggregates = [sql.SQL("array_agg(t.{}::bigint) AS pks").format(sql.Identifier(pk_column))]
    for i, column in enumerate(columns):
        aggregates.append(sql.SQL("array_agg(t.{}::bigint) AS {}").format(sql.Identifier(column),
                                                                           sql.Identifier(f"a{i}")))
    return sql.SQL("(SELECT {aggs} FROM (SELECT {cols} FROM {tbl}{flt} ORDER BY {pk}) t)").format(
        aggs=sql.SQL(", ").join(aggregates), cols=sql.SQL(", ").join(map(sql.Identifier, [pk_column, *columns])),
        tbl=sql.Identifier(config.schema, table), flt=flt, pk=sql.Identifier(pk_column)), params


def snapshot_keys(cur, config: PreservationConfig, run_id: int, table: str, pk_column: str,
                  columns: list, *, where=None, whole: bool = False) -> int:
    """One aggregate over ``table``: its primary keys and, per reference column, the ids.

    The arrays are filled from one ordered scan, so position i of every array is one row.
    ``where`` (column, ILIKE pattern) keeps the user rows of an ETL-owned table; ``whole``
    marks a table whose rows are in ``snap_rows`` too (the arrays then only speed up checks).
    Returns the number of rows.
    """
    cols = sorted(set(columns) - {pk_column})
    arrays, params = _arrays(config, table, pk_column, cols, where)
    values = [sql.SQL("('', s.pks, NULL::bigint[])")]
    for i, column in enumerate(cols):
        values.append(sql.SQL("({}, s.pks, s.{})").format(sql.Literal(column), sql.Identifier(f"a{i}")))
    cur.execute(
        sql.SQL(
            "INSERT INTO {snap} (run_id, table_name, column_name, pk_column, pks, ids, whole) "
            "SELECT %s, %s, x.column_name, %s, coalesce(x.pks, '{{}}'), x.ids, {whole} FROM {arrays} s, "
            "LATERAL (VALUES {values}) x(column_name, pks, ids) RETURNING cardinality(pks)"
        ).format(snap=state(config, "snap_keys"), whole=sql.Literal(whole),
                 arrays=arrays, values=sql.SQL(", ").join(values)),
        [run_id, table, pk_column, *params],
    )
    return cur.fetchall()[0][0]


def keyed_tables(cur, config: PreservationConfig, run_id, *, whole: bool = False) -> dict:
    """``{table: primary key column}`` of the tables a run snapshotted as keys only; with
    ``whole``, also of those copied whole that have arrays besides."""
    if run_id is None:
        return {}
    cur.execute("SELECT to_regclass(format('%%I.%%I', %s::text, 'snap_keys'))", (config.state_schema,))
    if cur.fetchone()[0] is None:  # a state schema older than snap_keys: every table is whole
        return {}
    cur.execute(sql.SQL("SELECT table_name, pk_column FROM {} WHERE run_id = %s AND column_name = '' "
                        "AND (%s OR NOT whole)").format(state(config, "snap_keys")),
                (run_id, whole))
    return dict(cur.fetchall())


def snapped(config: PreservationConfig, column: str = "") -> sql.Composed:
    """``(pk, old)`` of one table's snapshot rows: a FROM item taking (run id, table) parameters.

    ``old`` is the id the row referenced in ``column`` at snapshot time (NULL for ``''``).
    """
    return sql.SQL(
        "(SELECT u.pk, u.old FROM {} k, unnest(k.pks, k.ids) u(pk, old) "
        "WHERE k.run_id = %s AND k.table_name = %s AND k.column_name = {})"
    ).format(state(config, "snap_keys"), sql.Literal(column))


# -- the checks of a run against its keyed tables (health/against_snapshot.py) ---------------------------------

class Keyed:
    """The keyed tables of one run, each compared once with its live table (for health).

    :meth:`same` gives the snapshot's arrays that the live table still matches exactly:
    ``''`` when the same primary keys are there, a column name when every row still holds
    the id it held. Those need no row-by-row check: nothing is lost, NULLed or moved there
    (an id whose key changed aside, which :func:`misattached_keyed` checks by id).
    """

    def __init__(self, cur, config: PreservationConfig, run_id, catalog: Catalog) -> None:
        self.cur, self.config, self.run_id = cur, config, run_id
        self.tables = keyed_tables(cur, config, run_id)
        self.arrays = keyed_tables(cur, config, run_id, whole=True)  # the keyed ones and some whole ones
        self.integer_pks = integer_pks(cur, config)
        self.columns: dict = {}
        self.where: dict = {}
        for dep in catalog.user_dependents():
            self.columns.setdefault(dep.table, set()).add(dep.column)
            if dep.filter_column:
                self.where[dep.table] = (dep.filter_column, dep.filter_pattern)
        self._same: dict = {}

    def pk_equals(self, table: str, pk: list, alias: str = "t", snap: str = "s") -> sql.Composed:
        return pk_equals(pk, self.integer_pks.get(table) == (pk[0] if len(pk) == 1 else None), alias, snap)

    def same(self, table: str) -> set:
        if table not in self.arrays:
            return set()
        if table not in self._same:
            pk = self.arrays[table]
            self._same[table] = _unchanged(self.cur, self.config, self.run_id, table, pk,
                                           sorted(self.columns.get(table, set()) - {pk}), self.where.get(table))
        return self._same[table]


def _unchanged(cur, config, run_id, table, pk_column, columns, where) -> set:
    arrays, params = _arrays(config, table, pk_column, columns, where)
    cases = [sql.SQL("WHEN {} THEN k.ids IS NOT DISTINCT FROM l.{}").format(sql.Literal(column), sql.Identifier(f"a{i}"))
             for i, column in enumerate(columns)]
    cur.execute(
        sql.SQL("SELECT k.column_name FROM {snap} k, {arrays} l "
                "WHERE k.run_id = %s AND k.table_name = %s AND k.pks = coalesce(l.pks, '{{}}') "
                "AND CASE k.column_name WHEN '' THEN true {cases} ELSE false END").format(
            snap=state(config, "snap_keys"), arrays=arrays, cases=sql.SQL(" ").join(cases)),
        [*params, run_id, table],
    )
    return {r[0] for r in cur.fetchall()}


def lost_keyed(cur, config: PreservationConfig, run_id: int, table: str, pk_column: str) -> int:
    """Rows of the snapshot that are no longer in their table."""
    cur.execute(
        sql.SQL("SELECT count(*) FROM {s} s WHERE NOT EXISTS (SELECT 1 FROM {tbl} t WHERE t.{pk} = s.pk){gone}").format(
            s=snapped(config), tbl=sql.Identifier(config.schema, table), pk=sql.Identifier(pk_column),
            gone=gone_elsewhere(cur, table)),
        (run_id, table),
    )
    return cur.fetchone()[0]


def nulled_keyed(cur, config: PreservationConfig, run_id: int, dep, pk_column: str) -> int:
    """References set at snapshot time and NULL now, without a quarantine entry (``_bp_health_q``)."""
    cur.execute(
        sql.SQL("SELECT count(*) FROM {s} s JOIN {tbl} t ON t.{pk} = s.pk WHERE s.old IS NOT NULL "
                "AND t.{col} IS NULL AND NOT EXISTS (SELECT 1 FROM _bp_health_q q WHERE q.table_name = %s "
                "AND q.pk = jsonb_build_object({pkname}, s.pk) AND q.column_name = %s)").format(
            s=snapped(config, dep.column), tbl=sql.Identifier(config.schema, dep.table),
            pk=sql.Identifier(pk_column), col=sql.Identifier(dep.column), pkname=sql.Literal(pk_column)),
        (run_id, dep.table, dep.table, dep.column),
    )
    return cur.fetchone()[0]


def misattached_keyed(cur, config: PreservationConfig, run_id: int, dep, pk_column: str, *,
                      aligned: bool = False, rekeyed_ids=()) -> int:
    """Rows whose reference has another key now than at snapshot time and no context or content
    mapping (``_bp_health_explained``); keys in ``_bp_keys_before`` and ``_bp_keys_now``.

    ``aligned``: the table holds exactly the snapshot's primary keys, so its ids, read in key
    order, line up with the snapshot's array; only positions whose id changed, or whose old id
    is among ``rekeyed_ids`` (ids whose key changed), are looked up.
    """
    if aligned:
        arrays, _params = _arrays(config, dep.table, pk_column, [dep.column])  # keyed tables have no filter
        cur.execute(
            sql.SQL("WITH moved AS MATERIALIZED (SELECT u.pk FROM {snap} k, {arrays} l, "
                    "unnest(k.pks, k.ids, l.a0) u(pk, old, new) "
                    "JOIN _bp_keys_before b ON b.entity = %s AND b.id = u.old "
                    "JOIN _bp_keys_now a ON a.entity = %s AND a.id = u.new "
                    "WHERE k.run_id = %s AND k.table_name = %s AND k.column_name = %s "
                    "AND (u.old IS DISTINCT FROM u.new OR u.old = ANY(%s::bigint[])) AND a.key IS DISTINCT FROM b.key) "
                    "SELECT count(*) FROM moved WHERE NOT EXISTS (SELECT 1 FROM _bp_health_explained x "
                    "WHERE x.table_name = %s AND x.column_name = %s AND x.pk = jsonb_build_object({pkname}, moved.pk))"
                    ).format(snap=state(config, "snap_keys"), arrays=arrays,
                             pkname=sql.Literal(pk_column)),
            (dep.entity, dep.entity, run_id, dep.table, dep.column, list(rekeyed_ids), dep.table, dep.column),
        )
        return cur.fetchone()[0]
    cur.execute(
        sql.SQL("WITH moved AS MATERIALIZED (SELECT s.pk FROM {s} s JOIN {tbl} t ON t.{pk} = s.pk "
                "JOIN _bp_keys_before b ON b.entity = %s AND b.id = s.old "
                "JOIN _bp_keys_now a ON a.entity = %s AND a.id = t.{col}::bigint "
                "WHERE a.key IS DISTINCT FROM b.key) "
                "SELECT count(*) FROM moved WHERE NOT EXISTS (SELECT 1 FROM _bp_health_explained x "
                "WHERE x.table_name = %s AND x.column_name = %s AND x.pk = jsonb_build_object({pkname}, moved.pk))"
                ).format(s=snapped(config, dep.column), tbl=sql.Identifier(config.schema, dep.table),
                         pk=sql.Identifier(pk_column), col=sql.Identifier(dep.column),
                         pkname=sql.Literal(pk_column)),
        (run_id, dep.table, dep.entity, dep.entity, dep.table, dep.column),
    )
    return cur.fetchone()[0]


def gone_elsewhere(cur, table: str) -> sql.Composable:
    """A condition on ``s.pk``: not a row another session deleted during the run (``_bp_gone``)."""
    cur.execute("SELECT to_regclass('pg_temp._bp_gone') IS NOT NULL")
    if not cur.fetchone()[0]:
        return sql.SQL("")
    return sql.SQL(" AND NOT EXISTS (SELECT 1 FROM _bp_gone g WHERE g.table_name = {} AND g.pk = s.pk)").format(
        sql.Literal(table))
