"""How a protected run meets an ETL it does not own: the configuration checked against the
database, bounded lock waits, a module-level connection factory, the guarded clear step."""

from __future__ import annotations

import psycopg2
import pytest
from psycopg2 import sql

import rally_etl
from bulletproof_etl import DEFAULT_CONFIG, BulletproofTeamPreservation
from bulletproof_etl import db as bp_db
from bulletproof_etl.config import Dependent
from bulletproof_etl.errors import ConfigMismatch
from bulletproof_etl.integration import patch_existing_etl_class, unpatch_etl_class
from bulletproof_etl.integration.patching import EtlHooks
from bulletproof_etl.lock_wait import LockWaitTimeout
from rally_etl import ComprehensiveETL
from rally_etl.generate import generate_season_with_summary, write_season
from support import table_checksums, team_keys


@pytest.fixture(scope="module")
def season(tmp_path_factory):
    data, _summary = generate_season_with_summary(24, 3)
    return write_season(data, tmp_path_factory.mktemp("hooks") / "s1")


def _teams(season) -> list:
    etl = ComprehensiveETL(season)
    etl.load_json_files()
    return etl.extract_teams()


def test_a_configuration_naming_what_the_database_lacks_is_one_error_naming_each(conn, season):
    before = table_checksums(conn)
    config = DEFAULT_CONFIG.replace(user_team_column="favourite_team",
                                    declared=(*DEFAULT_CONFIG.declared, Dependent("fan_clubs", "squad_id", "teams")))
    with pytest.raises(ConfigMismatch) as caught:
        with BulletproofTeamPreservation(conn, config=config) as p:
            p.run(_teams(season))
    conn.rollback()
    assert caught.value.missing == ["table public.fan_clubs (declared[7])",
                                    "column users.favourite_team (user_team_column)"]
    assert "nothing was written" in str(caught.value)
    assert table_checksums(conn) == before
    with conn.cursor() as cur:
        cur.execute("SELECT to_regnamespace('bulletproof')")
        assert cur.fetchone()[0] is None  # not even the state schema


def test_a_lock_held_elsewhere_ends_the_run_after_lock_timeout_naming_the_holder(db_dsn, conn, season):
    holder = psycopg2.connect(db_dsn)
    with holder.cursor() as cur:
        cur.execute("ALTER TABLE clubs ADD COLUMN IF NOT EXISTS logo_filename varchar(255)")  # held until rollback
    try:
        config = DEFAULT_CONFIG.replace(lock_timeout="300ms")
        with pytest.raises(LockWaitTimeout) as caught:
            with BulletproofTeamPreservation(dsn=db_dsn, config=config) as p:
                p.run(_teams(season))
        message = str(caught.value)
        assert f"pid {holder.get_backend_pid()} holds AccessExclusiveLock on public.clubs" in message
        assert "ALTER TABLE clubs ADD COLUMN IF NOT EXISTS logo_filename" in message
        assert "canceled by lock timeout (lock_timeout=300ms" in message
    finally:
        holder.rollback()
        holder.close()
    assert team_keys(conn) == {}


# a module-level connection factory, as an ETL may have one (``from database_config import get_db``)
def open_db(dsn):
    return bp_db.connect(dsn)


class FactoryETL(ComprehensiveETL):
    def get_connection(self):
        return open_db(self.dsn)


def test_a_module_level_factory_named_by_its_name_gives_the_run_its_connection(db_dsn, conn, season):
    original = open_db
    patch_existing_etl_class(FactoryETL, hooks=EtlHooks(get_connection="open_db"))
    try:
        assert globals()["open_db"] is not original  # patched where the ETL's module looks it up
        etl = FactoryETL(season, db_dsn)
        assert etl.run() is True, etl.bulletproof_report.error
        report = etl.bulletproof_report
        assert report.outcome == "committed"
        assert report.teams["created"] == len(team_keys(conn)) > 0
        assert original(db_dsn).closed == 0  # outside a run it is the plain factory again
    finally:
        unpatch_etl_class(FactoryETL)
    assert globals()["open_db"] is original


def test_the_guarded_clear_runs_the_etls_own_statements_but_keeps_every_entity_row(db_dsn, conn, season):
    assert ComprehensiveETL(season, db_dsn).run()
    ids_before = team_keys(conn)

    class BackingUp(ComprehensiveETL):  # an ETL whose clear backs something up first, as the real one does
        def clear_target_tables(self, conn):
            with conn.cursor() as cur:
                cur.execute("DROP TABLE IF EXISTS teams_backup; CREATE TABLE teams_backup AS SELECT * FROM teams")
                cur.execute(sql.SQL("TRUNCATE {}, {}").format(sql.Identifier("series_stats"),
                                                             sql.Identifier("teams")))
            return super().clear_target_tables(conn)

    patch_existing_etl_class(BackingUp)
    etl = BackingUp(season, db_dsn)
    assert etl.run() is True, etl.bulletproof_report.error
    report = etl.bulletproof_report
    assert report.clear_kept == {"teams": 2, "series": 1, "clubs": 1, "leagues": 1}  # TRUNCATE and DELETE
    assert team_keys(conn) == ids_before
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM teams_backup")
        assert cur.fetchone()[0] == len(ids_before)  # the ETL's own side effect happened
    conn.rollback()
    assert rally_etl.ComprehensiveETL is ComprehensiveETL


class AliasingETL(ComprehensiveETL):  # an ETL whose own team import derives the alias, as the real one does
    def generate_team_alias(self, team_name, series_name):
        return f"{series_name} / {team_name.split(' - ')[-1]}"


def test_the_alias_hook_gives_each_team_the_alias_the_etls_own_team_import_writes(db_dsn, conn, season):
    patch_existing_etl_class(AliasingETL, hooks=EtlHooks(team_alias="generate_team_alias"))
    try:
        etl = AliasingETL(season, db_dsn)
        assert etl.run() is True, etl.bulletproof_report.error
    finally:
        unpatch_etl_class(AliasingETL)
    records = _teams(season)
    wanted = {(t["league_id"], t["team_name"]): f"{t['series_name']} / {t['team_name'].split(' - ')[-1]}"
              for t in records if not t.get("team_alias")}
    with conn.cursor() as cur:
        cur.execute("SELECT l.league_id, t.team_name, t.team_alias FROM teams t JOIN leagues l ON l.id = t.league_id")
        written = {(code, name): alias for code, name, alias in cur.fetchall()}
    assert len(written) == etl.bulletproof_report.teams["created"] > 0
    assert {k: written[k] for k in wanted if k in written} == {k: wanted[k] for k in wanted if k in written}
    assert sum(1 for k in wanted if k in written) == len(written)  # every team was given its alias
