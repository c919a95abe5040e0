"""Emergency restore (G1, G2, G4, G8) on a database the unprotected ETL already damaged.

No snapshot, no ledger: the legacy ETL re-ran the next season and every user reference
points at nothing. ``restore_user_data()`` without a prior backup can only use what the rows
themselves say: the votes of their rows' evidence (issue 13: the author's players' teams,
team names in rows, the rows' own teams for leagues and series; context, or content for a
row mapped alone), then the hint lists and content for ids without any such evidence. It
must map what the evidence names, quarantine the rest, and never put a row on the wrong team.

"The right team" is judged by the test through the players: a season-2 team is the same
team as a season-1 team when they share a player (player ids are stable per team).
"""

from __future__ import annotations

from psycopg2 import sql

import rally_etl
from bulletproof_etl import BulletproofTeamPreservation
from rally_etl.generate import ChurnSpec
from rally_etl.names import canonical_series
from restore_support import (
    bp_recount,
    load_with_activity,
    rows_of,
    table_report_matches_recount,
    untouched,
    write_seasons,
)
from support import USER_REFS, user_ref_keys

N_TEAMS = 200
SEED = 2024
ENTITY_OF = {(t, c): e for t, _pk, c, e in USER_REFS}


def _players_by_team(conn) -> dict:
    with conn.cursor() as cur:
        cur.execute("SELECT team_id, array_agg(tenniscores_player_id) FROM players WHERE team_id IS NOT NULL "
                    "GROUP BY 1")
        out = {t: set(p) for t, p in cur.fetchall()}
    conn.rollback()
    return out


def _names(conn, table, column) -> dict:
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT id, {} FROM {}").format(sql.Identifier(column), sql.Identifier(table)))
        out = dict(cur.fetchall())
    conn.rollback()
    return out


def _raw_refs(conn) -> dict:
    """``{(table, pk, column): referenced id}`` with the test's own SQL."""
    out = {}
    with conn.cursor() as cur:
        for table, pk, column, _entity in USER_REFS:
            cur.execute(sql.SQL("SELECT {}, {} FROM {}").format(
                sql.Identifier(pk), sql.Identifier(column), sql.Identifier(table)))
            out.update({(table, p, column): ref for p, ref in cur.fetchall()})
    conn.rollback()
    return out


def test_g1_g2_g4_emergency_restore_maps_what_rows_say_and_quarantines_the_rest(tmp_path, db_dsn, conn):
    s1, s2, summary = write_seasons(tmp_path, N_TEAMS, SEED, ChurnSpec.from_fraction(0.2))
    load_with_activity(db_dsn, conn, s1, seed=7)
    old_players = _players_by_team(conn)
    old_team_names = _names(conn, "teams", "team_name")
    old_leagues = _names(conn, "leagues", "league_id")
    old_series = _names(conn, "series", "name")
    before_refs = _raw_refs(conn)

    assert rally_etl.ComprehensiveETL(s2, db_dsn).run()  # unprotected: the damage
    damaged = _raw_refs(conn)
    assert damaged == before_refs
    stale = {ref for ref, v in damaged.items() if v is not None}
    assert all(k == "ORPHAN" for ref, k in user_ref_keys(conn).items() if ref in stale and ref[0] != "schedule")
    damaged_rows = rows_of(conn)
    new_players = _players_by_team(conn)
    new_team_names = _names(conn, "teams", "team_name")

    with BulletproofTeamPreservation(conn) as p:  # no backup was ever taken
        restored = p.restore_user_data()
        health = p.validate_health()
    conn.commit()
    run_id = p.report.run_id
    after = _raw_refs(conn)
    after_rows = rows_of(conn)

    # G8: the report is what the tables say
    assert table_report_matches_recount(restored, bp_recount(conn, run_id), untouched(damaged_rows, after_rows)) == []
    # G2: not one row lost or added (the practice rows the legacy run deleted are gone for good)
    assert {t: set(r) for t, r in after_rows.items()} == {t: set(r) for t, r in damaged_rows.items()}
    # G1: nothing points at nothing
    assert health.user_orphans == 0, health.orphans
    assert "ORPHAN" not in user_ref_keys(conn).values()

    # G4: every reference the restore moved is on the right entity
    with conn.cursor() as cur:
        cur.execute("SELECT table_name, pk, column_name, old_id, new_id, strategy FROM bulletproof.mappings "
                    "WHERE run_id = %s", (run_id,))
        mappings = cur.fetchall()
        cur.execute("SELECT table_name, pk, column_name FROM bulletproof.quarantine WHERE run_id = %s", (run_id,))
        quarantined = {(t, next(iter(pk.values())), c) for t, pk, c in cur.fetchall()}
    conn.rollback()
    new_leagues = _names(conn, "leagues", "league_id")
    new_series = _names(conn, "series", "name")
    wrong = []
    by_strategy: dict = {}
    for table, pk, column, old, new, strategy in mappings:
        ref = (table, next(iter(pk.values())), column)
        entity = ENTITY_OF[(table, column)]
        by_strategy[(entity, strategy)] = by_strategy.get((entity, strategy), 0) + 1
        assert after[ref] == new and before_refs[ref] == old
        if entity == "teams" and not old_players.get(old, set()) & new_players.get(new, set()):
            wrong.append(ref)
        if entity == "leagues" and old_leagues[old] != new_leagues[new]:
            wrong.append(ref)
        if entity == "series" and canonical_series(None, old_series[old]) != canonical_series(None, new_series[new]):
            wrong.append(ref)
    assert wrong == []
    assert {s for (_e, s) in by_strategy} <= {"context", "content"}  # nothing to map directly

    # every stale reference is either mapped or quarantined, never both, never neither
    mapped_refs = {(t, next(iter(pk.values())), c) for t, pk, c, *_ in mappings}
    user_stale = {ref for ref in stale if ref[0] != "schedule"}
    assert mapped_refs | quarantined == user_stale and not mapped_refs & quarantined

    # context for teams, the test's own oracles: a stale team id whose rows name it (activity,
    # videos) when exactly one season-2 team has that name, case and spacing aside; and since
    # the evidence votes (issue 13), any stale team id whose players (its captain's, through
    # user_player_associations) still play for a season-2 team
    def canon(name):
        return " ".join(name.split()).casefold()

    now_by_name: dict = {}
    for tid, name in new_team_names.items():
        now_by_name.setdefault(canon(name), set()).add(tid)
    referenced_teams = {v for ref, v in damaged.items() if v is not None and ENTITY_OF[(ref[0], ref[2])] == "teams"
                        and ref[0] != "schedule"}
    expect_named = {t for t in referenced_teams if len(now_by_name.get(canon(old_team_names[t]), ())) == 1}
    still_playing = {t for t in referenced_teams if any(old_players.get(t, set()) & p for p in new_players.values())}
    context_teams = {old for t, pk, c, old, new, s in mappings if s == "context" and ENTITY_OF[(t, c)] == "teams"}
    assert expect_named <= context_teams == still_playing
    assert restored.mapped_ids["teams"]["context"] == len(still_playing)

    # The numbers of seed 2024 at churn 0.2 (200 teams, one user unit each). Names: 20 teams
    # left, 27 changed their name (19 of renamed clubs, 8 more written "Club 22" in a
    # respelled series): 200 - 20 - 27 = 153 stale team ids are named unambiguously by their
    # activity rows and videos; the votes map all 180 that still play (their captains'
    # players are on the season-2 team; issue 13), and their 1708 references follow them. All
    # 600 league references follow their rows' teams. 180 of 200 availability rows follow
    # their series id; the "Series 1" id, shared by NSTF and CNSWPL and now split into "S1"
    # and "Division 1", is voted for by both: refused as a whole, 18 of its rows are mapped
    # alone (their user's players and the user's team agree: content); the 2 rows whose
    # users' teams left hold no evidence and stay on a placeholder.
    s = summary
    assert (s.teams_removed, s.teams_of_renamed_clubs, s.team_names_shortened) == (20, 19, 9)
    assert (len(expect_named), len(still_playing)) == (153, 180)
    assert by_strategy == {("teams", "context"): 1708, ("leagues", "context"): 600, ("series", "context"): 180,
                           ("series", "content"): 18}
    assert restored.to_dict()["totals"] == {"remapped": 2506, "reinserted": 0, "quarantined": 194, "nulled": 132,
                                            "on_placeholder": 62, "withheld": 0, "repaired": 0}
    assert restored.tables["player_availability"].on_placeholder == 2
    # NULL where the column allows it, a placeholder where it does not: nothing deleted
    assert health.status.value == "WARNING"
    assert health.issues == ["duplicate natural keys: {'clubs': 6}", f"194 quarantine entries written by run {run_id}"]
