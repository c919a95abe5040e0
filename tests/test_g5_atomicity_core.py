"""G5 atomicity of the core stages, and the transaction contract of the context manager.

A failure injected right after each stage (snapshot, staging, re-keying, upsert, ledger)
leaves every table of the application schema exactly as it was (row checksums), while the
durable snapshot of the failed run stays in ``bulletproof`` with outcome ``failed``. On the
caller's connection the preservation never commits or closes; with its own connection it
commits once, at the end. A second import while one runs fails at once (G7)."""

from __future__ import annotations

import psycopg2
import pytest

import bulletproof_etl.identity.team_upsert as team_upsert
import bulletproof_etl.preservation as preservation
from bulletproof_etl import BulletproofTeamPreservation, ConcurrentRun
from core_support import legacy_run, loaded_etl, one_value, season
from rally_etl.activity import create_user_activity
from rally_etl.etl import TARGET_TABLES
from support import snapshot_size, table_checksums, user_row_counts


class Injected(RuntimeError):
    """The fault the tests inject."""


def _after(module, name, *, when=lambda *a, **k: True):
    """A replacement for ``module.name`` that runs the original, then raises."""
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        out = original(*args, **kwargs)
        if when(*args, **kwargs):
            raise Injected(f"injected after {name}")
        return out

    return wrapper


def _fault(monkeypatch, stage: str) -> None:
    if stage == "snapshot":
        monkeypatch.setattr(BulletproofTeamPreservation, "backup_user_data",
                            _after(BulletproofTeamPreservation, "backup_user_data"))
    elif stage == "staging":
        monkeypatch.setattr(team_upsert, "_stage", _after(team_upsert, "_stage"))
    elif stage == "rekey":  # leagues and clubs renumbered, series not yet
        monkeypatch.setattr(team_upsert, "rekey_entity",
                            _after(team_upsert, "rekey_entity", when=lambda c, cfg, entity, cur, **kw: entity == "clubs"))
    elif stage == "upsert":
        monkeypatch.setattr(team_upsert, "write_staged", _after(team_upsert, "write_staged"))
    elif stage == "ledger":
        monkeypatch.setattr(preservation, "ledger_add", _after(preservation, "ledger_add"))
    else:
        raise ValueError(stage)


def _clear_in_transaction(conn, etl) -> None:
    """The legacy clear and parent inserts, without the legacy commit (as the integration
    defers it), so the whole run is one transaction."""
    with conn.cursor() as cur:
        cur.execute("SET LOCAL session_replication_role = replica")
        for table in TARGET_TABLES:
            cur.execute(psycopg2.sql.SQL("DELETE FROM {}").format(psycopg2.sql.Identifier(table)))
        cur.execute("SET LOCAL session_replication_role = DEFAULT")
    etl.import_leagues(conn, etl.extract_leagues())
    etl.import_clubs(conn, etl.extract_clubs())
    etl.import_series(conn, etl.extract_series())
    etl.import_club_leagues(conn)
    etl.import_series_leagues(conn)


@pytest.fixture
def seasons(db_dsn, conn, tmp_path):
    """Season 1 loaded and protected once (the ledger knows every id), user activity, and
    the next season's ETL ready to import."""
    s1 = season(tmp_path / "s1", n_teams=100, seed=31)
    s2 = season(tmp_path / "s2", n_teams=100, seed=31, number=2, churn=0.15)
    legacy_run(db_dsn, s1)
    create_user_activity(conn, seed=4, per_team=0.5)
    with BulletproofTeamPreservation(conn) as p:
        p.preserve_teams_during_import(loaded_etl(s1).extract_teams())
    conn.commit()
    return loaded_etl(s2, db_dsn)


STAGES = ["snapshot", "staging", "rekey", "upsert", "ledger"]


@pytest.mark.parametrize("own", [False, True], ids=["caller-connection", "own-connection"])
@pytest.mark.parametrize("stage", STAGES)
def test_g5_failure_after_each_stage_leaves_every_table_as_it_was(db_dsn, conn, seasons, monkeypatch,
                                                                  stage, own):
    etl = seasons
    before = table_checksums(conn, ("public",))
    entity_rows = sum(one_value(conn, f"SELECT count(*) FROM {t}") for t in ("leagues", "clubs", "series", "teams"))
    conn.rollback()
    runs_before = one_value(conn, "SELECT count(*) FROM bulletproof.runs")
    conn.rollback()
    _fault(monkeypatch, stage)

    p = BulletproofTeamPreservation(None if own else conn, dsn=db_dsn if own else None)
    with pytest.raises(Injected), p:
        p.backup_user_data()
        _clear_in_transaction(p.conn, etl)
        p.preserve_teams_during_import(etl.extract_teams())
    if not own:
        assert not conn.closed
        conn.rollback()  # the caller ends its own transaction; nothing of the run is left in it

    assert table_checksums(conn, ("public",)) == before
    # the durable snapshot of the failed run survives, with its outcome and stage
    run_id = p.report.run_id
    assert one_value(conn, "SELECT count(*) FROM bulletproof.runs") == runs_before + 1
    assert one_value(conn, "SELECT outcome FROM bulletproof.runs WHERE run_id = %s", (run_id,)) == "failed"
    assert one_value(conn, "SELECT stage FROM bulletproof.runs WHERE run_id = %s", (run_id,)) == (
        "snapshot" if stage == "snapshot" else "upsert")
    assert one_value(conn, "SELECT count(*) FROM bulletproof.snap_entities WHERE run_id = %s",
                     (run_id,)) == entity_rows
    assert snapshot_size(conn, run_id) == sum(user_row_counts(conn).values())
    conn.rollback()


def test_g5_caller_connection_is_never_committed_nor_closed(conn, seasons):
    etl = seasons
    before = table_checksums(conn, ("public",))
    with BulletproofTeamPreservation(conn) as p:
        p.backup_user_data()
        _clear_in_transaction(conn, etl)
        result = p.preserve_teams_during_import(etl.extract_teams())
    assert result["created"] > 0
    assert not conn.closed
    assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
    conn.rollback()  # had the preservation committed, this would not undo the import
    after = table_checksums(conn, ("public",))
    # sequences are outside transactions: the caller's rollback cannot set them back
    assert {k: v for k, v in after.items() if not k.startswith("seq ")} == {
        k: v for k, v in before.items() if not k.startswith("seq ")}


def test_g5_caller_work_before_a_failed_run_stays_in_the_callers_transaction(conn, seasons, monkeypatch):
    etl = seasons
    with conn.cursor() as cur:
        cur.execute("INSERT INTO users (email) VALUES ('caller@example.org')")
    _fault(monkeypatch, "upsert")
    with pytest.raises(Injected), BulletproofTeamPreservation(conn) as p:
        p.backup_user_data()
        _clear_in_transaction(conn, etl)
        p.preserve_teams_during_import(etl.extract_teams())
    assert one_value(conn, "SELECT count(*) FROM users WHERE email = 'caller@example.org'") == 1
    conn.commit()
    assert one_value(conn, "SELECT count(*) FROM users WHERE email = 'caller@example.org'") == 1
    conn.rollback()


def test_g5_own_connection_commits_once_at_the_end(db_dsn, conn, seasons):
    etl = seasons
    teams_before = one_value(conn, "SELECT count(*) FROM teams")
    conn.rollback()
    with BulletproofTeamPreservation(dsn=db_dsn) as p:
        p.backup_user_data()
        _clear_in_transaction(p.conn, etl)
        result = p.preserve_teams_during_import(etl.extract_teams())
        # nothing is visible to anyone else before the end
        assert one_value(conn, "SELECT count(*) FROM teams") == teams_before
        conn.rollback()
    assert p.conn.closed
    assert p.report.outcome == "committed"
    # the clear removed every team; the import put back exactly the teams it names
    assert result["created"] > 0
    assert one_value(conn, "SELECT count(*) FROM teams") == result["read"] - len(result["duplicates"])
    conn.rollback()


@pytest.mark.parametrize("own", [False, True], ids=["caller-connection", "own-connection"])
def test_g7_a_second_import_while_one_runs_fails_at_once_with_concurrent_run(db_dsn, conn, seasons, own):
    etl = seasons
    other = psycopg2.connect(db_dsn)
    try:
        with other.cursor() as cur:
            cur.execute("INSERT INTO users (email) VALUES ('other@example.org')")
        with BulletproofTeamPreservation(conn) as first:
            first.backup_user_data()
            second = BulletproofTeamPreservation(None if own else other, dsn=db_dsn if own else None)
            with pytest.raises(ConcurrentRun) as err:
                with second:
                    raise AssertionError("the second import must not start")
            assert "another protected import is running" in str(err.value)
            if not own:  # the other caller's transaction is intact and usable
                assert one_value(other, "SELECT count(*) FROM users WHERE email = 'other@example.org'") == 1
            else:
                assert second.conn is None or second.conn.closed
            result = first.preserve_teams_during_import(etl.extract_teams())
        conn.commit()
        assert result["read"] > 0
        other.rollback()
        # once the first has finished, the next import runs
        with BulletproofTeamPreservation(other) as third:
            third.preserve_teams_during_import(etl.extract_teams())
        other.rollback()
    finally:
        other.close()
