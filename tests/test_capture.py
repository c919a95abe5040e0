"""Issue 14, the capture path: triggers record deletes and updates, a run that changes nothing
copies nothing, and a run that changes something ends exactly as on the full path.

Every database here is real; the user rows are written by the generator's activity and, where
a test says so, by hand. The full path (no triggers) is the reference the capture path must equal.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import psycopg2
import pytest

from bulletproof_etl import BulletproofTeamPreservation
from bulletproof_etl.catalog import read_catalog
from bulletproof_etl.config import DEFAULT_CONFIG
from bulletproof_etl.errors import SnapshotNotFound
from bulletproof_etl.integration.repair import repair_from_snapshot
from bulletproof_etl.snapshot import capture
from conftest import create_database, drop_database
from core_support import legacy_season_with_users, loaded_etl, season, xact_writes
from rally_etl.activity import create_user_activity
from support import PRACTICE_FILTER, USER_REFS, USER_TABLES, count, user_ref_keys

N_TEAMS = 120


def _install(conn) -> list:
    made = capture.install(conn, DEFAULT_CONFIG, read_catalog(conn, DEFAULT_CONFIG))
    conn.commit()
    return made


def _enabled(conn, etl) -> list:
    """The triggers installed and one run since (it sees the ENABLE record): the capture path
    is open to the next run. Returns the season's teams."""
    _install(conn)
    teams = etl.extract_teams()
    _run(conn, teams)
    return teams


def _run(conn, teams):
    with BulletproofTeamPreservation(conn) as p:
        report = p.run(teams)
    conn.commit()
    return report


@pytest.fixture
def loaded(db_dsn, conn, tmp_path):
    """Season 1 by the legacy ETL, users' activity, one protected run: the state a user has."""
    etl = legacy_season_with_users(db_dsn, conn, tmp_path / "s1", n_teams=N_TEAMS, seed=21, activity_seed=2,
                                   per_team=0.5)
    _run(conn, etl.extract_teams())
    return etl


def test_install_status_and_uninstall(conn, loaded):
    catalog = read_catalog(conn, DEFAULT_CONFIG)
    assert capture.status(conn, DEFAULT_CONFIG, catalog).state == "missing"
    made = _install(conn)
    # four triggers on each of the 4 entity tables, three on each table holding user rows
    assert len(made) == 4 * 4 + 3 * len(set(catalog.user_tables()) - {"leagues", "clubs", "series", "teams"})
    assert capture.status(conn, DEFAULT_CONFIG, catalog).state == "enabled"
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE teams DISABLE TRIGGER bulletproof_capture_delete")
    conn.commit()
    found = capture.status(conn, DEFAULT_CONFIG, catalog)
    assert (found.state, found.missing, found.disabled) == ("partial", [], ["teams: bulletproof_capture_delete"])
    assert sorted(capture.uninstall(conn, DEFAULT_CONFIG)) == sorted(made)
    conn.commit()
    assert capture.status(conn, DEFAULT_CONFIG, catalog).state == "missing"


def test_triggers_fire_under_replica_and_record_truncate_but_not_a_users_own_change(conn, loaded):
    _install(conn)
    with conn.cursor() as cur:
        cur.execute("SELECT min(id), max(id) FROM teams")
        low, high = cur.fetchone()
        cur.execute("SET session_replication_role = replica")  # as the legacy ETL's clear runs
        cur.execute("DELETE FROM teams WHERE id IN (%s, %s)", (low, high))
        cur.execute("SET session_replication_role = DEFAULT")
        cur.execute("DELETE FROM polls WHERE id = (SELECT min(id) FROM polls)")  # a user's: not recorded
        cur.execute("TRUNCATE videos")
        cur.execute("SELECT table_name, op, rows, ids, run_id FROM bulletproof.captured WHERE op <> 'ENABLE' "
                    "ORDER BY id")
        assert cur.fetchall() == [("teams", "DELETE", 2, [low, high], None), ("videos", "TRUNCATE", None, None, None)]
    conn.rollback()


def test_unchanged_reimport_copies_nothing_writes_nothing_and_is_perfect(conn, db_dsn, loaded):
    _install(conn)
    teams = loaded.extract_teams()
    first = _run(conn, teams)  # the first run after enable: changes before it were not recorded
    assert first.capture == {"path": "full", "why": "changes no run has seen yet: ENABLE (triggers installed)"}
    users_before = {t: count(conn, t) for t in USER_TABLES}
    refs_before = user_ref_keys(conn)
    fresh = psycopg2.connect(db_dsn)
    try:
        with BulletproofTeamPreservation(fresh) as p:
            report = p.run(teams)
            writes = xact_writes(fresh)
        fresh.commit()
    finally:
        fresh.close()
    assert report.capture == {"path": "capture", "snapshot": "deferred", "changed": {}, "inserted": {}}
    assert report.backup == {} and report.durable_snapshot is False
    assert report.outcome == "completed (the caller commits)"
    with conn.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM bulletproof.snap_rows WHERE run_id = %s) + "
                    "(SELECT count(*) FROM bulletproof.snap_entities WHERE run_id = %s) + "
                    "(SELECT count(*) FROM bulletproof.snap_keys WHERE run_id = %s)", (report.run_id,) * 3)
        assert cur.fetchone()[0] == 0
    conn.rollback()
    assert {t: n for t, n in writes.items() if n and not t.startswith("bulletproof.")} == {}
    assert report.restore["skipped"] == "the run deleted and updated no row"
    assert report.restore["totals"] == dict.fromkeys(
        ("remapped", "reinserted", "quarantined", "nulled", "on_placeholder", "withheld", "repaired"), 0)
    assert (report.health["status"], report.health["scope"]) == ("PERFECT", "changes")
    assert report.health["ids_kept"] == report.health["keys_survived"] == count(conn, "teams")
    assert {t: count(conn, t) for t in USER_TABLES} == users_before
    assert user_ref_keys(conn) == refs_before


def _churn(dsn, teams):
    conn = psycopg2.connect(dsn)
    try:
        return _run(conn, teams)
    finally:
        conn.close()


def test_a_churned_import_ends_exactly_as_on_the_full_path(conn, db_dsn, loaded, tmp_path):
    """Two clones of the same database, one with triggers: season 2 (10% churn) and a hand-written
    user row on a team that season 2 retires. Every table, every sequence: the same."""
    with conn.cursor() as cur:  # by hand: a captain's message on the first team
        cur.execute("INSERT INTO captain_messages (team_id, message, captain_user_id) "
                    "SELECT min(t.id), 'bring water', min(u.id) FROM teams t, users u")
    conn.commit()
    conn.close()
    full_dsn = create_database(template=psycopg2.extensions.parse_dsn(db_dsn)["dbname"])
    capture_dsn = create_database(template=psycopg2.extensions.parse_dsn(db_dsn)["dbname"])
    try:
        c = psycopg2.connect(capture_dsn)
        _install(c)
        _run(c, loaded.extract_teams())  # sees the ENABLE record; the next one takes the capture path
        c.close()
        for dsn in (full_dsn,):  # the same run on the other clone, so both have run as often
            _churn(dsn, loaded.extract_teams())
        s2 = loaded_etl(season(tmp_path / "s2", n_teams=N_TEAMS, seed=21, number=2, churn=0.1))
        teams = s2.extract_teams()
        on_full, on_capture = _churn(full_dsn, teams), _churn(capture_dsn, teams)
        assert on_full.capture["path"] == "full"
        assert on_capture.capture["path"] == "capture"
        assert on_capture.capture["snapshot"].startswith("taken after the team upsert, after update of ")
        assert on_capture.capture["changed"]["UPDATE"]["teams"] == on_full.teams["updated"] + on_full.teams["retired"]
        assert on_capture.backup == on_full.backup
        assert on_capture.durable_snapshot is on_full.durable_snapshot is True
        assert on_capture.restore["totals"] == on_full.restore["totals"]
        assert on_full.restore["totals"]["remapped"] > 0
        assert on_capture.health["status"] == on_full.health["status"] == "PERFECT"
        contents = [_content(dsn) for dsn in (full_dsn, capture_dsn)]
        assert sorted(contents[0]) == sorted(contents[1])
        assert [t for t in contents[0] if contents[0][t] != contents[1][t]] == []
    finally:
        drop_database(full_dsn)
        drop_database(capture_dsn)


def _content(dsn) -> dict:
    """``{table: md5 of every row without its timestamps}`` and every sequence's last value:
    two runs at different times write different clocks, nothing else may differ."""
    out = {}
    c = psycopg2.connect(dsn)
    with c.cursor() as cur:
        cur.execute("SELECT table_name, string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position) "
                    "FROM information_schema.columns WHERE table_schema = 'public' AND data_type NOT LIKE 'timestamp%%' "
                    "GROUP BY 1")
        for table, columns in cur.fetchall():
            cur.execute("SELECT count(*), md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), '')) "
                        "FROM (SELECT " + columns + " FROM " + table + ") r")
            out[table] = cur.fetchone()
        cur.execute("SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public'")
        out.update({"seq " + name: last for name, last in cur.fetchall()})
    c.close()
    return out


def test_damage_committed_between_runs_takes_the_full_path_which_repairs_it(conn, loaded):
    teams = _enabled(conn, loaded)
    with conn.cursor() as cur:  # someone's clear, committed, foreign keys off: orphans
        cur.execute("SET session_replication_role = replica")
        cur.execute("DELETE FROM teams WHERE id IN (SELECT team_id FROM polls WHERE team_id IS NOT NULL LIMIT 3)")
        deleted = cur.rowcount
        cur.execute("SET session_replication_role = DEFAULT")
    conn.commit()
    report = _run(conn, teams)
    assert report.capture == {"path": "full", "why": f"changes no run has seen yet: DELETE teams ({deleted} rows)"}
    assert report.health["status"] == "PERFECT" and report.health["user_orphans"] == 0
    assert _run(conn, teams).capture["path"] == "capture"


def test_a_disabled_trigger_falls_back_to_the_full_path_with_a_warning(conn, loaded, caplog):
    teams = _enabled(conn, loaded)
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE polls DISABLE TRIGGER bulletproof_capture_delete")
    conn.commit()
    with caplog.at_level(logging.WARNING, logger="bulletproof_etl.preservation"):
        report = _run(conn, teams)
    why = ("capture triggers missing or not ENABLE ALWAYS: polls: bulletproof_capture_delete; "
           "run bulletproof-etl enable again")
    assert report.capture == {"path": "full", "why": why}
    assert "full snapshot: " + why in caplog.text
    assert report.backup["rows"]["polls"] == count(conn, "polls")


def test_a_run_called_stage_by_stage_takes_the_full_path(conn, loaded):
    teams = _enabled(conn, loaded)
    with BulletproofTeamPreservation(conn) as p:
        p.backup_user_data()
        p.preserve_teams_during_import(teams)
    conn.commit()
    assert p.report.capture["path"] == "full"
    assert p.report.capture["why"].startswith("a run called stage by stage")


def test_repair_from_snapshot_skips_a_run_that_took_none(conn, db_dsn, loaded):
    _install(conn)
    teams = loaded.extract_teams()
    full = _run(conn, teams)
    lazy = _run(conn, teams)
    assert (full.capture["path"], lazy.capture["path"]) == ("full", "capture")
    with pytest.raises(SnapshotNotFound, match=f"run {lazy.run_id} has no durable snapshot: it took none .outcome 'committed'."):
        repair_from_snapshot(db_dsn, str(lazy.run_id), dry_run=True)
    assert repair_from_snapshot(db_dsn, "latest", dry_run=True).run_id == full.run_id


def test_a_first_import_into_a_new_database_takes_the_capture_path(db_dsn, conn, tmp_path):
    """No user row yet: nothing can have been damaged before enable, so no full run is owed."""
    etl = loaded_etl(season(tmp_path / "s1", n_teams=N_TEAMS, seed=21), db_dsn)
    etl.import_leagues(conn, etl.extract_leagues())
    etl.import_clubs(conn, etl.extract_clubs())
    etl.import_series(conn, etl.extract_series())
    conn.commit()
    _install(conn)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM bulletproof.captured")
        assert cur.fetchone()[0] == 0
    conn.rollback()
    teams = etl.extract_teams()
    report = _run(conn, teams)
    assert report.capture == {"path": "capture", "snapshot": "deferred", "changed": {},
                              "inserted": {"teams": len(teams)}}
    assert count(conn, "teams") == len(teams)
    assert (report.health["status"], report.health["scope"], report.health["duplicate_keys"]) == ("PERFECT", "changes", {})
    assert (report.health["ids_kept"], report.health["preservation_rate"]) == (0, None)  # no team before the run
    with conn.cursor() as cur:  # every new id is in the ledger, as on the full path
        cur.execute("SELECT count(*) FROM bulletproof.ledger WHERE entity = 'teams'")
        assert cur.fetchone()[0] == len(teams)
    conn.rollback()
    create_user_activity(conn, seed=2, per_team=0.5)
    conn.commit()
    again = _run(conn, teams)
    assert (again.capture["path"], again.capture["inserted"], again.health["ids_kept"]) == ("capture", {}, len(teams))


def test_users_changes_during_a_capture_path_run_are_theirs_and_a_team_change_is_seen_next(conn, db_dsn, loaded):
    """While the run is between its upsert and its restore, a user deletes a poll and an admin
    edits a team row on their own connections, and commit. The run is not disturbed; the poll
    stays deleted; the team edit, committed after the run started, makes the next run full."""
    teams = _enabled(conn, loaded)
    with conn.cursor() as cur:
        cur.execute("SELECT min(id) FROM polls")
        poll = cur.fetchone()[0]
        cur.execute("SELECT min(id) FROM teams")
        team = cur.fetchone()[0]
    conn.rollback()
    polls_before = count(conn, "polls")

    def users(call):
        if (call.when, call.stage) == ("after", "upsert"):
            other = psycopg2.connect(db_dsn)
            with other.cursor() as cur:
                cur.execute("DELETE FROM poll_responses WHERE poll_id = %s", (poll,))
                cur.execute("DELETE FROM poll_choices WHERE poll_id = %s", (poll,))
                cur.execute("DELETE FROM polls WHERE id = %s", (poll,))
                cur.execute("UPDATE teams SET display_name = 'Admin edit' WHERE id = %s", (team,))
            other.commit()
            other.close()

    with BulletproofTeamPreservation(conn, config=replace(DEFAULT_CONFIG, stage_callbacks=(users,))) as p:
        report = p.run(teams)
    conn.commit()
    assert report.capture["path"] == "capture" and report.capture["changed"] == {}
    assert report.health["status"] == "PERFECT"
    assert count(conn, "polls") == polls_before - 1
    assert count(conn, "teams", f"id = {team} AND display_name = 'Admin edit'") == 1
    assert _run(conn, teams).capture == {"path": "full", "why": "changes no run has seen yet: UPDATE teams (1 rows)"}
    assert _run(conn, teams).capture["path"] == "capture"


def test_a_team_re_inserted_under_a_new_id_sends_the_next_run_down_the_full_path(conn, loaded):
    """The capture path skips re-keying: safe only because a re-insertion needs a delete, which
    the triggers record, and the full path then follows the team with every user reference."""
    teams = _enabled(conn, loaded)
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM teams WHERE id IN (SELECT team_id FROM polls) ORDER BY id LIMIT 1")
        old = cur.fetchone()[0]
        refs = 0
        for table, _pk, column, entity in USER_REFS:
            if entity == "teams":
                cur.execute(f"SELECT count(*) FROM {table} WHERE {column} = %s", (old,))
                refs += cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM schedule WHERE home_team_id = %s AND " + PRACTICE_FILTER, (old,))
        refs += cur.fetchone()[0]  # the users' practice rows in the ETL's schedule
        cur.execute("SET session_replication_role = replica")  # someone's delete and re-insert
        cur.execute("CREATE TEMP TABLE t AS SELECT * FROM teams WHERE id = %s", (old,))
        cur.execute("DELETE FROM teams WHERE id = %s", (old,))
        cur.execute("UPDATE t SET id = nextval(pg_get_serial_sequence('teams', 'id'))")
        cur.execute("INSERT INTO teams SELECT * FROM t RETURNING id")
        new = cur.fetchone()[0]
        cur.execute("SET session_replication_role = DEFAULT")
    conn.commit()
    assert refs > 0
    report = _run(conn, teams)
    assert report.capture == {"path": "full", "why": "changes no run has seen yet: DELETE teams (1 rows)"}
    assert report.restore["totals"]["remapped"] == refs  # every reference follows the team to its new row
    assert count(conn, "teams", f"id = {old}") == 0 and count(conn, "teams", f"id = {new}") == 1
    # the ETL's own rows (players, scores) on the deleted row are the ETL's to write: a WARNING
    assert (report.health["status"], report.health["user_orphans"]) == ("WARNING", 0)
    assert report.health["issues"] == [f"{report.health['etl_orphans']} ETL-owned references point at nothing"]
    assert _run(conn, teams).capture["path"] == "capture"
