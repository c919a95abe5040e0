"""Indexes on referencing columns (issue 14): removing the rows an import no longer names makes
PostgreSQL check every foreign key to each deleted row; a referencing column without an index is
scanned once per deleted row. A run builds a temporary index where that is worth it and drops it;
``bulletproof-etl enable --create-indexes`` builds them for good, concurrently, once."""

from __future__ import annotations

import psycopg2

from bulletproof_etl.catalog import read_catalog
from bulletproof_etl.config import DEFAULT_CONFIG
from bulletproof_etl.identity import ledger_ids
from bulletproof_etl.identity.reference_indexes import create_indexes, missing_indexes
from bulletproof_etl.identity.retirement import remove_unreferenced
from bulletproof_etl.identity.team_upsert import upsert_teams
from bulletproof_etl.identity.validate import validate_teams
from bulletproof_etl.state import ensure_state_schema
from core_support import one_value
from test_upsert_locks import SEASON, _ids

#: the reference schema's foreign keys to leagues, clubs, series and teams that lead no index
UNINDEXED = {
    "public.club_leagues(league_id)", "public.lineup_escrow(initiator_team_id)",
    "public.lineup_escrow(recipient_team_id)", "public.match_scores(away_team_id)",
    "public.match_scores(home_team_id)", "public.match_scores(league_id)", "public.players(club_id)",
    "public.players(league_id)", "public.players(series_id)", "public.practice_times(league_id)",
    "public.schedule(league_id)", "public.series_leagues(league_id)", "public.series_stats(league_id)",
    "public.series_stats(series_id)", "public.series_stats(team_id)", "public.teams(series_id)",
}
TEMPORARY = "SELECT count(*) FROM pg_class WHERE relkind = 'i' AND starts_with(relname, '_bp_fk_')"


def test_enable_create_indexes_builds_each_missing_index_once(db_dsn, conn):
    assert {m.label for m in missing_indexes(conn, DEFAULT_CONFIG)} == UNINDEXED
    conn.rollback()
    auto = psycopg2.connect(db_dsn)
    auto.autocommit = True
    try:
        made = create_indexes(auto, DEFAULT_CONFIG)
        assert {m.label for m in made} == UNINDEXED
        assert create_indexes(auto, DEFAULT_CONFIG) == []  # a second time: nothing left to build
    finally:
        auto.close()
    assert missing_indexes(conn, DEFAULT_CONFIG) == []
    assert one_value(conn, "SELECT count(*) FROM pg_indexes WHERE starts_with(indexname, 'bp_fk_')") == len(UNINDEXED)


def test_removal_builds_temporary_indexes_where_worth_it_and_drops_them(db_dsn, conn, monkeypatch):
    ensure_state_schema(conn, DEFAULT_CONFIG)
    upsert_teams(conn, DEFAULT_CONFIG, validate_teams(SEASON), force=True)
    conn.commit()
    ids = _ids(conn)
    built = []
    monkeypatch.setattr(ledger_ids, "INDEX_WORTH", 0)  # every unindexed referencing table is worth one here
    real_create = ledger_ids.create_fk_indexes

    def create(cur, config, entity, rows):
        made = real_create(cur, config, entity, rows)
        built.extend((entity, label) for _s, _n, label in made)
        return made

    monkeypatch.setattr("bulletproof_etl.identity.retirement.create_fk_indexes", create)
    # the import drops Maple, Birch and Cedar (3 teams: fewer are never worth an index)
    result, parents = upsert_teams(conn, DEFAULT_CONFIG, validate_teams(SEASON[:2]), force=True)
    named = {e: set(r.ids.values()) for e, r in parents.items()}
    removed = remove_unreferenced(conn, DEFAULT_CONFIG, read_catalog(conn, DEFAULT_CONFIG), None, named)
    assert sorted(removed["teams"]["removed"]) == sorted(ids[n][0] for n in ("Maple - 21", "Birch - 21", "Cedar S2B"))
    assert len(removed["clubs"]["removed"]) == 3  # Maple, Birch and Cedar
    # temporary indexes for the teams' unindexed referencing columns (teams.series_id is not one of
    # them: the parent tables are never indexed inside a run) and for the clubs' (players.club_id)
    assert sorted(built) == [
        ("clubs", "public.players(club_id)"),
        ("teams", "public.lineup_escrow(initiator_team_id)"), ("teams", "public.lineup_escrow(recipient_team_id)"),
        ("teams", "public.match_scores(away_team_id)"), ("teams", "public.match_scores(home_team_id)"),
        ("teams", "public.series_stats(team_id)"),
    ]
    assert one_value(conn, TEMPORARY) == 0  # dropped again, in the run's transaction
    conn.commit()
    assert one_value(conn, "SELECT count(*) FROM teams") == 2
    assert one_value(conn, TEMPORARY) == 0
