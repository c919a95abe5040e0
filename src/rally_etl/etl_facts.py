"""The SQL of the legacy ETL's fact steps, split out of :mod:`rally_etl.etl`.

Players, series_stats, match_scores and schedule rows, written page by page, with the team-id
lookups they share. Each function is the body of the
:class:`~rally_etl.etl.ComprehensiveETL` method of the same name, which delegates here;
``etl`` is that ETL instance (its records, player parsing, lookups and stats).
"""

from __future__ import annotations

import logging
from typing import Any

from . import loader
from .etl_reference import _insert_pages
from .names import (
    canonical_series,
    collapse,
    normalize_league_id,
    parse_team_name,
    strip_schedule_suffix,
)

logger = logging.getLogger(__name__)

_TEAMS_SQL = """
SELECT t.id, l.league_id, c.name, s.name, t.team_name
FROM teams t JOIN leagues l ON l.id = t.league_id
JOIN clubs c ON c.id = t.club_id JOIN series s ON s.id = t.series_id
"""


def lookups(cur) -> dict[str, dict]:
    cur.execute("SELECT league_id, id FROM leagues")
    leagues = dict(cur.fetchall())
    cur.execute(_TEAMS_SQL)
    by_key: dict[tuple[str, str, str], int] = {}
    by_name: dict[tuple[str, str], int] = {}
    for team_id, code, club, series, name in cur.fetchall():
        by_key.setdefault((code, club, canonical_series(code, series)), team_id)
        by_name.setdefault((code, name), team_id)
    return {"leagues": leagues, "by_key": by_key, "by_name": by_name}


def name_lookup(look: dict, league: str, raw_name: str) -> int | None:
    return look["by_name"].get((league, strip_schedule_suffix(raw_name)))


def import_players(etl: Any, conn) -> int:
    """Players with their club, series and team; one row per (player, league, club, series)."""
    with conn.cursor() as cur:
        look = etl._lookups(cur)
        cur.execute("SELECT name, id FROM clubs")
        clubs = dict(cur.fetchall())
        cur.execute("SELECT name, id FROM series")
        series_ids = dict(cur.fetchall())
        rows: dict[tuple, tuple] = {}
        skipped = 0
        for r in etl._records("players"):
            league = normalize_league_id(r["League"])
            club, series = etl._player_club(r), collapse(r["Series"])
            ids = (look["leagues"].get(league), clubs.get(club), series_ids.get(series))
            if None in ids:
                skipped += 1
                continue
            team_name = etl._player_team_name(r)
            team_id = look["by_name"].get((league, team_name)) if team_name else None
            if team_id is None:
                parsed = etl._player_team(r)
                suffix = parsed.series_suffix if parsed else None
                canon = canonical_series(league, suffix or series)
                team_id = look["by_key"].get((league, club, canon))
            pid = r["Player ID"].strip()
            rows[(pid, *ids)] = (
                pid,
                collapse(r.get("First Name") or ""),
                collapse(r.get("Last Name") or ""),
                *ids,
                team_id,
                loader.parse_pti(r.get("PTI")),
                loader.parse_int(r.get("Wins")),
                loader.parse_int(r.get("Losses")),
                str(r.get("Captain") or "").strip(),
            )
        written = _insert_pages(
            cur,
            "INSERT INTO players (tenniscores_player_id, first_name, last_name, league_id, "
            "club_id, series_id, team_id, pti, wins, losses, captain_status) VALUES %s "
            "ON CONFLICT ON CONSTRAINT unique_player_in_league_club_series DO UPDATE SET "
            "first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name, "
            "team_id = EXCLUDED.team_id, pti = EXCLUDED.pti, wins = EXCLUDED.wins, "
            "losses = EXCLUDED.losses, captain_status = EXCLUDED.captain_status",
            list(rows.values()),
        )
    etl.stats["players_skipped"] = skipped
    logger.info("imported %d players (%d skipped)", written, skipped)
    return written


def import_series_stats(etl: Any, conn) -> int:
    with conn.cursor() as cur:
        look = etl._lookups(cur)
        cur.execute("SELECT name, id FROM series")
        series_ids = dict(cur.fetchall())
        rows = []
        for r in etl._records("series_stats"):
            league, series = normalize_league_id(r["league_id"]), collapse(r["series"])
            club = parse_team_name(league, r["team"], series).club
            matches = r.get("matches") or {}
            rows.append(
                (
                    look["leagues"].get(league),
                    series,
                    strip_schedule_suffix(r["team"]),
                    look["by_key"].get((league, club, canonical_series(league, series))),
                    series_ids.get(series),
                    loader.parse_int(r.get("points")),
                    loader.parse_int(matches.get("won")),
                    loader.parse_int(matches.get("lost")),
                    loader.parse_int(matches.get("tied")),
                )
            )
        written = _insert_pages(
            cur,
            "INSERT INTO series_stats (league_id, series, team, team_id, series_id, points, "
            "matches_won, matches_lost, matches_tied) VALUES %s",
            rows,
        )
    logger.info("imported %d series stats", written)
    return written


def import_match_scores(etl: Any, conn) -> int:
    with conn.cursor() as cur:
        look = etl._lookups(cur)
        rows = []
        for r in etl._records("match_history"):
            league = normalize_league_id(r["league_id"])
            match_date = loader.parse_date(r.get("Date"))
            if match_date is None:
                continue
            winner = (r.get("Winner") or "").strip().lower()
            rows.append(
                (
                    look["leagues"].get(league),
                    match_date,
                    r["Home Team"],
                    r["Away Team"],
                    etl._name_lookup(look, league, r["Home Team"]),
                    etl._name_lookup(look, league, r["Away Team"]),
                    r.get("Home Player 1 ID"),
                    r.get("Home Player 2 ID"),
                    r.get("Away Player 1 ID"),
                    r.get("Away Player 2 ID"),
                    str(r.get("Scores") or ""),
                    winner if winner in ("home", "away") else None,
                )
            )
        written = _insert_pages(
            cur,
            "INSERT INTO match_scores (league_id, match_date, home_team, away_team, "
            "home_team_id, away_team_id, home_player_1_id, home_player_2_id, away_player_1_id, "
            "away_player_2_id, scores, winner) VALUES %s",
            rows,
        )
    logger.info("imported %d match scores", written)
    return written


def import_schedules(etl: Any, conn) -> int:
    """Schedule rows; team ids by name within the league, NULL when no team has it."""
    with conn.cursor() as cur:
        look = etl._lookups(cur)
        rows, skipped = [], 0
        for r in etl._records("schedules"):
            league = normalize_league_id(r["League"])
            match_date = loader.parse_date(r.get("date"))
            if match_date is None:
                skipped += 1
                continue
            rows.append(
                (
                    look["leagues"].get(league),
                    match_date,
                    loader.parse_time(r.get("time")),
                    r["home_team"],
                    r["away_team"],
                    etl._name_lookup(look, league, r["home_team"]),
                    etl._name_lookup(look, league, r["away_team"]),
                    r.get("location"),
                )
            )
        written = _insert_pages(
            cur,
            "INSERT INTO schedule (league_id, match_date, match_time, home_team, away_team, "
            "home_team_id, away_team_id, location) VALUES %s",
            rows,
        )
    etl.stats["schedule_skipped"] = skipped
    logger.info("imported %d schedule rows (%d without a date skipped)", written, skipped)
    return written
