"""The ``original`` approach: the specification's script re-created faithfully (backup tables
made with ``CREATE TABLE ... AS``, per-row look-ups and upsert in batches of 50 each committed,
per-row remap by name, an orphan count)."""

from __future__ import annotations

import time

import psycopg2
from psycopg2 import sql

from .constants import ORIGINAL_BATCH
from .legacy import legacy_segment

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
