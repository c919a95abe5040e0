"""The protected import side by side with what a user would otherwise run, in one run.

Approaches, each importing the same generated teams into a clone of the same database:

- ``protected``: the library's full run on the caller's connection (constraints, durable
  snapshot, id-re-using upsert, restore, health), committed by the caller.
- ``bare``: the best unprotected set-based upsert (COPY into a temporary table, one
  ``INSERT ... ON CONFLICT DO UPDATE ... WHERE ... IS DISTINCT FROM``); no snapshot, no restore.
- ``original``: the specification's approach re-created faithfully: backup tables made with
  ``CREATE TABLE ... AS``, per-row look-ups and upsert in batches of 50 each committed, per-row
  remap of polls, captain messages and practice times by name, an orphan count.
- ``copy_floor``: COPY of the same rows into an empty temporary table (the physical floor).

Workloads: ``first`` (teams into a database holding only leagues, clubs and series), ``unchanged``
(the same season again), ``clear`` (the legacy ``clear_target_tables`` and parent import between
the snapshot and the teams, same season), ``churn`` (the same, next season with 10% churn). The
legacy steps are not timed and their writes are not counted for any approach.

Each measurement runs in a fresh Python process on a fresh clone of a prepared database, so its
peak memory and its ``pg_stat_user_tables`` deltas are its own. Usage::

    python scripts/benchmark.py --quick
    python scripts/benchmark.py --dsn postgresql://postgres@127.0.0.1:5432/postgres --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

APPROACHES = ("protected", "bare", "original", "copy_floor")
WORKLOADS = ("first", "unchanged", "clear", "churn")
SEED = 7
PER_TEAM = 0.7  # activity units per team: about ten user rows per team
ORIGINAL_BATCH = 50
ORIGINAL_LIMIT_SECONDS = 600  # the original is skipped at a size where it would take longer
USER_TABLES = (
    "users",
    "user_player_associations",
    "polls",
    "poll_choices",
    "poll_responses",
    "captain_messages",
    "practice_times",
    "saved_lineups",
    "lineup_escrow",
    "user_contexts",
    "activity_log",
    "videos",
    "player_availability",
)
USER_REFS = (  # (table, column, entity table): every user-owned reference of the reference schema
    ("users", "team_id", "teams"),
    ("users", "league_context", "leagues"),
    ("polls", "team_id", "teams"),
    ("captain_messages", "team_id", "teams"),
    ("practice_times", "team_id", "teams"),
    ("practice_times", "league_id", "leagues"),
    ("saved_lineups", "team_id", "teams"),
    ("lineup_escrow", "initiator_team_id", "teams"),
    ("lineup_escrow", "recipient_team_id", "teams"),
    ("user_contexts", "league_id", "leagues"),
    ("user_contexts", "team_id", "teams"),
    ("user_contexts", "active_team_id", "teams"),
    ("activity_log", "team_id", "teams"),
    ("videos", "team_id", "teams"),
    ("player_availability", "series_id", "series"),
)
PRACTICE = "%practice%"
# the figures the issue asks for
MAX_PROTECTED_OVER_BARE = {"unchanged": 1.5, "first": 3.0, "clear": 3.0, "churn": 3.0}
MIN_ORIGINAL_OVER_PROTECTED = 20.0
MAX_SCALING = 12.0
MAX_PEAK_MB = 300.0
STATEMENTS_CONSTANT = (
    600  # statements allowed besides one per 1,000 rows (as tests/test_statement_count.py)
)


# -- counting statements ------------------------------------------------------------------
class CountingCursor(psycopg2.extensions.cursor):
    """Counts every statement sent to the server (the tracer hook of the benchmark)."""

    def execute(self, query, vars=None):  # noqa: A002 - psycopg2's own parameter name
        CountingConnection.count(1)
        if CountingConnection.trace is None or CountingConnection.paused:
            return super().execute(query, vars)
        started = time.perf_counter()
        try:
            return super().execute(query, vars)
        finally:  # --profile: seconds per statement text (its first 160 characters, as sent)
            text = query.as_string(self) if hasattr(query, "as_string") else str(query)
            key = " ".join(text.split())[:160]
            seconds, calls = CountingConnection.trace.get(key, (0.0, 0))
            CountingConnection.trace[key] = (seconds + time.perf_counter() - started, calls + 1)

    def executemany(self, query, vars_list):
        vars_list = list(vars_list)
        CountingConnection.count(len(vars_list))
        return super().executemany(query, vars_list)

    def copy_expert(self, sql_, file, size=8192):
        CountingConnection.count(1)
        return super().copy_expert(sql_, file, size)

    def copy_from(self, *args, **kwargs):
        CountingConnection.count(1)
        return super().copy_from(*args, **kwargs)

    def callproc(self, procname, parameters=None):
        CountingConnection.count(1)
        return super().callproc(procname, parameters)


class CountingConnection(psycopg2.extensions.connection):
    """Every cursor counts; commits and rollbacks count too (each is a round trip)."""

    statements = 0  # process-wide: the worker process measures one approach
    trace = None  # --profile: {statement text: (seconds, calls)}
    paused = False  # while the legacy ETL's own steps run

    @classmethod
    def count(cls, n: int) -> None:
        if not cls.paused:
            cls.statements += n

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cursor_factory = CountingCursor

    def commit(self):
        CountingConnection.count(1)
        return super().commit()

    def rollback(self):
        CountingConnection.count(1)
        return super().rollback()


_real_connect = psycopg2.connect


def counting_connect(*args, **kwargs):
    kwargs.setdefault("connection_factory", CountingConnection)
    return _real_connect(*args, **kwargs)


# -- small helpers --------------------------------------------------------------------------
def with_dbname(dsn: str, dbname: str) -> str:
    params = psycopg2.extensions.parse_dsn(dsn)
    params["dbname"] = dbname
    return psycopg2.extensions.make_dsn(**params)


def admin_connect(dsn: str):
    conn = _real_connect(dsn)
    conn.autocommit = True
    return conn


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


def memory_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fp:
        for line in fp:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def reset_peak_memory() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fp:
            fp.write("5")  # resets VmHWM to the current resident size
        return True
    except OSError:
        return False


class _NoCommit:
    """The caller's connection as the legacy ETL sees it, minus its commits: the legacy
    ``clear_target_tables`` commits, which would end the protected run's transaction early."""

    def __init__(self, conn):
        self._conn = conn

    def cursor(self, *args, **kwargs):
        return self._conn.cursor(*args, **kwargs)

    def commit(self):
        pass


def xact_writes(conn) -> dict:
    """Rows this transaction has written so far, per table (``pg_stat_xact_user_tables``)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT schemaname || '.' || relname, n_tup_ins, n_tup_upd, n_tup_del "
            "FROM pg_stat_xact_user_tables"
        )
        return {name: (i, u, d) for name, i, u, d in cur.fetchall()}


def legacy_segment(conn, etl, clear: bool, commit: bool = False) -> dict:
    """The legacy ETL's own steps around the team import (untimed, uncounted): the rows they wrote."""
    CountingConnection.paused = True
    before = xact_writes(conn)
    if clear:
        etl.clear_target_tables(_NoCommit(conn))
    etl.import_leagues(conn, etl.extract_leagues())
    etl.import_clubs(conn, etl.extract_clubs())
    etl.import_series(conn, etl.extract_series())
    etl.import_club_leagues(conn)
    etl.import_series_leagues(conn)
    after = xact_writes(conn)
    if commit:  # the legacy ETL commits after each step; an unprotected approach starts afresh
        conn.commit()
    CountingConnection.paused = False
    out = {}
    for name, counts in after.items():
        prev = before.get(name, (0, 0, 0))
        delta = tuple(a - b for a, b in zip(counts, prev, strict=True))
        if any(delta):
            out[name] = delta
    return out


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
        timed("constraints", p.validate_constraints)
        timed("snapshot", p.backup_user_data)
        if clear is not None:
            legacy = PARTIAL["legacy"] = legacy_segment(conn, etl, clear)
        timed("upsert", p.preserve_teams_during_import, teams)
        restore = timed("restore", p.restore_user_data)
        health = timed("health", p.validate_health, raise_on_critical=True)
    except BaseException:
        p.__exit__(*sys.exc_info())
        raise
    timed("exit", p.__exit__, None, None, None)
    timed("commit", conn.commit)
    report = {
        "health": health.status.value,
        "issues": health.issues,
        "restore_totals": restore.to_dict()["totals"],
        "teams": p.report.teams,
        "library_timings": p.report.timings,
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


ORIGINAL_TABLES = ("polls", "captain_messages", "practice_times")
_TEAM_BY_NAMES = (
    "SELECT t.id FROM teams t JOIN leagues l ON l.id = t.league_id JOIN clubs c ON c.id = t.club_id "
    "JOIN series s ON s.id = t.series_id WHERE l.league_id = %s AND c.name = %s AND s.name = %s"
)
_TEAM_BY_ALIAS = (
    "SELECT t.id FROM teams t JOIN leagues l ON l.id = t.league_id "
    "WHERE l.league_id = %s AND (t.team_name = %s OR t.team_alias = %s)"
)
_STANDARD_UPSERT = (
    "INSERT INTO teams (club_id, series_id, league_id, team_name, team_alias, display_name, created_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, CURRENT_TIMESTAMP) "
    "ON CONFLICT (club_id, series_id, league_id) DO UPDATE SET team_name = EXCLUDED.team_name, "
    "team_alias = EXCLUDED.team_alias, display_name = EXCLUDED.display_name, updated_at = CURRENT_TIMESTAMP "
    "RETURNING id, (xmax = 0) AS is_insert"
)


def _original_backup(cur) -> None:
    """The specification's "comprehensive backup": tables with team context, made with CREATE TABLE AS."""
    cur.execute("DROP TABLE IF EXISTS bulletproof_teams_backup")
    cur.execute(
        "CREATE TABLE bulletproof_teams_backup AS SELECT *, NOW() AS backup_timestamp FROM teams"
    )
    for table in ORIGINAL_TABLES:
        backup = sql.Identifier(f"bulletproof_{table}_backup")
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(backup))
        cur.execute(
            sql.SQL(
                "CREATE TABLE {} AS SELECT p.*, t.team_name, t.team_alias, l.league_id AS team_league_id, "
                "c.name AS team_club_name, s.name AS team_series_name, NOW() AS backup_timestamp FROM {} p "
                "LEFT JOIN teams t ON p.team_id = t.id LEFT JOIN leagues l ON t.league_id = l.id "
                "LEFT JOIN clubs c ON t.club_id = c.id LEFT JOIN series s ON t.series_id = s.id"
            ).format(backup, sql.Identifier(table))
        )


def _original_team(cur, team) -> tuple:
    """Per-row look-ups, then the standard upsert; returns (id, inserted) or None."""
    cur.execute("SELECT id FROM leagues WHERE league_id = %s", (team["league_id"],))
    league = cur.fetchone()
    cur.execute("SELECT id FROM clubs WHERE name = %s", (team["club_name"],))
    club = cur.fetchone()
    cur.execute("SELECT id FROM series WHERE name = %s", (team["series_name"],))
    series = cur.fetchone()
    if not (league and club and series):
        return None
    cur.execute(
        _STANDARD_UPSERT,
        (
            club[0],
            series[0],
            league[0],
            team["team_name"],
            team.get("team_alias"),
            team.get("display_name") or team["team_name"],
        ),
    )
    return cur.fetchone()


def _original_manual(cur, team):
    """The fallback: select by the composite key, then update or insert."""
    cur.execute("SELECT id FROM leagues WHERE league_id = %s", (team["league_id"],))
    league = cur.fetchone()
    cur.execute("SELECT id FROM clubs WHERE name = %s", (team["club_name"],))
    club = cur.fetchone()
    cur.execute("SELECT id FROM series WHERE name = %s", (team["series_name"],))
    series = cur.fetchone()
    if not (league and club and series):
        return None
    cur.execute(
        "SELECT id FROM teams WHERE club_id = %s AND series_id = %s AND league_id = %s",
        (club[0], series[0], league[0]),
    )
    found = cur.fetchone()
    display = team.get("display_name") or team["team_name"]
    if found:
        cur.execute(
            "UPDATE teams SET team_name = %s, team_alias = %s, display_name = %s, "
            "updated_at = CURRENT_TIMESTAMP WHERE id = %s",
            (team["team_name"], team.get("team_alias"), display, found[0]),
        )
        return found[0], False
    cur.execute(
        "INSERT INTO teams (club_id, series_id, league_id, team_name, team_alias, display_name) "
        "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (club[0], series[0], league[0], team["team_name"], team.get("team_alias"), display),
    )
    return cur.fetchone()[0], True


def run_original(conn, etl, teams, clear, profile) -> tuple:
    stages: dict = {}
    counts = {"created": 0, "preserved": 0, "errors": 0, "remapped": 0, "unmapped": 0}
    started = time.perf_counter()
    with conn.cursor() as cur:  # step 1: constraints
        cur.execute(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'teams'::regclass AND contype = 'u'"
        )
        cur.fetchone()
        cur.execute(
            "SELECT count(*) FROM teams WHERE club_id IS NULL OR series_id IS NULL OR league_id IS NULL"
        )
        cur.fetchone()
        _original_backup(cur)  # step 2: backup
    conn.commit()
    stages["backup"] = time.perf_counter() - started
    legacy = legacy_segment(conn, etl, clear, commit=True) if clear is not None else {}
    started = time.perf_counter()
    with conn.cursor() as cur:  # step 3: teams, 50 per batch, each batch committed
        for start in range(0, len(teams), ORIGINAL_BATCH):
            batch = teams[start : start + ORIGINAL_BATCH]
            try:
                results = [_original_team(cur, team) for team in batch]
                conn.commit()
            except psycopg2.Error:
                conn.rollback()  # the batch failed: the manual path, row by row
                results = []
                for team in batch:
                    try:
                        results.append(_original_manual(cur, team))
                        conn.commit()
                    except psycopg2.Error:
                        conn.rollback()
                        results.append(None)
            for res in results:
                if res is None:
                    counts["errors"] += 1
                elif res[1]:
                    counts["created"] += 1
                else:
                    counts["preserved"] += 1
    stages["upsert"] = time.perf_counter() - started
    started = time.perf_counter()
    with conn.cursor() as cur:  # step 4: per-row remap by name
        for table in ORIGINAL_TABLES:
            cur.execute(
                sql.SQL(
                    "SELECT id, team_league_id, team_club_name, team_series_name, team_name, "
                    "team_alias FROM {}"
                ).format(sql.Identifier(f"bulletproof_{table}_backup"))
            )
            rows = cur.fetchall()
            for n, (row_id, league, club, series, name, alias) in enumerate(rows, start=1):
                new = None
                if league is not None:
                    cur.execute(_TEAM_BY_NAMES, (league, club, series))
                    found = cur.fetchone()
                    if found is None:
                        cur.execute(_TEAM_BY_ALIAS, (league, name, alias))
                        found = cur.fetchone()
                    new = found[0] if found else None
                if new is None:
                    counts["unmapped"] += 1
                    continue
                cur.execute(
                    sql.SQL("UPDATE {} SET team_id = %s WHERE id = %s").format(
                        sql.Identifier(table)
                    ),
                    (new, row_id),
                )
                counts["remapped"] += 1
                if n % ORIGINAL_BATCH == 0:
                    conn.commit()
            conn.commit()
    stages["restore"] = time.perf_counter() - started
    started = time.perf_counter()
    with conn.cursor() as cur:  # step 5: health, then the backups are "auto-cleaned"
        for table in ORIGINAL_TABLES:
            cur.execute(
                sql.SQL(
                    "SELECT count(*) FROM {} p WHERE p.team_id IS NOT NULL AND NOT EXISTS "
                    "(SELECT 1 FROM teams t WHERE t.id = p.team_id)"
                ).format(sql.Identifier(table))
            )
            cur.fetchone()
        for table in ("teams",) + ORIGINAL_TABLES:
            cur.execute(
                sql.SQL("DROP TABLE IF EXISTS {}").format(
                    sql.Identifier(f"bulletproof_{table}_backup")
                )
            )
    conn.commit()
    stages["health"] = time.perf_counter() - started
    return stages, legacy, counts


RUNNERS = {
    "protected": run_protected,
    "bare": run_bare,
    "original": run_original,
    "copy_floor": run_copy_floor,
}


# -- the worker: one approach, one workload, one database, one process ------------------------
def worker(spec: dict) -> dict:
    from rally_etl import ComprehensiveETL

    psycopg2.connect = counting_connect  # the library's side connection counts too
    etl = ComprehensiveETL(spec["data_dir"], spec["dsn"])
    etl.load_json_files()
    teams = etl.extract_teams()
    rss_input = memory_kb("VmRSS")
    resettable = reset_peak_memory()
    conn = psycopg2.connect(spec["dsn"])
    with conn.cursor() as cur:  # every approach starts with the same warm buffers
        for table in ("leagues", "clubs", "series", "teams") + USER_TABLES + ("schedule",):
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
    conn.commit()
    CountingConnection.statements = 0
    # the legacy steps between snapshot and teams: none ("first" has its parents in the template)
    clear = {"first": None, "unchanged": None, "clear": True, "churn": True}[spec["workload"]]
    started = time.perf_counter()
    error = None
    try:
        stages, legacy, report = RUNNERS[spec["approach"]](
            conn, etl, teams, clear, spec.get("profile", False)
        )
    except Exception as exc:  # a failed run is a result too: it is reported, not hidden
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:1500]}"
        stages, legacy, report = PARTIAL["stages"], PARTIAL["legacy"], {}
        with contextlib.suppress(psycopg2.Error):
            conn.rollback()
    wall = time.perf_counter() - started
    statements = CountingConnection.statements
    with conn.cursor() as cur:  # ask the server to publish this backend's counters now
        cur.execute("SELECT current_setting('server_version_num')::int")
        if cur.fetchone()[0] >= 150000:
            cur.execute("SELECT pg_stat_force_next_flush()")
    conn.commit()
    conn.close()
    peak = memory_kb("VmHWM")
    return {
        "seconds": round(sum(stages.values()), 4),
        "wall_including_legacy": round(wall, 4),
        "stages": {k: round(v, 4) for k, v in stages.items()},
        "legacy_writes": legacy,
        "statements": statements,
        "teams_in_input": len(teams),
        "peak_mb_beyond_input": round(max(0, peak - rss_input) / 1024, 1) if resettable else None,
        "input_rss_mb": round(rss_input / 1024, 1),
        "report": report,
        "error": error,
    }


# -- preparing databases ------------------------------------------------------------------------
class Server:
    def __init__(self, dsn: str, prefix: str, keep: bool) -> None:
        self.dsn = dsn
        self.prefix = prefix
        self.keep = keep
        self.created: list = []
        with admin_connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("SHOW server_version")
            self.version = cur.fetchone()[0]
            cur.execute("SHOW server_version_num")
            self.version_num = int(cur.fetchone()[0])
        conn.close()

    def create(self, name: str, template: str | None = None) -> str:
        conn = admin_connect(self.dsn)
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            if template is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            elif self.version_num >= 150000:  # a file copy: much faster than WAL_LOG for big clones
                cur.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY = FILE_COPY").format(
                        sql.Identifier(name), sql.Identifier(template)
                    )
                )
            else:
                cur.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                        sql.Identifier(name), sql.Identifier(template)
                    )
                )
        conn.close()
        self.created.append(name)
        return with_dbname(self.dsn, name)

    def drop(self, name: str) -> None:
        if self.keep:
            return
        conn = admin_connect(self.dsn)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                "AND pid <> pg_backend_pid()",
                (name,),
            )
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.close()
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        for name in list(self.created):
            self.drop(name)


def prepare(server: Server, size: int, workdir: Path, log) -> dict:
    """Generate both seasons; build the two template databases of this size."""
    from bulletproof_etl import BulletproofTeamPreservation
    from rally_etl import ComprehensiveETL, install_schema
    from rally_etl.activity import create_user_activity
    from rally_etl.generate import generate_season, write_season

    started = time.perf_counter()
    s1 = write_season(generate_season(size, SEED), workdir / f"s1_{size}")
    s2 = write_season(generate_season(size, SEED, 2, churn=0.1), workdir / f"s2_{size}")
    log(f"  generated both seasons of {size} teams in {time.perf_counter() - started:.1f}s")
    started = time.perf_counter()
    first = f"{server.prefix}_{size}_first"
    dsn = server.create(first)
    conn = _real_connect(dsn)
    install_schema(conn)
    etl = ComprehensiveETL(s1, dsn)
    etl.load_json_files()
    legacy_segment(conn, etl, clear=False)
    conn.commit()
    conn.close()
    base = f"{server.prefix}_{size}_s1"
    dsn = server.create(base, template=first)
    conn = _real_connect(dsn)
    with BulletproofTeamPreservation(conn) as p:  # season 1, as a protected first import
        p.run(etl.extract_teams())
    conn.commit()
    etl.import_players(conn)
    etl.import_series_stats(conn)
    etl.import_match_scores(conn)
    etl.import_schedules(conn)
    conn.commit()
    activity = create_user_activity(conn, seed=SEED, per_team=PER_TEAM)
    with BulletproofTeamPreservation(conn) as p:  # a steady state: the library has run before
        p.run(etl.extract_teams())
    conn.commit()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
    conn.close()
    log(
        f"  prepared the databases of {size} teams in {time.perf_counter() - started:.1f}s "
        f"({sum(activity.values())} user rows)"
    )
    return {
        "dirs": {"s1": str(s1), "s2": str(s2)},
        "templates": {"first": first, "s1": base},
        "user_rows": sum(activity.values()),
    }


def stat_writes(dsn: str) -> dict:
    """``{schema.table: (ins, upd, del)}`` once the counters stop moving (other backends flush late)."""
    previous = None
    for _ in range(20):
        conn = admin_connect(dsn)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT schemaname || '.' || relname, n_tup_ins, n_tup_upd, n_tup_del "
                "FROM pg_stat_user_tables"
            )
            now = {name: (i, u, d) for name, i, u, d in cur.fetchall()}
        conn.close()
        if now == previous:
            return now
        previous = now
        time.sleep(0.25)
    return previous or {}


def recount(dsn: str) -> dict:
    """User rows and user references pointing at nothing, counted with plain SQL."""
    conn = admin_connect(dsn)
    out = {"user_rows": 0, "orphans": 0}
    with conn.cursor() as cur:
        for table in USER_TABLES:
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            out["user_rows"] += cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM schedule WHERE home_team ILIKE %s", (PRACTICE,))
        out["user_rows"] += cur.fetchone()[0]
        for table, column, entity in USER_REFS:
            cur.execute(
                sql.SQL(
                    "SELECT count(*) FROM {t} x WHERE x.{c} IS NOT NULL AND NOT EXISTS "
                    "(SELECT 1 FROM {e} e WHERE e.id = x.{c})"
                ).format(
                    t=sql.Identifier(table), c=sql.Identifier(column), e=sql.Identifier(entity)
                )
            )
            out["orphans"] += cur.fetchone()[0]
        cur.execute(
            "SELECT count(*) FROM schedule x WHERE x.home_team ILIKE %s AND x.home_team_id IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM teams e WHERE e.id = x.home_team_id)",
            (PRACTICE,),
        )
        out["orphans"] += cur.fetchone()[0]
    conn.close()
    return out


def measure(
    server: Server,
    prepared: dict,
    size: int,
    workload: str,
    approach: str,
    rep: int,
    profile: bool,
    log,
) -> dict:
    template = prepared["templates"]["first" if workload == "first" else "s1"]
    name = f"{server.prefix}_{size}_{workload}_{approach}_{rep}"
    dsn = server.create(name, template=template)
    try:
        before = recount(dsn)
        spec = {
            "dsn": dsn,
            "approach": approach,
            "workload": workload,
            "profile": profile,
            "data_dir": prepared["dirs"]["s2" if workload == "churn" else "s1"],
        }
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{approach}/{workload}/{size} failed:\n{proc.stderr[-4000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        totals = stat_writes(dsn)
        written = {}
        for table, counts in totals.items():
            legacy = result["legacy_writes"].get(table, (0, 0, 0))
            ins, upd, dele = (a - b for a, b in zip(counts, legacy, strict=True))
            if ins or upd or dele:
                written[table] = {"ins": ins, "upd": upd, "del": dele}
        after = recount(dsn)
    finally:
        server.drop(name)
    result.update(
        size=size,
        workload=workload,
        approach=approach,
        rep=rep,
        rows_written=written,
        user_rows_before=before["user_rows"],
        user_rows_after=after["user_rows"],
        orphans_before=before["orphans"],
        orphans_after=after["orphans"],
    )
    log(
        f"    {size:>7} {workload:<9} {approach:<10} #{rep}: {result['seconds']:8.3f}s "
        f"{result['statements']:>7} statements, orphans after {after['orphans']}, "
        f"user rows {before['user_rows']} -> {after['user_rows']}"
    )
    return result


# -- summarising ----------------------------------------------------------------------------------
def summarise(results: list, sizes: list, skipped: dict) -> dict:
    groups: dict = {}
    for r in results:
        groups.setdefault((r["size"], r["workload"], r["approach"]), []).append(r)
    cells = {}
    for (size, workload, approach), runs in groups.items():
        best = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]  # the median run
        user_written = {
            t: v
            for t, v in best["rows_written"].items()
            if t.split(".", 1)[1] in USER_TABLES + ("teams",) and t.startswith("public.")
        }
        cells[f"{size}/{workload}/{approach}"] = {
            "seconds": statistics.median(r["seconds"] for r in runs),
            "runs": [r["seconds"] for r in runs],
            "statements": best["statements"],
            "peak_mb_beyond_input": max((r["peak_mb_beyond_input"] or 0) for r in runs),
            "rows_written": best["rows_written"],
            "rows_written_teams_and_user_tables": sum(
                sum(v.values()) for v in user_written.values()
            ),
            "stages": best["stages"],
            "orphans_after": best["orphans_after"],
            "user_rows_lost": best["user_rows_before"] - best["user_rows_after"],
            "teams": best["teams_in_input"],
            "user_rows": best["user_rows_before"],
            "report": {k: v for k, v in best["report"].items() if k != "profile"},
            "error": next((r["error"] for r in runs if r.get("error")), None),
        }

    def sec(size, workload, approach):
        cell = cells.get(f"{size}/{workload}/{approach}")
        return cell["seconds"] if cell and not cell["error"] else None

    ratios, checks = {}, []
    for size in sizes:
        for workload in WORKLOADS:
            p, b = sec(size, workload, "protected"), sec(size, workload, "bare")
            o, c = sec(size, workload, "original"), sec(size, workload, "copy_floor")
            entry = {
                "protected/bare": round(p / b, 2) if p and b else None,
                "original/protected": round(o / p, 1) if o and p else None,
                "protected/copy_floor": round(p / c, 1) if p and c else None,
            }
            ratios[f"{size}/{workload}"] = entry
            cell = cells.get(f"{size}/{workload}/protected")
            if cell:
                checks.append(
                    (
                        f"{size} {workload}: the protected run completes (health not CRITICAL)",
                        cell["error"] is None,
                        cell["error"] or "completed",
                    )
                )
            if workload == "unchanged" and cell:
                checks.append(
                    (
                        f"{size} unchanged: zero rows written to teams and user tables",
                        cell["rows_written_teams_and_user_tables"] == 0,
                        cell["rows_written_teams_and_user_tables"],
                    )
                )
            if size >= 10_000 and entry["protected/bare"] is not None:
                limit = MAX_PROTECTED_OVER_BARE[workload]
                checks.append(
                    (
                        f"{size} {workload}: protected/bare <= {limit}",
                        entry["protected/bare"] <= limit,
                        entry["protected/bare"],
                    )
                )
            if size == 10_000 and entry["original/protected"] is not None:
                checks.append(
                    (
                        f"{size} {workload}: original/protected >= {MIN_ORIGINAL_OVER_PROTECTED:g}",
                        entry["original/protected"] >= MIN_ORIGINAL_OVER_PROTECTED,
                        entry["original/protected"],
                    )
                )
            if cell:
                rows = cell["teams"] + cell["user_rows"]
                limit = STATEMENTS_CONSTANT + rows // 1000
                checks.append(
                    (
                        f"{size} {workload}: protected statements <= {STATEMENTS_CONSTANT} + rows/1000 "
                        f"= {limit}",
                        cell["statements"] <= limit,
                        cell["statements"],
                    )
                )
                checks.append(
                    (
                        f"{size} {workload}: protected leaves no orphan and loses no row",
                        cell["orphans_after"] == 0 and cell["user_rows_lost"] == 0,
                        f"{cell['orphans_after']} orphans, {cell['user_rows_lost']} lost",
                    )
                )
    for workload in WORKLOADS:
        for approach in APPROACHES:
            a, b = sec(100_000, workload, approach), sec(10_000, workload, approach)
            if a and b:
                ratios[f"time(100k)/time(10k)/{workload}/{approach}"] = round(a / b, 1)
                if approach == "protected":
                    checks.append(
                        (
                            f"{workload}: protected time(100k)/time(10k) <= {MAX_SCALING:g}",
                            a / b <= MAX_SCALING,
                            round(a / b, 1),
                        )
                    )
        cell = cells.get(f"100000/{workload}/protected")
        if cell and cell["peak_mb_beyond_input"] is not None:
            checks.append(
                (
                    f"100000 {workload}: protected peak memory < {MAX_PEAK_MB:g} MB beyond the input",
                    cell["peak_mb_beyond_input"] < MAX_PEAK_MB,
                    cell["peak_mb_beyond_input"],
                )
            )
    return {
        "cells": cells,
        "ratios": ratios,
        "skipped": skipped,
        "checks": [{"figure": f, "met": ok, "measured": m} for f, ok, m in checks],
    }


def render_table(summary: dict, sizes: list) -> str:
    lines = []
    head = (
        f"{'teams':>7} {'workload':<9} {'approach':<10} {'seconds':>9} {'stmts':>7} {'peak MB':>8} "
        f"{'written(teams+user)':>19} {'orphans':>8} {'lost':>6}"
    )
    lines += [head, "-" * len(head)]
    for size in sizes:
        for workload in WORKLOADS:
            for approach in APPROACHES:
                cell = summary["cells"].get(f"{size}/{workload}/{approach}")
                if cell is None:
                    reason = summary["skipped"].get(f"{size}/{approach}")
                    if reason:
                        lines.append(f"{size:>7} {workload:<9} {approach:<10} skipped: {reason}")
                    continue
                if cell["error"]:
                    lines.append(
                        f"{size:>7} {workload:<9} {approach:<10} FAILED after "
                        f"{cell['seconds']:.3f}s: {cell['error'][:300]}"
                    )
                    continue
                lines.append(
                    f"{size:>7} {workload:<9} {approach:<10} {cell['seconds']:>9.3f} {cell['statements']:>7} "
                    f"{cell['peak_mb_beyond_input']:>8.1f} {cell['rows_written_teams_and_user_tables']:>19} "
                    f"{cell['orphans_after']:>8} {cell['user_rows_lost']:>6}"
                )
            r = {
                k: v
                for k, v in summary["ratios"].get(f"{size}/{workload}", {}).items()
                if v is not None
            }
            if r:
                lines.append(
                    f"{'':>7} {workload:<9} ratios: " + ", ".join(f"{k} {v}" for k, v in r.items())
                )
        lines.append("")
    scaling = {k: v for k, v in summary["ratios"].items() if k.startswith("time(")}
    if scaling:
        lines.append(
            "scaling: " + ", ".join(f"{k.split('/', 2)[2]} {v}" for k, v in scaling.items())
        )
    lines.append("")
    for check in summary["checks"]:
        lines.append(
            f"[{'met' if check['met'] else 'NOT MET'}] {check['figure']}: {check['measured']}"
        )
    for key, reason in summary["skipped"].items():
        lines.append(f"[skipped] {key}: {reason}")
    return "\n".join(lines)


def describe_machine(server: Server) -> dict:
    mem_kb = 0
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="ascii") as fp:
        for line in fp:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="ascii") as fp:
        for line in fp:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "postgresql": server.version,
        "python": platform.python_version(),
        "psycopg2": psycopg2.__version__.split()[0],
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dsn", help="a server to create databases on (default: DATABASE_URL, else embedded)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="one small size, one repetition (about a minute)"
    )
    parser.add_argument("--sizes", help="comma-separated team counts (default 1000,10000,100000)")
    parser.add_argument(
        "--reps", type=int, help="repetitions below 100,000 teams (default 3; median reported)"
    )
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--approaches", default=",".join(APPROACHES))
    parser.add_argument("--json", type=Path, help="write every measurement and the summary here")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile the protected run and time each statement it sends (both in the JSON)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases (for inspection)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    from bulletproof_etl import db

    sizes = [
        int(s) for s in (args.sizes or ("1000" if args.quick else "1000,10000,100000")).split(",")
    ]
    reps = args.reps or (1 if args.quick else 3)
    workloads = [w for w in args.workloads.split(",") if w]
    approaches = [a for a in args.approaches.split(",") if a]
    server = Server(db.resolve_dsn(args.dsn), f"bpbench_{uuid.uuid4().hex[:6]}", args.keep)
    machine = describe_machine(server)
    command = "python scripts/benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:])
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    log(
        f"benchmark on PostgreSQL {server.version}, {machine['cpus']} CPUs, sizes {sizes}, {reps} repetitions"
    )
    workdir = Path(tempfile.mkdtemp(prefix="bpbench_"))
    results, skipped = [], {}
    started = time.perf_counter()
    try:
        original_estimate = None
        for size in sizes:
            prepared = prepare(server, size, workdir, log)
            for workload in workloads:
                for approach in approaches:
                    if approach == "original" and original_estimate is not None:
                        guess = original_estimate * size
                        if guess > ORIGINAL_LIMIT_SECONDS:
                            skipped[f"{size}/original"] = (
                                f"would take about {guess:.0f}s per run (> {ORIGINAL_LIMIT_SECONDS}s, "
                                "extrapolated linearly from the smaller size); measured at the smaller sizes only"
                            )
                            continue
                    n = reps if size < 100_000 else 1
                    for rep in range(n):
                        res = measure(
                            server,
                            prepared,
                            size,
                            workload,
                            approach,
                            rep,
                            args.profile and approach == "protected",
                            log,
                        )
                        results.append(res)
                        if approach == "original":
                            original_estimate = max(original_estimate or 0, res["seconds"] / size)
            for name in prepared["templates"].values():
                server.drop(name)
    finally:
        server.drop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    summary = summarise(results, sizes, skipped)
    table = render_table(summary, sizes)
    print(table)
    print(
        f"\n{len(results)} measurements in {time.perf_counter() - started:.0f}s; machine: {machine}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "command": command,
                    "machine": machine,
                    "summary": summary,
                    "measurements": results,
                },
                indent=2,
                default=str,
            )
        )
        log(f"wrote {args.json}")
    return 0 if all(c["met"] for c in summary["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
