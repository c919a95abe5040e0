"""The second reference ETL (tests/model_etl: shaped like the real app's ComprehensiveETL, on a
schema shaped like its production dump), unprotected and protected by configuration only.

Unprotected, the tests pin down the damage the model does, with exact counts: this is what
makes it a faithful model. Protected (ProtectedModelETL: create_bulletproof_etl_wrapper with
the rally app's PreservationConfig and EtlHooks), the guarantees G1-G4 and G8 must hold.
G5 and G6 are in test_model_etl_guarantees.py, the real scrapes in test_model_etl_realdata.py.
"""

from __future__ import annotations

import psycopg2
import pytest

from bulletproof_etl.integration import is_patched, patch_existing_etl_class, unpatch_etl_class
from model_etl import ModelETL, model_database, run_etl
from model_etl.data import TEAMS_SEASON1
from model_etl.etl import TABLES_TO_CLEAR
from model_etl.protection import RALLY_APP_CONFIG, RALLY_APP_HOOKS, ProtectedModelETL
from model_etl.scenario import (
    CHOSEN,
    DROPPED_CHOSEN,
    RESPELLED_CHOSEN,
    State,
    assert_g1_no_orphans,
    assert_g2_no_loss,
    assert_g3_identity,
    assert_g4_meaning,
    kept_ids,
    protected_import,
    ref_changes,
    report_of,
    season1_with_user_data,
    seasons,
)


@pytest.fixture
def model_db(server_dsn):
    """A fresh database with the modelled app's schema (tests/model_etl/schema.sql)."""
    yield from model_database(server_dsn)


N = len(CHOSEN)
#: Season 1 as the model imports it: 58 teams, plus 6 APTA twins (the schedule's home team
#: "Club - 10" is read as series "Division 10" and renamed "Club - 10 (Division 10)").
MODEL_TEAMS_SEASON1 = TEAMS_SEASON1 + 6


def _count(dsn: str, query: str) -> int:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetchone()[0]
    finally:
        conn.close()


# -- the model, unprotected ----------------------------------------------------------------


def test_model_season1_imports_the_teams_the_real_class_would(model_db, tmp_path):
    season1, _ = seasons(tmp_path)
    etl = run_etl(ModelETL, model_db, season1)
    assert etl.ok, etl.last_error
    assert _count(model_db, "SELECT count(*) FROM teams") == MODEL_TEAMS_SEASON1
    assert _count(model_db, "SELECT count(*) FROM teams WHERE team_name LIKE '%(Division 10)'") == 6
    assert _count(model_db, "SELECT count(*) FROM series") == 9  # "Chicago 10" and "Division 10" both
    assert _count(model_db, "SELECT count(*) FROM players WHERE team_id IS NULL") == 0
    assert _count(model_db, "SELECT value::int FROM system_settings WHERE key = 'session_version'") == 6
    for table in ("polls_backup", "team_mapping_backup"):  # its own backups are dropped at the end
        assert _count(model_db, f"SELECT count(*) FROM pg_tables WHERE tablename = '{table}'") == 0


def test_model_unprotected_second_season_damages_user_data(model_db, tmp_path):
    season2, written = season1_with_user_data(model_db, tmp_path)
    assert written == {"users": N, "user_player_associations": N, "polls": N, "poll_choices": 2 * N,
                       "captain_messages": N, "schedule(practice)": 2 * N, "player_availability": N,
                       "activity_log": N}
    before = State.read(model_db)

    etl = run_etl(ModelETL, model_db, season2)

    assert etl.ok, etl.last_error
    after = State.read(model_db)
    # every id is new: leagues, clubs, series and teams were deleted and inserted again
    assert kept_ids(before, after, "leagues") == (0, 3)
    assert kept_ids(before, after, "clubs") == (0, 8)  # "Glen view" is the key of "Glen View"
    assert kept_ids(before, after, "series") == (0, 8)  # "Chicago 10" is gone, "Division 10" stays
    assert kept_ids(before, after, "teams") == (0, 55)  # 58 keys - 3 dropped
    assert etl.stats["teams"] == {"imported": 56, "skipped": 0, "read": 56}
    assert etl.stats["late_teams"] == 1  # the away-only team, created from the schedule
    assert _count(model_db, "SELECT count(*) FROM teams WHERE display_name IS NULL") == 1
    # what its own restore and fixers did to the user data
    restore = etl.stats["restore"]
    assert restore["remapped_by_name"] == 2 * 4  # poll and message of the 4 teams whose name is unchanged
    assert restore["orphaned_polls_fixed"] == restore["orphaned_messages_fixed"] == RESPELLED_CHOSEN + DROPPED_CHOSEN
    assert restore["practice_leagues_moved"] == 2 * N
    assert ref_changes(before, after) == {
        "polls.team_id": {"kept": N - DROPPED_CHOSEN, "gone": DROPPED_CHOSEN},  # deleted by its fixer
        "captain_messages.team_id": {"kept": N - DROPPED_CHOSEN, "gone": DROPPED_CHOSEN},
        "schedule.home_team_id": {"nulled": 2 * N},  # "<club> Practice - <series>" is no team's name
        "schedule.league_id": {"kept": 2 * 4, "moved": 2 * 6},  # all to the first league, APTA_CHICAGO
        "users.league_context": {"kept": N},  # restored by league code
        "users.club_id": {"nulled": N},
        "users.series_id": {"nulled": N},
        "player_availability.series_id": {"orphaned": N},  # NOT NULL without a foreign key: stale
        "users.league_id": {"orphaned": N},  # no foreign key, nothing of the ETL looks at it
        "activity_log.team_id": {"orphaned": N},
    }
    lost = {t: len(before.rows[t]) - len(after.rows[t]) for t in before.rows}
    assert lost == {"users": 0, "user_player_associations": 0, "polls": DROPPED_CHOSEN,
                    "poll_choices": 2 * DROPPED_CHOSEN, "poll_responses": 0,
                    "captain_messages": DROPPED_CHOSEN, "player_availability": 0, "schedule": 0,
                    "activity_log": 0}


def test_model_unprotected_failure_half_way_leaves_half_an_import(model_db, tmp_path, monkeypatch):
    """Its commits per step: a failure in the schedule step leaves leagues, clubs, series, teams
    and players of the new run committed, and the schedule (with the practice rows) empty."""
    season2, _ = season1_with_user_data(model_db, tmp_path)
    etl = ModelETL(model_db)
    etl.data_dir = season2

    def boom(conn, schedules_data):
        raise RuntimeError("injected: the schedule step failed")

    monkeypatch.setattr(etl, "import_schedules", boom)
    assert etl.run() is False
    assert "injected" in str(etl.last_error)
    assert _count(model_db, "SELECT count(*) FROM teams") == 56
    assert _count(model_db, "SELECT count(*) FROM schedule") == 0  # practice rows included
    assert _count(model_db, "SELECT count(*) FROM practice_times_backup") == 2 * N  # left behind


def test_model_clear_deletes_what_the_real_class_deletes(model_db, tmp_path):
    assert TABLES_TO_CLEAR == ("schedule", "series_stats", "players", "teams", "series_leagues",
                               "club_leagues", "series", "clubs", "leagues")
    season1_with_user_data(model_db, tmp_path)
    etl = ModelETL(model_db)
    with etl.get_managed_db_connection() as conn:
        etl.clear_target_tables(conn)
    assert etl.stats["backups"]["practice_times_backup"] == 2 * N
    for table in TABLES_TO_CLEAR:
        assert _count(model_db, f"SELECT count(*) FROM {table}") == 0, table
    assert _count(model_db, "SELECT count(*) FROM polls") == N  # user tables are not cleared


# -- the model, protected with configuration only --------------------------------------------


@pytest.mark.parametrize("first", ["legacy", "protected"], ids=["season1-legacy", "season1-protected"])
def test_model_protected_keeps_ids_and_user_data(model_db, tmp_path, first):
    """G1-G4 after season 2, with season 1 imported by the legacy model or already protected."""
    season2, _ = season1_with_user_data(model_db, tmp_path,
                                        first=ModelETL if first == "legacy" else ProtectedModelETL)
    before, after = protected_import(model_db, season2, ProtectedModelETL)
    assert kept_ids(before, after, "teams") == (55, 55)
    assert _count(model_db, "SELECT count(*) FROM bulletproof.quarantine") == 0


def test_model_patched_in_place_with_configuration_only(model_db, tmp_path):
    """patch_existing_etl_class on ModelETL itself (undone afterwards): the same guarantees."""
    season2, _ = season1_with_user_data(model_db, tmp_path)
    before = State.read(model_db)
    patch_existing_etl_class(ModelETL, RALLY_APP_CONFIG, hooks=RALLY_APP_HOOKS)
    try:
        assert is_patched(ModelETL)
        etl = run_etl(ModelETL, model_db, season2)
    finally:
        unpatch_etl_class(ModelETL)
    assert not is_patched(ModelETL)
    assert etl.ok, report_of(etl)
    after = State.read(model_db)
    assert_g1_no_orphans(before, after)
    assert_g2_no_loss(before, after)
    assert_g3_identity(before, after)
    assert_g4_meaning(before, after)


def test_model_protected_report_counts_what_happened(model_db, tmp_path):
    """G8: the report of season 2 after a legacy season 1 says what the tests count."""
    season2, _ = season1_with_user_data(model_db, tmp_path)

    etl = run_etl(ProtectedModelETL, model_db, season2)

    report = etl.bulletproof_report
    assert (etl.ok, report.outcome, report.error) == (True, "committed", None), report_of(etl)
    teams = report.teams
    assert teams["read"] == 56  # the records the model hands to import_teams
    assert teams["created"] == 1  # Sunset Ridge - 22; the away-only team is created later by the ETL
    assert teams["preserved"] == 55  # every surviving key, under its old id
    # the dropped teams stay retired for their user rows; the season-1 twins of "Club - 10",
    # which nothing references, are removed at the end of the run (issue 17)
    assert (teams["retired"], teams["kept_for_references"], teams["removed"]) == (3, 3, 6)
    assert teams["errors"] == []
    restore = report.restore
    assert restore["totals"]["quarantined"] == 0
    assert report.health["status"] in ("PERFECT", "WARNING"), report.health
    assert report.backup, "no snapshot counts in the report"
