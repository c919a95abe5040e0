"""ModelETL: a second reference ETL, shaped like the real app's ``ComprehensiveETL``.

Written for these tests from the structure of the real class (not its code), so that the
library is tried on an ETL it was not written alongside. What it shares with the real one,
and what the library has to survive:

- the connection comes from ``get_managed_db_connection()``, a ``@contextmanager``; there is
  no method that returns a plain connection;
- ``run()`` takes no arguments, reads ``self.data_dir`` (set by the caller), returns True or
  False and never re-raises;
- a schema step inside the run (``ALTER TABLE clubs ADD COLUMN IF NOT EXISTS ...``);
- its clear step first copies user data into its own ``*_backup`` tables, then deletes
  leagues, clubs, series and teams with foreign keys switched off;
- every step commits, and the player import commits every ``PLAYER_COMMIT_EVERY`` rows, the
  last time through ``cursor.connection``;
- team names that clash within a league are renamed ``"name (series)"``; a team whose club
  or series is missing is skipped; teams named only in the schedule are created late;
- its own restore and orphan fixers (``etl_restore.py``) re-point, NULL or delete user rows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import psycopg2
from psycopg2.extras import execute_values

from .etl_restore import UserDataSteps
from .names import garbled, league_code, parse_team_name

logger = logging.getLogger(__name__)

#: Deleted by clear_target_tables, in this order, with foreign keys off.
TABLES_TO_CLEAR = ("schedule", "series_stats", "players", "teams", "series_leagues",
                   "club_leagues", "series", "clubs", "leagues")
LEAGUE_NAMES = {
    "APTA_CHICAGO": ("APTA Chicago", "https://aptachicago.tenniscores.com"),
    "NSTF": ("North Shore Tennis Foundation", "https://nstf.tenniscores.com"),
    "CNSWPL": ("Chicago North Shore Women's Platform Tennis League", "https://cnswpl.tenniscores.com"),
}
def _date(text):
    try:
        return datetime.strptime(text or "", "%m/%d/%Y").date()
    except ValueError:
        return None


def _time(text):
    try:
        return datetime.strptime((text or "").strip().upper(), "%I:%M %p").time()
    except ValueError:
        return None


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class ModelETL(UserDataSteps):
    """Import players.json, series_stats.json and schedules.json from ``self.data_dir``."""

    PLAYER_COMMIT_EVERY = 250

    def __init__(self, dsn: str | None = None) -> None:
        self.dsn = dsn
        self.data_dir: Path | None = None  # set by the caller, as with the real class
        self.stats: dict = {}
        self.last_error: BaseException | None = None

    def log(self, message: str, level: str = "INFO") -> None:
        logger.log(getattr(logging, level, logging.INFO), message)

    @contextlib.contextmanager
    def get_managed_db_connection(self):
        """A connection for the whole run: ``self.dsn``, else DATABASE_URL."""
        conn = psycopg2.connect(self.dsn or os.environ["DATABASE_URL"])
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT current_setting('timezone')")
            conn.commit()
            yield conn
        finally:
            conn.close()

    def load_json_file(self, filename: str) -> list:
        path = Path(self.data_dir) / filename
        if not path.exists():
            self.log(f"{filename} not found, using no records", "WARNING")
            return []
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)

    # -- the run --------------------------------------------------------------------

    def run(self) -> bool:
        self.stats, self.last_error = {}, None
        try:
            players = self.load_json_file("players.json")
            series_stats = self.load_json_file("series_stats.json")
            schedules = self.load_json_file("schedules.json")
            leagues = self.extract_leagues(players, series_stats, schedules)
            clubs = self.extract_clubs(players)
            with self.get_managed_db_connection() as conn:
                try:
                    self.ensure_schema_requirements(conn)
                    self.clear_target_tables(conn)
                    self.import_leagues(conn, leagues)
                    self.import_clubs(conn, clubs)
                    series = self.extract_series(players, series_stats, schedules)
                    teams = self.extract_teams(series_stats, schedules)
                    self.import_series(conn, series)
                    self.import_club_leagues(conn, self.analyze_club_leagues(players, teams))
                    self.import_series_leagues(conn, self.analyze_series_leagues(players, teams))
                    self.import_teams(conn, teams)
                    self.import_players(conn, players)
                    self.import_series_stats(conn, series_stats)
                    self.import_schedules(conn, schedules)
                    self.stats["late_teams"] = self.create_missing_teams_from_schedule(conn)
                    self.stats["restore"] = self.restore_user_data_with_team_mappings(conn)
                    self.increment_session_version(conn)
                except Exception as exc:
                    self.log(f"ETL failed: {exc}; rolling back", "ERROR")
                    conn.rollback()
                    raise
        except Exception as exc:  # like the real class: log and say False, never re-raise
            self.last_error = exc
            self.log(f"critical error: {exc}", "ERROR")
            return False
        return True

    def ensure_schema_requirements(self, conn) -> None:
        cur = conn.cursor()
        try:
            cur.execute("""CREATE TABLE IF NOT EXISTS system_settings (
                id SERIAL PRIMARY KEY, key VARCHAR(100) UNIQUE NOT NULL, value TEXT NOT NULL,
                description TEXT, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
                updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)""")
            cur.execute("INSERT INTO system_settings (key, value, description) "
                        "VALUES ('session_version', '5', 'session cache version') "
                        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value")
            cur.execute("ALTER TABLE clubs ADD COLUMN IF NOT EXISTS logo_filename VARCHAR(255)")
            conn.commit()
        except Exception as exc:  # the real one only logs this
            self.log(f"schema step failed (non-critical): {exc}", "WARNING")

    def clear_target_tables(self, conn) -> dict:
        backups = self.backup_user_data_and_team_mappings(conn)
        cur = conn.cursor()
        cur.execute("SET session_replication_role = replica")
        deleted = {}
        for table in TABLES_TO_CLEAR:
            cur.execute(f"DELETE FROM {table}")
            deleted[table] = cur.rowcount
        cur.execute("SET session_replication_role = DEFAULT")
        conn.commit()
        self.stats["cleared"] = deleted
        self.stats["backups"] = backups
        return deleted

    # -- extracting -----------------------------------------------------------------

    def extract_leagues(self, players, series_stats, schedules) -> list:
        codes = {league_code(r.get("League", "")) for r in players}
        codes |= {league_code(r.get("league_id", "")) for r in series_stats}
        codes |= {league_code(r.get("League", "")) for r in schedules}
        codes.discard("")
        out = []
        for code in sorted(codes):
            name, url = LEAGUE_NAMES.get(code, (code, None))
            out.append({"league_id": code, "league_name": name, "league_url": url})
        return out

    def extract_clubs(self, players) -> list:
        names = {(r.get("Club") or "").strip() for r in players} - {""}
        return [{"name": n} for n in sorted(names)]

    def extract_series(self, players, series_stats, schedules) -> list:
        names = {(r.get("Series") or "").strip() for r in players}
        names |= {(r.get("series") or "").strip() for r in series_stats}
        for r in schedules:
            for side in ("home_team", "away_team"):
                series = parse_team_name(r.get(side) or "")[1]
                if series and not garbled(series):
                    names.add(series)
        names.discard("")
        return [{"name": n, "display_name": n} for n in sorted(names)]

    def extract_teams(self, series_stats, schedules) -> list:
        """Teams of series_stats (series as the record says) and of the schedule's home teams
        (series parsed from the name); away-only teams come later, from the schedule table."""
        found = set()
        for r in series_stats:
            name, series = (r.get("team") or "").strip(), (r.get("series") or "").strip()
            if name and series:
                found.add((parse_team_name(name)[0], series, league_code(r.get("league_id", "")), name))
        for r in schedules:
            name = " ".join((r.get("home_team") or "").split())
            club, series = parse_team_name(name)
            if name and name != "BYE" and series and not garbled(series):
                found.add((club, series, league_code(r.get("League", "")), name))
        return [{"club_name": c, "series_name": s, "league_id": lg, "team_name": n}
                for c, s, lg, n in sorted(found)]

    def analyze_club_leagues(self, players, teams) -> list:
        pairs = {((r.get("Club") or "").strip(), league_code(r.get("League", ""))) for r in players}
        pairs |= {(t["club_name"], t["league_id"]) for t in teams}
        return [{"club_name": c, "league_id": lg} for c, lg in sorted(pairs) if c]

    def analyze_series_leagues(self, players, teams) -> list:
        pairs = {((r.get("Series") or "").strip(), league_code(r.get("League", ""))) for r in players}
        pairs |= {(t["series_name"], t["league_id"]) for t in teams}
        return [{"series_name": s, "league_id": lg} for s, lg in sorted(pairs) if s]

    # -- importing ------------------------------------------------------------------

    def import_leagues(self, conn, leagues_data) -> int:
        cur = conn.cursor()
        for lg in leagues_data:
            cur.execute("INSERT INTO leagues (league_id, league_name, league_url) VALUES (%s, %s, %s) "
                        "ON CONFLICT (league_id) DO NOTHING",
                        (lg["league_id"], lg["league_name"], lg["league_url"]))
        conn.commit()
        return len(leagues_data)

    def import_clubs(self, conn, clubs_data) -> int:
        cur = conn.cursor()
        for club in clubs_data:
            cur.execute("INSERT INTO clubs (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", (club["name"],))
        conn.commit()
        return len(clubs_data)

    def import_series(self, conn, series_data) -> int:
        cur = conn.cursor()
        for s in series_data:
            cur.execute("INSERT INTO series (name, display_name) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                        (s["name"], s["display_name"]))
        conn.commit()
        return len(series_data)

    def import_club_leagues(self, conn, relationships) -> int:
        cur = conn.cursor()
        for rel in relationships:
            cur.execute("INSERT INTO club_leagues (club_id, league_id) SELECT c.id, l.id FROM clubs c, leagues l "
                        "WHERE c.name = %s AND l.league_id = %s ON CONFLICT DO NOTHING",
                        (rel["club_name"], rel["league_id"]))
        conn.commit()
        return len(relationships)

    def import_series_leagues(self, conn, relationships) -> int:
        cur = conn.cursor()
        for rel in relationships:
            cur.execute("INSERT INTO series_leagues (series_id, league_id) SELECT s.id, l.id FROM series s, "
                        "leagues l WHERE s.name = %s AND l.league_id = %s ON CONFLICT DO NOTHING",
                        (rel["series_name"], rel["league_id"]))
        conn.commit()
        return len(relationships)

    def import_teams(self, conn, teams_data) -> int:
        """First occurrence per (club, series, league); clashing names within a league renamed
        "name (series)"; upsert on unique_team_club_series_league; missing parents skipped."""
        first: dict = {}
        for team in teams_data:
            first.setdefault((team["club_name"], team["series_name"], team["league_id"]), team)
        by_name = defaultdict(list)
        for team in first.values():
            by_name[(team["team_name"], team["league_id"])].append(team)
        to_import = []
        for group in by_name.values():
            for i, team in enumerate(group):
                if i:
                    team["team_name"] = f"{team['team_name']} ({team['series_name']})"
                to_import.append(team)
        cur = conn.cursor()
        done = skipped = 0
        for team in to_import:
            cur.execute("SELECT c.id, s.id, l.id FROM clubs c, series s, leagues l "
                        "WHERE c.name = %s AND s.name = %s AND l.league_id = %s",
                        (team["club_name"], team["series_name"], team["league_id"]))
            refs = cur.fetchone()
            if not refs:
                self.log(f"skipping team {team['team_name']}: missing club, series or league")
                skipped += 1
                continue
            cur.execute("""INSERT INTO teams (club_id, series_id, league_id, team_name, team_alias, display_name)
                VALUES (%s, %s, %s, %s, %s, %s)
                ON CONFLICT (club_id, series_id, league_id) DO UPDATE SET team_name = EXCLUDED.team_name,
                    team_alias = EXCLUDED.team_alias, display_name = EXCLUDED.display_name,
                    updated_at = CURRENT_TIMESTAMP""",
                        (*refs, team["team_name"], team["series_name"], team["team_name"]))
            done += 1
        conn.commit()
        self.stats["teams"] = {"imported": done, "skipped": skipped, "read": len(teams_data)}
        return done

    def _lookups(self, cur) -> tuple:
        cur.execute("SELECT league_id, id FROM leagues")
        leagues = dict(cur.fetchall())
        cur.execute("SELECT name, id FROM clubs")
        clubs = dict(cur.fetchall())
        cur.execute("SELECT name, id FROM series")
        series = dict(cur.fetchall())
        cur.execute("SELECT team_name, league_id, id FROM teams")
        teams = {(name, league): i for name, league, i in cur.fetchall()}
        return leagues, clubs, series, teams

    def import_players(self, conn, players_data) -> int:
        """Committed every PLAYER_COMMIT_EVERY rows (the real class rotates its connection)."""
        cur = conn.cursor()
        leagues, clubs, series, teams = self._lookups(cur)
        batch, done = [], 0
        for r in players_data:
            league = leagues.get(league_code(r.get("League", "")))
            club, ser = clubs.get((r.get("Club") or "").strip()), series.get((r.get("Series") or "").strip())
            if None in (league, club, ser) or not r.get("Player ID"):
                continue
            team = teams.get((" ".join((r.get("Series Mapping ID") or "").split()), league))
            batch.append((r["Player ID"].strip(), r.get("First Name") or "", r.get("Last Name") or "",
                          league, club, ser, team, _int(r.get("Wins")), _int(r.get("Losses"))))
            if len(batch) >= self.PLAYER_COMMIT_EVERY:
                done += self._insert_players(cur, batch)
                conn.commit()
                batch = []
        done += self._insert_players(cur, batch)
        cur.connection.commit()
        return done

    @staticmethod
    def _insert_players(cur, rows) -> int:
        if not rows:
            return 0
        execute_values(cur, """INSERT INTO players (tenniscores_player_id, first_name, last_name, league_id,
            club_id, series_id, team_id, wins, losses) VALUES %s
            ON CONFLICT ON CONSTRAINT unique_player_in_league_club_series DO NOTHING""", rows)
        return len(rows)

    def import_series_stats(self, conn, series_stats_data) -> int:
        cur = conn.cursor()
        leagues, _, series, teams = self._lookups(cur)
        rows = []
        for r in series_stats_data:
            league = leagues.get(league_code(r.get("league_id", "")))
            name, matches = (r.get("team") or "").strip(), r.get("matches") or {}
            rows.append(((r.get("series") or "").strip(), name, _int(r.get("points")), _int(matches.get("won")),
                         _int(matches.get("lost")), _int(matches.get("tied")), league,
                         teams.get((name, league)), series.get((r.get("series") or "").strip())))
        if rows:
            execute_values(cur, """INSERT INTO series_stats (series, team, points, matches_won, matches_lost,
                matches_tied, league_id, team_id, series_id) VALUES %s""", rows)
        conn.commit()
        return len(rows)

    def import_schedules(self, conn, schedules_data) -> int:
        cur = conn.cursor()
        leagues, _, _, teams = self._lookups(cur)
        rows = []
        for r in schedules_data:
            league = leagues.get(league_code(r.get("League", "")))
            home, away = (" ".join((r.get(s) or "").split()) for s in ("home_team", "away_team"))
            rows.append((_date(r.get("date")), _time(r.get("time")), home, away, r.get("location"), league,
                         teams.get((home, league)), teams.get((away, league))))
        if rows:
            execute_values(cur, """INSERT INTO schedule (match_date, match_time, home_team, away_team, location,
                league_id, home_team_id, away_team_id) VALUES %s""", rows)
        conn.commit()
        return len(rows)
