"""User activity: exact rows per table, set-based, pointing at the teams it was made for."""

from __future__ import annotations

import pytest

import rally_etl
from rally_etl.activity import TABLES, _units, create_user_activity, expected_counts
from rally_etl.generate import generate_season, write_season

# Two leagues; series 1 of L1 has two teams, series 2 of L1 and series 1 of L2 have one each.
SEED_SQL = """
INSERT INTO leagues (id, league_id, league_name) VALUES (1, 'L1', 'League one'), (2, 'L2', 'Two');
INSERT INTO clubs (id, name) VALUES (1, 'Lakeview'), (2, 'Oakridge');
INSERT INTO series (id, name, display_name) VALUES (1, 'Chicago 1', 'Chicago 1'),
    (2, 'Chicago 2', 'Chicago 2'), (3, 'Series 1', 'Series 1');
INSERT INTO teams (id, club_id, series_id, league_id, team_name, display_name) VALUES
    (10, 1, 1, 1, 'Lakeview - 1', 'Lakeview - 1'), (11, 2, 1, 1, 'Oakridge - 1', 'Oakridge - 1'),
    (12, 1, 2, 1, 'Lakeview - 2', 'Lakeview - 2'), (13, 2, 3, 2, 'Oakridge 1', 'Oakridge 1');
INSERT INTO players (tenniscores_player_id, league_id, club_id, series_id, team_id) VALUES
    ('nndz-a', 1, 1, 1, 10), ('nndz-b', 1, 1, 1, 10);
"""
USER_TABLES = [t for t in TABLES if t != "schedule_practice"]


def _table_counts(conn) -> dict[str, int]:
    counts = {}
    with conn.cursor() as cur:
        for table in USER_TABLES:
            cur.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed names
            counts[table] = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM schedule WHERE home_team LIKE '%%Practice%%'")
        counts["schedule_practice"] = cur.fetchone()[0]
    return counts


@pytest.fixture
def four_teams(conn):
    with conn.cursor() as cur:
        cur.execute(SEED_SQL)
    conn.commit()
    return conn


def test_one_unit_per_team_inserts_exact_counts_per_table(four_teams):
    counts = create_user_activity(four_teams, seed=1)
    expected = {t: 4 for t in TABLES} | {"poll_choices": 8, "lineup_escrow": 2, "videos": 2}
    assert counts == expected == expected_counts(4)
    assert _table_counts(four_teams) == expected


def test_every_team_gets_its_user_and_the_rows_point_at_it(four_teams):
    create_user_activity(four_teams, seed=1)
    with four_teams.cursor() as cur:
        cur.execute("SELECT team_id, league_context FROM users ORDER BY team_id")
        assert cur.fetchall() == [(10, 1), (11, 1), (12, 1), (13, 2)]
        for table in ("polls", "captain_messages", "practice_times", "saved_lineups"):
            cur.execute(f"SELECT array_agg(team_id ORDER BY team_id) FROM {table}")  # noqa: S608
            assert cur.fetchone()[0] == [10, 11, 12, 13], table
        cur.execute("SELECT array_agg(series_id ORDER BY series_id) FROM player_availability")
        assert cur.fetchone()[0] == [1, 1, 2, 3]
        cur.execute("SELECT home_team, home_team_id, away_team FROM schedule ORDER BY home_team_id")
        assert cur.fetchall() == [
            ("Lakeview - 1 Practice", 10, None), ("Oakridge - 1 Practice", 11, None),
            ("Lakeview - 2 Practice", 12, None), ("Oakridge 1 Practice", 13, None),
        ]  # fmt: skip
        # The user of team 10 is linked to its first player; the others have no player.
        cur.execute(
            "SELECT u.team_id, a.tenniscores_player_id LIKE 'nndz-%%' FROM users u "
            "JOIN user_player_associations a ON a.user_id = u.id ORDER BY u.team_id"
        )
        assert cur.fetchall() == [(10, True), (11, False), (12, False), (13, False)]
        # Escrow goes to the other team of the same series, or to no team when there is none.
        cur.execute("SELECT initiator_team_id, recipient_team_id FROM lineup_escrow")
        assert all({10: 11, 11: 10}.get(i) == r for i, r in cur.fetchall())


def test_half_the_polls_and_messages_name_their_series(four_teams):
    create_user_activity(four_teams, seed=3)
    with four_teams.cursor() as cur:
        for table, column in (("polls", "question"), ("captain_messages", "message")):
            cur.execute(
                f"SELECT count(*) FROM {table} x JOIN teams t ON t.id = x.team_id "  # noqa: S608
                f"JOIN series s ON s.id = t.series_id WHERE x.{column} LIKE s.name || ' %%' "
                f"OR x.{column} LIKE s.name || ':%%'"
            )
            assert cur.fetchone()[0] == 2, table


def test_several_rounds_per_team_and_a_league_filter(four_teams):
    counts = create_user_activity(four_teams, seed=2, per_team=2.5, leagues=["L1"])
    assert counts == expected_counts(round(2.5 * 3))  # 8 units over the 3 teams of L1
    assert _table_counts(four_teams) == counts
    with four_teams.cursor() as cur:
        cur.execute("SELECT count(*) FROM users WHERE team_id = 13")
        assert cur.fetchone()[0] == 0
        cur.execute("SELECT count(DISTINCT (team_id, day_of_week, start_time)) FROM practice_times")
        assert cur.fetchone()[0] == 8
    # A second call adds to the first (new e-mail addresses), still exactly.
    assert create_user_activity(four_teams, seed=2, per_team=1.0) == expected_counts(4)
    assert _table_counts(four_teams)["users"] == 12


def test_no_teams_means_no_rows(conn):
    assert create_user_activity(conn) == dict.fromkeys(TABLES, 0)


def test_units_are_deterministic_per_seed():
    teams = [(i, 1, i % 3, f"T{i}", f"C{i}", f"S{i % 3}", 0) for i in range(1, 40)]
    assert _units(teams, 5, 1.5, 1) == _units(teams, 5, 1.5, 1)
    assert _units(teams, 5, 1.5, 1) != _units(teams, 6, 1.5, 1)


def test_on_a_season_loaded_by_the_legacy_etl(tmp_path, db_dsn, conn):
    write_season(generate_season(60, 9), tmp_path)
    assert rally_etl.ComprehensiveETL(tmp_path, db_dsn).run()
    counts = create_user_activity(conn, seed=9)
    assert counts == expected_counts(60)
    assert counts["users"] == 60 and counts["poll_choices"] == 120 and counts["videos"] == 30
    assert _table_counts(conn) == counts
    with conn.cursor() as cur:  # every user is linked to one of its team's generated players
        cur.execute("SELECT count(*) FROM user_player_associations WHERE tenniscores_player_id "
                    "IN (SELECT tenniscores_player_id FROM players)")  # fmt: skip
        assert cur.fetchone()[0] == 60
