"""G5 (atomicity) and G6 (idempotence) for the second reference ETL (tests/model_etl), protected
by configuration only (ProtectedModelETL)."""

from __future__ import annotations

import psycopg2
import pytest

from core_support import write_fingerprint
from model_etl import model_database, run_etl
from model_etl.protection import ProtectedModelETL
from model_etl.scenario import report_of, season1_with_user_data
from model_etl.userdata import PRACTICE
from support import table_checksums


@pytest.fixture
def model_db(server_dsn):
    """A fresh database with the modelled app's schema (tests/model_etl/schema.sql)."""
    yield from model_database(server_dsn)


ENTITY_TABLES = ("leagues", "clubs", "series", "teams")
#: user tables no statement of the ETL writes: a second identical import must not touch a row
UNTOUCHED_BY_ETL = ("user_player_associations", "poll_choices", "poll_responses", "player_availability")
#: user tables the ETL's own restore rewrites on every run (polls and captain messages ON CONFLICT
#: DO UPDATE and by name, users.league_context by league code, practice rows ON CONFLICT DO
#: UPDATE): a second identical import must leave their content as it was
REWRITTEN_BY_ETL = ("polls", "captain_messages", "users")


def _injected(etl, step: str, monkeypatch) -> None:
    """Make ``step`` of this instance fail; for players, after two of its own commits."""
    def boom(*args, **kwargs):
        raise RuntimeError(f"injected failure in {step}")

    if step != "import_players":
        monkeypatch.setattr(etl, step, boom)
        return
    calls = {"n": 0}
    original = etl._insert_players

    def insert_then_fail(cur, rows):
        calls["n"] += 1
        if calls["n"] == 3:
            boom()
        return original(cur, rows)

    monkeypatch.setattr(etl, "PLAYER_COMMIT_EVERY", 50)
    monkeypatch.setattr(etl, "_insert_players", insert_then_fail)


@pytest.mark.parametrize("step", ["import_players", "import_schedules", "create_missing_teams_from_schedule",
                                  "restore_user_data_with_team_mappings"])
def test_model_protected_failure_leaves_the_database_as_it_was(model_db, tmp_path, monkeypatch, step):
    """G5: an exception in a late step (for players: mid-step, after commits) -> run() is False
    and every table and sequence of the app is byte-identical to before the run."""
    season2, _ = season1_with_user_data(model_db, tmp_path)
    conn = psycopg2.connect(model_db)
    before = table_checksums(conn)
    etl = ProtectedModelETL(model_db)
    etl.data_dir = season2
    _injected(etl, step, monkeypatch)

    ok = etl.run()

    assert ok is False
    assert f"injected failure in {step}" in str(etl.last_error)
    report = etl.bulletproof_report
    assert report.outcome == "rolled_back", report_of(etl)
    after = table_checksums(conn)
    conn.close()
    changed = sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))
    assert not changed, f"G5: changed by a rolled-back run: {changed}"


def _practice_fingerprint(conn) -> tuple:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), md5(coalesce(string_agg(xmin::text || ctid::text, ',' ORDER BY id), '')), "
                    "md5(coalesce(string_agg(s::text, '|' ORDER BY id), '')) FROM schedule s WHERE " + PRACTICE)
        row = cur.fetchone()
    conn.rollback()
    return row


def test_model_protected_same_import_twice_writes_nothing_the_second_time(model_db, tmp_path):
    """G6: season 2 imported (protected) twice: the second run writes no row of leagues, clubs,
    series or teams, nor of the user tables the ETL itself never writes; the user rows the ETL's
    own restore rewrites come out exactly as they were."""
    season2, _ = season1_with_user_data(model_db, tmp_path)
    first = run_etl(ProtectedModelETL, model_db, season2)
    assert first.ok, report_of(first)
    conn = psycopg2.connect(model_db)
    writes_before, content_before = write_fingerprint(conn), table_checksums(conn)
    practice_before = _practice_fingerprint(conn)
    conn.rollback()

    second = run_etl(ProtectedModelETL, model_db, season2)

    assert second.ok, report_of(second)
    assert second.bulletproof_report.outcome == "committed", report_of(second)
    writes_after, content_after = write_fingerprint(conn), table_checksums(conn)
    practice_after = _practice_fingerprint(conn)
    conn.close()
    written = [t for t in ENTITY_TABLES + UNTOUCHED_BY_ETL if writes_before[t] != writes_after[t]]
    assert not written, f"G6: rows written by the second identical import in {written}"
    changed = [t for t in REWRITTEN_BY_ETL if content_before[f"public.{t}"] != content_after[f"public.{t}"]]
    assert not changed, f"G6: user rows changed by the second identical import in {changed}"
    assert practice_before[2] == practice_after[2], "G6: practice rows changed by the second identical import"
    teams = second.bulletproof_report.teams
    assert (teams["created"], teams["updated"], teams["retired"]) == (0, 0, 0), teams
