"""Issue 15: the specification's extension points. A custom mapping strategy registered in the
configuration is tried in its place and its mappings are recorded under its name; callbacks run
before and after each stage of a run, and a failing one rolls the run back."""

from __future__ import annotations

import psycopg2
import pytest

from bulletproof_etl import BulletproofTeamPreservation, PreservationConfig
from bulletproof_etl.cli import main
from bulletproof_etl.errors import BulletproofError
from bulletproof_etl.restore.custom_strategies import CustomStrategy
from test_review_scenario import make_quarantine, value

#: stale team id -> team id, as an operator's own lookup table would say
OPS_TABLE: dict = {}
CALLS: list = []


def ops_table(found):
    return OPS_TABLE.get(found.old_id)


def remember(call):
    CALLS.append((call.when, call.stage))


CONFIG = PreservationConfig(custom_strategies=(CustomStrategy("ops_table", ops_table, after="context"),),
                            stage_callbacks=(remember,))


def test_custom_strategy_maps_and_is_recorded_under_its_name(db_dsn):
    q = make_quarantine(db_dsn)
    conn = psycopg2.connect(db_dsn)
    with conn.cursor() as cur:
        cur.execute("SET session_replication_role = replica")
        cur.execute("INSERT INTO polls (id, team_id, question) VALUES (9010, 99910, 'Courts booked?'), "
                    "(9011, 99911, 'Nobody knows this one')")
        cur.execute("SET session_replication_role = DEFAULT")
    conn.commit()
    conn.close()
    OPS_TABLE.clear()
    OPS_TABLE.update({99910: q["other_team"], 99911: 424242})  # 424242: no such team, ignored
    CALLS.clear()
    assert main(["run", "-q", "--dsn", db_dsn, "--config", "test_review_extensions:CONFIG"]) == 1
    assert value(db_dsn, "SELECT id, team_id FROM polls WHERE id IN (9010, 9011) ORDER BY id") == [
        (9010, q["other_team"]), (9011, None)]
    assert value(db_dsn, "SELECT table_name, pk->>'id', old_id, new_id, strategy FROM bulletproof.mappings "
                         "WHERE run_id = 3") == [("polls", "9010", 99910, q["other_team"], "ops_table")]
    assert value(db_dsn, "SELECT pk->>'id' FROM bulletproof.quarantine WHERE run_id = 3") == [("9011",)]
    report = value(db_dsn, "SELECT report->'restore'->'tables'->'polls'->'remapped', report->'health'->>'status' "
                           "FROM bulletproof.runs WHERE run_id = 3")
    assert report == [({"ops_table": 1}, "WARNING")]  # WARNING for 9011's quarantine only
    for stage in ("constraints", "snapshot", "upsert", "restore", "health"):
        assert ("before", stage) in CALLS and ("after", stage) in CALLS, stage
    assert CALLS.index(("after", "restore")) < CALLS.index(("before", "health"))


def test_a_failing_callback_rolls_the_run_back(db_dsn):
    assert main(["run", "-q", "--dsn", db_dsn]) == 0
    before = value(db_dsn, "SELECT count(*), max(updated_at) FROM teams")

    def veto(call):
        if call.when == "before" and call.stage == "restore":
            raise BulletproofError("vetoed by a stage callback")

    conn = psycopg2.connect(db_dsn)
    with pytest.raises(BulletproofError, match="vetoed"):
        with BulletproofTeamPreservation(conn, config=PreservationConfig(stage_callbacks=(veto,)), force=True) as p:
            p.run([{"league_id": "NSTF", "club_name": "Brand New Club", "series_name": "Series 2B",
                    "team_name": "Brand New Club S2B"}])
    conn.rollback()
    conn.close()
    assert value(db_dsn, "SELECT count(*), max(updated_at) FROM teams") == before
    assert value(db_dsn, "SELECT count(*) FROM teams WHERE team_name = 'Brand New Club S2B'") == [(0,)]


def test_a_custom_strategy_needs_a_name_and_a_place():
    with pytest.raises(BulletproofError, match="after must be one of"):
        CustomStrategy("x", ops_table, after="health")
    with pytest.raises(BulletproofError, match="a name of its own"):
        CustomStrategy("direct", ops_table)
