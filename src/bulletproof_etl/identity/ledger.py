"""The identity ledger: every entity id ever seen, with its natural key, written only on change.

:func:`record_ledger` is the one writer (the entity snapshot calls it with every current id);
:func:`ledger_add` adds the ids a run created, inside the run's transaction.
"""

from __future__ import annotations

from psycopg2 import sql

from ..catalog import current_keys
from ..config import ENTITIES, PreservationConfig
from ..state import analyze_if_grown, copy_rows, relname, state

#: ``ledger.last_run`` of an id that is present (see :func:`record_ledger`): above every run id.
PRESENT = 2**63 - 1


def record_ledger(cur, config: PreservationConfig, run_id: int, source: sql.Composable, *,
                  complete: bool = False, unseen: bool = False) -> int:
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
    Keys never change: an id found under another key is not refreshed. The ledger is analysed
    when this wrote a material share of it (:func:`analyze_if_grown`): the first run fills it.
    ``unseen``: ``source`` holds only ids the ledger has no row for (:func:`ledger_add`), so
    none is seen again: they are only inserted.
    """
    gone, gone_count = sql.SQL(""), sql.SQL("0")
    seen, seen_count = sql.SQL(""), sql.SQL("0")
    if not unseen:
        seen = sql.SQL(
            ", seen AS (UPDATE {ledger} l SET last_run = %(present)s, row = src.row FROM src"
            " WHERE l.entity = src.entity AND l.id = src.id AND l.key = src.key"
            " AND (l.last_run IS DISTINCT FROM %(present)s OR l.row IS DISTINCT FROM src.row) RETURNING 1)"
        ).format(ledger=state(config, "ledger"))
        seen_count = sql.SQL("(SELECT count(*) FROM seen)")
    if complete:
        gone = sql.SQL(
            ", gone AS (UPDATE {ledger} l SET last_run = greatest(l.first_run, (SELECT max(r.run_id) FROM {runs} r"
            " WHERE r.run_id < %(run)s AND r.counts ? 'entities'))"
            " WHERE l.last_run = %(present)s AND NOT EXISTS (SELECT 1 FROM src"
            " WHERE src.entity = l.entity AND src.id = l.id AND src.key = l.key) RETURNING 1)"
        ).format(ledger=state(config, "ledger"), runs=state(config, "runs"))
        gone_count = sql.SQL("(SELECT count(*) FROM gone)")
    cur.execute(
        sql.SQL(
            "WITH src AS MATERIALIZED ({source}), "
            "added AS (INSERT INTO {ledger} (entity, id, key, row, first_run, last_run) "
            " SELECT src.entity, src.id, src.key, src.row, %(run)s, %(present)s FROM src"
            " WHERE NOT EXISTS (SELECT 1 FROM {ledger} l WHERE l.entity = src.entity AND l.id = src.id)"
            " RETURNING 1)"
            "{seen}{gone} SELECT (SELECT count(*) FROM added), {seen_count} + {gone_count}, {believed}"
        ).format(ledger=state(config, "ledger"), source=source, gone=gone, gone_count=gone_count,
                 seen=seen, seen_count=seen_count,
                 believed=sql.SQL("(SELECT reltuples FROM pg_class WHERE oid = to_regclass({}))").format(
                     sql.Literal(relname(config.state_schema, "ledger")))),
        {"run": run_id, "present": PRESENT},
    )
    added, updated, believed = cur.fetchone()
    analyze_if_grown(cur, config, "ledger", added + updated, believed, columns=("entity", "id", "key", "last_run"))
    return added


def ledger_add(conn, config: PreservationConfig, run_id: int, keys: dict | None = None) -> int:
    """Record every current entity id the ledger does not know yet; returns how many.

    One probe first: after an import that created nothing (the usual repeat) no id is new,
    and the keys of every row need not be computed and copied at all. Else only the keys of
    the new ids are copied (not every current key, to be thinned out on the server). ``keys``
    are the current keys (:func:`current_keys`) when the caller has them already.
    """
    if not _unseen_ids(conn, config, probe=True):
        return 0
    unseen = _unseen_ids(conn, config)
    if not keys:
        keys = current_keys(conn, config)
    rows = [(e, i, list(k)) for e, i in unseen if (k := keys[e].get(i)) is not None]
    if not rows:  # only rows without a key (a parent gone): nothing to record
        return 0
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS _bp_newkeys")
        cur.execute("CREATE TEMP TABLE _bp_newkeys (entity text, id bigint, key text[]) ON COMMIT DROP")
        copy_rows(cur, sql.Identifier("_bp_newkeys"), ("entity", "id", "key"), rows)
        # the rows per entity for the joins below; the keys' statistics (an array's are costly)
        # would serve no plan: they are only copied
        cur.execute("ANALYZE _bp_newkeys (entity, id)")
        source = sql.SQL(" UNION ALL ").join(
            sql.SQL(
                "SELECT n.entity, n.id, n.key, to_jsonb(t) AS row FROM _bp_newkeys n JOIN {tbl} t ON t.id = n.id "
                "WHERE n.entity = {ent}"
            ).format(tbl=sql.Identifier(config.schema, config.table(entity)), ent=sql.Literal(entity))
            for entity in ENTITIES
        )
        added = record_ledger(cur, config, run_id, source, unseen=True)
        cur.execute("DROP TABLE _bp_newkeys")
    return added


def _unseen_ids(conn, config: PreservationConfig, *, probe: bool = False):
    """``[(entity, id)]`` of the entity rows whose id the ledger has never recorded, in
    :data:`ENTITIES` order; with ``probe``, only whether there is one (a query that stops at
    the first one it finds)."""
    unseen = {
        entity: sql.SQL("FROM {tbl} t WHERE NOT EXISTS (SELECT 1 FROM {ledger} l "
                        "WHERE l.entity = {ent} AND l.id = t.id)").format(
            tbl=sql.Identifier(config.schema, config.table(entity)),
            ledger=state(config, "ledger"), ent=sql.Literal(entity))
        for entity in ENTITIES
    }
    with conn.cursor() as cur:
        if probe:
            cur.execute(sql.SQL("SELECT {}").format(sql.SQL(" OR ").join(
                sql.SQL("EXISTS (SELECT 1 {})").format(rows) for rows in unseen.values())))
            return bool(cur.fetchone()[0])
        cur.execute(sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {}, t.id {}").format(sql.Literal(entity), rows) for entity, rows in unseen.items()))
        return cur.fetchall()
