"""ComprehensiveETL: the legacy nightly import that bulletproof-etl protects.

Faithful to the real one on purpose, including what is wrong with it: it loads the JSON,
deletes every ETL-owned table with foreign keys switched off (practice rows in
``schedule`` included), re-inserts leagues, clubs, series and teams so that every id is
new, imports teams row by row, and commits after every step, so a failure half-way leaves
half an import behind. Do not fix it here: the library fixes it.

With ``league=CODE`` it clears and imports one league: only that league's rows of the
ETL-owned tables are deleted (shared leagues, clubs and series rows stay) and only that
league's records are read.

The class keeps the run and its steps; the SQL of the reference-data steps (leagues, clubs,
series, their league links, teams) is in :mod:`rally_etl.etl_reference` and that of the
fact steps (players, series_stats, match_scores, schedule) in :mod:`rally_etl.etl_facts`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from bulletproof_etl import db as bp_db

from . import etl_facts, etl_reference, loader
from .etl_facts import _TEAMS_SQL as _TEAMS_SQL
from .etl_reference import _UPSERT_TEAM as _UPSERT_TEAM
from .etl_reference import PAGE_SIZE as PAGE_SIZE
from .etl_reference import _insert_pages as _insert_pages
from .names import (
    canonical_series,
    collapse,
    league_info,
    normalize_league_id,
    parse_team_name,
    strip_schedule_suffix,
)

# The ``name as name`` imports keep importable from here what was defined here before the
# steps' SQL moved to etl_reference and etl_facts.

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

    # -- reference data (the SQL is in etl_reference) -------------------------------

    def import_leagues(self, conn, leagues_data: list[dict[str, Any]]) -> int:
        return etl_reference.import_leagues(conn, leagues_data)

    def import_clubs(self, conn, clubs_data: list[dict[str, Any]]) -> int:
        return etl_reference.import_clubs(conn, clubs_data)

    def import_series(self, conn, series_data: list[dict[str, Any]]) -> int:
        return etl_reference.import_series(conn, series_data)

    def import_club_leagues(self, conn) -> int:
        return etl_reference.import_club_leagues(self, conn)

    def import_series_leagues(self, conn) -> int:
        return etl_reference.import_series_leagues(self, conn)

    # -- teams (row by row, as the original; the SQL is in etl_reference) -----------

    def import_teams(self, conn, teams_data: list[dict[str, Any]]) -> int:
        """Upsert each team by (club_id, series_id, league_id); a failing row is counted."""
        return etl_reference.import_teams(self, conn, teams_data)

    # -- facts (the SQL is in etl_facts) --------------------------------------------

    def _lookups(self, cur) -> dict[str, dict]:
        return etl_facts.lookups(cur)

    def _name_lookup(self, look: dict, league: str, raw_name: str) -> int | None:
        return etl_facts.name_lookup(look, league, raw_name)

    def import_players(self, conn) -> int:
        """Players with their club, series and team; one row per (player, league, club, series)."""
        return etl_facts.import_players(self, conn)

    def import_series_stats(self, conn) -> int:
        return etl_facts.import_series_stats(self, conn)

    def import_match_scores(self, conn) -> int:
        return etl_facts.import_match_scores(self, conn)

    def import_schedules(self, conn) -> int:
        """Schedule rows; team ids by name within the league, NULL when no team has it."""
        return etl_facts.import_schedules(self, conn)

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
