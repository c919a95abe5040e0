"""The same picture as the legacy ETL, except the ids (issue 17).

The legacy ETL and the protected one (ComprehensiveETL wrapped by the library) import the same
files into two databases from the same start, with the same user data in both (written by
hand here, plus the generator's). Afterwards the reference data a user sees, read by content
and never by id, is the same: every active team with its league code, club name, series name,
team name, alias and display name; every league, club and series an active team uses. And the
protected database keeps no more entity rows that no user needs than the legacy one leaves.
"""

from __future__ import annotations

import psycopg2
import pytest

from bulletproof_etl.integration import create_bulletproof_etl_wrapper
from conftest import create_database, drop_database
from core_support import season, write_fingerprint
from rally_etl import ComprehensiveETL
from rally_etl.activity import create_user_activity
from same_picture_support import (
    difference,
    entity_counts,
    one_club_per_name,
    picture,
    rows_without_a_user,
    spelled_apart,
)
from support import USER_TABLES, user_row_counts

pytestmark = pytest.mark.slow

ProtectedETL = create_bulletproof_etl_wrapper(ComprehensiveETL)
ETLS = {"legacy": ComprehensiveETL, "protected": ProtectedETL}


@pytest.fixture
def two_databases():
    dsns = {"legacy": create_database(), "protected": create_database()}
    yield dsns
    for dsn in dsns.values():
        drop_database(dsn)


def _import(kind: str, data_dir, dsn: str):
    etl = ETLS[kind](data_dir, dsn)
    assert etl.run() is True, getattr(etl, "bulletproof_report", None) or etl.last_error
    return etl


def _user_data(dsn: str, teams: list) -> dict:
    """Hand-written user rows on ``teams`` ((league code, team name), found by content), then
    the generator's; the same in both databases. Returns the rows per user table."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            for n, (code, name) in enumerate(teams):
                cur.execute("SELECT t.id, t.league_id, t.series_id FROM teams t JOIN leagues l ON l.id = t.league_id "
                            "WHERE l.league_id = %s AND t.team_name = %s", (code, name))
                team, league, series = cur.fetchone()
                cur.execute("INSERT INTO users (email, first_name, team_id, league_context) VALUES (%s, %s, %s, %s) "
                            "RETURNING id", (f"captain{n}@example.org", "Captain", team, league))
                user = cur.fetchone()[0]
                cur.execute("INSERT INTO polls (team_id, created_by, question) VALUES (%s, %s, %s) RETURNING id",
                            (team, user, f"Who plays on Sunday? ({name})"))
                poll = cur.fetchone()[0]
                cur.execute("INSERT INTO poll_choices (poll_id, choice_text) VALUES (%s, 'yes'), (%s, 'no')",
                            (poll, poll))
                cur.execute("INSERT INTO captain_messages (team_id, captain_user_id, message) VALUES (%s, %s, %s)",
                            (team, user, "Bring new balls"))
                cur.execute("INSERT INTO practice_times (team_id, league_id, day_of_week, start_time, end_time, "
                            "location) VALUES (%s, %s, 'Tuesday', '19:00', '20:30', 'Court 2')", (team, league))
                cur.execute("INSERT INTO saved_lineups (user_id, team_id, lineup_name, lineup_data) "
                            "VALUES (%s, %s, 'usual', '{\"court1\": [1, 2]}')", (user, team))
                cur.execute("INSERT INTO player_availability (user_id, player_name, series_id, match_date, "
                            "availability_status) VALUES (%s, 'Captain', %s, '2025-09-14', 1)", (user, series))
                cur.execute("INSERT INTO user_contexts (user_id, league_id, team_id, active_team_id) "
                            "VALUES (%s, %s, %s, %s)", (user, league, team, team))
                cur.execute("INSERT INTO activity_log (user_id, team_id, action_type) VALUES (%s, %s, 'login')",
                            (user, team))
                cur.execute("INSERT INTO videos (team_id, title, url) VALUES (%s, 'match', 'https://example.org/v')",
                            (team,))
        conn.commit()
        create_user_activity(conn, seed=5, per_team=0.3)
        return user_row_counts(conn)
    finally:
        conn.close()


def _chosen_teams(dsn: str, every: int) -> list:
    """Every ``every``-th active team by league and name, and every team of a club whose name
    the scrapes spell in more than one way (LifeSport, Park RIdge CC)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT l.league_id, t.team_name, c.name FROM teams t JOIN leagues l ON l.id = t.league_id "
                        "JOIN clubs c ON c.id = t.club_id ORDER BY 1, 2")
            rows = cur.fetchall()
    finally:
        conn.close()
    return [(code, name) for i, (code, name, club) in enumerate(rows)
            if i % every == 0 or club.casefold() in ("lifesport-lshire", "park ridge cc")]


def _first_import_and_users(databases: dict, first, start: str, every: int) -> tuple:
    """The first import into both databases (by the legacy ETL in both, or each by its own ETL),
    then the same hand-written user data on the same teams of both: ``(chosen teams, user row
    counts per database)``; the two databases' counts are equal."""
    for kind, dsn in databases.items():
        _import("legacy" if start == "legacy" else kind, first, dsn)
    chosen = _chosen_teams(databases["legacy"], every=every)
    users = {kind: _user_data(dsn, chosen) for kind, dsn in databases.items()}
    assert users["legacy"] == users["protected"]
    return chosen, users


def _read(dsn: str) -> tuple:
    conn = psycopg2.connect(dsn)
    try:
        return picture(conn), rows_without_a_user(conn), entity_counts(conn), user_row_counts(conn)
    finally:
        conn.close()


def _folded(pic: dict) -> dict:
    """The picture with club names case-folded."""
    return {"teams": {(lg, club.casefold(), *rest): n for (lg, club, *rest), n in pic["teams"].items()},
            "clubs": {(name.casefold(),): 1 for (name,) in pic["clubs"]}}


#: series rows of 08-10 spellings that 08-27 no longer names: (kept for references, removed)
KEPT_AND_REMOVED_SERIES = {"legacy": (39, 2), "own": (39, 2)}


# -- the real scrapes -----------------------------------------------------------------------

@pytest.mark.realdata
@pytest.mark.parametrize("start", ["legacy", "own"])
def test_real_scrapes_show_the_same_picture_as_the_legacy_etl(two_databases, realdata_dir, start):
    """2025-08-10 then 2025-08-27. ``legacy``: both databases start from the legacy import of
    08-10 (a database adopting the library); ``own``: each ETL imports both scrapes."""
    chosen, users = _first_import_and_users(two_databases, realdata_dir / "2025-08-10", start, every=40)
    assert len(chosen) == 39
    etl = {kind: _import(kind, realdata_dir / "2025-08-27", dsn) for kind, dsn in two_databases.items()}

    (legacy, legacy_free, legacy_counts, _), (protected, free, counts, rows) = (
        _read(two_databases["legacy"]), _read(two_databases["protected"]))
    assert sum(legacy["teams"].values()) == sum(protected["teams"].values()) == 843
    if start == "legacy":  # the 08-10 rows of both spellings are there: each team keeps its own
        assert difference(legacy, protected) == {}
    else:
        # one club row per name: where the teams of one import spell a club two ways
        # ("Lifesport-Lshire 1" and "LifeSport-Lshire 7"), the legacy ETL shows two clubs, the
        # protected import one, spelled as most of its teams spell it (docs/operations.md)
        assert difference(one_club_per_name(legacy), protected) == {}
        assert spelled_apart(legacy) == 4
        assert len(legacy["clubs"]) - len(protected["clubs"]) == 4
    assert difference({"leagues": legacy["leagues"], "series": legacy["series"]},
                      {"leagues": protected["leagues"], "series": protected["series"]}) == {}
    # no user row lost, and no more rows without a user than the legacy ETL leaves
    assert rows == users["protected"]
    assert legacy_free == {"leagues": 0, "clubs": 0, "series": 12, "teams": 0}
    assert free == {"leagues": 0, "clubs": 0, "series": 12, "teams": 0}
    assert legacy_counts == {"leagues": 3, "clubs": 139, "series": 79, "teams": 843}
    # the protected database holds the legacy one's rows, and the series rows of 08-10 spellings
    # that user rows still reference (kept for references); the others were removed
    report = etl["protected"].bulletproof_report
    series = report.parents["series"]
    assert (series["kept_for_references"], series["removed"]) == KEPT_AND_REMOVED_SERIES[start]
    assert counts == {**legacy_counts, "clubs": 139 if start == "legacy" else 135,
                      "series": 79 + series["kept_for_references"]}
    assert report.teams["removed"] == report.teams["retired"] == report.teams["kept_for_references"] == 0


# -- a generated season with renames and respellings ----------------------------------------

@pytest.mark.parametrize("start", ["legacy", "own"])
def test_generated_churn_shows_the_same_picture_as_the_legacy_etl(two_databases, tmp_path, start):
    """Season 1, then season 2 with renamed clubs, respelled series, removed, added, duplicated
    and messily written teams (rally_etl.generate_churn)."""
    first = season(tmp_path / "s1", n_teams=300, seed=17)
    second = season(tmp_path / "s2", n_teams=300, seed=17, number=2, churn=0.3)
    chosen, users = _first_import_and_users(two_databases, first, start, every=6)
    assert len(chosen) == 50
    conn = psycopg2.connect(two_databases["protected"])
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM teams")
        ids_before = {r[0] for r in cur.fetchall()}
    conn.close()
    etl = {kind: _import(kind, second, dsn) for kind, dsn in two_databases.items()}

    (legacy, legacy_free, legacy_counts, _), (protected, free, counts, rows) = (
        _read(two_databases["legacy"]), _read(two_databases["protected"]))
    # one club row per name: the teams the generator writes "BRidgevale - 8" beside "Bridgevale"
    # show the club as most of its teams spell it (docs/operations.md)
    assert difference(one_club_per_name(legacy), protected) == {}
    assert spelled_apart(legacy) == 12
    assert rows == users["protected"]  # no user row lost
    # no more rows without a user than the legacy ETL leaves; the rows the protected database
    # has besides are those that user rows still reference
    assert legacy_free == free == {"leagues": 0, "clubs": 0, "series": 0, "teams": 0}
    assert legacy_counts == {"leagues": 3, "clubs": 93, "series": 27, "teams": 300}
    report = etl["protected"].bulletproof_report
    conn = psycopg2.connect(two_databases["protected"])
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM teams")
        ids_after = {r[0] for r in cur.fetchall()}
        cur.execute("SELECT count(*) FROM teams WHERE NOT is_active")
        inactive = cur.fetchone()[0]
    conn.close()
    assert report.teams["removed"] == len(ids_before - ids_after) == 65  # unreferenced: removed
    assert report.teams["retired"] == report.teams["kept_for_references"] == inactive == 26
    kept = {e: report.parents[e]["kept_for_references"] for e in ("leagues", "clubs", "series")}
    assert kept == {"leagues": 0, "clubs": 5, "series": 8}
    assert counts == {"leagues": 3, "clubs": 93 - 12 + 5, "series": 27 + 8, "teams": 300 + 26}

    # G6: the same season again writes no entity row and no user row
    marks = _entity_and_user_marks(two_databases["protected"])
    again = _import("protected", second, two_databases["protected"]).bulletproof_report
    assert _entity_and_user_marks(two_databases["protected"]) == marks
    assert again.teams["removed"] == again.teams["retired"] == 0
    assert again.teams["kept_for_references"] == 26


def _entity_and_user_marks(dsn: str) -> dict:
    conn = psycopg2.connect(dsn)
    try:
        marks = write_fingerprint(conn)
    finally:
        conn.close()
    return {t: m for t, m in marks.items() if t in ENTITY_AND_USER_TABLES}


ENTITY_AND_USER_TABLES = {"leagues", "clubs", "series", "teams", *USER_TABLES}
