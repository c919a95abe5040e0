"""The durable snapshot, the identity ledger, the run log and retention (state schema
``bulletproof``), checked against counts and keys the tests compute themselves."""

from __future__ import annotations

import json

import pytest
from psycopg2 import sql

import bulletproof_etl.identity.team_upsert as team_upsert
from bulletproof_etl import BulletproofTeamPreservation
from bulletproof_etl.config import DEFAULT_CONFIG
from bulletproof_etl.identity.ledger import PRESENT
from bulletproof_etl.state import ensure_state_schema
from core_support import legacy_season_with_users, one_value
from support import entity_keys, snapshot_rows, user_ref_keys, user_row_counts

ENTITIES = ("leagues", "clubs", "series", "teams")


@pytest.fixture
def loaded(db_dsn, conn, tmp_path):
    return legacy_season_with_users(db_dsn, conn, tmp_path, n_teams=90, seed=41, activity_seed=5, per_team=0.5)


def _run(conn, teams, **kw):
    with BulletproofTeamPreservation(conn, **kw) as p:
        p.backup_user_data()
        p.preserve_teams_during_import(teams)
    conn.commit()
    return p.report


def _snap_keys(conn, run_id) -> dict:
    with conn.cursor() as cur:
        cur.execute("SELECT entity, id, key FROM bulletproof.snap_entities WHERE run_id = %s", (run_id,))
        rows = cur.fetchall()
    conn.rollback()
    out: dict = {e: {} for e in ENTITIES}
    for entity, id_, key in rows:
        out[entity][id_] = tuple(key)
    return out


def test_g5_snapshot_holds_every_entity_row_with_its_natural_key(conn, loaded):
    expected = entity_keys(conn)
    report = _run(conn, loaded.extract_teams())
    snap = _snap_keys(conn, report.run_id)
    for entity in ENTITIES:
        assert snap[entity] == expected[entity], entity
    assert report.backup["entities"] == {e: len(expected[e]) for e in ENTITIES}
    assert report.durable_snapshot is True


def test_g2_snapshot_holds_every_user_row_with_the_key_of_what_it_references(conn, loaded):
    counts = user_row_counts(conn)
    refs = user_ref_keys(conn)
    report = _run(conn, loaded.extract_teams())
    snapped, snap_refs = snapshot_rows(conn, report.run_id)
    expected = {("schedule" if t == "schedule(practice)" else t): n for t, n in counts.items()}
    assert snapped == expected
    # every reference of every snapshotted row carries the key the tests compute for it
    checked = 0
    for ref, key in snap_refs.items():
        if ref in refs:
            assert key == refs[ref], ref
            checked += 1
    assert checked == len(refs)


def _ledger(conn) -> dict:
    with conn.cursor() as cur:
        cur.execute("SELECT entity, id, key, first_run, last_run, xmin::text FROM bulletproof.ledger")
        out = {(e, i): (tuple(k), f, lr, x) for e, i, k, f, lr, x in cur.fetchall()}
    conn.rollback()
    return out


def test_ledger_records_first_and_last_run_of_every_id(conn, loaded):
    """``last_run`` is PRESENT while the id is there, else the last run that saw it; an
    unchanged id's ledger row is never written again."""
    teams = loaded.extract_teams()
    first = _run(conn, teams).run_id
    gone = one_value(conn, "SELECT max(id) FROM teams")
    with conn.cursor() as cur:  # one team vanishes after the first run
        cur.execute("SET session_replication_role = replica")
        cur.execute("DELETE FROM teams WHERE id = %s", (gone,))
        cur.execute("SET session_replication_role = DEFAULT")
    conn.commit()
    keys = entity_keys(conn)
    _run(conn, teams, force=True)
    after_second = _ledger(conn)
    # the second run's snapshot did not find it: the last run that saw it is the first
    assert after_second[("teams", gone)][1:3] == (first, first)
    # and the second run brought it back under its old id (the ledger knew it)
    _run(conn, teams, force=True)
    ledger = _ledger(conn)
    assert ledger[("teams", gone)][1:3] == (first, PRESENT)
    for entity in ENTITIES:
        for id_, key in keys[entity].items():
            assert ledger[(entity, id_)][:3] == (key, first, PRESENT), (entity, id_)
    assert len(ledger) == sum(len(keys[e]) for e in ENTITIES) + 1
    # the third run wrote the row of the id seen again, and no other
    rewritten = {k for k, v in ledger.items() if v[3] != after_second[k][3]}
    assert rewritten == {("teams", gone)}


def test_runs_table_records_every_run_with_outcome_and_counts(conn, loaded, monkeypatch):
    teams = loaded.extract_teams()
    ok = _run(conn, teams)

    def broken(*args, **kwargs):
        raise RuntimeError("injected")

    monkeypatch.setattr(team_upsert, "write_staged", broken)
    with pytest.raises(RuntimeError):
        _run(conn, teams)
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute("SELECT run_id, outcome, stage, started_at IS NOT NULL, finished_at >= started_at, counts "
                    "FROM bulletproof.runs ORDER BY run_id")
        runs = cur.fetchall()
    conn.rollback()
    assert [(r[1], r[3], r[4]) for r in runs] == [("committed", True, True), ("failed", True, True)]
    assert runs[0][0] == ok.run_id and runs[1][2] == "upsert"
    counts = runs[0][5]
    assert counts["entities"]["teams"] == 90
    assert counts["rows"]["polls"] == one_value(conn, "SELECT count(*) FROM polls")
    conn.rollback()


def test_retention_keeps_the_newest_runs_and_every_failed_one(conn, loaded, monkeypatch):
    config = DEFAULT_CONFIG.replace(keep_runs=2)
    teams = loaded.extract_teams()
    _run(conn, teams, config=config)
    _run(conn, teams, config=config)
    with monkeypatch.context() as m:
        m.setattr(team_upsert, "write_staged", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("x")))
        with pytest.raises(RuntimeError):
            _run(conn, teams, config=config)
        conn.rollback()
    _run(conn, teams, config=config)
    _run(conn, teams, config=config)
    with conn.cursor() as cur:
        cur.execute("SELECT run_id, outcome FROM bulletproof.runs ORDER BY run_id")
        outcomes = cur.fetchall()
        cur.execute("SELECT DISTINCT run_id FROM bulletproof.snap_entities ORDER BY 1")
        kept_entities = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT DISTINCT run_id FROM bulletproof.snap_rows ORDER BY 1")
        kept_rows = [r[0] for r in cur.fetchall()]
    conn.rollback()
    ids = [r[0] for r in outcomes]
    # at the start of run 5, the committed runs were 1, 2 and 4: the newest two stay (plus run 5)
    assert [o for _, o in outcomes] == ["committed+expired", "committed", "failed", "committed", "committed"]
    assert kept_entities == kept_rows == ids[1:]


def test_state_schema_is_closed_to_public_and_brought_up_to_date(conn):
    ensure_state_schema(conn, DEFAULT_CONFIG)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_namespace n, aclexplode(n.nspacl) a "
                    "WHERE n.nspname = 'bulletproof' AND a.grantee = 0")
        assert cur.fetchone()[0] == 0
        cur.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, "
                    "aclexplode(c.relacl) a WHERE n.nspname = 'bulletproof' AND a.grantee = 0")
        assert cur.fetchone()[0] == 0
        # an older state schema without the newer columns is upgraded in place
        cur.execute("ALTER TABLE bulletproof.snap_rows DROP COLUMN refs")
        cur.execute("ALTER TABLE bulletproof.runs DROP COLUMN counts")
        cur.execute("DROP TABLE bulletproof.snap_keys")
        cur.execute("DROP TABLE bulletproof.review_actions, bulletproof.alert_deliveries, "
                    "bulletproof.captured")  # newer still
        ensure_state_schema(conn, DEFAULT_CONFIG)
        cur.execute(sql.SQL("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'bulletproof' "
                            "AND (table_name, column_name) IN (('snap_rows', 'refs'), ('runs', 'counts'), "
                            "('snap_keys', 'ids'))"))
        assert cur.fetchone()[0] == 3
    conn.rollback()


def test_snapshot_report_is_json_serialisable(conn, loaded):
    report = _run(conn, loaded.extract_teams())
    assert json.loads(json.dumps(report.backup))["entities"]["teams"] == 90
