"""The legacy ETL as it behaves: loads, deletes and re-inserts, commits step by step.

These tests pin down the faithful behaviour, including the failures the library exists to
fix (new team ids on every run, lost practice rows, half an import left after a failure).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rally_etl import ComprehensiveETL
from rally_etl.etl import TARGET_TABLES

PLAYERS = [
    # APTA_CHICAGO
    ("APTA_CHICAGO", "Chicago 22", "Lakeview", "Lakeview - 22", "a1", "41.5"),
    ("APTA_CHICAGO", "Chicago 22", "Lakeview", "Lakeview - 22", "a2", "N/A"),
    ("APTA_CHICAGO", "Chicago 22", "Oakridge", "Oakridge - 22", "a3", "38.0"),
    ("APTA_CHICAGO", "Chicago 11 SW", "Lakeview", "Lakeview - 11 SW", "a4", "50.1"),
    # NSTF
    ("NSTF", "Series 2B", "Oakridge", "Oakridge S2B", "n1", "30"),
    ("NSTF", "Series 2B", "Oakridge", "Oakridge S2B", "n2", "31"),
    ("NSTF", "Series 1", "Wilmette", "Wilmette S1 T1", "n3", "N/A"),
    ("NSTF", "Series 1", "Wilmette", "Wilmette S1 T2", "n4", "N/A"),
    # CNSWPL
    ("CNSWPL", "Division 3", "Maple Grove", "Maple Grove 3", "c1", "N/A"),
    ("CNSWPL", "Division 1", "Hinsdale", "Hinsdale PC 1a", "c2", "N/A"),
]
STATS = [
    ("APTA_CHICAGO", "Chicago 22", "Lakeview - 22"),
    ("APTA_CHICAGO", "Chicago 22", "Oakridge - 22"),
    ("APTA_CHICAGO", "Chicago 11 SW", "Lakeview - 11 SW"),
    ("NSTF", "Series 2B", "Oakridge S2B"),
    ("NSTF", "Series 1", "Wilmette S1 T1"),
    ("NSTF", "Series 1", "Wilmette S1 T2"),
    ("CNSWPL", "Series 3", "Maple Grove 3"),
    ("CNSWPL", "Series 3", "Cedar Park 3"),
    ("CNSWPL", "Series 1", "Hinsdale PC 1a"),
]
SCHEDULES = [
    ("APTA_CHICAGO", "Chicago 22", "Lakeview - 22", "Oakridge - 22"),
    ("NSTF", "Series 1", "Wilmette S1 T1 - Series 1", "Wilmette S1 T2 - Series 1"),
    ("CNSWPL", "Series 3", "Maple Grove 3 - Series 3", "Cedar Park 3 - Series 3"),
    # Birch Hill plays but has no stats row: a team known from the schedule only
    ("CNSWPL", "Series 3", "Birch Hill 3 - Series 3", "Maple Grove 3 - Series 3"),
]
#: What the data above must become (computed by hand).
EXPECTED = {
    "leagues": 3,
    "clubs": 8,  # Lakeview Oakridge "Wilmette T1" "Wilmette T2" "Maple Grove" "Cedar Park" "Hinsdale PC a" "Birch Hill"
    "series": 7,  # Chicago 22, Chicago 11 SW, Series 2B, Series 1, Division 3, Division 1, Series 3
    "teams": 10,
    "players": 10,
    "series_stats": 9,
    "match_scores": 1,
    "schedule": 4,
}
TEAMS_PER_LEAGUE = {"APTA_CHICAGO": 3, "NSTF": 3, "CNSWPL": 4}


def write_dataset(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    players = [
        {
            "League": lg,
            "Series": s,
            "Series Mapping ID": t,
            "Club": c,
            "Location ID": c.upper(),
            "Player ID": pid,
            "First Name": "Dana",
            "Last Name": pid.upper(),
            "PTI": pti,
            "Wins": "3",
            "Losses": "4",
            "Win %": "42.9%",
            "Captain": "",
        }
        for lg, s, c, t, pid, pti in PLAYERS
    ]
    stats = [
        {
            "series": s,
            "team": t,
            "league_id": lg,
            "points": 10 + i,
            "matches": {"won": 5, "lost": 2, "tied": 0, "percentage": "71.4%"},
        }
        for i, (lg, s, t) in enumerate(STATS)
    ]
    schedules = [
        {
            "date": "10/14/2025",
            "time": "07:00 pm",
            "home_team": h,
            "away_team": a,
            "location": "Court 1",
            "series": s,
            "League": lg,
        }
        for lg, s, h, a in SCHEDULES
    ]
    matches = [
        {
            "league_id": "APTA_CHICAGO",
            "Date": "14-Oct-25",
            "Home Team": "Lakeview - 22",
            "Away Team": "Oakridge - 22",
            "Home Player 1 ID": "a1",
            "Home Player 2 ID": "a2",
            "Away Player 1 ID": "a3",
            "Away Player 2 ID": "a3",
            "Scores": "6-2, 6-4",
            "Winner": "home",
        }
    ]
    for name, rows in (
        ("players", players),
        ("series_stats", stats),
        ("schedules", schedules),
        ("match_history", matches),
    ):
        (directory / f"{name}.json").write_text(json.dumps(rows), encoding="utf-8")
    return directory


def counts(conn) -> dict[str, int]:
    out = {}
    with conn.cursor() as cur:
        for table in TARGET_TABLES:
            cur.execute(f"SELECT count(*) FROM {table}")
            out[table] = cur.fetchone()[0]
    conn.rollback()
    return out


def team_ids(conn, league: str | None = None) -> dict[str, int]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT t.team_name, t.id FROM teams t JOIN leagues l ON l.id = t.league_id "
            "WHERE %s IS NULL OR l.league_id = %s",
            (league, league),
        )
        rows = dict(cur.fetchall())
    conn.rollback()
    return rows


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return write_dataset(tmp_path / "data")


def test_run_loads_the_expected_counts(db_dsn, conn, data_dir):
    etl = ComprehensiveETL(data_dir, db_dsn)
    assert etl.run() is True, etl.last_error
    got = counts(conn)
    for table, expected in EXPECTED.items():
        assert got[table] == expected, table
    # Oakridge plays in two leagues; "Series 1" is a series of NSTF and of CNSWPL
    assert got["club_leagues"] == 9 and got["series_leagues"] == 8
    for table in ("leagues", "teams", "players", "series_stats", "match_scores", "schedule"):
        assert etl.stats[table] == EXPECTED[table], table
    assert etl.stats["teams_failed"] == 0 and etl.stats["teams_skipped"] == 0
    with conn.cursor() as cur:
        cur.execute(
            "SELECT l.league_id, count(*) FROM teams t JOIN leagues l ON l.id = t.league_id "
            "GROUP BY 1"
        )
        assert dict(cur.fetchall()) == TEAMS_PER_LEAGUE
        cur.execute("SELECT count(*) FROM players WHERE team_id IS NULL")
        assert cur.fetchone()[0] == 0
        cur.execute("SELECT count(*) FROM players WHERE pti IS NULL")  # "N/A" is NULL
        assert cur.fetchone()[0] == 5
    assert etl.conn is not None and etl.conn.closed


def test_sub_teams_are_distinct_teams_with_the_designator_in_the_club(db_dsn, conn, data_dir):
    assert ComprehensiveETL(data_dir, db_dsn).run()
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.name, s.name, t.team_name FROM teams t JOIN clubs c ON c.id = t.club_id "
            "JOIN series s ON s.id = t.series_id WHERE t.team_name LIKE 'Wilmette%%' "
            "OR t.team_name LIKE 'Hinsdale%%' ORDER BY 1"
        )
        assert cur.fetchall() == [
            ("Hinsdale PC a", "Series 1", "Hinsdale PC 1a"),
            ("Wilmette T1", "Series 1", "Wilmette S1 T1"),
            ("Wilmette T2", "Series 1", "Wilmette S1 T2"),
        ]


def test_schedule_team_ids_come_from_the_name_and_are_null_when_not_found(db_dsn, conn, data_dir):
    assert ComprehensiveETL(data_dir, db_dsn).run()
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), count(home_team_id), count(away_team_id) FROM schedule")
        assert cur.fetchone() == (4, 4, 4)  # schedule-only Birch Hill became a team too
        cur.execute("SELECT count(*), count(home_team_id) FROM match_scores")
        assert cur.fetchone() == (1, 1)


def test_rerun_gives_every_team_a_new_id_and_loses_practice_rows(db_dsn, conn, data_dir):
    assert ComprehensiveETL(data_dir, db_dsn).run()
    before = team_ids(conn)
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO schedule (match_date, home_team, home_team_id) "
            "VALUES ('2025-10-20', 'Lakeview - 22 Practice', %s)",
            (before["Lakeview - 22"],),
        )
    conn.commit()
    assert ComprehensiveETL(data_dir, db_dsn).run()
    after = team_ids(conn)
    assert set(after) == set(before)  # the same ten teams ...
    assert not set(after.values()) & set(before.values())  # ... under ten new ids (legacy bug)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM schedule WHERE home_team LIKE '%%Practice%%'")
        assert cur.fetchone()[0] == 0  # the user's practice row went with the clear
    assert counts(conn)["teams"] == EXPECTED["teams"]


def test_league_mode_reimports_one_league_and_leaves_the_others(db_dsn, conn, data_dir):
    assert ComprehensiveETL(data_dir, db_dsn).run()
    apta, cnswpl, nstf = (team_ids(conn, lg) for lg in ("APTA_CHICAGO", "CNSWPL", "NSTF"))
    with conn.cursor() as cur:
        cur.execute("SELECT id, league_id FROM leagues ORDER BY id")
        leagues_before = cur.fetchall()
        cur.execute("SELECT id, name FROM clubs ORDER BY id")
        clubs_before = cur.fetchall()
    conn.rollback()
    etl = ComprehensiveETL(data_dir, db_dsn, league="NSTF")
    assert etl.run() is True, etl.last_error
    assert etl.stats["teams"] == 3 and etl.stats["players"] == 4
    assert team_ids(conn, "APTA_CHICAGO") == apta
    assert team_ids(conn, "CNSWPL") == cnswpl
    nstf_after = team_ids(conn, "NSTF")
    assert set(nstf_after) == set(nstf) and not set(nstf_after.values()) & set(nstf.values())
    with conn.cursor() as cur:
        cur.execute("SELECT id, league_id FROM leagues ORDER BY id")
        assert cur.fetchall() == leagues_before  # shared rows kept (upserted in place)
        cur.execute("SELECT id, name FROM clubs ORDER BY id")
        assert cur.fetchall() == clubs_before
    assert {t: n for t, n in counts(conn).items() if t in EXPECTED} == EXPECTED


def test_failing_step_returns_false_and_keeps_the_steps_already_committed(
    db_dsn, conn, data_dir, monkeypatch
):
    assert ComprehensiveETL(data_dir, db_dsn).run()
    old_ids = set(team_ids(conn).values())

    def broken(self, conn):
        raise RuntimeError("players step blew up")

    monkeypatch.setattr(ComprehensiveETL, "import_players", broken)
    etl = ComprehensiveETL(data_dir, db_dsn)
    assert etl.run() is False
    assert isinstance(etl.last_error, RuntimeError)
    got = counts(conn)
    # committed before the failure: the clear and the reference data, teams included
    assert got["teams"] == EXPECTED["teams"] and got["leagues"] == 3
    assert not set(team_ids(conn).values()) & old_ids
    # never reached: what the old run had is gone, nothing replaced it (legacy behaviour)
    assert got["players"] == got["series_stats"] == got["schedule"] == got["match_scores"] == 0
    assert "players" not in etl.stats and etl.stats["teams"] == EXPECTED["teams"]


def test_import_teams_counts_a_failing_row_and_imports_the_rest(db_dsn, conn, data_dir):
    etl = ComprehensiveETL(data_dir, db_dsn)
    etl.load_json_files()
    etl.import_leagues(conn, etl.extract_leagues())
    etl.import_clubs(conn, etl.extract_clubs())
    etl.import_series(conn, etl.extract_series())
    teams = [
        {
            "league_id": "NSTF",
            "club_name": "Oakridge",
            "series_name": "Series 2B",
            "team_name": "Same",
        },
        # same name in the same league, another club: unique_team_name_per_league
        {
            "league_id": "NSTF",
            "club_name": "Wilmette T1",
            "series_name": "Series 1",
            "team_name": "Same",
        },
        {
            "league_id": "NSTF",
            "club_name": "Wilmette T2",
            "series_name": "Series 1",
            "team_name": "Ok",
        },
        {"league_id": "NSTF", "club_name": "Nowhere", "series_name": "Series 1", "team_name": "X"},
    ]
    assert etl.import_teams(conn, teams) == 2
    assert etl.stats["teams_failed"] == 1 and etl.stats["teams_skipped"] == 1
    conn.commit()
    assert sorted(team_ids(conn)) == ["Ok", "Same"]


def test_import_teams_updates_the_name_of_an_existing_key(db_dsn, conn, data_dir):
    assert ComprehensiveETL(data_dir, db_dsn).run()
    before = team_ids(conn)
    etl = ComprehensiveETL(data_dir, db_dsn)
    renamed = [
        {
            "league_id": "APTA_CHICAGO",
            "club_name": "Lakeview",
            "series_name": "Chicago 22",
            "team_name": "Lakeview 22",
        }
    ]
    assert etl.import_teams(conn, renamed) == 1
    conn.commit()
    after = team_ids(conn, "APTA_CHICAGO")
    assert after["Lakeview 22"] == before["Lakeview - 22"] and "Lakeview - 22" not in after


def test_extract_teams_deduplicates_by_league_club_and_canonical_series(data_dir):
    etl = ComprehensiveETL(data_dir)
    etl.load_json_files()
    teams = etl.extract_teams()
    assert len(teams) == EXPECTED["teams"]
    keys = {(t["league_id"], t["club_name"], t["series_name"]) for t in teams}
    assert ("CNSWPL", "Birch Hill", "Series 3") in keys
    assert {t["team_name"] for t in teams if t["league_id"] == "NSTF"} == {
        "Oakridge S2B",
        "Wilmette S1 T1",
        "Wilmette S1 T2",
    }
    assert etl.extract_leagues()[0] == {
        "league_id": "APTA_CHICAGO",
        "league_name": "APTA Chicago",
        "league_url": "https://aptachicago.tenniscores.com",
    }


def test_connection_falls_back_to_database_url(db_dsn, data_dir, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_dsn)
    etl = ComprehensiveETL(data_dir)
    assert etl.run() is True, etl.last_error
    assert etl.stats["teams"] == EXPECTED["teams"]
