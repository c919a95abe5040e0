"""G6 idempotence: the same import twice writes nothing the second time: zero rows inserted,
updated or deleted in teams, leagues, clubs, series and every dependent table.

Two independent measurements: ``pg_stat_xact_user_tables`` of the importing backend (a fresh
connection, counted inside the open transaction) and a fingerprint of every row's xmin and
ctid (any write makes a new row version), compared before and after."""

from __future__ import annotations

import psycopg2
import pytest

from bulletproof_etl import BulletproofTeamPreservation
from bulletproof_etl.catalog import current_keys
from bulletproof_etl.config import DEFAULT_CONFIG
from bulletproof_etl.identity.upsert import upsert_entities
from core_support import (
    legacy_clear_and_parents,
    legacy_season_with_users,
    write_fingerprint,
    xact_writes,
)
from support import count

N_TEAMS = 120


@pytest.fixture
def loaded(db_dsn, conn, tmp_path):
    """A season loaded by the legacy ETL, user activity, then one protected import after a
    legacy clear (the run that puts every id back)."""
    etl = legacy_season_with_users(db_dsn, conn, tmp_path, n_teams=N_TEAMS, seed=21, activity_seed=2, per_team=0.5)
    with BulletproofTeamPreservation(conn) as p:
        p.backup_user_data()
        legacy_clear_and_parents(etl, conn)
        p.preserve_teams_during_import(etl.extract_teams())
        p.restore_user_data()
    conn.commit()
    return etl


def _second_import(dsn, teams, *, full: bool):
    """The same import again on a fresh connection; returns (report, xact writes, fingerprints)."""
    fresh = psycopg2.connect(dsn)
    try:
        before = write_fingerprint(fresh)
        fresh.rollback()
        with BulletproofTeamPreservation(fresh) as p:
            if full:
                report = p.run(teams)
            else:
                p.backup_user_data()
                p.preserve_teams_during_import(teams)
                report = p.report
            writes = xact_writes(fresh)
            during = write_fingerprint(fresh)
        fresh.commit()
        after = write_fingerprint(fresh)
        fresh.rollback()
    finally:
        fresh.close()
    return report, writes, (before, during, after)


@pytest.mark.parametrize("full", [False, True], ids=["snapshot+upsert", "all-five-stages"])
def test_g6_second_identical_import_writes_zero_rows(db_dsn, loaded, full):
    teams = loaded.extract_teams()
    report, writes, (before, during, after) = _second_import(db_dsn, teams, full=full)

    assert writes == {}, f"rows written by a repeated import: {writes}"
    assert during == before
    assert after == before
    assert len(before) >= 20  # every table of the reference schema was looked at
    t = report.teams
    assert (t["created"], t["updated"], t["preserved_from_ledger"], t["retired"], t["rekeyed"]) == (0, 0, 0, 0, 0)
    assert t["unchanged"] == t["preserved"] == N_TEAMS
    for entity, parent in report.parents.items():
        assert (parent["created"], parent["updated"], parent["rekeyed"]) == (0, 0, 0), entity
        assert parent["unchanged"] == parent["preserved"] == parent["read"], entity


def test_g6_three_repeats_after_the_first_write_nothing(db_dsn, loaded):
    teams = loaded.extract_teams()
    for _ in range(3):
        _report, writes, (before, _during, after) = _second_import(db_dsn, teams, full=False)
        assert writes == {}
        assert after == before


def test_g6_repeated_parent_upsert_writes_nothing(db_dsn, conn, loaded):
    leagues = loaded.extract_leagues()
    clubs = loaded.extract_clubs()
    series = loaded.extract_series()
    fresh = psycopg2.connect(db_dsn)
    try:
        before = write_fingerprint(fresh)
        results = {}
        for entity, records in (("leagues", leagues), ("clubs", clubs), ("series", series)):
            current = current_keys(fresh, DEFAULT_CONFIG)[entity]
            results[entity] = upsert_entities(fresh, DEFAULT_CONFIG, entity, records, current)
        assert xact_writes(fresh) == {}
        assert write_fingerprint(fresh) == before
        fresh.rollback()
    finally:
        fresh.close()
    for entity, table in (("leagues", "leagues"), ("clubs", "clubs"), ("series", "series")):
        r = results[entity]
        assert r.unchanged == r.preserved == count(conn, table), entity
        assert (r.created, r.updated, r.preserved_from_ledger) == (0, 0, 0)


def test_g6_a_changed_import_writes_exactly_the_changed_rows(db_dsn, loaded):
    teams = loaded.extract_teams()
    changed = [dict(t) for t in teams]
    changed[0]["team_name"] = changed[0]["team_name"] + " (renamed)"
    changed[1]["display_name"] = "Shown Differently"
    fresh = psycopg2.connect(db_dsn)
    try:
        with BulletproofTeamPreservation(fresh) as p:
            p.backup_user_data()
            result = p.preserve_teams_during_import(changed)
            writes = xact_writes(fresh)
        fresh.rollback()
    finally:
        fresh.close()
    assert writes == {"teams": (0, 2, 0)}
    assert (result["updated"], result["unchanged"], result["created"]) == (2, N_TEAMS - 2, 0)
