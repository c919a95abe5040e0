"""No cliff on a new database (issue 14): the state tables a run fills have statistics after it.

A new database has no statistics for the state schema; until autovacuum comes round the planner
sees its tables as empty and the second import nested-looped over every ledger id. Each check
here is exact: the manual analyse count, the planner's row count against ``count(*)``, and this
run's id among the most common values of the column every later statement filters on.
"""

from __future__ import annotations

import pytest
from psycopg2 import sql

from bulletproof_etl import BulletproofTeamPreservation
from core_support import legacy_season_with_users

#: the state tables a run fills with more than a handful of rows, and the column filtered by run
FILLED = {"ledger": None, "snap_entities": "run_id", "snap_rows": "run_id"}


@pytest.fixture
def fresh(db_dsn, conn, tmp_path):
    return legacy_season_with_users(db_dsn, conn, tmp_path, n_teams=700, seed=14, activity_seed=14, per_team=0.7)


def _run(conn, teams) -> int:
    with BulletproofTeamPreservation(conn) as p:
        p.run(teams)
    conn.commit()
    return p.report.run_id


def _stats(conn) -> dict:
    """``{table: (rows, planner's rows, manual analyses)}`` for the state tables."""
    out = {}
    with conn.cursor() as cur:
        for table in FILLED:
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("bulletproof", table)))
            rows = cur.fetchone()[0]
            cur.execute("SELECT c.reltuples::bigint, s.analyze_count FROM pg_class c "
                        "JOIN pg_stat_user_tables s ON s.relid = c.oid "
                        "WHERE s.schemaname = 'bulletproof' AND s.relname = %s", (table,))
            out[table] = (rows, *cur.fetchone())
    conn.commit()
    return out


def _common_runs(conn, table: str) -> set:
    with conn.cursor() as cur:
        cur.execute("SELECT most_common_vals::text::bigint[] FROM pg_stats WHERE schemaname = 'bulletproof' "
                    "AND tablename = %s AND attname = 'run_id'", (table,))
        row = cur.fetchone()
    conn.commit()
    return set(row[0] or []) if row else set()


def test_first_run_leaves_statistics_on_every_table_it_filled(fresh, conn):
    teams = fresh.extract_teams()
    run_id = _run(conn, teams)
    stats = _stats(conn)
    for table, (rows, planned, analyses) in stats.items():
        assert rows > 500, f"{table}: {rows} rows, too few for this test"
        assert analyses == 1, f"{table} analysed {analyses} times by the run"
        assert planned == rows, f"{table}: the planner believes {planned} rows, it holds {rows}"
    for table, column in FILLED.items():
        if column:
            assert _common_runs(conn, table) == {run_id}, table


def test_each_run_analyses_its_snapshot_and_the_ledger_only_when_it_changed(fresh, conn):
    teams = fresh.extract_teams()
    first = _run(conn, teams)
    second = _run(conn, teams)  # unchanged: the ledger is not written, so not analysed again
    stats = _stats(conn)
    assert stats["ledger"][2] == 1
    assert stats["snap_entities"][2] == 2
    assert stats["snap_rows"][2] == 2
    for table, (rows, planned, _analyses) in stats.items():
        assert planned == rows, f"{table}: the planner believes {planned} rows, it holds {rows}"
    for table, column in FILLED.items():
        if column:
            assert _common_runs(conn, table) == {first, second}, table
