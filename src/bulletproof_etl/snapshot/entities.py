"""The entity half of the snapshot: every league, club, series and team row with its key.

Runs first (:mod:`.rows` reads the keys it writes) and brings the identity ledger up to date.
"""

from __future__ import annotations

from psycopg2 import sql

from ..config import ENTITIES, PreservationConfig
from ..identity.ledger import record_ledger
from ..state import add_counts, analyze_if_grown, copy_rows, state


def snapshot_entities(conn, config: PreservationConfig, run_id: int, keys: dict) -> dict:
    """Copy every entity row with its key into ``snap_entities``; bring the ledger up to date.

    The keys are staged first, so each row is written once, already with its key. The
    ledger is written only where something changed (:func:`record_ledger`).
    """
    counts = {}
    with conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE _bp_keys (entity text, id bigint, key text[]) ON COMMIT DROP")
        copy_rows(
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
        # this run's id is new to the planner: without it the ledger update below expects two
        # rows of this snapshot and nests loops over every ledger id (issue 14)
        analyze_if_grown(cur, config, "snap_entities", sum(counts.values()), columns=("run_id", "entity", "id"))
        record_ledger(cur, config, run_id, source=sql.SQL(
            "SELECT k.entity, k.id, k.key, s.row FROM _bp_keys k JOIN {snap} s "
            "ON s.run_id = %(run)s AND s.entity = k.entity AND s.id = k.id WHERE k.key IS NOT NULL"
        ).format(snap=state(config, "snap_entities")), complete=True)
        cur.execute("DROP TABLE _bp_keys")
    add_counts(conn, config, run_id, "entities", counts)
    return counts
