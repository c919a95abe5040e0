"""The approaches that import the teams: ``protected`` (and ``fallback``: the same without the
capture triggers), ``bare`` and ``copy_floor`` here, ``original`` in its own module; ``RUNNERS``
maps each name to its function."""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import time

from psycopg2 import sql

from .counting import CountingConnection
from .legacy import legacy_segment
from .original import run_original


def copy_text(value) -> str:
    if value is None:
        return "\\N"
    return (
        str(value)
        .replace("\\", "\\\\")
        .replace("\t", "\\t")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )


def copy_rows(cur, table: str, columns, rows) -> None:
    buf = io.StringIO("".join("\t".join(copy_text(v) for v in row) + "\n" for row in rows))
    cur.copy_expert(
        sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        ),
        buf,
    )


def team_tuples(teams) -> list:
    return [
        (
            t["league_id"],
            t["club_name"],
            t["series_name"],
            t["team_name"],
            t.get("team_alias"),
            t.get("display_name"),
        )
        for t in teams
    ]


STAGE_COLUMNS = ("league_id", "club_name", "series_name", "team_name", "team_alias", "display_name")


# -- the four approaches (each returns {stage: seconds}, and the legacy writes) ---------------
#: what a runner measured so far, for the report of a run that fails half-way
PARTIAL: dict = {"stages": {}, "legacy": {}}


def run_protected(conn, etl, teams, clear: bool, profile: bool) -> tuple:
    from bulletproof_etl import BulletproofTeamPreservation

    stages: dict = PARTIAL["stages"]
    legacy: dict = {}
    prof = cProfile.Profile() if profile else None

    def timed(name, fn, *args, **kwargs):
        if prof:
            prof.enable()
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            stages[name] = stages.get(name, 0.0) + time.perf_counter() - started
            if prof:
                prof.disable()

    report = {}
    if profile:
        CountingConnection.trace = {}
    p = BulletproofTeamPreservation(conn)
    timed("enter", p.__enter__)
    try:
        if clear is None:  # the call a user makes: run() (with the triggers, the capture path)
            timed("run", p.run, teams)
            restore, health = p.report.restore, p.report.health
        else:  # the legacy steps between the stages: stage by stage, as the per-step ETL calls them
            timed("constraints", p.validate_constraints)
            timed("snapshot", p.backup_user_data)
            legacy = PARTIAL["legacy"] = legacy_segment(conn, etl, clear)
            timed("upsert", p.preserve_teams_during_import, teams)
            restore = timed("restore", p.restore_user_data).to_dict()
            health = timed("health", p.validate_health, raise_on_critical=True).to_dict()
    except BaseException:
        p.__exit__(*sys.exc_info())
        raise
    timed("exit", p.__exit__, None, None, None)
    timed("commit", conn.commit)
    report = {
        "health": health["status"],
        "issues": health["issues"],
        "restore_totals": restore["totals"],
        "teams": p.report.teams,
        "library_timings": p.report.timings,
        "capture": p.report.capture,
    }
    if prof:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(30)
        report["profile"] = out.getvalue()
        slowest = sorted(CountingConnection.trace.items(), key=lambda kv: -kv[1][0])[:40]
        report["statements_by_time"] = [
            {"seconds": round(sec, 4), "calls": calls, "statement": text}
            for text, (sec, calls) in slowest
        ]
    return stages, legacy, report


def run_bare(conn, etl, teams, clear, profile) -> tuple:
    legacy = legacy_segment(conn, etl, clear, commit=True) if clear is not None else {}
    started = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE bench_bare_stage (league_id text, club_name text, series_name text, "
            "team_name text, team_alias text, display_name text) ON COMMIT DROP"
        )
        copy_rows(cur, "bench_bare_stage", STAGE_COLUMNS, team_tuples(teams))
        cur.execute(
            "INSERT INTO teams AS t (club_id, series_id, league_id, team_name, team_alias, display_name) "
            "SELECT c.id, s.id, l.id, st.team_name, st.team_alias, coalesce(st.display_name, st.team_name) "
            "FROM bench_bare_stage st JOIN leagues l ON l.league_id = st.league_id "
            "JOIN clubs c ON c.name = st.club_name JOIN series s ON s.name = st.series_name "
            "ON CONFLICT (club_id, series_id, league_id) DO UPDATE SET team_name = EXCLUDED.team_name, "
            "team_alias = EXCLUDED.team_alias, display_name = EXCLUDED.display_name, updated_at = now() "
            "WHERE (t.team_name, t.team_alias, t.display_name) IS DISTINCT FROM "
            "(EXCLUDED.team_name, EXCLUDED.team_alias, EXCLUDED.display_name)"
        )
        written = cur.rowcount
    conn.commit()
    return {"upsert": time.perf_counter() - started}, legacy, {"written": written}


def run_copy_floor(conn, etl, teams, clear, profile) -> tuple:
    legacy = legacy_segment(conn, etl, clear, commit=True) if clear is not None else {}
    started = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE bench_copy_floor (league_id text, club_name text, series_name text, "
            "team_name text, team_alias text, display_name text) ON COMMIT DROP"
        )
        copy_rows(cur, "bench_copy_floor", STAGE_COLUMNS, team_tuples(teams))
    conn.commit()
    return {"copy": time.perf_counter() - started}, legacy, {}


RUNNERS = {
    "protected": run_protected,
    "fallback": run_protected,  # the same, on a clone whose capture triggers the worker removed
    "bare": run_bare,
    "original": run_original,
    "copy_floor": run_copy_floor,
}
