"""Invisible to users (issue 16): the upsert locks only the rows it changes, and a change that
keeps a row's key columns does not block a user's foreign-key check.

Two real connections: the import's transaction stays open after its upsert; a second,
autocommit connection with ``lock_timeout = 200ms`` (an app client) inserts rows that reference
the teams and leagues. A foreign-key check takes ``FOR KEY SHARE`` on the referenced row: it
waits only for a row locked ``FOR UPDATE`` (deleted, or changed in a key column).
"""

from __future__ import annotations

import psycopg2
import psycopg2.errors
import pytest

from bulletproof_etl.catalog import current_keys
from bulletproof_etl.config import DEFAULT_CONFIG
from bulletproof_etl.identity.team_upsert import upsert_teams
from bulletproof_etl.identity.upsert import upsert_entities
from bulletproof_etl.identity.validate import validate_teams
from bulletproof_etl.state import ensure_state_schema
from core_support import one_value


def T(club, series, name=None, league="APTA_CHICAGO", **extra):
    number = series.split()[-1]
    return {"league_id": league, "club_name": club, "series_name": series,
            "team_name": name or f"{club} - {number}", **extra}


LEAGUES = [{"league_id": "APTA_CHICAGO", "league_name": "APTA Chicago"},
           {"league_id": "NSTF", "league_name": "North Shore"}]
SEASON = [T("Lakeview", "Chicago 22"), T("Oakridge", "Chicago 22"), T("Maple", "Chicago 21"),
          T("Birch", "Chicago 21"), T("Cedar", "Series 2B", "Cedar S2B", league="NSTF")]


def _import(conn, leagues, teams):
    ensure_state_schema(conn, DEFAULT_CONFIG)
    lg = upsert_entities(conn, DEFAULT_CONFIG, "leagues", leagues, current_keys(conn, DEFAULT_CONFIG)["leagues"])
    result, _parents = upsert_teams(conn, DEFAULT_CONFIG, validate_teams(teams), force=True)
    return lg, result


def _ids(conn) -> dict:
    with conn.cursor() as cur:
        cur.execute("SELECT team_name, id, league_id FROM teams")
        return {n: (i, lg) for n, i, lg in cur.fetchall()}


def _user(dsn):
    user = psycopg2.connect(dsn)
    user.autocommit = True
    with user.cursor() as cur:
        cur.execute("SET lock_timeout = '200ms'")
    return user


def _poll(user, team_id) -> None:
    with user.cursor() as cur:
        cur.execute("INSERT INTO polls (team_id, question) VALUES (%s, 'Who plays?')", (team_id,))


def _practice(user, team_id, league_id) -> None:
    with user.cursor() as cur:
        cur.execute("INSERT INTO practice_times (team_id, league_id, day_of_week, start_time, end_time) "
                    "VALUES (%s, %s, 'Tuesday', '19:00', '20:30')", (team_id, league_id))


LOCKED = {  # rows another transaction holds any row lock on; rows it holds FOR UPDATE (key changes)
    ("teams", "any"): "SELECT count(*) FROM teams WHERE id NOT IN (SELECT id FROM teams FOR SHARE SKIP LOCKED)",
    ("teams", "key"): "SELECT count(*) FROM teams WHERE id NOT IN (SELECT id FROM teams FOR KEY SHARE SKIP LOCKED)",
    ("leagues", "any"): "SELECT count(*) FROM leagues WHERE id NOT IN (SELECT id FROM leagues FOR SHARE SKIP LOCKED)",
    ("leagues", "key"): "SELECT count(*) FROM leagues WHERE id NOT IN "
                        "(SELECT id FROM leagues FOR KEY SHARE SKIP LOCKED)",
}


def _locked(user) -> dict:
    """``{(table, "any" or "key"): rows}`` the import's open transaction holds locked, seen by ``user``."""
    out = {}
    for what, query in LOCKED.items():
        with user.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute(query)
            out[what] = cur.fetchone()[0]
            cur.execute("ROLLBACK")
    return out


def test_upsert_locks_no_unchanged_row_and_a_user_references_them_meanwhile(db_dsn, conn):
    _import(conn, LEAGUES, SEASON)
    conn.commit()
    before = _ids(conn)
    # season 2: Lakeview renamed (a key column: unique team name per league), Oakridge only
    # given an alias (no key column), the NSTF league renamed (its code, the key, is the same)
    season2 = [T("Lakeview", "Chicago 22", "Lakeview Old - 22"), T("Oakridge", "Chicago 22", team_alias="Oaks"),
               *SEASON[2:]]
    leagues2 = [LEAGUES[0], {"league_id": "NSTF", "league_name": "North Shore Tennis"}]
    lg, result = _import(conn, leagues2, season2)  # the transaction stays open
    assert (lg.updated, lg.unchanged, lg.created) == (1, 1, 0)
    assert (result.updated, result.unchanged, result.created, result.retired) == (2, 3, 0, 0)
    user = _user(db_dsn)
    try:
        # only the rows the import changed are locked; FOR UPDATE only the team renamed
        assert _locked(user) == {("teams", "any"): 2, ("teams", "key"): 1,
                                 ("leagues", "any"): 1, ("leagues", "key"): 0}
        chicago = before["Maple - 21"][1]
        nstf = before["Cedar S2B"][1]
        # unchanged teams and leagues: the user's inserts do not wait
        _poll(user, before["Maple - 21"][0])
        _practice(user, before["Birch - 21"][0], chicago)
        # a change that keeps every key column (an alias, a league's name) does not block either
        _poll(user, before["Oakridge - 22"][0])
        _practice(user, before["Cedar S2B"][0], nstf)
        # a team changed in a key column (its name) stays locked FOR UPDATE until the commit
        with pytest.raises(psycopg2.errors.LockNotAvailable):
            _poll(user, before["Lakeview - 22"][0])
        conn.commit()
        _poll(user, before["Lakeview - 22"][0])  # after the commit it goes through
    finally:
        user.close()
    assert one_value(conn, "SELECT count(*) FROM polls") == 3
    assert one_value(conn, "SELECT count(*) FROM practice_times") == 2
    assert _ids(conn)["Lakeview Old - 22"] == before["Lakeview - 22"]


def test_unchanged_reimport_writes_and_locks_nothing(db_dsn, conn):
    _import(conn, LEAGUES, SEASON)
    conn.commit()
    lg, result = _import(conn, LEAGUES, SEASON)
    assert (lg.updated, lg.unchanged) == (0, 2)
    assert (result.updated, result.unchanged, result.created) == (0, 5, 0)
    user = _user(db_dsn)
    try:
        assert set(_locked(user).values()) == {0}
        for team_id, league_id in _ids(conn).values():
            _practice(user, team_id, league_id)
    finally:
        user.close()
    conn.rollback()
    assert one_value(conn, "SELECT count(*) FROM practice_times") == 5


def _retire_and_remove(conn, teams):
    """One run's team step (retiring the teams ``teams`` leaves out) and its removal step."""
    from bulletproof_etl.catalog import read_catalog
    from bulletproof_etl.identity.retirement import remove_unreferenced

    result, parents = upsert_teams(conn, DEFAULT_CONFIG, validate_teams(teams), force=True)
    named = {e: set(r.ids.values()) for e, r in parents.items()}
    return result, remove_unreferenced(conn, DEFAULT_CONFIG, read_catalog(conn, DEFAULT_CONFIG), None, named)


def test_removal_skips_a_team_a_user_holds_a_key_share_lock_on_and_waits_for_nobody(db_dsn, conn):
    ensure_state_schema(conn, DEFAULT_CONFIG)
    upsert_teams(conn, DEFAULT_CONFIG, validate_teams(SEASON), force=True)
    conn.commit()
    ids = _ids(conn)
    birch = one_value(conn, "SELECT id FROM clubs WHERE name = 'Birch'")
    user = psycopg2.connect(db_dsn)  # a user's insert of a poll in progress: its foreign-key check's lock
    try:
        with user.cursor() as cur:
            cur.execute("INSERT INTO polls (team_id, question) VALUES (%s, 'Who plays?')", (ids["Maple - 21"][0],))
        # the import drops Maple and Birch (series Chicago 21 too); nothing references them but the poll
        # in progress (uncommitted: invisible to the run's reference check)
        result, removed = _retire_and_remove(conn, SEASON[:2] + SEASON[4:])
        assert sorted(result.retired_ids) == sorted([ids["Maple - 21"][0], ids["Birch - 21"][0]])
        # Maple is locked by the user: skipped without waiting, so kept; Birch removed
        assert removed["teams"] == {"removed": [ids["Birch - 21"][0]], "kept_for_references": 1}
        # its series is still used by Maple: kept; nothing else was left unnamed
        assert removed["series"] == {"removed": [], "kept_for_references": 1}
        assert removed["clubs"] == {"removed": [birch], "kept_for_references": 1}
        assert removed["leagues"] == {"removed": [], "kept_for_references": 0}
        conn.commit()
        user.commit()  # the user's poll commits: its team is there, retired
    finally:
        user.close()
    assert one_value(conn, "SELECT count(*) FROM polls p JOIN teams t ON t.id = p.team_id "
                           "WHERE NOT t.is_active") == 1
    assert one_value(conn, "SELECT count(*) FROM teams") == 4


def test_removal_keeps_a_team_a_user_referenced_after_the_first_check(db_dsn, conn, monkeypatch):
    """A reference committed between the run's first reference check and its lock keeps the row
    (the locked rows are checked again): no foreign-key failure, no cascade."""
    from bulletproof_etl.identity import retirement

    ensure_state_schema(conn, DEFAULT_CONFIG)
    upsert_teams(conn, DEFAULT_CONFIG, validate_teams(SEASON), force=True)
    conn.commit()
    ids = _ids(conn)
    first = retirement._referenced
    calls = []

    def racing(cur, known, among):
        first(cur, known, among)
        if among == "_bp_candidates" and not calls:  # right after the first check of the teams
            calls.append(among)
            user = _user(db_dsn)
            try:
                _poll(user, ids["Maple - 21"][0])  # an unchanged row: nothing waits
            finally:
                user.close()

    monkeypatch.setattr(retirement, "_referenced", racing)
    result, removed = _retire_and_remove(conn, SEASON[:2] + SEASON[4:])
    assert removed["teams"] == {"removed": [ids["Birch - 21"][0]], "kept_for_references": 1}
    conn.commit()
    assert one_value(conn, "SELECT count(*) FROM polls WHERE team_id = %s", (ids["Maple - 21"][0],)) == 1


def test_a_respelled_series_and_club_keep_their_rows_so_teams_keep_their_key_columns(db_dsn, conn):
    """A series or club written another way with the same key (re-cased) keeps its row: its
    teams change no key column (club, series, league, name), so users' inserts never wait."""
    _import(conn, LEAGUES, SEASON)
    conn.commit()
    with conn.cursor() as cur:
        cur.execute("SELECT id, club_id, series_id, league_id, team_name FROM teams ORDER BY id")
        before = cur.fetchall()
    respelled = [T("LAKEVIEW", "CHICAGO 22", "Lakeview - 22"), T("Oakridge", "CHICAGO 22", "Oakridge - 22"),
                 *SEASON[2:]]
    _lg, result = _import(conn, LEAGUES, respelled)
    assert (result.updated, result.unchanged, result.created) == (0, 5, 0)
    with conn.cursor() as cur:
        cur.execute("SELECT id, club_id, series_id, league_id, team_name FROM teams ORDER BY id")
        assert cur.fetchall() == before
        cur.execute("SELECT (SELECT name FROM clubs WHERE id = %s), (SELECT name FROM series WHERE id = %s)",
                    (before[0][1], before[0][2]))
        assert cur.fetchone() == ("LAKEVIEW", "CHICAGO 22")  # the rows took the import's spelling
    user = _user(db_dsn)
    try:
        assert _locked(user)[("teams", "any")] == 0
        for team_id, _club, _series, league_id, _name in before:
            _practice(user, team_id, league_id)
    finally:
        user.close()
    conn.commit()
    assert one_value(conn, "SELECT count(*) FROM practice_times") == 5
