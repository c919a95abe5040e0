"""ComprehensiveETL: the legacy nightly import that bulletproof-etl protects.

Faithful to the real one on purpose, including what is wrong with it: it loads the JSON,
deletes every ETL-owned table with foreign keys switched off (practice rows in
``schedule`` included), re-inserts leagues, clubs, series and teams so that every id is
new, imports teams row by row, and commits after every step, so a failure half-way leaves
half an import behind. Do not fix it here: the library fixes it.

With ``league=CODE`` it clears and imports one league: only that league's rows of the
ETL-owned tables are deleted (shared leagues, clubs and series rows stay) and only that
league's records are read.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extras import execute_values

from bulletproof_etl import db as bp_db

from . import loader
from .names import (
    canonical_series,
    collapse,
    league_info,
    normalize_league_id,
    parse_team_name,
    strip_schedule_suffix,
)

logger = logging.getLogger(__name__)

#: Deleted by clear_target_tables, children first (FKs are off anyway, as in the original).
TARGET_TABLES = (
    "series_stats",
    "match_scores",
    "schedule",
    "players",
    "teams",
    "club_leagues",
    "series_leagues",
    "series",
    "clubs",
    "leagues",
)
#: The tables that carry a league and are cleared in single-league mode.
LEAGUE_TABLES = TARGET_TABLES[:7]
#: Field holding the league code, per input file.
LEAGUE_FIELD = {
    "players": "League",
    "series_stats": "league_id",
    "schedules": "League",
    "match_history": "league_id",
}
PAGE_SIZE = 1000

_TEAMS_SQL = """
SELECT t.id, l.league_id, c.name, s.name, t.team_name
FROM teams t JOIN leagues l ON l.id = t.league_id
JOIN clubs c ON c.id = t.club_id JOIN series s ON s.id = t.series_id
"""
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


class ComprehensiveETL:
    """Import one data directory of scraped JSON into the league database."""

    def __init__(
        self, data_dir: str | os.PathLike, dsn: str | None = None, *, league: str | None = None
    ) -> None:
        self.data_dir = Path(data_dir)
        self.dsn = dsn
        self.league = normalize_league_id(league) if league else None
        self.data: dict[str, list[dict[str, Any]]] = {}
        self.stats: dict[str, int] = {}
        self.last_error: BaseException | None = None
        self.conn = None

    # -- reading ---------------------------------------------------------------------

    def get_connection(self):
        """A new connection: ``dsn``, else DATABASE_URL, else the embedded server."""
        return bp_db.connect(self.dsn)

    def load_json_files(self) -> dict[str, list[dict[str, Any]]]:
        """Read and validate the four files (InputError on anything unusable)."""
        self.data = loader.load_json_files(self.data_dir)
        return self.data

    def _records(self, kind: str) -> list[dict[str, Any]]:
        records = self.data.get(kind, [])
        if self.league is None:
            return records
        field = LEAGUE_FIELD[kind]
        return [r for r in records if normalize_league_id(r[field]) == self.league]

    @staticmethod
    def _player_team_name(record: dict[str, Any]) -> str | None:
        name = record.get("Series Mapping ID") or record.get("Team")
        return strip_schedule_suffix(name) if name else None

    def _player_team(self, record: dict[str, Any]):
        """The parsed team of a player, or None. The team name is trusted before the
        record's series: a real scrape gave every CNSWPL player the series "Series 1"."""
        team = self._player_team_name(record)
        if not team:
            return None
        league = normalize_league_id(record["League"])
        parsed = parse_team_name(league, team)
        if parsed.series_suffix is None:
            parsed = parse_team_name(league, team, collapse(record["Series"]))
        return parsed

    def _player_club(self, record: dict[str, Any]) -> str:
        parsed = self._player_team(record)
        return (parsed.club if parsed else "") or collapse(record["Club"])

    # -- extracting ------------------------------------------------------------------

    def extract_leagues(self) -> list[dict[str, Any]]:
        """Every league code named by any file."""
        codes = {
            normalize_league_id(r[LEAGUE_FIELD[kind]])
            for kind in LEAGUE_FIELD
            for r in self._records(kind)
        }
        leagues = []
        for code in sorted(codes):
            name, url = league_info(code)
            leagues.append({"league_id": code, "league_name": name, "league_url": url})
        return leagues

    def extract_clubs(self) -> list[dict[str, Any]]:
        """Clubs of the players' teams, plus the clubs of the teams (scrapes are partial)."""
        names = {self._player_club(r) for r in self._records("players")}
        names.update(t["club_name"] for t in self.extract_teams())
        return [{"name": name} for name in sorted(names)]

    def extract_series(self) -> list[dict[str, Any]]:
        """Series as written in players, series_stats and schedules (raw spellings)."""
        names = {collapse(r["Series"]) for r in self._records("players")}
        names.update(collapse(r["series"]) for r in self._records("series_stats"))
        names.update(collapse(r["series"]) for r in self._records("schedules") if r.get("series"))
        names.update(t["series_name"] for t in self.extract_teams())
        names.discard("")
        return [{"name": name, "display_name": name} for name in sorted(names)]

    def extract_teams(self) -> list[dict[str, Any]]:
        """Teams of series_stats, then schedules, one per (league, club, canonical series)."""
        teams: dict[tuple[str, str, str], dict[str, Any]] = {}
        sides = [(r["league_id"], r["team"], r["series"]) for r in self._records("series_stats")]
        for r in self._records("schedules"):
            sides += [
                (r["League"], r[side], r.get("series")) for side in ("home_team", "away_team")
            ]
        nameless = 0
        for raw_league, raw_name, raw_series in sides:
            league = normalize_league_id(raw_league)
            series = collapse(raw_series) if raw_series else None
            parsed = parse_team_name(league, raw_name, series)
            if not series and parsed.series_suffix:
                series = f"Series {parsed.series_suffix}"
            if not parsed.club or not series:
                nameless += 1  # a BYE row: no club, so no team
                continue
            key = (league, parsed.club, canonical_series(league, series))
            teams.setdefault(
                key,
                {
                    "league_id": league,
                    "club_name": parsed.club,
                    "series_name": series,
                    "team_name": parsed.team_name,
                },
            )
        if nameless:
            logger.info("%d team names without a club or series were not teams", nameless)
        return list(teams.values())

    # -- clearing --------------------------------------------------------------------

    def clear_target_tables(self, conn) -> int:
        """Delete the ETL-owned tables (all rows, or one league's) with FKs off; commit."""
        deleted = 0
        with conn.cursor() as cur:
            cur.execute("SET session_replication_role = replica")
            if self.league is None:
                for table in TARGET_TABLES:
                    cur.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
                    logger.info("cleared %d rows from %s", cur.rowcount, table)
                    deleted += cur.rowcount
            else:
                for table in LEAGUE_TABLES:
                    cur.execute(
                        sql.SQL(
                            "DELETE FROM {} WHERE league_id IN "
                            "(SELECT id FROM leagues WHERE league_id = %s)"
                        ).format(sql.Identifier(table)),
                        (self.league,),
                    )
                    logger.info("cleared %d %s rows from %s", cur.rowcount, self.league, table)
                    deleted += cur.rowcount
            cur.execute("SET session_replication_role = DEFAULT")
        conn.commit()
        self.stats["cleared"] = deleted
        return deleted

    # -- reference data --------------------------------------------------------------

    def import_leagues(self, conn, leagues_data: list[dict[str, Any]]) -> int:
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

    def import_clubs(self, conn, clubs_data: list[dict[str, Any]]) -> int:
        with conn.cursor() as cur:
            for club in clubs_data:
                cur.execute(
                    "INSERT INTO clubs (name, club_address) VALUES (%s, %s) ON CONFLICT (name) "
                    "DO UPDATE SET club_address = COALESCE(EXCLUDED.club_address, clubs.club_address)",
                    (club["name"], club.get("club_address")),
                )
        logger.info("imported %d clubs", len(clubs_data))
        return len(clubs_data)

    def import_series(self, conn, series_data: list[dict[str, Any]]) -> int:
        with conn.cursor() as cur:
            for series in series_data:
                cur.execute(
                    "INSERT INTO series (name, display_name) VALUES (%s, %s) "
                    "ON CONFLICT (name) DO UPDATE SET display_name = EXCLUDED.display_name",
                    (series["name"], series.get("display_name") or series["name"]),
                )
        logger.info("imported %d series", len(series_data))
        return len(series_data)

    def import_club_leagues(self, conn) -> int:
        pairs = {
            (self._player_club(r), normalize_league_id(r["League"]))
            for r in self._records("players")
        }
        pairs.update((t["club_name"], t["league_id"]) for t in self.extract_teams())
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

    def import_series_leagues(self, conn) -> int:
        pairs = {
            (collapse(r["Series"]), normalize_league_id(r["League"]))
            for r in self._records("players")
        }
        pairs.update(
            (collapse(r["series"]), normalize_league_id(r["league_id"]))
            for r in self._records("series_stats")
        )
        pairs.update((t["series_name"], t["league_id"]) for t in self.extract_teams())
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

    def import_teams(self, conn, teams_data: list[dict[str, Any]]) -> int:
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
        self.stats["teams_skipped"] = skipped
        self.stats["teams_failed"] = failed
        logger.info("teams: %d imported, %d skipped, %d failed", imported, skipped, failed)
        return imported

    # -- facts -----------------------------------------------------------------------

    def _lookups(self, cur) -> dict[str, dict]:
        cur.execute("SELECT league_id, id FROM leagues")
        leagues = dict(cur.fetchall())
        cur.execute(_TEAMS_SQL)
        by_key: dict[tuple[str, str, str], int] = {}
        by_name: dict[tuple[str, str], int] = {}
        for team_id, code, club, series, name in cur.fetchall():
            by_key.setdefault((code, club, canonical_series(code, series)), team_id)
            by_name.setdefault((code, name), team_id)
        return {"leagues": leagues, "by_key": by_key, "by_name": by_name}

    def _name_lookup(self, look: dict, league: str, raw_name: str) -> int | None:
        return look["by_name"].get((league, strip_schedule_suffix(raw_name)))

    def import_players(self, conn) -> int:
        """Players with their club, series and team; one row per (player, league, club, series)."""
        with conn.cursor() as cur:
            look = self._lookups(cur)
            cur.execute("SELECT name, id FROM clubs")
            clubs = dict(cur.fetchall())
            cur.execute("SELECT name, id FROM series")
            series_ids = dict(cur.fetchall())
            rows: dict[tuple, tuple] = {}
            skipped = 0
            for r in self._records("players"):
                league = normalize_league_id(r["League"])
                club, series = self._player_club(r), collapse(r["Series"])
                ids = (look["leagues"].get(league), clubs.get(club), series_ids.get(series))
                if None in ids:
                    skipped += 1
                    continue
                team_name = self._player_team_name(r)
                team_id = look["by_name"].get((league, team_name)) if team_name else None
                if team_id is None:
                    parsed = self._player_team(r)
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
        self.stats["players_skipped"] = skipped
        logger.info("imported %d players (%d skipped)", written, skipped)
        return written

    def import_series_stats(self, conn) -> int:
        with conn.cursor() as cur:
            look = self._lookups(cur)
            cur.execute("SELECT name, id FROM series")
            series_ids = dict(cur.fetchall())
            rows = []
            for r in self._records("series_stats"):
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

    def import_match_scores(self, conn) -> int:
        with conn.cursor() as cur:
            look = self._lookups(cur)
            rows = []
            for r in self._records("match_history"):
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
                        self._name_lookup(look, league, r["Home Team"]),
                        self._name_lookup(look, league, r["Away Team"]),
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

    def import_schedules(self, conn) -> int:
        """Schedule rows; team ids by name within the league, NULL when no team has it."""
        with conn.cursor() as cur:
            look = self._lookups(cur)
            rows, skipped = [], 0
            for r in self._records("schedules"):
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
                        self._name_lookup(look, league, r["home_team"]),
                        self._name_lookup(look, league, r["away_team"]),
                        r.get("location"),
                    )
                )
            written = _insert_pages(
                cur,
                "INSERT INTO schedule (league_id, match_date, match_time, home_team, away_team, "
                "home_team_id, away_team_id, location) VALUES %s",
                rows,
            )
        self.stats["schedule_skipped"] = skipped
        logger.info("imported %d schedule rows (%d without a date skipped)", written, skipped)
        return written

    # -- the run ---------------------------------------------------------------------

    def run(self) -> bool:
        """The whole import, committing after every step; False (and rolled back) on error."""
        self.stats, self.last_error, conn = {}, None, None
        try:
            conn = self.conn = self.get_connection()
            self.load_json_files()
            self.clear_target_tables(conn)
            steps = (
                ("leagues", lambda: self.import_leagues(conn, self.extract_leagues())),
                ("clubs", lambda: self.import_clubs(conn, self.extract_clubs())),
                ("series", lambda: self.import_series(conn, self.extract_series())),
                ("club_leagues", lambda: self.import_club_leagues(conn)),
                ("series_leagues", lambda: self.import_series_leagues(conn)),
                ("teams", lambda: self.import_teams(conn, self.extract_teams())),
                ("players", lambda: self.import_players(conn)),
                ("series_stats", lambda: self.import_series_stats(conn)),
                ("match_scores", lambda: self.import_match_scores(conn)),
                ("schedule", lambda: self.import_schedules(conn)),
            )
            for name, step in steps:
                self.stats[name] = step()
                conn.commit()
            logger.info("import of %s finished: %s", self.data_dir, self.stats)
            return True
        except Exception as exc:  # the legacy contract: log, roll back what is open, say False
            self.last_error = exc
            logger.error("import of %s failed: %s", self.data_dir, exc, exc_info=True)
            if conn is not None and not conn.closed:
                try:
                    conn.rollback()
                except psycopg2.Error as rollback_exc:
                    logger.error("rollback failed as well: %s", rollback_exc)
            return False
        finally:
            if conn is not None and not conn.closed:
                conn.close()


__all__ = ["ComprehensiveETL", "LEAGUE_TABLES", "TARGET_TABLES"]
