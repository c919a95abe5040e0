"""G3 identity: a key in the import keeps its id, even after the legacy ETL deleted the row;
the same for leagues, clubs and series; new keys get new ids; sequences stay ahead.

Ids are compared by natural key, computed by the tests' own SQL (support.entity_keys)."""

from __future__ import annotations

import pytest
from psycopg2 import sql

from bulletproof_etl import BulletproofTeamPreservation
from core_support import (
    ENTITY_TABLES,
    all_ids_by_key,
    ids_by_key,
    ledger_max,
    legacy_clear_and_parents,
    legacy_run,
    loaded_etl,
    one_value,
    season,
    sequence_state,
)
from rally_etl.activity import create_user_activity
from support import team_keys, user_ref_keys


def _protected_reimport(conn, etl, *, parents=True, legacy_teams=False, between=None):
    """Snapshot, then the legacy clear (and its parent inserts), then the protected team import."""
    with BulletproofTeamPreservation(conn) as p:
        p.backup_user_data()
        if parents:
            legacy_clear_and_parents(etl, conn)
        else:
            etl.clear_target_tables(conn)
        if legacy_teams:
            etl.import_teams(conn, etl.extract_teams())
        if between is not None:
            between(conn)
        p.preserve_teams_during_import(etl.extract_teams())
    conn.commit()
    return p.report


def _assert_sequences_ahead(conn):
    for table in ENTITY_TABLES:
        nxt, top = sequence_state(conn, table)
        assert nxt > top, f"{table}: the sequence would give {nxt}, but id {top} exists"
        assert nxt > ledger_max(conn, table), f"{table}: the sequence would re-use a ledger id"
    conn.rollback()


@pytest.mark.parametrize("parents", [True, False], ids=["legacy-reinserted-parents", "parents-left-deleted"])
def test_g3_legacy_clear_then_protected_import_gives_every_entity_its_old_id(db_dsn, conn, tmp_path, parents):
    data = season(tmp_path, n_teams=120)
    legacy_run(db_dsn, data)
    create_user_activity(conn, seed=3, per_team=0.5)
    before = ids_by_key(conn)
    refs_before = user_ref_keys(conn)
    etl = loaded_etl(data, db_dsn)

    report = _protected_reimport(conn, etl, parents=parents)

    after = ids_by_key(conn)
    assert len(before["teams"]) == 120
    for entity in ENTITY_TABLES:
        assert after[entity] == before[entity], entity
    # the same ids mean the user rows the clear left alone point at the same keys again
    # (the practice rows it deleted from schedule come back in the restore stage, not here)
    refs_after = user_ref_keys(conn)
    assert {k: refs_before[k] for k in refs_after} == refs_after
    assert len(refs_after) == len(refs_before) - 60
    teams = report.teams
    assert (teams["preserved"], teams["preserved_from_ledger"], teams["created"]) == (120, 120, 0)
    for entity in ("leagues", "clubs", "series"):
        wanted = len({k for k in before[entity]} & {k for k in after[entity]})
        parent = report.parents[entity]
        assert parent["preserved"] == parent["read"]
        if parents:  # the legacy ETL put them back under new ids: each one was renumbered
            assert parent["rekeyed"] == len(before[entity]), entity
        else:  # nobody put them back: those the teams name came back under their ledger ids
            assert parent["preserved_from_ledger"] == parent["read"] <= wanted
    _assert_sequences_ahead(conn)


def test_g3_new_keys_get_new_ids_and_surviving_keys_keep_theirs(db_dsn, conn, tmp_path):
    s1 = season(tmp_path / "s1", n_teams=150, seed=5)
    s2 = season(tmp_path / "s2", n_teams=150, seed=5, number=2, churn=0.2)
    legacy_run(db_dsn, s1)
    before = ids_by_key(conn)
    highest = {e: max(before[e].values()) for e in ENTITY_TABLES}

    report = _protected_reimport(conn, loaded_etl(s2, db_dsn))

    # the messy spellings of season 2 make the legacy ETL insert a second row for some clubs
    # and series ("Park RIdge CC"): the key is the same, and its old row keeps the old id
    after = all_ids_by_key(conn)
    for entity in ENTITY_TABLES:
        surviving = before[entity].keys() & after[entity].keys()
        new = after[entity].keys() - before[entity].keys()
        assert surviving, entity
        assert all(before[entity][k] in after[entity][k] for k in surviving), entity
        assert all(min(after[entity][k]) == before[entity][k] for k in surviving), entity
        # a new key never gets an id some other key ever had
        assert all(min(after[entity][k]) > highest[entity] for k in new), entity
    assert all(len(ids) == 1 for ids in after["teams"].values())
    active = {k for i, k in team_keys(conn).items()
              if one_value(conn, "SELECT is_active FROM teams WHERE id = %s", (i,))}
    conn.rollback()
    new_teams = active - before["teams"].keys()
    assert new_teams, "the churn added teams"
    assert report.teams["created"] == len(new_teams)
    assert report.teams["preserved"] == len(active & before["teams"].keys())
    _assert_sequences_ahead(conn)


def test_g3_same_team_spelled_with_each_series_variant_keeps_one_id(conn):
    ids = []
    for spelling in ("Chicago 22", "Series 22", "Division 22", "S22", "series  22", "Chicago 22"):
        team = {"league_id": "APTA_CHICAGO", "club_name": "Lakeview", "series_name": spelling,
                "team_name": "Lakeview - 22"}
        with BulletproofTeamPreservation(conn) as p:
            result = p.preserve_teams_during_import([team])
        conn.commit()
        ids.append(one_value(conn, "SELECT id FROM teams"))
        assert result["created"] + result["preserved"] == 1
    assert len(set(ids)) == 1
    assert one_value(conn, "SELECT count(*) FROM teams") == 1
    # each spelling is its own series row (series rows are keyed by name, "series  22" is
    # "Series 22" with the space collapsed); the team moved between them and kept its id
    assert one_value(conn, "SELECT count(*) FROM series") == 4
    assert one_value(conn, "SELECT s.name FROM teams t JOIN series s ON s.id = t.series_id") == "Chicago 22"


def test_g3_rekey_repoints_every_referencing_column_in_one_statement(db_dsn, conn, tmp_path):
    data = season(tmp_path, n_teams=60)
    legacy_run(db_dsn, data)
    before = ids_by_key(conn)
    with conn.cursor() as cur:
        cur.execute("SELECT l.league_id, c.name FROM club_leagues x JOIN clubs c ON c.id = x.club_id "
                    "JOIN leagues l ON l.id = x.league_id")
        pairs_before = sorted(cur.fetchall())
    conn.rollback()
    written = {}

    def user_writes_under_new_ids(c):
        # a user saves availability and a practice time against the re-inserted rows
        with c.cursor() as cur:
            cur.execute("INSERT INTO users (email) VALUES ('during@example.org') RETURNING id")
            user = cur.fetchone()[0]
            cur.execute("SELECT id, name FROM series ORDER BY name LIMIT 3")
            series = cur.fetchall()
            for n, (sid, _name) in enumerate(series):
                cur.execute("INSERT INTO player_availability (user_id, series_id, match_date, availability_status)"
                            " VALUES (%s, %s, %s, 1)", (user, sid, f"2025-10-0{n + 1}"))
            written["series"] = [name for _sid, name in series]

    report = _protected_reimport(conn, loaded_etl(data, db_dsn), between=user_writes_under_new_ids)

    after = ids_by_key(conn)
    for entity in ENTITY_TABLES:
        assert after[entity] == before[entity], entity
    with conn.cursor() as cur:
        cur.execute("SELECT l.league_id, c.name FROM club_leagues x JOIN clubs c ON c.id = x.club_id "
                    "JOIN leagues l ON l.id = x.league_id")
        assert sorted(cur.fetchall()) == pairs_before
        cur.execute("SELECT count(*) FROM club_leagues WHERE club_id <> ALL(%s) OR league_id <> ALL(%s)",
                    (list(before["clubs"].values()), list(before["leagues"].values())))
        assert cur.fetchone()[0] == 0
        # the availability rows (no foreign key) followed their series to the old ids
        cur.execute("SELECT s.name FROM player_availability a JOIN series s ON s.id = a.series_id ORDER BY 1")
        assert [r[0] for r in cur.fetchall()] == sorted(written["series"])
        cur.execute("SELECT count(*) FROM player_availability WHERE series_id <> ALL(%s)",
                    (list(before["series"].values()),))
        assert cur.fetchone()[0] == 0
    conn.rollback()
    assert report.parents["series"]["rekeyed"] == len(before["series"])


def test_g3_teams_the_legacy_import_reinserted_get_their_ids_back(db_dsn, conn, tmp_path):
    data = season(tmp_path, n_teams=80)
    legacy_run(db_dsn, data)
    before = ids_by_key(conn)

    report = _protected_reimport(conn, loaded_etl(data, db_dsn), legacy_teams=True)

    assert ids_by_key(conn)["teams"] == before["teams"]
    assert report.teams["rekeyed"] == 80
    assert report.teams["preserved"] == 80
    _assert_sequences_ahead(conn)


def test_g3_rekey_leaves_a_row_whose_old_id_another_row_holds(db_dsn, conn, tmp_path):
    data = season(tmp_path, n_teams=40)
    legacy_run(db_dsn, data)
    before = ids_by_key(conn)
    victim_key, victim_id = sorted(before["clubs"].items())[0]

    def squat(c):
        # someone inserted another club under the old id of the first club
        with c.cursor() as cur:
            cur.execute("INSERT INTO clubs (id, name) VALUES (%s, 'Squatter Club')", (victim_id,))

    report = _protected_reimport(conn, loaded_etl(data, db_dsn), between=squat)

    after = ids_by_key(conn)
    assert after["clubs"][("squatter club",)] == victim_id
    assert after["clubs"][victim_key] != victim_id
    others = {k: v for k, v in before["clubs"].items() if k != victim_key}
    assert {k: after["clubs"][k] for k in others} == others
    assert report.parents["clubs"]["blocked"] == 1
    assert report.parents["clubs"]["rekeyed"] == len(before["clubs"]) - 1
    # the teams of that club kept their own ids all the same
    assert after["teams"] == before["teams"]


def test_g3_a_key_retired_long_ago_comes_back_with_its_old_id(conn):
    team = {"league_id": "NSTF", "club_name": "Oakridge", "series_name": "Series 2B", "team_name": "Oakridge S2B"}
    other = {"league_id": "NSTF", "club_name": "Maple", "series_name": "Series 2B", "team_name": "Maple S2B"}
    with BulletproofTeamPreservation(conn) as p:
        p.preserve_teams_during_import([team, other])
    conn.commit()
    first = ids_by_key(conn)["teams"][("NSTF", "oakridge", "2b")]
    # the row disappears entirely (a legacy clear), several imports without it pass
    with conn.cursor() as cur:
        cur.execute("SET session_replication_role = replica")
        cur.execute("DELETE FROM teams WHERE id = %s", (first,))
        cur.execute("SET session_replication_role = DEFAULT")
    conn.commit()
    for _ in range(3):
        with BulletproofTeamPreservation(conn) as p:
            p.preserve_teams_during_import([other])
        conn.commit()
    with BulletproofTeamPreservation(conn) as p:
        result = p.preserve_teams_during_import([{**team, "series_name": "S2B"}, other])
    conn.commit()
    assert ids_by_key(conn)["teams"][("NSTF", "oakridge", "2b")] == first
    assert result["preserved_from_ledger"] == 1
    _assert_sequences_ahead(conn)


@pytest.mark.slow
def test_g3_ten_thousand_team_season_after_legacy_clear_keeps_100_percent_of_ids(db_dsn, conn, tmp_path):
    data = season(tmp_path, n_teams=10_000, seed=7)
    legacy_run(db_dsn, data)
    create_user_activity(conn, seed=1, per_team=0.1)
    before = ids_by_key(conn)
    refs_before = user_ref_keys(conn)

    report = _protected_reimport(conn, loaded_etl(data, db_dsn))

    after = ids_by_key(conn)
    assert len(before["teams"]) == 10_000
    for entity in ENTITY_TABLES:
        kept = sum(1 for k, i in before[entity].items() if after[entity].get(k) == i)
        assert kept == len(before[entity]) == len(after[entity]), f"{entity}: {kept} of {len(before[entity])}"
    assert report.teams["preserved"] == 10_000
    refs_after = user_ref_keys(conn)
    assert {k: refs_before[k] for k in refs_after} == refs_after
    assert all(k[0] == "schedule" for k in refs_before.keys() - refs_after.keys())
    with conn.cursor() as cur:
        for table in ("club_leagues", "series_leagues"):
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            assert cur.fetchone()[0] > 0
    conn.rollback()
    _assert_sequences_ahead(conn)


def test_g3_rekey_does_not_move_a_row_whose_id_once_meant_another_key(conn):
    teams = [{"league_id": code, "club_name": "Lakeview", "series_name": "Series 1", "team_name": f"Lakeview {code}"}
             for code in ("AAA", "BBB", "CCC")]
    with BulletproofTeamPreservation(conn) as p:
        p.preserve_teams_during_import(teams)
    conn.commit()
    leagues = ids_by_key(conn)["leagues"]
    ccc = leagues[("CCC",)]
    with conn.cursor() as cur:  # a user's context points at CCC, by id and without a foreign key
        cur.execute("INSERT INTO users (email, league_context) VALUES ('ctx@example.org', %s)", (ccc,))
    conn.commit()
    with BulletproofTeamPreservation(conn, force=True) as p:
        p.backup_user_data()
        with conn.cursor() as cur:  # a clear, and a sequence set back: AAA comes back under CCC's id
            cur.execute("SET LOCAL session_replication_role = replica")
            cur.execute("DELETE FROM teams; DELETE FROM leagues")
            cur.execute("SET LOCAL session_replication_role = DEFAULT")
            cur.execute("SELECT setval(pg_get_serial_sequence('leagues', 'id'), %s, false)", (ccc,))
            cur.execute("INSERT INTO leagues (league_id, league_name) VALUES ('AAA', 'AAA') RETURNING id")
            assert cur.fetchone()[0] == ccc
        p.preserve_teams_during_import(teams[:1])
    conn.commit()
    # the row is not renumbered to AAA's old id, and the user's CCC reference is not dragged along
    assert ids_by_key(conn)["leagues"] == {("AAA",): ccc}
    assert one_value(conn, "SELECT league_context FROM users WHERE email = 'ctx@example.org'") == ccc
    assert p.report.parents["leagues"]["blocked"] == 1
    assert p.report.parents["leagues"]["rekeyed"] == 0
    conn.rollback()


def test_g3_a_key_written_two_ways_keeps_the_id_of_each_row(db_dsn, conn, tmp_path):
    # season 2 writes some club and series names two ways ("Park RIdge CC"): the legacy ETL
    # stores each spelling as a row of its own, both with one natural key
    s2 = season(tmp_path, n_teams=150, seed=5, number=2, churn=0.2)
    legacy_run(db_dsn, s2)
    etl = loaded_etl(s2, db_dsn)
    with BulletproofTeamPreservation(conn) as p:  # the ledger learns both rows of each such key
        p.preserve_teams_during_import(etl.extract_teams())
    conn.commit()
    with conn.cursor() as cur:
        cur.execute("SELECT 'clubs', id, name FROM clubs UNION ALL SELECT 'series', id, name FROM series")
        rows_before = sorted(cur.fetchall())
    conn.rollback()
    doubled = {e: sum(1 for ids in by_key.values() if len(ids) > 1) for e, by_key in all_ids_by_key(conn).items()}
    assert doubled["clubs"] > 0, "the churn wrote some club two ways"

    report = _protected_reimport(conn, etl)

    with conn.cursor() as cur:
        cur.execute("SELECT 'clubs', id, name FROM clubs UNION ALL SELECT 'series', id, name FROM series")
        assert sorted(cur.fetchall()) == rows_before  # every spelling's row has its own old id
    conn.rollback()
    assert report.parents["clubs"]["blocked"] == 0
    assert report.parents["clubs"]["rekeyed"] == sum(1 for r in rows_before if r[0] == "clubs")
