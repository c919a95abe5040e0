"""The real scrapes (../shared/realdata, 2025-08-10 then 2025-08-27) through the second reference
ETL (tests/model_etl), with user data on 40 teams: unprotected (the damage, counted) and
protected by configuration only (the guarantees)."""

from __future__ import annotations

import psycopg2
import pytest

from model_etl import (
    ModelETL,
    create_model_database,
    drop_model_database,
    model_database,
    run_etl,
    unpack_realdata,
)
from model_etl.protection import ProtectedModelETL
from model_etl.scenario import (
    State,
    kept_ids,
    protected_import,
    ref_changes,
    report_of,
)
from model_etl.userdata import create_user_data


@pytest.fixture
def model_db(server_dsn):
    """A fresh database with the modelled app's schema (tests/model_etl/schema.sql)."""
    yield from model_database(server_dsn)


pytestmark = pytest.mark.realdata
USER_TEAMS = 40


def _first_scrape_with_user_data(dsn, realdata_dir, tmp_path, first=ModelETL):
    """2025-08-10 imported by ``first``; user data on 40 teams spread evenly over the teams that
    have players (ordered by league and name); returns 2025-08-27's directory."""
    scrape1 = unpack_realdata(realdata_dir / "2025-08-10", tmp_path / "2025-08-10")
    scrape2 = unpack_realdata(realdata_dir / "2025-08-27", tmp_path / "2025-08-27")
    etl = run_etl(first, dsn, scrape1)
    assert etl.ok, report_of(etl)
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("""SELECT t.id FROM teams t JOIN leagues l ON l.id = t.league_id
                WHERE EXISTS (SELECT 1 FROM players p WHERE p.team_id = t.id) ORDER BY l.league_id, t.team_name""")
            ids = [r[0] for r in cur.fetchall()]
        conn.rollback()
        assert len(ids) == 664
        chosen = [ids[i * len(ids) // USER_TEAMS] for i in range(USER_TEAMS)]
        create_user_data(conn, chosen)
    finally:
        conn.close()
    return scrape2


def test_model_unprotected_realdata_damage(model_db, realdata_dir, tmp_path):
    scrape2 = _first_scrape_with_user_data(model_db, realdata_dir, tmp_path)
    before = State.read(model_db)

    etl = run_etl(ModelETL, model_db, scrape2)

    assert etl.ok, etl.last_error
    after = State.read(model_db)
    assert kept_ids(before, after, "teams") == (0, 560)
    assert kept_ids(before, after, "clubs") == (0, 48)
    assert ref_changes(before, after) == {
        "users.league_context": {"kept": 40},
        "users.club_id": {"nulled": 40},
        "users.series_id": {"nulled": 40},
        "polls.team_id": {"kept": 10, "gone": 30},  # deleted by its orphan fixer
        "captain_messages.team_id": {"kept": 10, "gone": 30},
        "schedule.home_team_id": {"nulled": 80},
        "schedule.league_id": {"kept": 64, "moved": 16},
        "player_availability.series_id": {"orphaned": 40},
        "users.league_id": {"orphaned": 40},
        "activity_log.team_id": {"orphaned": 40},
    }
    assert {t: len(after.rows[t]) for t in ("polls", "poll_choices", "captain_messages")} == {
        "polls": 10, "poll_choices": 20, "captain_messages": 10}


def test_model_protected_realdata_keeps_ids_and_user_data(model_db, realdata_dir, tmp_path):
    scrape2 = _first_scrape_with_user_data(model_db, realdata_dir, tmp_path)
    before, after = protected_import(model_db, scrape2, ProtectedModelETL)
    kept, surviving = kept_ids(before, after, "teams")
    assert kept == surviving, f"G3: {surviving - kept} of {surviving} surviving team keys lost their id"


_PICTURE = ("SELECT l.league_id, c.name, s.name, t.team_name FROM teams t JOIN leagues l ON l.id = t.league_id "
            "JOIN clubs c ON c.id = t.club_id JOIN series s ON s.id = t.series_id WHERE t.is_active")


def _picture(dsn) -> set:
    """The active teams by content: (league code, club name, series name, team name)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(_PICTURE)
            return set(cur.fetchall())
    finally:
        conn.close()


def test_model_protected_realdata_same_picture_as_legacy(model_db, server_dsn, realdata_dir, tmp_path):
    """Issue 17 on the model of the real class: after 2025-08-27 the protected run shows the
    teams the legacy run shows. Clubs that 2025-08-27's players no longer name (Chicago
    Highlands, Glen Ellyn ...) are deleted by the legacy clear, so the ETL skips their teams;
    the guarded clear keeps those rows, and without the check on the rows the run's own
    parent steps named, their 175 teams stayed active (1,233 active against 1,058)."""
    legacy_dsn = create_model_database(server_dsn)
    try:
        scrape2 = _first_scrape_with_user_data(legacy_dsn, realdata_dir, tmp_path / "legacy")
        etl = run_etl(ModelETL, legacy_dsn, scrape2)
        assert etl.ok, etl.last_error
        legacy = _picture(legacy_dsn)
    finally:
        drop_model_database(server_dsn, legacy_dsn)
    scrape2 = _first_scrape_with_user_data(model_db, realdata_dir, tmp_path / "protected")
    before, after = protected_import(model_db, scrape2, ProtectedModelETL)  # G1-G4
    kept, surviving = kept_ids(before, after, "teams")
    assert kept == surviving
    protected = _picture(model_db)

    assert (len(legacy), len(protected), len(legacy & protected)) == (1058, 1058, 1057)
    # the one difference: the library's validation collapses the double space of a team name
    assert legacy - protected == {("NSTF", "Lake Forest", "Series 1", "Lake Forest  S1")}
    assert protected - legacy == {("NSTF", "Lake Forest", "Series 1", "Lake Forest S1")}
    # the leagues, clubs and series the active teams use are the legacy run's
    for column in (0, 1, 2):
        assert {t[column] for t in protected} == {t[column] for t in legacy}
