"""Retention: how many runs' snapshots are kept.

Snapshots of committed runs beyond the newest ``keep_runs`` are dropped; a failed run's
snapshot is never dropped, since ``repair --from-snapshot`` may need it. Only runs that took a
snapshot count (a run on the capture path that changed nothing took none), and what the
capture triggers recorded goes with the snapshots of its time (:func:`.capture.prune`).
"""

from __future__ import annotations

from psycopg2 import sql

from ..config import PreservationConfig
from ..state import state
from . import capture


def apply_retention(conn, config: PreservationConfig) -> int:
    """Drop snapshots of committed runs beyond the newest ``keep_runs``; never a failed run's."""
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "SELECT run_id FROM {runs} WHERE outcome IN ('committed', 'dry_run', 'rolled_back_clean') "
                "AND counts ? 'entities' ORDER BY run_id DESC OFFSET %s"
            ).format(runs=state(config, "runs")),
            (max(0, config.keep_runs),),
        )
        old = [r[0] for r in cur.fetchall()]
        if not old:
            return 0
        capture.prune(cur, config, max(old) + 1)
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
