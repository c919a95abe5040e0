"""Rows of keyed tables that the run deleted: read back from the committed state (restore/apply.py).

The snapshot keeps these tables as keys only (:mod:`.keys`); their content is not copied.
"""

from __future__ import annotations

import json
import logging

import psycopg2
from psycopg2 import sql

from .. import db
from ..config import PreservationConfig
from ..state import copy_rows, relname, state
from .keys import snapped

logger = logging.getLogger(__name__)

#: how long the second connection waits for a lock the run holds before giving up (then the
#: rows count as lost and health rolls the run back)
SIDE_LOCK_TIMEOUT = "5s"


def stage_missing_keyed(cur, config: PreservationConfig, run_id: int, table: str, pk_column: str) -> tuple:
    """Stage in ``_bp_missing`` the rows of the snapshot that this run deleted.

    Returns (rows staged, rows left deleted because another session deleted them).

    Their content was not copied, but the run has not committed: a second connection still
    sees them as they were. A row it does not see either was deleted by someone who committed
    since the snapshot (a user, while the import ran): that is the user's change, recorded in
    ``_bp_gone`` so health does not count it as lost. This holds only for a durable snapshot
    (taken on a second connection, so every row in it was committed); otherwise such a row
    stays unexplained and health counts it as lost.
    """
    cur.execute(sql.SQL("SELECT s.pk FROM {s} s WHERE NOT EXISTS (SELECT 1 FROM {tbl} t WHERE t.{pk} = s.pk)").format(
        s=snapped(config), tbl=sql.Identifier(config.schema, table), pk=sql.Identifier(pk_column)), (run_id, table))
    missing = [r[0] for r in cur.fetchall()]
    cur.execute("CREATE TEMP TABLE _bp_missing (pk jsonb, row jsonb, original jsonb) ON COMMIT DROP")
    if not missing:
        return 0, 0
    found, durable = _read_committed(cur.connection, config, run_id, table, pk_column, missing)
    if found is None:
        return 0, 0
    copy_rows(cur, sql.Identifier("_bp_missing"), ("pk", "row", "original"),
               ((json.dumps({pk_column: pk}), row, row) for pk, row in found.items()))
    gone = [pk for pk in missing if pk not in found]
    if gone and durable:
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS _bp_gone (table_name text, pk bigint) ON COMMIT DROP")
        cur.execute("INSERT INTO _bp_gone SELECT %s, unnest(%s::bigint[])", (table, gone))
        logger.info("%d rows of %s were deleted by another session since the snapshot; left deleted",
                    len(gone), table)
        return len(found), len(gone)
    return len(found), 0


def _read_committed(conn, config, run_id, table, pk_column, pks) -> tuple:
    """``({pk: row as JSON text}, snapshot durable)`` as a second connection sees them;
    ``(None, False)`` when it cannot tell (no connection, a lock held by the run)."""
    try:
        side = psycopg2.connect(db.dsn_of(conn))
    except psycopg2.Error as err:
        logger.warning("no second connection to read back deleted rows of %s: %s", table, str(err).strip())
        return None, False
    try:
        with side.cursor() as cur:
            cur.execute("SET lock_timeout = %s", (SIDE_LOCK_TIMEOUT,))
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (relname(config.state_schema, "runs"),))
            durable = cur.fetchone()[0]
            if durable:  # the run's record is committed: its snapshot was taken on a second connection
                cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE run_id = %s)").format(
                    state(config, "runs")), (run_id,))
                durable = cur.fetchone()[0]
            cur.execute(sql.SQL("SELECT t.{pk}::bigint, to_jsonb(t)::text FROM {tbl} t WHERE t.{pk} = ANY(%s)").format(
                pk=sql.Identifier(pk_column), tbl=sql.Identifier(config.schema, table)), (pks,))
            return dict(cur.fetchall()), durable
    except psycopg2.Error as err:
        logger.warning("could not read back deleted rows of %s on a second connection: %s",
                       table, str(err).strip())
        return None, False
    finally:
        side.close()
