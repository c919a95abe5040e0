"""The legacy ETL loads a generated 10,000-team season (issue 2's "Done when")."""

from __future__ import annotations

import pytest

from rally_etl import ComprehensiveETL
from rally_etl.generate import generate_season, write_season
from support import count

N_TEAMS = 10_000


@pytest.mark.slow
def test_legacy_etl_loads_a_generated_10000_team_season(db_dsn, conn, tmp_path):
    data = generate_season(N_TEAMS, seed=7)
    write_season(data, tmp_path)
    # what the files hold, counted here rather than taken from the ETL
    teams_in_files = {(r["league_id"], r["team"]) for r in data["series_stats"]}
    leagues_in_files = {r["League"] for r in data["players"]}

    etl = ComprehensiveETL(tmp_path, db_dsn)
    assert etl.run() is True, etl.last_error

    assert len(teams_in_files) == N_TEAMS
    assert count(conn, "teams") == N_TEAMS
    assert count(conn, "leagues") == len(leagues_in_files) == 3
    assert count(conn, "players") == len({(r["Player ID"], r["League"]) for r in data["players"]})
    assert count(conn, "series_stats") == len(data["series_stats"])
