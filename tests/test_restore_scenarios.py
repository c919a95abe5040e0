"""G1, G2, G4 and G8 for each scenario of issue 4: every user row accounted for, on its team.

Each test loads a generated season with the legacy ETL, lets users create their data
(``create_user_activity``: one unit per team), records every user reference's natural key
with the test's own SQL (``support.user_ref_keys``), then runs the next import with the
stages called around the legacy ETL's own steps (snapshot before its clear, the protected
upsert in place of its ``import_teams``, restore and health after its other imports).
Afterwards: no orphan, no row lost, no reference on another key than before unless a
context or content mapping says so, and the restore report equals the recount.
"""

from __future__ import annotations

from rally_etl.generate import ChurnSpec
from restore_support import (
    bp_recount,
    guarantee_violations,
    load_with_activity,
    protected_legacy_run,
    rows_of,
    table_report_matches_recount,
    untouched,
    write_seasons,
)
from support import team_keys, user_ref_keys

N_TEAMS = 60
SEED = 404


def _run(conn, db_dsn, data_dir):
    before_refs, before_rows = user_ref_keys(conn), rows_of(conn)
    captured = {}

    def capture(c):
        captured.update(rows=rows_of(c, end=False))
        with c.cursor() as cur:
            cur.execute("SELECT id, name FROM series")
            captured["series"] = dict(cur.fetchall())

    p = protected_legacy_run(conn, db_dsn, data_dir, before_restore=capture)
    run_id = p.report.run_id
    after_rows = rows_of(conn)
    diffs = table_report_matches_recount(p.restored, bp_recount(conn, run_id), untouched(captured["rows"], after_rows))
    p.captured = captured
    return p, before_refs, before_rows, diffs


def test_g1_g2_g4_same_season_after_legacy_clear_keeps_every_row_on_its_team(tmp_path, db_dsn, conn):
    s1, _s2, _ = write_seasons(tmp_path, N_TEAMS, SEED)
    created = load_with_activity(db_dsn, conn, s1)
    ids_before = team_keys(conn)
    p, before_refs, before_rows, diffs = _run(conn, db_dsn, s1)
    assert diffs == []
    assert guarantee_violations(before_refs, before_rows, conn, p.report.run_id) == {}
    assert team_keys(conn) == ids_before  # every team kept its id (G3, seen from here)
    r = p.restored
    # the clear deleted every practice row of schedule: all 60 come back with their ids;
    # nothing else needed a change: no remap, no quarantine
    assert r.tables["schedule"].reinserted == created["schedule_practice"] == N_TEAMS
    assert r.total("reinserted") == N_TEAMS
    assert r.total("remapped") == 0 and r.total("quarantined") == 0
    assert p.health.status.value == "PERFECT", p.health.issues



def _ref_counts(refs: dict, predicate) -> dict:
    """``{(table, column): references whose key satisfies predicate}``."""
    out: dict = {}
    for (table, _pk, column), key in refs.items():
        if predicate(table, column, key):
            out[(table, column)] = out.get((table, column), 0) + 1
    return out


def _mapped_counts(conn, run_id, strategy) -> dict:
    with conn.cursor() as cur:
        cur.execute("SELECT table_name, column_name, count(*) FROM bulletproof.mappings WHERE run_id = %s "
                    "AND strategy = %s GROUP BY 1, 2", (run_id, strategy))
        out = {(t, c): n for t, c, n in cur.fetchall()}
    conn.rollback()
    return out


def test_g4_next_season_with_series_spelled_differently(tmp_path, db_dsn, conn):
    s1, s2, summary = write_seasons(tmp_path, N_TEAMS, SEED, ChurnSpec(respell=1.0))
    load_with_activity(db_dsn, conn, s1)
    ids_before = team_keys(conn)
    with conn.cursor() as cur:
        cur.execute("SELECT id, name FROM series")
        old_series = dict(cur.fetchall())
    conn.rollback()
    p, before_refs, before_rows, diffs = _run(conn, db_dsn, s2)
    assert diffs == []
    assert guarantee_violations(before_refs, before_rows, conn, p.report.run_id) == {}
    # all 7 series of seed 404 are spelled anew; a spelling never changes a team's key, so
    # every team keeps its id and no team reference changes
    assert summary.series_respelled == 7 and summary.teams_kept == N_TEAMS
    assert team_keys(conn) == ids_before
    assert all(t == "player_availability" for t, _c in _mapped_counts(conn, p.report.run_id, "context"))
    # availability points at a series row by id (no foreign key). The test's own oracle, on
    # the series rows the ETL left before the restore: an old id still there under its name
    # stays; else an old series whose canonical form exactly one row has moves there
    # (context); else (e.g. "Chicago 1" when "Series 1", "S1" and "Division 1" all exist)
    # the old row comes back with its id and name.
    with conn.cursor() as cur:
        cur.execute("SELECT id, name FROM series")
        now = dict(cur.fetchall())
        cur.execute("SELECT series_id, count(*) FROM player_availability GROUP BY 1")
        per_series = dict(cur.fetchall())
    conn.rollback()
    from rally_etl.names import canonical_series

    def canon(name):
        return canonical_series(None, name)

    at_restore = p.captured["series"]
    expect_moved, expect_revived = 0, set()
    for old_id, name in old_series.items():
        rows = sum(1 for (t, _pk, c), k in before_refs.items()
                   if t == "player_availability" and k == (name.casefold(),))
        if not rows or at_restore.get(old_id) == name:
            continue
        fresh = [i for i, n in at_restore.items() if canon(n) == canon(name)]
        if len(fresh) == 1:
            expect_moved += rows
        else:
            expect_revived.add(old_id)
    assert (expect_moved, sorted(expect_revived)) == (18, [1, 2])
    assert _mapped_counts(conn, p.report.run_id, "context") == {("player_availability", "series_id"): 18}
    assert p.restored.resurrected == {"series": [1, 2]}
    assert {i: now[i] for i in (1, 2)} == {1: old_series[1], 2: old_series[2]}
    assert sum(per_series.values()) == N_TEAMS


def test_g4_club_renamed_is_mapped_by_context_and_recorded(tmp_path, db_dsn, conn):
    s1, s2, summary = write_seasons(tmp_path, N_TEAMS, SEED, ChurnSpec(rename=0.2))
    load_with_activity(db_dsn, conn, s1)
    renamed = {old.casefold(): new for old, new in summary.club_renames.items()}
    p, before_refs, before_rows, diffs = _run(conn, db_dsn, s2)
    run_id = p.report.run_id
    assert diffs == []
    assert guarantee_violations(before_refs, before_rows, conn, run_id) == {}
    # 8 clubs renamed ("Elmridge" -> "Elmridge CC", ...), 11 teams: every reference to one of
    # them now points at the team of the renamed club in the same league and series, mapped
    # by context; every other reference is untouched
    assert (summary.clubs_renamed, summary.teams_of_renamed_clubs) == (8, 11)
    expected = _ref_counts(before_refs, lambda t, c, k: isinstance(k, tuple) and len(k) == 3 and k[1] in renamed)
    assert expected[("polls", "team_id")] == 11
    assert _mapped_counts(conn, run_id, "context") == expected
    assert _mapped_counts(conn, run_id, "direct") == {}
    assert p.restored.mapped_ids == {"teams": {"context": 11}}
    after = user_ref_keys(conn)
    for ref, key in before_refs.items():
        if isinstance(key, tuple) and len(key) == 3 and key[1] in renamed:
            assert after[ref] == (key[0], renamed[key[1]].casefold(), key[2]), ref
    assert p.health.status.value == "PERFECT", p.health.issues


def test_g4_team_dropped_after_legacy_clear_comes_back_inactive_with_its_rows(tmp_path, db_dsn, conn):
    s1, s2, summary = write_seasons(tmp_path, N_TEAMS, SEED, ChurnSpec(remove=0.1))
    load_with_activity(db_dsn, conn, s1)
    before_keys = team_keys(conn)
    p, before_refs, before_rows, diffs = _run(conn, db_dsn, s2)
    assert diffs == []
    assert guarantee_violations(before_refs, before_rows, conn, p.report.run_id) == {}
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM teams WHERE NOT is_active ORDER BY id")
        inactive = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT count(*) FROM captain_messages WHERE team_id = ANY(%s)", (inactive,))
        messages = cur.fetchone()[0]
    conn.rollback()
    # 6 teams left the import; the legacy clear deleted them; each one comes back with its id,
    # inactive, under its own key, and keeps its polls, messages, lineups (NOT NULL) and practice
    assert summary.teams_removed == 6 and len(inactive) == 6
    assert p.restored.resurrected == {"teams": inactive}
    assert {i: team_keys(conn)[i] for i in inactive} == {i: before_keys[i] for i in inactive}
    assert messages == 6
    assert p.restored.total("remapped") == 0 and p.restored.total("quarantined") == 0


def test_g4_team_dropped_from_a_protected_import_is_retired_not_deleted(tmp_path, db_dsn, conn):
    import rally_etl
    from bulletproof_etl import BulletproofTeamPreservation

    s1, s2, summary = write_seasons(tmp_path, N_TEAMS, SEED, ChurnSpec(remove=0.1))
    load_with_activity(db_dsn, conn, s1)
    before_refs, before_rows, before_keys = user_ref_keys(conn), rows_of(conn), team_keys(conn)
    etl = rally_etl.ComprehensiveETL(s2, db_dsn)
    etl.load_json_files()
    with BulletproofTeamPreservation(conn) as p:
        report = p.run(etl.extract_teams())
    conn.commit()
    assert guarantee_violations(before_refs, before_rows, conn, report.run_id) == {}
    assert rows_of(conn) == before_rows  # not one user row written
    assert team_keys(conn) == before_keys
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM teams WHERE NOT is_active")
        assert cur.fetchone()[0] == summary.teams_removed == report.teams["retired"] == 6
    assert report.restore["totals"] == dict.fromkeys(report.restore["totals"], 0)
    assert report.health["status"] == "PERFECT"


def test_g1_g2_g4_mixed_churn_every_row_accounted_for(tmp_path, db_dsn, conn):
    s1, s2, summary = write_seasons(tmp_path, N_TEAMS, SEED, ChurnSpec.from_fraction(0.2))
    load_with_activity(db_dsn, conn, s1)
    p, before_refs, before_rows, diffs = _run(conn, db_dsn, s2)
    assert diffs == []
    assert guarantee_violations(before_refs, before_rows, conn, p.report.run_id) == {}
    assert p.restored.total("quarantined") == 0
    assert len(p.restored.resurrected.get("teams", [])) == summary.teams_removed
    assert p.health.user_orphans == 0 and not p.health.lost and not p.health.misattached


def _extracted_teams(data_dir, dsn):
    import rally_etl

    etl = rally_etl.ComprehensiveETL(data_dir, dsn)
    etl.load_json_files()
    return etl.extract_teams()


def test_g2_g4_duplicated_team_is_merged_before_the_snapshot(tmp_path, db_dsn, conn):
    from bulletproof_etl import BulletproofTeamPreservation
    from restore_support import make_duplicate_team

    s1, _s2, _ = write_seasons(tmp_path, N_TEAMS, SEED)
    load_with_activity(db_dsn, conn, s1)
    key = team_keys(conn)[5]
    on_key = sum(1 for k in user_ref_keys(conn).values() if k == key)
    dup = make_duplicate_team(conn, 5)
    before_refs, before_rows = user_ref_keys(conn), rows_of(conn)
    assert sum(1 for k in before_refs.values() if k == key) == on_key + 9
    with BulletproofTeamPreservation(conn) as p:
        report = p.run(_extracted_teams(s1, db_dsn))
    conn.commit()
    assert guarantee_violations(before_refs, before_rows, conn, report.run_id) == {}
    assert report.constraints["removed_teams"] == [dup]
    assert sum(report.constraints["repointed"].values()) == 9
    assert dup not in team_keys(conn)
    after = user_ref_keys(conn)
    # the 9 references of each of the two teams are on team 5 now, same key, same rows
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM polls WHERE team_id = 5")
        assert cur.fetchone()[0] == 2
    conn.rollback()
    assert {k for k in after.values()} >= {team_keys(conn)[5]}
    assert report.restore["totals"] == dict.fromkeys(report.restore["totals"], 0)
    assert report.health["status"] == "PERFECT", report.health["issues"]


def test_g2_cascade_deleted_video_and_poll_come_back_with_their_children(tmp_path, db_dsn, conn):
    from bulletproof_etl import BulletproofTeamPreservation

    s1, _s2, _ = write_seasons(tmp_path, N_TEAMS, SEED)
    load_with_activity(db_dsn, conn, s1)
    with conn.cursor() as cur:  # a team of its own club whose only user row is a video
        cur.execute("INSERT INTO clubs (name) VALUES ('Videoclub') RETURNING id")
        club = cur.fetchone()[0]
        cur.execute("INSERT INTO teams (club_id, series_id, league_id, team_name, display_name) "
                    "SELECT %s, series_id, league_id, 'Videoclub - 1', 'Videoclub - 1' FROM teams WHERE id = 1 "
                    "RETURNING id", (club,))
        team = cur.fetchone()[0]
        cur.execute("INSERT INTO videos (team_id, title, url) VALUES (%s, 'Serve drills', 'https://v/1') "
                    "RETURNING id", (team,))
        video = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM poll_choices WHERE poll_id = 1")
        assert cur.fetchone()[0] == 2
    conn.commit()
    before_refs, before_rows = user_ref_keys(conn), rows_of(conn)
    teams = _extracted_teams(s1, db_dsn)
    with BulletproofTeamPreservation(conn) as p:
        p.backup_user_data()
        with conn.cursor() as cur:
            cur.execute("DELETE FROM polls WHERE id = 1")  # its choices and responses go with it
            cur.execute("DELETE FROM teams WHERE id = %s", (team,))  # ON DELETE CASCADE: the video
            cur.execute("SELECT (SELECT count(*) FROM videos WHERE id = %s), "
                        "(SELECT count(*) FROM poll_choices WHERE poll_id = 1), "
                        "(SELECT count(*) FROM poll_responses WHERE poll_id = 1)", (video,))
            assert cur.fetchone() == (0, 0, 0)
        p.preserve_teams_during_import(teams)
        restored = p.restore_user_data()
        health = p.validate_health()
    conn.commit()
    assert guarantee_violations(before_refs, before_rows, conn, p.report.run_id) == {}
    assert rows_of(conn) == before_rows  # every row back, with its primary key and content
    assert {t: r.reinserted for t, r in restored.tables.items() if r.reinserted} == {
        "polls": 1, "poll_choices": 2, "poll_responses": 1, "videos": 1}
    assert restored.resurrected == {"teams": [team]}  # the deleted team, inactive, its key intact
    with conn.cursor() as cur:
        cur.execute("SELECT is_active, club_id FROM teams WHERE id = %s", (team,))
        assert cur.fetchone() == (False, club)
    assert health.status.value == "PERFECT", health.issues


def test_g4_ambiguous_poll_is_quarantined_not_guessed(tmp_path, db_dsn, conn):
    from bulletproof_etl import BulletproofTeamPreservation
    from restore_support import quarantined

    s1, _s2, _ = write_seasons(tmp_path, N_TEAMS, SEED)
    load_with_activity(db_dsn, conn, s1)
    with conn.cursor() as cur:
        # U plays in APTA "Chicago 2" and, through a second player record, in CNSWPL "Series 2"
        cur.execute("SELECT u.id, u.team_id FROM users u JOIN teams t ON t.id = u.team_id "
                    "JOIN series s ON s.id = t.series_id WHERE s.name = 'Chicago 2' ORDER BY u.id LIMIT 1")
        u, u_team = cur.fetchone()
        cur.execute("INSERT INTO user_player_associations SELECT %s, p.tenniscores_player_id FROM players p "
                    "JOIN teams t ON t.id = p.team_id JOIN leagues l ON l.id = t.league_id "
                    "JOIN series s ON s.id = t.series_id WHERE l.league_id = 'CNSWPL' AND s.name = 'Series 2' "
                    "ORDER BY p.id LIMIT 1", (u,))
        # V has one team, in APTA "Chicago 3"
        cur.execute("SELECT u.id, u.team_id FROM users u JOIN teams t ON t.id = u.team_id "
                    "JOIN series s ON s.id = t.series_id WHERE s.name = 'Chicago 3' ORDER BY u.id LIMIT 1")
        v, v_team = cur.fetchone()
        cur.execute("SET session_replication_role = replica")  # references that were already dangling
        cur.execute("INSERT INTO polls (id, team_id, created_by, question) VALUES "
                    "(9001, 99901, %(u)s, 'Series 2 practice on Monday?'), "
                    "(9002, 99902, %(v)s, 'Chicago 3 practice moved to 7pm?'), "
                    "(9003, 99903, %(v)s, 'Who can play on Jan 3?')", {"u": u, "v": v})
        cur.execute("INSERT INTO captain_messages (id, team_id, captain_user_id, message) VALUES "
                    "(9004, 99904, %(v)s, 'S3 lineup is posted'), "
                    "(9005, 99905, %(u)s, 'Lineup for Series 2 is up')", {"u": u, "v": v})
        cur.execute("SET session_replication_role = DEFAULT")
    conn.commit()
    before_rows = rows_of(conn)
    with BulletproofTeamPreservation(conn) as p:
        report = p.run(_extracted_teams(s1, db_dsn))
    conn.commit()
    run_id = report.run_id
    after = rows_of(conn)
    with conn.cursor() as cur:
        cur.execute("SELECT id, team_id FROM polls WHERE id > 9000 ORDER BY id")
        polls = cur.fetchall()
        cur.execute("SELECT id, team_id FROM captain_messages WHERE id > 9000 ORDER BY id")
        messages = cur.fetchall()
        cur.execute("SELECT team_name, is_active FROM teams WHERE id = 99905")
        placeholder = cur.fetchone()
    conn.rollback()
    # two teams of U in series "2": refused; "Jan 3" names no series: refused
    assert polls == [(9001, None), (9002, v_team), (9003, None)]
    assert messages == [(9004, v_team), (9005, 99905)]  # NOT NULL: kept on a placeholder
    assert placeholder == ("(unknown team 99905)", False)
    q = quarantined(conn, run_id)
    assert sorted(q) == [("captain_messages", 9005, "team_id"), ("polls", 9001, "team_id"),
                         ("polls", 9003, "team_id")]
    assert q[("polls", 9001, "team_id")].startswith("no strategy maps teams id 99901 to exactly one team")
    assert bp_recount(conn, run_id) == {
        "polls": {"remapped": {"content": 1}, "quarantined": 2, "withheld": 0, "nulled": 2, "on_placeholder": 0},
        "captain_messages": {"remapped": {"content": 1}, "quarantined": 1, "withheld": 0, "nulled": 0,
                             "on_placeholder": 1},
    }
    t = report.restore["tables"]
    assert (t["polls"]["remapped"], t["polls"]["nulled"], t["polls"]["quarantined"]) == ({"content": 1}, 2, 2)
    assert (t["captain_messages"]["remapped"], t["captain_messages"]["on_placeholder"]) == ({"content": 1}, 1)
    with conn.cursor() as cur:
        cur.execute("SELECT original->>'team_id' FROM bulletproof.quarantine WHERE run_id = %s", (run_id,))
        assert sorted(r[0] for r in cur.fetchall()) == ["99901", "99903", "99905"]
    conn.rollback()
    for table in after:  # nothing else was written
        changed = {pk for pk in after[table] if after[table][pk] != before_rows[table].get(pk)}
        assert changed <= {"9001", "9002", "9003", "9004"}, table
    assert report.health["status"] == "WARNING"
    assert report.health["issues"] == [f"3 quarantine entries written by run {run_id}"]


def test_g4_stale_id_from_three_runs_ago_maps_through_the_ledger(tmp_path, db_dsn, conn):
    import rally_etl
    from bulletproof_etl import BulletproofTeamPreservation

    s1, _s2, _ = write_seasons(tmp_path, N_TEAMS, SEED)
    load_with_activity(db_dsn, conn, s1)
    before_refs, before_rows = user_ref_keys(conn), rows_of(conn)
    with BulletproofTeamPreservation(conn) as p:  # run 1: the ledger learns ids 1..60
        p.run(_extracted_teams(s1, db_dsn))
    conn.commit()
    for _ in range(2):  # two unprotected runs: teams become 61..120, then 121..180
        assert rally_etl.ComprehensiveETL(s1, db_dsn).run()
    assert sorted(team_keys(conn)) == list(range(121, 181))
    stale = user_ref_keys(conn)
    assert sum(1 for k in stale.values() if k == "ORPHAN") == sum(
        1 for (t, _pk, _c), k in before_refs.items() if k is not None and t != "schedule")
    p = protected_legacy_run(conn, db_dsn, s1)  # run 2
    run_id = p.report.run_id
    # every team, league and series reference written before run 1 is mapped directly
    # through the ledger to the id its key has now; the practice rows the unprotected runs
    # deleted were never in run 2's snapshot: they are the legacy damage, not this run's
    non_null = _ref_counts(before_refs, lambda t, c, k: k is not None and t != "schedule")
    assert _mapped_counts(conn, run_id, "direct") == non_null
    assert sum(non_null.values()) == 12 * N_TEAMS + 3 * (N_TEAMS // 2)  # escrow (2 columns), videos: half
    violations = guarantee_violations(before_refs, before_rows, conn, run_id)
    assert violations == {"lost": [("schedule", pk) for pk in before_rows["schedule"]]}
    assert p.health.status.value == "PERFECT", p.health.issues
