"""The SQL of the legacy ETL's reference-data steps, split out of :mod:`rally_etl.etl`.

Leagues, clubs and series (one statement per row), the club-league and series-league links
(paged), and the row-by-row team upsert; with the paged writer the fact steps share. Each
function is the body of the :class:`~rally_etl.etl.ComprehensiveETL` method of the same name,
which delegates here; ``etl`` is that ETL instance (its records, extracted teams and stats).
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extras import execute_values

from .names import collapse, normalize_league_id

logger = logging.getLogger(__name__)

PAGE_SIZE = 1000

_UPSERT_TEAM = """
INSERT INTO teams (club_id, series_id, league_id, team_name, team_alias, display_name)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (club_id, series_id, league_id) DO UPDATE
SET team_name = EXCLUDED.team_name, team_alias = EXCLUDED.team_alias,
    display_name = EXCLUDED.display_name, updated_at = now()
"""


def _insert_pages(cur, query: str, rows: list[tuple], template: str | None = None) -> int:
    """execute_values page by page; the number of rows written (summed over pages)."""
    written = 0
    for start in range(0, len(rows), PAGE_SIZE):
        execute_values(
            cur, query, rows[start : start + PAGE_SIZE], template=template, page_size=PAGE_SIZE
        )
        written += max(cur.rowcount, 0)
    return written


# -- reference data --------------------------------------------------------------


def import_leagues(conn, leagues_data: list[dict[str, Any]]) -> int:
    with conn.cursor() as cur:
        for league in leagues_data:
            cur.execute(
                "INSERT INTO leagues (league_id, league_name, league_url) VALUES (%s, %s, %s) "
                "ON CONFLICT (league_id) DO UPDATE SET league_name = EXCLUDED.league_name, "
                "league_url = EXCLUDED.league_url",
                (league["league_id"], league["league_name"], league.get("league_url")),
            )
    logger.info("imported %d leagues", len(leagues_data))
    return len(leagues_data)


def import_clubs(conn, clubs_data: list[dict[str, Any]]) -> int:
    with conn.cursor() as cur:
        for club in clubs_data:
            cur.execute(
                "INSERT INTO clubs (name, club_address) VALUES (%s, %s) ON CONFLICT (name) "
                "DO UPDATE SET club_address = COALESCE(EXCLUDED.club_address, clubs.club_address)",
                (club["name"], club.get("club_address")),
            )
    logger.info("imported %d clubs", len(clubs_data))
    return len(clubs_data)


def import_series(conn, series_data: list[dict[str, Any]]) -> int:
    with conn.cursor() as cur:
        for series in series_data:
            cur.execute(
                "INSERT INTO series (name, display_name) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET display_name = EXCLUDED.display_name",
                (series["name"], series.get("display_name") or series["name"]),
            )
    logger.info("imported %d series", len(series_data))
    return len(series_data)


def import_club_leagues(etl: Any, conn) -> int:
    pairs = {
        (etl._player_club(r), normalize_league_id(r["League"])) for r in etl._records("players")
    }
    pairs.update((t["club_name"], t["league_id"]) for t in etl.extract_teams())
    with conn.cursor() as cur:
        written = _insert_pages(
            cur,
            "INSERT INTO club_leagues (club_id, league_id) SELECT c.id, l.id "
            "FROM (VALUES %s) AS v (club, league) JOIN clubs c ON c.name = v.club "
            "JOIN leagues l ON l.league_id = v.league ON CONFLICT DO NOTHING",
            sorted(pairs),
        )
    logger.info("imported %d club-league relationships", written)
    return written


def import_series_leagues(etl: Any, conn) -> int:
    pairs = {
        (collapse(r["Series"]), normalize_league_id(r["League"])) for r in etl._records("players")
    }
    pairs.update(
        (collapse(r["series"]), normalize_league_id(r["league_id"]))
        for r in etl._records("series_stats")
    )
    pairs.update((t["series_name"], t["league_id"]) for t in etl.extract_teams())
    with conn.cursor() as cur:
        written = _insert_pages(
            cur,
            "INSERT INTO series_leagues (series_id, league_id) SELECT s.id, l.id "
            "FROM (VALUES %s) AS v (series, league) JOIN series s ON s.name = v.series "
            "JOIN leagues l ON l.league_id = v.league ON CONFLICT DO NOTHING",
            sorted(pairs),
        )
    logger.info("imported %d series-league relationships", written)
    return written


# -- teams (row by row, as the original) -----------------------------------------


def import_teams(etl: Any, conn, teams_data: list[dict[str, Any]]) -> int:
    """Upsert each team by (club_id, series_id, league_id); a failing row is counted."""
    imported = skipped = failed = 0
    savepoint = sql.Identifier("import_team_row")
    with conn.cursor() as cur:
        for team in teams_data:
            cur.execute("SELECT id FROM clubs WHERE name = %s", (team["club_name"],))
            club = cur.fetchone()
            cur.execute("SELECT id FROM series WHERE name = %s", (team["series_name"],))
            series = cur.fetchone()
            cur.execute("SELECT id FROM leagues WHERE league_id = %s", (team["league_id"],))
            league = cur.fetchone()
            if not (club and series and league):
                skipped += 1
                logger.warning(
                    "skipping team %s: missing club, series or league", team["team_name"]
                )
                continue
            cur.execute(sql.SQL("SAVEPOINT {}").format(savepoint))
            try:
                cur.execute(
                    _UPSERT_TEAM,
                    (
                        club[0],
                        series[0],
                        league[0],
                        team["team_name"],
                        team.get("team_alias"),
                        team.get("display_name") or team["team_name"],
                    ),
                )
            except psycopg2.Error as exc:
                cur.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(savepoint))
                failed += 1
                logger.warning(
                    "team %s (%s) failed: %s",
                    team["team_name"],
                    team["league_id"],
                    str(exc).strip(),
                )
            else:
                imported += 1
            cur.execute(sql.SQL("RELEASE SAVEPOINT {}").format(savepoint))
    etl.stats["teams_skipped"] = skipped
    etl.stats["teams_failed"] = failed
    logger.info("teams: %d imported, %d skipped, %d failed", imported, skipped, failed)
    return imported
