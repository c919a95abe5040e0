"""The modelled ETL's own handling of user data: its backups before the clear, the teams it
creates late from the schedule, its restore by team name, and its orphan fixers.

Like the real class's, these steps re-point, NULL or delete user rows on their own:

- polls and captain messages are written back from ``*_backup`` with their old team ids,
  then moved by team name (old id -> the team that has the old name in the same league now);
- practice rows are re-inserted with ``home_team_id`` = the team whose name equals the
  practice row's own ``home_team`` text ("<club> Practice - <series>" never does: NULL), and
  a practice row whose league id no longer exists is given the first league's id;
- ``users.league_context`` is restored through the league code;
- a poll whose team no longer exists goes to the team of one of its author's players, else it
  is deleted (its choices and responses go with it, ON DELETE CASCADE); the same for captain
  messages; every other dangling nullable reference is set to NULL.
"""

from __future__ import annotations

from .names import parse_team_name

BACKUP_TABLES = ("polls_backup", "captain_messages_backup", "practice_times_backup",
                 "user_league_contexts_backup", "team_mapping_backup")

_BACKUPS = {
    "polls_backup": "SELECT * FROM polls",
    "captain_messages_backup": "SELECT * FROM captain_messages",
    "practice_times_backup": "SELECT * FROM schedule WHERE home_team ILIKE '%practice%'",
    "user_league_contexts_backup": "SELECT u.id AS user_id, u.league_context, l.league_id AS league_string_id "
                                   "FROM users u LEFT JOIN leagues l ON l.id = u.league_context "
                                   "WHERE u.league_context IS NOT NULL",
    "team_mapping_backup": "SELECT t.id AS old_team_id, t.team_name AS old_team_name, "
                           "l.league_id AS old_league_string_id FROM teams t JOIN leagues l ON l.id = t.league_id",
}

_AUTHOR_TEAM = """SELECT p.team_id FROM players p
    JOIN user_player_associations upa ON upa.tenniscores_player_id = p.tenniscores_player_id
    JOIN teams t ON t.id = p.team_id
    WHERE upa.user_id = %s AND p.is_active ORDER BY upa.is_primary DESC, t.team_name LIMIT 1"""

#: Dangling nullable references the last fixer sets to NULL: (table, column, entity table).
_NULLABLE_REFS = (("users", "club_id", "clubs"), ("users", "series_id", "series"),
                  ("users", "league_context", "leagues"), ("polls", "team_id", "teams"))


class UserDataSteps:
    """Mixed into ModelETL; every method takes the run's connection."""

    def backup_user_data_and_team_mappings(self, conn) -> dict:
        cur = conn.cursor()
        counts = {}
        for table, query in _BACKUPS.items():
            cur.execute(f"DROP TABLE IF EXISTS {table}")
            cur.execute(f"CREATE TABLE {table} AS {query}")
            cur.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cur.fetchone()[0]
        conn.commit()
        return counts

    def create_missing_teams_from_schedule(self, conn) -> int:
        """Teams the schedule names that no team has by (team_name, league): inserted without a
        display name. A failing insert is logged and skipped, without a savepoint (as the real
        class does: a unique violation leaves the transaction aborted)."""
        cur = conn.cursor()
        cur.execute("""SELECT name, league_id FROM (
                SELECT home_team AS name, league_id FROM schedule UNION SELECT away_team, league_id FROM schedule
            ) named WHERE name <> 'BYE' AND league_id IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM teams t WHERE t.team_name = named.name AND t.league_id = named.league_id)
            ORDER BY league_id, name""")
        created = 0
        for name, league_id in cur.fetchall():
            try:
                club_name, series_name = parse_team_name(name)
                if not series_name:
                    continue
                cur.execute("SELECT id FROM clubs WHERE name = %s", (club_name,))
                club = cur.fetchone()
                cur.execute("SELECT id FROM series WHERE name = %s", (series_name,))
                series = cur.fetchone()
                if not club or not series:
                    self.log(f"no club or series for schedule team {name}")
                    continue
                cur.execute("INSERT INTO teams (team_name, club_id, series_id, league_id, created_at, updated_at) "
                            "VALUES (%s, %s, %s, %s, NOW(), NOW())", (name, club[0], series[0], league_id))
                created += 1
            except Exception as exc:
                self.log(f"error creating team {name}: {exc}", "ERROR")
                continue
        return created

    def restore_user_data_with_team_mappings(self, conn) -> dict:
        cur = conn.cursor()
        out = {}
        cur.execute("INSERT INTO polls SELECT * FROM polls_backup ON CONFLICT (id) DO UPDATE SET team_id = EXCLUDED.team_id")
        out["polls_restored"] = cur.rowcount
        cur.execute("INSERT INTO captain_messages SELECT * FROM captain_messages_backup "
                    "ON CONFLICT (id) DO UPDATE SET team_id = EXCLUDED.team_id")
        out["captain_messages_restored"] = cur.rowcount
        out["remapped_by_name"] = self._fix_restored_team_id_mappings(conn)
        cur.execute("UPDATE practice_times_backup SET league_id = (SELECT min(id) FROM leagues) "
                    "WHERE league_id NOT IN (SELECT id FROM leagues)")
        out["practice_leagues_moved"] = cur.rowcount
        cur.execute("""INSERT INTO schedule (id, league_id, match_date, match_time, home_team, away_team, location,
                created_at, home_team_id, away_team_id)
            SELECT pt.id, pt.league_id, pt.match_date, pt.match_time, pt.home_team, pt.away_team, pt.location,
                pt.created_at, (SELECT t.id FROM teams t WHERE t.team_name = pt.home_team LIMIT 1), pt.away_team_id
            FROM practice_times_backup pt
            ON CONFLICT (id) DO UPDATE SET home_team_id = EXCLUDED.home_team_id, away_team_id = EXCLUDED.away_team_id""")
        out["practice_times_restored"] = cur.rowcount
        cur.execute("""UPDATE users SET league_context = l.id FROM user_league_contexts_backup b
            JOIN leagues l ON l.league_id = b.league_string_id WHERE b.user_id = users.id""")
        out["contexts_restored"] = cur.rowcount
        out["orphaned_polls_fixed"] = self.fix_orphaned_poll_references(conn)
        out["orphaned_messages_fixed"] = self.fix_orphaned_captain_message_references(conn)
        out["remaining_nulled"] = self._fix_remaining_orphaned_data(conn)
        for table in BACKUP_TABLES:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        conn.commit()
        return out

    def _fix_restored_team_id_mappings(self, conn) -> int:
        """Old team id -> the team that carries the old team's name in its league now."""
        cur = conn.cursor()
        cur.execute("""SELECT m.old_team_id, t.id FROM team_mapping_backup m
            JOIN leagues l ON l.league_id = m.old_league_string_id
            JOIN teams t ON t.league_id = l.id AND t.team_name = m.old_team_name""")
        mapping = dict(cur.fetchall())
        fixed = 0
        for table in ("polls", "captain_messages"):
            cur.execute(f"SELECT id, team_id FROM {table} WHERE team_id IS NOT NULL ORDER BY id")
            for row_id, old_id in cur.fetchall():
                if old_id in mapping:
                    cur.execute(f"UPDATE {table} SET team_id = %s WHERE id = %s", (mapping[old_id], row_id))
                    fixed += 1
        return fixed

    def _fix_orphans(self, conn, table: str, author_column: str) -> int:
        cur = conn.cursor()
        cur.execute(f"""SELECT x.id, x.{author_column} FROM {table} x LEFT JOIN teams t ON t.id = x.team_id
            WHERE x.team_id IS NOT NULL AND t.id IS NULL ORDER BY x.id""")
        fixed = 0
        for row_id, author in cur.fetchall():
            cur.execute(_AUTHOR_TEAM, (author,))
            found = cur.fetchone()
            if found:
                cur.execute(f"UPDATE {table} SET team_id = %s WHERE id = %s", (found[0], row_id))
            else:
                cur.execute(f"DELETE FROM {table} WHERE id = %s", (row_id,))
                self.log(f"deleted {table} row {row_id}: no matching team found")
            fixed += 1
        conn.commit()
        return fixed

    def fix_orphaned_poll_references(self, conn) -> int:
        return self._fix_orphans(conn, "polls", "created_by")

    def fix_orphaned_captain_message_references(self, conn) -> int:
        return self._fix_orphans(conn, "captain_messages", "captain_user_id")

    def _fix_remaining_orphaned_data(self, conn) -> int:
        cur = conn.cursor()
        nulled = 0
        for table, column, entity in _NULLABLE_REFS:
            cur.execute(f"UPDATE {table} SET {column} = NULL WHERE {column} IS NOT NULL "
                        f"AND NOT EXISTS (SELECT 1 FROM {entity} e WHERE e.id = {table}.{column})")
            nulled += cur.rowcount
        conn.commit()
        return nulled

    def increment_session_version(self, conn) -> None:
        cur = conn.cursor()
        try:
            cur.execute("UPDATE system_settings SET value = (value::int + 1)::text, updated_at = CURRENT_TIMESTAMP "
                        "WHERE key = 'session_version'")
            cur.execute("INSERT INTO system_settings (key, value, description) VALUES ('last_etl_run', now()::text, "
                        "'last successful ETL run') ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
                        "updated_at = CURRENT_TIMESTAMP")
            conn.commit()
        except Exception as exc:  # the real one does not fail the run for this
            self.log(f"could not increment the session version: {exc}", "WARNING")
            conn.rollback()
