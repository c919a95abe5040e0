"""Adding the ids a run created to the identity ledger (inside the run's transaction)."""

from __future__ import annotations

from psycopg2 import sql

from .catalog import current_keys
from .config import ENTITIES, PreservationConfig
from .snapshot import _copy_rows, record_ledger


def ledger_add(conn, config: PreservationConfig, run_id: int, keys: dict | None = None) -> int:
    """Record every current entity id the ledger does not know yet; returns how many.

    One probe first: after an import that created nothing (the usual repeat) no id is new,
    and the keys of every row need not be computed and copied at all. ``keys`` are the
    current keys (:func:`current_keys`) when the caller has them already.
    """
    if not _unseen_ids(conn, config):
        return 0
    if not keys:
        keys = current_keys(conn, config)
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS _bp_newkeys")
        cur.execute("CREATE TEMP TABLE _bp_newkeys (entity text, id bigint, key text[]) ON COMMIT DROP")
        _copy_rows(cur, sql.Identifier("_bp_newkeys"), ("entity", "id", "key"),
                   ((e, i, list(k)) for e in ENTITIES for i, k in keys[e].items() if k is not None))
        cur.execute(
            sql.SQL("DELETE FROM _bp_newkeys n USING {} l WHERE l.entity = n.entity AND l.id = n.id").format(
                sql.Identifier(config.state_schema, "ledger"))
        )
        source = sql.SQL(" UNION ALL ").join(
            sql.SQL(
                "SELECT n.entity, n.id, n.key, to_jsonb(t) AS row FROM _bp_newkeys n JOIN {tbl} t ON t.id = n.id "
                "WHERE n.entity = {ent}"
            ).format(tbl=sql.Identifier(config.schema, config.table(entity)), ent=sql.Literal(entity))
            for entity in ENTITIES
        )
        added = record_ledger(cur, config, run_id, source)
        cur.execute("DROP TABLE _bp_newkeys")
    return added


def _unseen_ids(conn, config: PreservationConfig) -> bool:
    """True if some entity row has an id the ledger has never recorded."""
    probes = [
        sql.SQL("EXISTS (SELECT 1 FROM {tbl} t WHERE NOT EXISTS (SELECT 1 FROM {ledger} l "
                "WHERE l.entity = {ent} AND l.id = t.id))").format(
            tbl=sql.Identifier(config.schema, config.table(entity)),
            ledger=sql.Identifier(config.state_schema, "ledger"), ent=sql.Literal(entity))
        for entity in ENTITIES
    ]
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT {}").format(sql.SQL(" OR ").join(probes)))
        return bool(cur.fetchone()[0])
