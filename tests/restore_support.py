"""Helpers for the restore, health and constraint tests (issue 4): scenarios and recounts.

The recounts here read the user tables and the ``bulletproof`` tables with their own SQL;
the natural keys come from ``support`` (computed with ``rally_etl.names``, not the library).
"""

from __future__ import annotations

import json

from psycopg2 import sql

import rally_etl
from bulletproof_etl import BulletproofTeamPreservation
from rally_etl.activity import create_user_activity
from rally_etl.generate import ChurnSpec, generate_season_with_summary, write_season
from support import USER_REFS, USER_TABLES, user_ref_keys

PK = {"user_contexts": "user_id"}
QUARANTINE_WITHHELD = "could not be re-inserted%"


class NoCommit:
    """The caller's connection with ``commit()`` deferred, so the legacy ETL's per-step commits
    stay inside the protected run (what the integration does for a patched ETL)."""

    def __init__(self, conn) -> None:
        self._conn = conn
        self.commits = 0

    def commit(self) -> None:
        self.commits += 1

    def __getattr__(self, name):
        return getattr(self._conn, name)


def write_seasons(tmp_path, n_teams: int, seed: int, churn: ChurnSpec | None = None):
    """Season 1 and season 2 (``churn``) as data directories; returns (dir1, dir2, summary)."""
    first, _ = generate_season_with_summary(n_teams, seed)
    second, summary = generate_season_with_summary(n_teams, seed, 2, churn or ChurnSpec())
    return write_season(first, tmp_path / "s1"), write_season(second, tmp_path / "s2"), summary


def load_with_activity(dsn, conn, data_dir, *, seed: int = 1, per_team: float = 1.0) -> dict:
    """The legacy ETL loads ``data_dir``; users create their data; returns rows per table."""
    etl = rally_etl.ComprehensiveETL(data_dir, dsn)
    assert etl.run(), etl.last_error
    return create_user_activity(conn, seed=seed, per_team=per_team)


def protected_legacy_run(conn, dsn, data_dir, *, after_backup=None, before_restore=None, raise_on_critical=True):
    """The stages around the legacy ETL's own steps, in one transaction the test commits.

    Snapshot before its ``clear_target_tables``, the protected upsert in place of its
    ``import_teams``, restore and health after its other imports. Returns the preservation
    object (``p.report`` holds every stage's result).
    """
    etl = rally_etl.ComprehensiveETL(data_dir, dsn)
    etl.load_json_files()
    db = NoCommit(conn)
    with BulletproofTeamPreservation(conn) as p:
        p.validate_constraints()
        p.backup_user_data()
        if after_backup:
            after_backup(conn)
        etl.clear_target_tables(db)
        etl.import_leagues(db, etl.extract_leagues())
        etl.import_clubs(db, etl.extract_clubs())
        etl.import_series(db, etl.extract_series())
        etl.import_club_leagues(db)
        etl.import_series_leagues(db)
        p.preserve_teams_during_import(etl.extract_teams())
        etl.import_players(db)
        etl.import_series_stats(db)
        etl.import_match_scores(db)
        etl.import_schedules(db)
        if before_restore:
            before_restore(conn)
        p.restored = p.restore_user_data()
        p.health = p.validate_health(raise_on_critical=raise_on_critical)
    conn.commit()
    return p


def rows_of(conn, *, end: bool = True) -> dict:
    """``{table: {pk: row as JSON text}}`` of every user table (practice rows of schedule too).

    ``end=False`` inside a run: the transaction is left open."""
    out = {}
    with conn.cursor() as cur:
        for table in USER_TABLES:
            pk = PK.get(table, "id")
            if table == "user_player_associations":
                cur.execute("SELECT user_id || '/' || tenniscores_player_id, to_jsonb(t)::text "
                            "FROM user_player_associations t")
            else:
                cur.execute(sql.SQL("SELECT {}::text, to_jsonb(t)::text FROM {} t").format(
                    sql.Identifier(pk), sql.Identifier(table)))
            out[table] = dict(cur.fetchall())
        cur.execute("SELECT id::text, to_jsonb(t)::text FROM schedule t WHERE home_team ILIKE '%%practice%%'")
        out["schedule"] = dict(cur.fetchall())
    if end:
        conn.rollback()
    return out


def bp_recount(conn, run_id) -> dict:
    """What ``bulletproof.mappings`` and ``bulletproof.quarantine`` hold for a run, per table."""
    out: dict = {}
    with conn.cursor() as cur:
        cur.execute("SELECT table_name, strategy, count(*) FROM bulletproof.mappings WHERE run_id = %s "
                    "GROUP BY 1, 2", (run_id,))
        for table, strategy, n in cur.fetchall():
            out.setdefault(table, {}).setdefault("remapped", {})[strategy] = n
        cur.execute("SELECT table_name, count(*), count(*) FILTER (WHERE reason LIKE %s), "
                    "count(*) FILTER (WHERE reason LIKE '%%set to NULL'), "
                    "count(*) FILTER (WHERE reason LIKE '%%placeholder%%') "
                    "FROM bulletproof.quarantine WHERE run_id = %s GROUP BY 1", (QUARANTINE_WITHHELD, run_id))
        for table, total, withheld, nulled, placeholder in cur.fetchall():
            out.setdefault(table, {}).update(quarantined=total, withheld=withheld, nulled=nulled,
                                             on_placeholder=placeholder)
    conn.rollback()
    return out


def mapped_refs(conn, run_id, strategies=("context", "content")) -> dict:
    """``{(table, pk, column): (old, new, strategy)}`` recorded for a run with these strategies."""
    with conn.cursor() as cur:
        cur.execute("SELECT table_name, pk, column_name, old_id, new_id, strategy FROM bulletproof.mappings "
                    "WHERE run_id = %s AND strategy = ANY(%s)", (run_id, list(strategies)))
        rows = cur.fetchall()
    conn.rollback()
    return {(t, _pk_value(pk), c): (old, new, s) for t, pk, c, old, new, s in rows}


def quarantined(conn, run_id) -> dict:
    """``{(table, pk, column or None): reason}`` of a run."""
    with conn.cursor() as cur:
        cur.execute("SELECT table_name, pk, column_name, reason FROM bulletproof.quarantine WHERE run_id = %s",
                    (run_id,))
        rows = cur.fetchall()
    conn.rollback()
    return {(t, _pk_value(pk), c): r for t, pk, c, r in rows}


def _pk_value(pk: dict):
    return next(iter(pk.values())) if len(pk) == 1 else json.dumps(pk, sort_keys=True)


def guarantee_violations(before_refs: dict, before_rows: dict, conn, run_id) -> dict:
    """G1, G2 and G4 judged against what the test recorded before the run.

    - orphans: a reference that points at nothing afterwards;
    - new_nulls: NULL afterwards, non-NULL before, with no quarantine entry;
    - lost: a row that existed before and is neither in its table nor withheld in quarantine;
    - moved: a reference attached to another natural key than before, without a recorded
      context or content mapping (G4);
    """
    after_refs = user_ref_keys(conn)
    after_rows = rows_of(conn)
    explained = mapped_refs(conn, run_id)
    quar = quarantined(conn, run_id)
    withheld = {(t, str(pk)) for (t, pk, c), reason in quar.items() if c is None}
    out = {"orphans": [], "new_nulls": [], "lost": [], "moved": []}
    for ref, key in after_refs.items():
        if key == "ORPHAN":
            out["orphans"].append(ref)
    for table, rows in before_rows.items():
        for pk in rows:
            if pk not in after_rows[table] and (table, pk) not in withheld:
                out["lost"].append((table, pk))
    for ref, before in before_refs.items():
        if ref not in after_refs:
            continue  # a lost row, counted above
        after = after_refs[ref]
        if after is None and before is not None and ref not in quar:
            out["new_nulls"].append(ref)
        elif before not in (None, "ORPHAN") and after not in (None, before) and ref not in explained:
            out["moved"].append((ref, before, after))
    return {k: v for k, v in out.items() if v}


def ref_columns():
    return [(t, c) for t, _pk, c, _e in USER_REFS] + [("schedule", "home_team_id")]


def table_report_matches_recount(report, recount: dict, changed: dict) -> list:
    """Differences between a RestoreReport and the test's recount; empty when they agree.

    ``changed`` is the test's own ``{table: (rows untouched, rows before, rows after)}``.
    """
    diffs = []
    for table, tr in report.tables.items():
        rc = recount.get(table, {})
        mine = {"remapped": tr.remapped, "quarantined": tr.quarantined, "withheld": tr.withheld,
                "nulled": tr.nulled, "on_placeholder": tr.on_placeholder}
        theirs = {"remapped": rc.get("remapped", {}), "quarantined": rc.get("quarantined", 0),
                  "withheld": rc.get("withheld", 0), "nulled": rc.get("nulled", 0),
                  "on_placeholder": rc.get("on_placeholder", 0)}
        if table in changed:
            kept, before, after = changed[table]
            mine.update(kept=tr.kept, rows_before=tr.rows_before, rows_after=tr.rows_after,
                        reinserted=tr.reinserted)
            theirs.update(kept=kept, rows_before=before, rows_after=after, reinserted=after - before)
        if mine != theirs:
            diffs.append((table, mine, theirs))
    return diffs


def untouched(before_rows: dict, after_rows: dict) -> dict:
    """``{table: (rows identical before and after, rows before, rows after)}``."""
    return {t: (sum(1 for pk, row in rows.items() if after_rows[t].get(pk) == row), len(rows), len(after_rows[t]))
            for t, rows in before_rows.items()}


def make_duplicate_team(conn, of_team: int, *, same_practice: bool = False) -> int:
    """A second team with the same club, series and league as ``of_team``, with user rows on it."""
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE teams DROP CONSTRAINT unique_team_club_series_league")
        cur.execute("INSERT INTO teams (club_id, series_id, league_id, team_name, display_name) "
                    "SELECT club_id, series_id, league_id, team_name || ' (dup)', display_name FROM teams "
                    "WHERE id = %s RETURNING id", (of_team,))
        dup = cur.fetchone()[0]
        cur.execute("INSERT INTO users (email, team_id) VALUES ('dup@example.org', %s) RETURNING id", (dup,))
        user = cur.fetchone()[0]
        cur.execute("INSERT INTO polls (team_id, created_by, question) VALUES (%s, %s, 'Dup poll?') RETURNING id",
                    (dup, user))
        poll = cur.fetchone()[0]
        cur.execute("INSERT INTO poll_choices (poll_id, choice_text) VALUES (%s, 'Yes')", (poll,))
        cur.execute("INSERT INTO captain_messages (team_id, captain_user_id, message) VALUES (%s, %s, 'hi')",
                    (dup, user))
        if same_practice:
            cur.execute("INSERT INTO practice_times (team_id, day_of_week, start_time) "
                        "SELECT %s, day_of_week, start_time FROM practice_times WHERE team_id = %s LIMIT 1",
                        (dup, of_team))
        else:
            cur.execute("INSERT INTO practice_times (team_id, day_of_week, start_time) "
                        "VALUES (%s, 'Sunday', '06:15')", (dup,))
        cur.execute("INSERT INTO saved_lineups (user_id, team_id, lineup_name) VALUES (%s, %s, 'A')", (user, dup))
        cur.execute("INSERT INTO videos (team_id, title) VALUES (%s, 'dup video')", (dup,))
        cur.execute("INSERT INTO activity_log (user_id, team_id, action_type) VALUES (%s, %s, 'x')", (user, dup))
        cur.execute("INSERT INTO user_contexts (user_id, team_id, active_team_id) VALUES (%s, %s, %s)",
                    (user, dup, dup))
    conn.commit()
    return dup
