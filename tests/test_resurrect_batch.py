"""G2, G3, G4 when many dropped teams come back: the set-based revive decides as the row-by-row one.

A season with 10% churn imported after the legacy clear drops teams that users' rows still
point at; ``resurrect`` brings them back with their ids (inactive), their parents by key,
placeholders where nothing is known. Here the same import runs on two clones of one
database: once as it is (one insert per table), once with the batch forced onto the
row-by-row path (what a batch that fails falls back to). Every table must come out the same,
row for row (timestamps aside), sequences included, and the set-based run must send a number
of statements that does not follow the number of teams it brings back.
"""

from __future__ import annotations

import logging

import psycopg2
import pytest
from psycopg2 import sql

import bulletproof_etl.restore.revive as revive
import conftest
from bulletproof_etl import BulletproofTeamPreservation
from bulletproof_etl.catalog import current_keys
from bulletproof_etl.config import DEFAULT_CONFIG as CONFIG
from core_support import legacy_clear_and_parents, legacy_run, loaded_etl, season
from rally_etl.activity import create_user_activity
from reliability_support import clone
from test_statement_count import TRACER, CountingConnection, counting_connections

N_TEAMS = 400
SEED = 5

_CHECKSUMS = """
SELECT table_name FROM information_schema.tables
WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1
"""


def _contents(conn) -> dict:
    """``{table: (rows, md5)}`` of every public table without its timestamps, and the sequences."""
    out = {}
    with conn.cursor() as cur:
        cur.execute(_CHECKSUMS)
        for (table,) in cur.fetchall():
            cur.execute(sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(j::text, '|' ORDER BY j::text), '')) FROM "
                "(SELECT to_jsonb(t) - ARRAY['created_at', 'updated_at', 'last_updated'] AS j FROM {} t) x"
            ).format(sql.Identifier("public", table)))
            out[table] = tuple(cur.fetchone())
        cur.execute("SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public'")
        out.update({f"seq {s}": v for s, v in cur.fetchall()})
    conn.rollback()
    return out


@pytest.fixture(scope="module")
def churned(tmp_path_factory):
    """A database after season 1 with users' rows, and season 2 (10% churn) to import."""
    path = tmp_path_factory.mktemp("revive")
    dsn = conftest.create_database()
    s1 = loaded_etl(season(path / "s1", n_teams=N_TEAMS, seed=SEED), dsn)
    s2 = loaded_etl(season(path / "s2", n_teams=N_TEAMS, seed=SEED, number=2, churn=0.1), dsn)
    conn = psycopg2.connect(dsn)
    try:
        s1.import_leagues(conn, s1.extract_leagues())
        s1.import_clubs(conn, s1.extract_clubs())
        s1.import_series(conn, s1.extract_series())
        conn.commit()
        with BulletproofTeamPreservation(conn) as p:
            p.run(s1.extract_teams())
        conn.commit()
        for step in (s1.import_players, s1.import_series_stats, s1.import_match_scores, s1.import_schedules):
            step(conn)
        conn.commit()
        create_user_activity(conn, seed=SEED, per_team=0.7)
        conn.commit()
    finally:
        conn.close()
    yield dsn, s2
    conftest.drop_database(dsn)


def _import(dsn: str, etl, *, count: bool = False):
    """The churned season after the legacy clear; returns (restore report, contents, statements)."""
    conn = psycopg2.connect(dsn, connection_factory=CountingConnection) if count else psycopg2.connect(dsn)
    try:
        with BulletproofTeamPreservation(conn) as p:
            p.backup_user_data()
            TRACER.paused = True
            legacy_clear_and_parents(etl, conn)
            TRACER.paused = False
            p.preserve_teams_during_import(etl.extract_teams())
            TRACER.reset()
            restored = p.restore_user_data()
            statements = TRACER.statements
            health = p.validate_health(raise_on_critical=False)
        conn.commit()
        return restored, health, _contents(conn), statements
    finally:
        conn.close()


def test_g3_g4_revived_teams_are_the_same_set_based_as_one_by_one(churned, monkeypatch, caplog):
    template, etl = churned
    first, second = clone(template), clone(template)
    try:
        with counting_connections(), caplog.at_level(logging.WARNING, logger="bulletproof_etl.restore.revive"):
            batch, batch_health, batch_contents, batch_statements = _import(first, etl, count=True)
        assert "one by one instead" not in caplog.text

        def fail(self, needed):
            raise revive._Fallback("forced by the test")

        monkeypatch.setattr(revive._Batch, "run", fail)
        with counting_connections(), caplog.at_level(logging.WARNING, logger="bulletproof_etl.restore.revive"):
            rows, rows_health, rows_contents, rows_statements = _import(second, etl, count=True)
        assert "one by one instead" in caplog.text
    finally:
        conftest.drop_database(first)
        conftest.drop_database(second)

    revived = batch.resurrected.get("teams", [])
    assert len(revived) > 10  # the churn left rows on dropped teams: enough to be a batch
    assert batch.resurrected == rows.resurrected
    assert batch.to_dict()["totals"] == rows.to_dict()["totals"]
    assert (batch_health.status, batch_health.orphans, batch_health.lost) == (
        rows_health.status, rows_health.orphans, rows_health.lost)
    assert batch_health.user_orphans == 0 and sum(batch_health.lost.values()) == 0
    differing = sorted(k for k in set(batch_contents) | set(rows_contents)
                       if batch_contents.get(k) != rows_contents.get(k))
    assert differing == []
    # one by one: several statements per id; set-based: a constant
    assert rows_statements - batch_statements >= 4 * len(revived)


def test_g3_revived_teams_keep_their_ids_inactive_and_their_keys(churned):
    template, etl = churned
    dsn = clone(template)
    try:
        restored, health, _contents_, _n = _import(dsn, etl)
        conn = psycopg2.connect(dsn)
        try:
            with conn.cursor() as cur:
                ids = restored.resurrected["teams"]
                cur.execute("SELECT count(*), count(*) FILTER (WHERE is_active) FROM teams WHERE id = ANY(%s)", (ids,))
                assert cur.fetchone() == (len(ids), 0)
                # each came back on the parents its ledger key names (or a placeholder), under its own name
                cur.execute(
                    "SELECT count(*) FROM teams t JOIN bulletproof.ledger l ON l.entity = 'teams' AND l.id = t.id "
                    "WHERE t.id = ANY(%s) AND t.team_name NOT LIKE (l.row->>'team_name') || '%%'", (ids,))
                assert cur.fetchone()[0] == 0
        finally:
            conn.close()
        assert health.user_orphans == 0 and sum(health.lost.values()) == 0
    finally:
        conftest.drop_database(dsn)


# -- conflicts: names, slots, ids nobody recorded ---------------------------------------------


def _crafted(tmp_path) -> tuple:
    """A protected season of 30 teams, then by hand (foreign keys off, as the legacy ETL does):
    two teams deleted whose names live teams now carry, one whose slot a live team took, and
    ids nobody ever recorded; returns (template dsn, needed)."""
    dsn = conftest.create_database()
    data = season(tmp_path, n_teams=30, seed=7)
    legacy_run(dsn, data)
    conn = psycopg2.connect(dsn)
    try:
        etl = loaded_etl(data, dsn)
        with BulletproofTeamPreservation(conn) as p:
            p.run(etl.extract_teams())
        conn.commit()
        with conn.cursor() as cur:
            cur.execute("SELECT id, team_name, league_id, club_id, series_id FROM teams ORDER BY id")
            teams = cur.fetchall()
            (a, a_name, a_league, *_), (b, b_name, *_), (c, _c, c_league, c_club, c_series) = teams[:3]
            others = [t for t in teams[3:] if t[2] == a_league]
            cur.execute("SET session_replication_role = replica")
            cur.execute("DELETE FROM teams WHERE id = ANY(%s)", ([a, b, c],))
            # live teams took the names of a and b (in their leagues) and the slot of c
            cur.execute("UPDATE teams SET team_name = %s WHERE id = %s", (a_name, others[0][0]))
            cur.execute("UPDATE teams SET team_name = %s WHERE id = %s", (b_name, others[1][0]))
            cur.execute("UPDATE teams SET club_id = %s, series_id = %s, league_id = %s WHERE id = %s",
                        (c_club, c_series, c_league, others[2][0]))
            cur.execute("SET session_replication_role = DEFAULT")
        conn.commit()
    finally:
        conn.close()
    return dsn, {"teams": {a, b, c, 99901, 99902}, "clubs": {99903}, "series": set(), "leagues": set()}


def _revive_on(dsn: str, needed: dict) -> tuple:
    conn = psycopg2.connect(dsn)
    try:
        keys = current_keys(conn, CONFIG)
        with conn.cursor() as cur:
            done = revive.resurrect(cur, CONFIG, needed, {}, keys)
        conn.commit()
        return done, _contents(conn)
    finally:
        conn.close()


def test_g2_g3_name_slot_and_unknown_id_conflicts_are_settled_as_one_by_one(tmp_path, monkeypatch, caplog):
    template, needed = _crafted(tmp_path)
    first, second = clone(template), clone(template)
    try:
        with caplog.at_level(logging.WARNING, logger="bulletproof_etl.restore.revive"):
            batch, batch_contents = _revive_on(first, needed)
        assert "one by one instead" not in caplog.text
        monkeypatch.setattr(revive._Batch, "run", lambda self, needed: (_ for _ in ()).throw(
            revive._Fallback("forced by the test")))
        rows, rows_contents = _revive_on(second, needed)
        conn = psycopg2.connect(first)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT t.id, t.team_name, c.name, t.is_active FROM teams t JOIN clubs c ON c.id = t.club_id "
                            "WHERE t.id = ANY(%s) ORDER BY t.id", (sorted(needed["teams"]),))
                revived = cur.fetchall()
                cur.execute("SELECT name FROM clubs WHERE id = 99903")
                club = cur.fetchone()
        finally:
            conn.close()
    finally:
        for dsn in (first, second, template):
            conftest.drop_database(dsn)

    assert batch == rows
    assert sorted(batch["teams"]) == sorted(needed["teams"]) and batch["clubs"] == [99903]
    differing = sorted(k for k in set(batch_contents) | set(rows_contents)
                       if batch_contents.get(k) != rows_contents.get(k))
    assert differing == []
    a, b, c = sorted(needed["teams"])[:3]
    by_id = {r[0]: r[1:] for r in revived}
    assert by_id[a][0].endswith(f"(retired #{a})") and by_id[b][0].endswith(f"(retired #{b})")
    assert by_id[c][1] == f"(club of retired team #{c})"
    assert by_id[99901] == ("(unknown team 99901)", "(unknown club)", False)
    # the second unknown team would share the first one's slot: it gets a club of its own
    assert by_id[99902] == ("(unknown team 99902)", "(club of retired team #99902)", False)
    assert club == ("(unknown club 99903)",)
    assert all(active is False for *_x, active in revived)
