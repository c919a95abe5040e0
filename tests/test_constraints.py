"""validate_constraints: report, lossless repair (G2), foreign keys NOT VALID then validated."""

from __future__ import annotations

import pytest
from psycopg2 import sql

from bulletproof_etl import BulletproofTeamPreservation
from bulletproof_etl.health.constraints import validate_pending
from restore_support import load_with_activity, make_duplicate_team, write_seasons
from support import USER_TABLES, count, table_checksums, team_keys

N_TEAMS = 30
SEED = 77
# every column that holds team ids in the reference schema (the test's own list)
TEAM_COLUMNS = [("users", "team_id"), ("polls", "team_id"), ("captain_messages", "team_id"),
                ("practice_times", "team_id"), ("saved_lineups", "team_id"), ("lineup_escrow", "initiator_team_id"),
                ("lineup_escrow", "recipient_team_id"), ("user_contexts", "team_id"),
                ("user_contexts", "active_team_id"), ("activity_log", "team_id"), ("videos", "team_id"),
                ("players", "team_id"), ("series_stats", "team_id"), ("match_scores", "home_team_id"),
                ("match_scores", "away_team_id"), ("schedule", "home_team_id"), ("schedule", "away_team_id")]


@pytest.fixture
def season(tmp_path, db_dsn, conn):
    s1, _s2, _ = write_seasons(tmp_path, N_TEAMS, SEED)
    load_with_activity(db_dsn, conn, s1)
    return s1


def _refs_to(conn, team_id) -> dict:
    out = {}
    with conn.cursor() as cur:
        for table, column in TEAM_COLUMNS:
            cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(
                sql.Identifier(table), sql.Identifier(column)), (team_id,))
            n = cur.fetchone()[0]
            if n:
                out[f"{table}.{column}"] = n
    conn.rollback()
    return out


def _has_constraint(conn, name) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT convalidated FROM pg_constraint WHERE conname = %s", (name,))
        row = cur.fetchone()
    conn.rollback()
    return None if row is None else row[0]


def test_g2_report_only_finds_duplicates_and_writes_nothing(season, conn):
    dup = make_duplicate_team(conn, 5)
    before = table_checksums(conn)
    with BulletproofTeamPreservation(conn) as p:
        report = p.validate_constraints(repair=False)
    conn.commit()
    assert table_checksums(conn) == before
    assert report.duplicate_teams == [[5, dup]]
    assert report.missing_unique == [["teams", ["club_id", "series_id", "league_id"]]]
    assert report.missing_foreign_keys == [] and report.null_key_parts == 0
    assert report.repaired == [] and report.problems == 2 and not report.ok


def test_g2_repair_merges_duplicate_team_repointing_every_row_first(season, conn):
    dup = make_duplicate_team(conn, 5)
    on_dup = _refs_to(conn, dup)
    on_survivor = _refs_to(conn, 5)
    rows_before = {t: count(conn, t) for t in USER_TABLES}
    keys_before = team_keys(conn)
    with BulletproofTeamPreservation(conn) as p:
        report = p.validate_constraints()
    conn.commit()
    # every one of the duplicate's 9 references (7 user tables; the ETL never saw it) moved
    assert on_dup == {"users.team_id": 1, "polls.team_id": 1, "captain_messages.team_id": 1,
                      "practice_times.team_id": 1, "saved_lineups.team_id": 1, "activity_log.team_id": 1,
                      "videos.team_id": 1, "user_contexts.team_id": 1, "user_contexts.active_team_id": 1}
    assert report.repointed == on_dup
    assert report.removed_teams == [dup]
    assert _refs_to(conn, dup) == {}
    assert _refs_to(conn, 5) == {k: on_survivor.get(k, 0) + on_dup.get(k, 0) for k in on_survivor | on_dup}
    assert {t: count(conn, t) for t in USER_TABLES} == rows_before  # no user row lost
    assert team_keys(conn) == {i: k for i, k in keys_before.items() if i != dup}
    assert _has_constraint(conn, "bp_unique_teams_club_id_series_id_league_id") is True
    assert report.ok and report.not_repaired == []
    assert report.repaired == [f"merged teams [{dup}] into 5", "add UNIQUE teams(club_id, series_id, league_id)"]


def test_g2_merge_refused_when_two_user_rows_would_collide(season, conn):
    dup = make_duplicate_team(conn, 5, same_practice=True)
    before = table_checksums(conn)
    with BulletproofTeamPreservation(conn) as p:
        report = p.validate_constraints()
    conn.commit()
    # practice_times is UNIQUE(team_id, day, start): merging would need deleting a practice;
    # the merge is refused, so is the unique constraint, and nothing changed
    assert table_checksums(conn) == before
    assert report.removed_teams == [] and not report.ok
    assert len(report.not_repaired) == 2
    assert report.not_repaired[0].startswith(f"merge teams [{dup}] into 5:")
    assert "practice_times_team_day_start_key" in report.not_repaired[0]


def test_missing_foreign_key_is_added_and_validated(season, conn):
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE teams DROP CONSTRAINT teams_club_id_fkey")
    conn.commit()
    with BulletproofTeamPreservation(conn) as p:
        report = p.validate_constraints()
    conn.commit()
    assert report.missing_foreign_keys == [["club_id", "clubs"]]
    assert report.repaired == ["add FOREIGN KEY teams(club_id) NOT VALID", "validated FOREIGN KEY bp_fk_teams_club_id"]
    assert report.pending_validation == [] and report.ok
    assert _has_constraint(conn, "bp_fk_teams_club_id") is True


def test_missing_foreign_key_with_orphans_stays_not_valid_until_they_are_fixed(season, conn):
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE teams DROP CONSTRAINT teams_club_id_fkey")
        cur.execute("UPDATE teams SET club_id = 9999 WHERE id = 3")
    conn.commit()
    with BulletproofTeamPreservation(conn) as p:
        report = p.validate_constraints()
    conn.commit()
    assert report.pending_validation == ["bp_fk_teams_club_id"] and not report.ok
    assert _has_constraint(conn, "bp_fk_teams_club_id") is False  # present, NOT VALID
    assert count(conn, "teams") == N_TEAMS  # the orphaned team is not deleted
    with conn.cursor() as cur:
        cur.execute("INSERT INTO clubs (id, name) VALUES (9999, 'Found again')")
        assert validate_pending(conn, p.config) == ["bp_fk_teams_club_id"]
    conn.commit()
    assert _has_constraint(conn, "bp_fk_teams_club_id") is True


def test_null_key_parts_are_reported_not_repaired(season, conn):
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE teams ALTER COLUMN series_id DROP NOT NULL")
        cur.execute("UPDATE teams SET series_id = NULL WHERE id = 7")
    conn.commit()
    with BulletproofTeamPreservation(conn) as p:
        report = p.validate_constraints()
    conn.commit()
    assert report.null_key_parts == 1 and not report.ok
    assert count(conn, "teams") == N_TEAMS


def test_a_second_validation_finds_nothing_left(season, conn):
    make_duplicate_team(conn, 5)
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE clubs DROP CONSTRAINT clubs_name_key")
    conn.commit()
    with BulletproofTeamPreservation(conn) as p:
        first = p.validate_constraints()
        second = p.validate_constraints()
    conn.commit()
    assert first.problems == 3 and first.ok
    assert second.problems == 0 and second.repaired == [] and second.ok


def test_pending_foreign_key_is_validated_by_the_restore_once_the_orphan_is_gone(season, conn):
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE teams DROP CONSTRAINT teams_club_id_fkey")
        cur.execute("UPDATE teams SET club_id = 9999 WHERE id = 3")
    conn.commit()
    with BulletproofTeamPreservation(conn) as p:
        report = p.validate_constraints()
        assert report.pending_validation == ["bp_fk_teams_club_id"]
        p.backup_user_data()
        with conn.cursor() as cur:  # the import brings the club back (here: by hand)
            cur.execute("INSERT INTO clubs (id, name) VALUES (9999, 'Found again')")
        restored = p.restore_user_data()
    conn.commit()
    assert restored.validated_constraints == ["bp_fk_teams_club_id"]
    assert _has_constraint(conn, "bp_fk_teams_club_id") is True
