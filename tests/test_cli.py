"""The ``bulletproof-etl`` command and the specification's scripts, in-process on a real server.

Exit codes: 0 PERFECT, 1 WARNING, 2 CRITICAL or failed. What the commands change is checked
with table checksums (tests/support), what they report against recounts.
"""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from bulletproof_etl import PreservationConfig
from bulletproof_etl.cli import main
from bulletproof_etl.cli.render import Progress
from bulletproof_etl.integration import EtlHooks
from conftest import create_database, drop_database
from rally_etl import ComprehensiveETL
from rally_etl.activity import create_user_activity
from rally_etl.generate import generate_season_with_summary, write_season
from support import USER_TABLES, count, table_checksums, team_keys, user_ref_keys, user_row_counts

N_TEAMS = 90
SEED = 47
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
STATE = ("public", "bulletproof")


@pytest.fixture(scope="module")
def seasons(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_seasons")
    first, _ = generate_season_with_summary(N_TEAMS, SEED)
    second, summary = generate_season_with_summary(N_TEAMS, SEED, season=2, churn=0.1)
    return write_season(first, root / "s1"), write_season(second, root / "s2"), summary


def _loaded(db_dsn, conn, seasons):
    assert ComprehensiveETL(seasons[0], db_dsn).run()
    create_user_activity(conn, seed=9)
    conn.commit()


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class NightlyImport:
    """A user's own ETL for ``--etl``: other method names, declared in ``bulletproof_hooks``."""

    bulletproof_hooks = EtlHooks(run="go", get_connection="connect_db", clear="truncate_all",
                                 import_leagues="upsert_leagues", import_clubs=None, import_series=None,
                                 import_teams="upsert_teams")

    def __init__(self, data_dir, dsn, league=None) -> None:
        self.dsn = dsn
        self.league = league
        self.legacy = ComprehensiveETL(data_dir, dsn, league=league)

    def connect_db(self):
        return psycopg2.connect(self.dsn)

    def truncate_all(self, conn) -> int:
        return self.legacy.clear_target_tables(conn)

    def upsert_leagues(self, conn, rows) -> int:
        return self.legacy.import_leagues(conn, rows)

    def upsert_teams(self, conn, rows) -> int:
        return self.legacy.import_teams(conn, rows)

    def go(self) -> bool:
        conn = self.connect_db()
        legacy = self.legacy
        try:
            legacy.load_json_files()
            self.truncate_all(conn)
            self.upsert_leagues(conn, legacy.extract_leagues())
            legacy.import_clubs(conn, legacy.extract_clubs())
            legacy.import_series(conn, legacy.extract_series())
            conn.commit()
            self.upsert_teams(conn, legacy.extract_teams())
            conn.commit()
            legacy.import_players(conn)
            legacy.import_schedules(conn)
            conn.commit()
            return True
        finally:
            conn.close()


#: The reference tables in a schema of another name, the state beside them: for --config.
LEAGUE_APP = PreservationConfig(schema="league app", state_schema="league app state")


class ExplodingETL(ComprehensiveETL):
    def import_match_scores(self, conn):
        raise RuntimeError("match scores exploded")


# -- run ------------------------------------------------------------------------------------------
def test_run_on_an_empty_database_installs_the_schema_and_loads_the_bundled_sample(capsys):
    from rally_etl.sample import SAMPLE_TEAMS

    dsn = create_database(template="template0")
    try:
        assert main(["run", "--dsn", dsn]) == 0
        out, err = capsys.readouterr()
        assert "installed the reference schema" in err
        assert "committed" in out and "health: PERFECT" in out
        conn = psycopg2.connect(dsn)
        try:
            assert count(conn, "teams") == SAMPLE_TEAMS
        finally:
            conn.close()
    finally:
        drop_database(dsn)


def test_g5_dry_run_changes_nothing_yet_reports_what_it_would_do(db_dsn, conn, seasons, capsys):
    _loaded(db_dsn, conn, seasons)
    summary = seasons[2]
    before = table_checksums(conn, STATE)
    code = main(["run", "--dry-run", "--json", "-q", "--dsn", db_dsn, "--data-dir", str(seasons[1])])
    report = json.loads(capsys.readouterr().out)
    assert table_checksums(conn, STATE) == before  # tables and sequences, public and bulletproof
    assert code in (0, 1) and report["dry_run"] is True and report["outcome"] == "dry_run"
    # what it would do, against the generator's own count of the churn
    renamed_survivors = summary.teams_key_changed - summary.teams_messy["case"]
    assert report["teams"]["created"] == summary.teams_added + renamed_survivors
    # the teams it would no longer name: retired where something references them, else removed
    assert report["teams"]["retired"] + report["teams"]["removed"] == summary.teams_removed + renamed_survivors
    assert report["teams"]["retired"] == report["teams"]["kept_for_references"]
    assert report["teams"]["preserved"] == summary.teams_kept + summary.teams_messy["case"]


def test_run_league_nstf_leaves_the_other_leagues_untouched(db_dsn, conn, seasons, capsys):
    _loaded(db_dsn, conn, seasons)
    tables = ("teams", "players", "series_stats", "match_scores", "schedule", "club_leagues", "series_leagues")

    def others():
        out = {}
        with conn.cursor() as cur:
            for table in tables:
                cur.execute(sql.SQL("SELECT md5(string_agg(t::text || t.xmin::text, '|' ORDER BY t.id)), count(*) "
                                    "FROM {} t WHERE league_id IS DISTINCT FROM "
                                    "(SELECT id FROM leagues WHERE league_id = 'NSTF')").format(sql.Identifier(table)))
                out[table] = cur.fetchone()
        conn.rollback()
        return out

    before = others()
    refs = user_ref_keys(conn)
    assert main(["run", "--league", "NSTF", "-q", "--dsn", db_dsn, "--data-dir", str(seasons[1])]) in (0, 1)
    assert "committed" in capsys.readouterr().out
    assert others() == before
    after = user_ref_keys(conn)
    assert {r: v for r, v in after.items() if not (isinstance(v, tuple) and v[0] == "NSTF")} == \
        {r: v for r, v in refs.items() if not (isinstance(v, tuple) and v[0] == "NSTF")}
    nstf_now = {k for i, k in team_keys(conn).items() if k[0] == "NSTF"}
    etl = ComprehensiveETL(seasons[1], db_dsn, league="NSTF")
    etl.load_json_files()
    assert {(t["league_id"], " ".join(t["club_name"].split()).casefold()) for t in etl.extract_teams()} <= \
        {(k[0], k[1]) for k in nstf_now}


def test_run_protects_a_user_etl_named_with_etl(db_dsn, conn, seasons, capsys):
    _loaded(db_dsn, conn, seasons)
    before = team_keys(conn)
    rows = user_row_counts(conn)
    code = main(["run", "-q", "--etl", "test_cli:NightlyImport", "--dsn", db_dsn, "--data-dir", str(seasons[1])])
    assert code in (0, 1), capsys.readouterr()
    after = team_keys(conn)
    # every id kept, with its key, except the teams the season no longer names that nothing
    # references: the run removed them, as the legacy ETL does (issue 17)
    removed = before.keys() - after.keys()
    assert not {before[i] for i in removed} & set(after.values())
    assert {i: after.get(i) for i in before if i not in removed} == {i: k for i, k in before.items() if i not in removed}
    assert [r for r, v in user_ref_keys(conn).items() if v == "ORPHAN"] == []
    assert user_row_counts(conn) == rows


def test_g5_run_failure_exits_2_says_why_and_changes_nothing(db_dsn, conn, seasons, capsys):
    _loaded(db_dsn, conn, seasons)
    before = table_checksums(conn)
    assert main(["run", "-q", "--etl", "test_cli:ExplodingETL", "--dsn", db_dsn, "--data-dir", str(seasons[1])]) == 2
    out = capsys.readouterr().out
    assert "FAILED: everything was rolled back" in out and "match scores exploded" in out
    assert table_checksums(conn) == before


def test_progress_is_one_plain_line_per_stage_in_a_log_and_silent_with_q(db_dsn, conn, seasons, capsys):
    _loaded(db_dsn, conn, seasons)
    assert main(["run", "--dry-run", "--dsn", db_dsn, "--data-dir", str(seasons[1])]) in (0, 1)
    err = capsys.readouterr().err
    stages = [line.split("]", 1)[1].split()[0] for line in err.splitlines() if line.startswith("[")]
    assert stages[:4] == ["connect", "constraints", "snapshot", "load_json_files"]  # snapshot before any ETL lock
    assert {"clear", "leagues", "clubs", "series", "teams", "import_players", "restore", "health"} <= set(stages)
    assert stages[-1] == "rollback"
    assert "\r" not in err
    assert main(["run", "--dry-run", "-q", "--dsn", db_dsn, "--data-dir", str(seasons[1])]) in (0, 1)
    assert capsys.readouterr().err == ""


def test_progress_draws_a_bar_on_a_terminal():
    from bulletproof_etl.integration import StageEvent

    stream = io.StringIO()
    progress = Progress(stream, total=4, tty=True)
    progress(StageEvent("teams", "start"))
    progress(StageEvent("teams", "done", 300, "preserved 300", 0.5))
    progress.close()
    text = stream.getvalue()
    assert "\r[" in text and "teams" in text and "300" in text and "1/4" in text


# -- health, diagnose, repair ------------------------------------------------------------------
def test_health_exit_codes_follow_the_status_and_json_parses(db_dsn, conn, seasons, capsys):
    assert main(["run", "-q", "--dsn", db_dsn, "--data-dir", str(seasons[0])]) == 0
    capsys.readouterr()
    assert main(["health", "--dsn", db_dsn, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "PERFECT"
    with conn.cursor() as cur:  # a missing unique constraint the upsert relies on: WARNING
        cur.execute("ALTER TABLE teams DROP CONSTRAINT unique_team_club_series_league")
    conn.commit()
    assert main(["health", "--dsn", db_dsn, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["status"] == "WARNING"
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE teams ADD CONSTRAINT unique_team_club_series_league "
                    "UNIQUE (club_id, series_id, league_id)")
    conn.commit()
    create_user_activity(conn, seed=2)
    conn.commit()
    assert ComprehensiveETL(seasons[1], db_dsn).run()  # unprotected: user references orphaned
    orphans = sum(1 for v in user_ref_keys(conn).values() if v == "ORPHAN")
    assert main(["health", "--dsn", db_dsn, "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "CRITICAL" and report["user_orphans"] == orphans > 0
    assert main(["health", "--dsn", db_dsn, "--prometheus"]) == 2
    assert "bulletproof_health_status 2" in capsys.readouterr().out.splitlines()
    assert main(["health", "--dsn", db_dsn]) == 2
    assert capsys.readouterr().out.startswith("health: CRITICAL")


def test_diagnose_counts_orphans_per_column_with_at_most_five_examples(db_dsn, conn, seasons, capsys):
    assert main(["run", "-q", "--dsn", db_dsn, "--data-dir", str(seasons[0])]) == 0
    create_user_activity(conn, seed=2)
    conn.commit()
    assert ComprehensiveETL(seasons[1], db_dsn).run()
    refs = user_ref_keys(conn)
    capsys.readouterr()
    assert main(["diagnose", "--json", "--dsn", db_dsn]) == 2
    report = json.loads(capsys.readouterr().out)
    per_column = {c["column"]: c for c in report["columns"]}
    polls = sum(1 for (t, _pk, col), v in refs.items() if (t, col) == ("polls", "team_id") and v == "ORPHAN")
    assert per_column["polls.team_id"]["orphans"] == polls > 5
    assert len(per_column["polls.team_id"]["examples"]) == 5
    assert all(e["ledger_key"] for e in per_column["polls.team_id"]["examples"])  # the ledger knows them
    assert main(["diagnose", "--dsn", db_dsn]) == 2
    out = capsys.readouterr().out
    assert "polls.team_id: " in out and "what the ledger knows" in out


def test_repair_dry_run_changes_nothing_and_repair_fixes_without_deleting(db_dsn, conn, seasons, capsys):
    assert main(["run", "-q", "--dsn", db_dsn, "--data-dir", str(seasons[0])]) == 0
    create_user_activity(conn, seed=2)
    conn.commit()
    assert ComprehensiveETL(seasons[1], db_dsn).run()
    rows = user_row_counts(conn)
    before = table_checksums(conn, STATE)
    assert main(["repair", "--dry-run", "--dsn", db_dsn]) in (0, 1)
    assert "DRY RUN" in capsys.readouterr().out
    assert table_checksums(conn, STATE) == before
    assert main(["repair", "--from-snapshot", "latest", "--dry-run", "--dsn", db_dsn]) in (0, 1)
    out = capsys.readouterr().out
    assert "DRY RUN (rolled back): brought back run 1" in out and "re-inserted" in out
    assert table_checksums(conn, STATE) == before
    assert main(["repair", "--dsn", db_dsn]) in (0, 1)
    assert "repair committed" in capsys.readouterr().out
    assert [r for r, v in user_ref_keys(conn).items() if v == "ORPHAN"] == []
    assert user_row_counts(conn) == rows


def test_repair_from_a_snapshot_that_does_not_exist_is_one_line_and_exit_2(db_dsn, capsys):
    assert main(["repair", "--from-snapshot", "7", "--dsn", db_dsn]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("bulletproof-etl repair: error:") and "Traceback" not in err


def test_a_library_error_is_one_line_and_exit_2(capsys):
    assert main(["health", "--dsn", "postgresql://postgres@127.0.0.1:1/nowhere"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "cannot connect" in err


# -- test, enable and the scripts ---------------------------------------------------------------
def test_g5_test_only_and_the_self_test_change_nothing(db_dsn, conn, seasons, capsys):
    _loaded(db_dsn, conn, seasons)
    before = table_checksums(conn, STATE)
    enable = _script("enable_bulletproof_etl")
    assert enable.main(["--test-only", "--dsn", db_dsn, "--data-dir", str(seasons[0])]) in (0, 1)
    out = capsys.readouterr().out
    assert "self-test: nothing changed" in out and "the protected pipeline passed" in out
    assert table_checksums(conn, STATE) == before
    assert main(["test", "--json", "-q", "--dsn", db_dsn, "--data-dir", str(seasons[1])]) in (0, 1)
    result = json.loads(capsys.readouterr().out)
    assert result["changed"] == [] and result["pipeline_ok"] is True
    assert result["tables_compared"] == len(before)
    assert table_checksums(conn, STATE) == before


def test_enable_reports_protection_active_and_runs_the_self_test(db_dsn, conn, seasons, capsys):
    _loaded(db_dsn, conn, seasons)
    before = table_checksums(conn, STATE)
    enable = _script("enable_bulletproof_etl")
    assert enable.main(["--dsn", db_dsn, "--data-dir", str(seasons[0]), "-q"]) in (0, 1)
    out = capsys.readouterr().out
    assert "ComprehensiveETL: protection active" in out
    assert "unpatch restores the original methods: yes" in out
    assert "bulletproof protection is ready" in out
    # the migration: the state schema and the capture triggers, with the record that they start now
    tables = 4 + len(set(USER_TABLES) | {"schedule"})  # entities, and every table holding user rows
    assert f"capture triggers: {4 * 4 + 3 * (tables - 4)} installed on " in out
    after = table_checksums(conn, STATE)
    assert {k: v for k, v in after.items() if "bulletproof." not in k} == before
    with conn.cursor() as cur:
        cur.execute("SELECT table_name, op, run_id, seen_by FROM bulletproof.captured")
        assert cur.fetchall() == [("", "ENABLE", None, None)]
        cur.execute("SELECT count(DISTINCT tgrelid), count(*) FROM pg_trigger WHERE tgname LIKE 'bulletproof_capture_%%' "
                    "AND tgenabled = 'A'")
        assert cur.fetchone() == (tables, 4 * 4 + 3 * (tables - 4))
    conn.rollback()
    assert sorted(k for k, v in after.items() if k.startswith("bulletproof.") and v[0]) == ["bulletproof.captured"]
    assert main(["disable", "--dsn", db_dsn]) == 0
    assert capsys.readouterr().out.startswith(f"capture triggers: {4 * 4 + 3 * (tables - 4)} removed")
    assert not hasattr(ComprehensiveETL, "__bulletproof_patch__")


def test_scripts_pass_their_flags_to_the_cli(db_dsn, conn, seasons, capsys):
    run = _script("run_bulletproof_etl")
    assert run.main(["--dsn", db_dsn, "--data-dir", str(seasons[0]), "-q"]) == 0
    assert "committed" in capsys.readouterr().out
    create_user_activity(conn, seed=4)
    conn.commit()
    before = table_checksums(conn, STATE)
    assert run.main(["--dry-run", "--league", "CNSWPL", "--dsn", db_dsn, "--data-dir", str(seasons[1]), "-q"]) in (0, 1)
    assert "DRY RUN" in capsys.readouterr().out
    assert table_checksums(conn, STATE) == before
    enable = _script("enable_bulletproof_etl")
    assert enable.main(["--health-check", "--dsn", db_dsn]) == 0
    assert capsys.readouterr().out.startswith("health: PERFECT")
    assert ComprehensiveETL(seasons[1], db_dsn).run()  # the damage
    assert _script("diagnose_team_id_orphans").main(["--dsn", db_dsn]) == 2
    capsys.readouterr()
    assert enable.main(["--emergency", "--dsn", db_dsn]) in (0, 1)
    assert "constraints:" in capsys.readouterr().out
    assert _script("fix_team_id_orphans").main(["--dsn", db_dsn]) in (0, 1)
    capsys.readouterr()
    assert [r for r, v in user_ref_keys(conn).items() if v == "ORPHAN"] == []


def test_config_points_every_command_at_another_schema(db_dsn, seasons, capsys):
    import rally_etl

    app_dsn = psycopg2.extensions.make_dsn(db_dsn, options=r'-csearch_path="league\ app"')
    conn = psycopg2.connect(app_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute('CREATE SCHEMA "league app"')
            cur.execute(rally_etl.schema_sql())
        conn.commit()
        cfg = ["--config", "test_cli:LEAGUE_APP", "--dsn", app_dsn]
        assert main(["run", "-q", "--data-dir", str(seasons[0])] + cfg) == 0
        create_user_activity(conn, seed=3)
        conn.commit()
        assert main(["run", "-q", "--data-dir", str(seasons[1])] + cfg) in (0, 1)
        capsys.readouterr()
        with conn.cursor() as cur:
            cur.execute('SELECT count(*) FROM "league app".teams WHERE is_active')
            assert cur.fetchone()[0] == seasons[2].teams_after
            cur.execute("SELECT count(*) FROM public.teams")
            assert cur.fetchone()[0] == 0  # the reference schema's own tables stay empty
            cur.execute('SELECT count(*) FROM "league app state".runs WHERE outcome = %s', ("committed",))
            assert cur.fetchone()[0] == 2
        conn.rollback()
        assert [r for r, v in user_ref_keys(conn).items() if v == "ORPHAN"] == []
        assert main(["health", "--json"] + cfg) in (0, 1)
        report = json.loads(capsys.readouterr().out)
        assert report["user_orphans"] == 0 and len(report["orphans"]) > 20
        assert main(["diagnose", "--json"] + cfg) == 0
        assert json.loads(capsys.readouterr().out)["state_schema"] is True
    finally:
        conn.close()


def test_config_must_name_a_preservation_config(db_dsn, capsys):
    assert main(["health", "--config", "test_cli:ExplodingETL", "--dsn", db_dsn]) == 2
    assert "not a PreservationConfig" in capsys.readouterr().err
