"""Durable snapshots, the identity ledger, the run log and retention.

Everything lives in one schema (``bulletproof`` by default) that is created without any
privilege for PUBLIC: the snapshots hold users' messages.

- ``runs``: every run, with its outcome and report.
- ``ledger``: every id ever seen per entity, with its natural key (first observation
  wins: ids are never re-used for another key by PostgreSQL sequences, so a later
  different key means someone re-used an id by hand, which health reports).
- ``snap_entities``: the entity rows of one run, with keys (to bring a team back).
- ``snap_rows``: the user-owned rows of one run that the run could delete (see snapkeys.py),
  whole, as JSON, with ``refs``: the natural key of the entity each reference column pointed
  at (``{"team_id": [...]}``).
- ``snap_keys``: every other user-owned row of one run, as its primary key and the ids it
  referenced (arrays, one row per table and column); the keys are in ``snap_entities``.
- ``mappings`` and ``quarantine``: what the restore did and what it could not map.
"""

from __future__ import annotations

import io
import json
import logging

from psycopg2 import sql

from .catalog import Catalog
from .config import ENTITIES, PreservationConfig

logger = logging.getLogger(__name__)

_DDL = [
    "CREATE SCHEMA IF NOT EXISTS {s}",
    "REVOKE ALL ON SCHEMA {s} FROM PUBLIC",
    """CREATE TABLE IF NOT EXISTS {s}.runs (
        run_id bigserial PRIMARY KEY,
        started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        finished_at timestamptz,
        outcome text NOT NULL DEFAULT 'running',
        mode text,
        stage text,
        error text,
        durable boolean NOT NULL DEFAULT false,
        report jsonb)""",
    """CREATE TABLE IF NOT EXISTS {s}.ledger (
        entity text NOT NULL,
        id bigint NOT NULL,
        key text[],
        row jsonb,
        first_run bigint,
        last_run bigint,
        PRIMARY KEY (entity, id))""",
    "CREATE INDEX IF NOT EXISTS ledger_key_idx ON {s}.ledger (entity, key)",
    """CREATE TABLE IF NOT EXISTS {s}.snap_entities (
        run_id bigint NOT NULL,
        entity text NOT NULL,
        id bigint NOT NULL,
        key text[],
        row jsonb NOT NULL,
        PRIMARY KEY (run_id, entity, id))""",
    """CREATE TABLE IF NOT EXISTS {s}.snap_rows (
        run_id bigint NOT NULL,
        table_name text NOT NULL,
        pk jsonb NOT NULL,
        row jsonb NOT NULL,
        PRIMARY KEY (run_id, table_name, pk))""",
    """CREATE TABLE IF NOT EXISTS {s}.mappings (
        run_id bigint NOT NULL,
        table_name text NOT NULL,
        pk jsonb NOT NULL,
        column_name text NOT NULL,
        old_id bigint,
        new_id bigint,
        strategy text NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS mappings_run_idx ON {s}.mappings (run_id, table_name)",
    """CREATE TABLE IF NOT EXISTS {s}.quarantine (
        id bigserial PRIMARY KEY,
        run_id bigint NOT NULL,
        table_name text NOT NULL,
        pk jsonb NOT NULL,
        column_name text,
        original jsonb NOT NULL,
        reason text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now())""",
    "CREATE INDEX IF NOT EXISTS quarantine_run_idx ON {s}.quarantine (run_id)",
    # columns added after the first release: an older state schema is brought up to date
    "ALTER TABLE {s}.runs ADD COLUMN IF NOT EXISTS counts jsonb",
    "ALTER TABLE {s}.snap_rows ADD COLUMN IF NOT EXISTS refs jsonb",
    # user rows that no run can delete, as keys: one row per table and reference column ('' for
    # the table's primary keys alone), arrays aligned by position (see snapkeys.py)
    """CREATE TABLE IF NOT EXISTS {s}.snap_keys (
        run_id bigint NOT NULL,
        table_name text NOT NULL,
        column_name text NOT NULL,
        pk_column text NOT NULL,
        pks bigint[] NOT NULL,
        ids bigint[],
        PRIMARY KEY (run_id, table_name, column_name))""",
    # integers barely compress: store them out of line as they are, without the CPU for trying
    "ALTER TABLE {s}.snap_keys ALTER COLUMN pks SET STORAGE EXTERNAL, ALTER COLUMN ids SET STORAGE EXTERNAL",
    # true: the table's rows are in snap_rows too, the arrays only make its checks cheap
    "ALTER TABLE {s}.snap_keys ADD COLUMN IF NOT EXISTS whole boolean NOT NULL DEFAULT false",
]
#: (table, column) created by the last statements of _DDL: present means the schema is current
_NEWEST = ("snap_keys", "whole")

STATE_TABLES = ("runs", "ledger", "snap_entities", "snap_rows", "snap_keys", "mappings", "quarantine")


def ensure_state_schema(conn, config: PreservationConfig) -> None:
    """Create the state schema and its tables if missing, closed to PUBLIC."""
    s = sql.Identifier(config.state_schema)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s "
            "AND NOT attisdropped", (_relname(config.state_schema, _NEWEST[0]), _NEWEST[1]))
        if cur.fetchone() is not None:
            return  # current already: no DDL, no lock on every run
        for statement in _DDL:
            cur.execute(sql.SQL(statement).format(s=s))
        for table in STATE_TABLES:
            cur.execute(
                sql.SQL("REVOKE ALL ON {} FROM PUBLIC").format(sql.Identifier(config.state_schema, table))
            )


def _relname(schema: str, table: str) -> str:
    """``"schema"."table"`` as text, for ``to_regclass``."""
    return ".".join('"' + p.replace('"', '""') + '"' for p in (schema, table))


def state(config: PreservationConfig, table: str) -> sql.Composed:
    return sql.Identifier(config.state_schema, table)


def start_run(conn, config: PreservationConfig, mode: str) -> int:
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("INSERT INTO {} (mode) VALUES (%s) RETURNING run_id").format(state(config, "runs")),
            (mode,),
        )
        return cur.fetchone()[0]


def finish_run(conn, config: PreservationConfig, run_id: int, outcome: str, *, report=None,
               stage=None, error=None) -> None:
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "UPDATE {} SET finished_at = clock_timestamp(), outcome = %s, report = %s, stage = %s,"
                " error = %s WHERE run_id = %s"
            ).format(state(config, "runs")),
            (outcome, json.dumps(report) if report is not None else None, stage, error, run_id),
        )


def _copy_rows(cur, target: sql.Composed, columns, rows) -> None:
    """COPY ``rows`` (tuples of str/int/None) into ``target`` in one round trip."""
    buf = io.StringIO()
    write, join, value = buf.write, "\t".join, _copy_value
    for row in rows:
        write(join(map(value, row)))
        write("\n")
    buf.seek(0)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        target, sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    cur.copy_expert(statement, buf)


def _copy_value(value) -> str:
    if value is None:
        return "\\N"
    if type(value) is int:
        return str(value)
    if isinstance(value, (list, tuple)):
        value = "{" + ",".join('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in value) + "}"
    text = str(value)
    if "\\" not in text and text.isprintable():  # nothing to escape: most values, most of the time
        return text
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def snapshot_entities(conn, config: PreservationConfig, run_id: int, keys: dict) -> dict:
    """Copy every entity row with its key into ``snap_entities``; bring the ledger up to date.

    The keys are staged first, so each row is written once, already with its key. The
    ledger is written only where something changed (:func:`record_ledger`).
    """
    counts = {}
    with conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE _bp_keys (entity text, id bigint, key text[]) ON COMMIT DROP")
        _copy_rows(
            cur, sql.Identifier("_bp_keys"), ("entity", "id", "key"),
            ((e, i, list(k) if k else None) for e in ENTITIES for i, k in keys[e].items()),
        )
        cur.execute("ANALYZE _bp_keys")
        for entity in ENTITIES:
            cur.execute(
                sql.SQL(
                    "INSERT INTO {snap} (run_id, entity, id, key, row) "
                    "SELECT %s, %s, t.id, k.key, to_jsonb(t) FROM {tbl} t "
                    "LEFT JOIN _bp_keys k ON k.entity = %s AND k.id = t.id"
                ).format(snap=state(config, "snap_entities"),
                         tbl=sql.Identifier(config.schema, config.table(entity))),
                (run_id, entity, entity),
            )
            counts[entity] = cur.rowcount
        record_ledger(cur, config, run_id, source=sql.SQL(
            "SELECT k.entity, k.id, k.key, s.row FROM _bp_keys k JOIN {snap} s "
            "ON s.run_id = %(run)s AND s.entity = k.entity AND s.id = k.id WHERE k.key IS NOT NULL"
        ).format(snap=state(config, "snap_entities")), complete=True)
        cur.execute("DROP TABLE _bp_keys")
    _add_counts(conn, config, run_id, "entities", counts)
    return counts


def _add_counts(conn, config: PreservationConfig, run_id: int, what: str, counts: dict) -> None:
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("UPDATE {} SET counts = coalesce(counts, '{{}}'::jsonb) || jsonb_build_object(%s, %s::jsonb) "
                    "WHERE run_id = %s").format(state(config, "runs")),
            (what, json.dumps(counts), run_id),
        )


#: ``ledger.last_run`` of an id that is present (see :func:`record_ledger`): above every run id.
PRESENT = 2**63 - 1


def record_ledger(cur, config: PreservationConfig, run_id: int, source: sql.Composable, *,
                  complete: bool = False) -> int:
    """Bring the ledger up to date with ``source`` (entity, id, key, row); returns ids added.

    ``first_run`` is the run that first saw the id. ``last_run`` is the last run whose entity
    snapshot (or ledger update) found the id with its key; while it still does, ``last_run``
    is :data:`PRESENT`, which sorts above every run id, so "the id seen last" and "seen
    in or after run N" read the same as if every present id were refreshed to the latest run,
    yet an unchanged id is never written. Only these are written: ids the ledger has never
    seen (``first_run`` = this run), ids whose row changed, ids seen again after being
    absent, and, when ``source`` is ``complete`` (every id with a key now, the entity
    snapshot), ids no longer present under their key: their ``last_run`` becomes the last
    run that saw them, the latest earlier entity snapshot (or their ``first_run``, if later).
    Keys never change: an id found under another key is not refreshed.
    """
    gone = sql.SQL("")
    if complete:
        gone = sql.SQL(
            ", gone AS (UPDATE {ledger} l SET last_run = greatest(l.first_run, (SELECT max(r.run_id) FROM {runs} r"
            " WHERE r.run_id < %(run)s AND r.counts ? 'entities'))"
            " WHERE l.last_run = %(present)s AND NOT EXISTS (SELECT 1 FROM src"
            " WHERE src.entity = l.entity AND src.id = l.id AND src.key = l.key) RETURNING 1)"
        ).format(ledger=state(config, "ledger"), runs=state(config, "runs"))
    cur.execute(
        sql.SQL(
            "WITH src AS MATERIALIZED ({source}), "
            "added AS (INSERT INTO {ledger} (entity, id, key, row, first_run, last_run) "
            " SELECT src.entity, src.id, src.key, src.row, %(run)s, %(present)s FROM src"
            " WHERE NOT EXISTS (SELECT 1 FROM {ledger} l WHERE l.entity = src.entity AND l.id = src.id)"
            " RETURNING 1), "
            "seen AS (UPDATE {ledger} l SET last_run = %(present)s, row = src.row FROM src"
            " WHERE l.entity = src.entity AND l.id = src.id AND l.key = src.key"
            " AND (l.last_run IS DISTINCT FROM %(present)s OR l.row IS DISTINCT FROM src.row) RETURNING 1)"
            "{gone} SELECT (SELECT count(*) FROM added)"
        ).format(ledger=state(config, "ledger"), source=source, gone=gone),
        {"run": run_id, "present": PRESENT},
    )
    return cur.fetchone()[0]


def snapshot_user_rows(conn, config: PreservationConfig, run_id: int, catalog: Catalog) -> dict:
    """Snapshot every user-owned row; returns counts per table.

    Rows the run could delete are copied whole into ``snap_rows``; each carries ``refs``:
    for every reference column of the row, the natural key of the entity it pointed at,
    read from this run's ``snap_entities`` (so :func:`snapshot_entities` runs first; a
    reference to a missing row has no key). The other tables go to ``snap_keys`` as primary
    keys and referenced ids (:mod:`.snapkeys`).
    """
    from .snapkeys import compact_tables, integer_pks, snapshot_keys

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
        cur.execute("ANALYZE _bp_refkeys")
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
        if set(counts) - set(compact):
            cur.execute(sql.SQL("ANALYZE {} (run_id, table_name)").format(state(config, "snap_rows")))
        cur.execute("DROP TABLE _bp_refkeys")
    _add_counts(conn, config, run_id, "rows", counts)
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


def pk_json(columns, alias: str) -> sql.Composed:
    """``jsonb_build_object('id', t.id, ...)`` for a primary key."""
    parts = []
    for column in columns:
        parts.append(sql.Literal(column))
        parts.append(sql.Identifier(alias, column))
    return sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(parts))


def apply_retention(conn, config: PreservationConfig) -> int:
    """Drop snapshots of committed runs beyond the newest ``keep_runs``; never a failed run's."""
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "SELECT run_id FROM {runs} WHERE outcome IN ('committed', 'dry_run', 'rolled_back_clean') "
                "ORDER BY run_id DESC OFFSET %s"
            ).format(runs=state(config, "runs")),
            (max(0, config.keep_runs),),
        )
        old = [r[0] for r in cur.fetchall()]
        if not old:
            return 0
        for table in ("snap_entities", "snap_rows", "snap_keys"):
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE run_id = ANY(%s)").format(state(config, table)), (old,)
            )
        cur.execute(
            sql.SQL("UPDATE {} SET outcome = outcome || '+expired' WHERE run_id = ANY(%s)").format(
                state(config, "runs")
            ),
            (old,),
        )
    return len(old)
