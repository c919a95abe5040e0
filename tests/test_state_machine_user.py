"""The Core I state machine with user writes between imports, and G1, G2 and G4 as invariants.

Every protected import now runs all its stages: snapshot, upsert, restore, health (CRITICAL
raises, so a run that would break a guarantee fails the example). Between imports, users
write polls (with choices), captain messages, practice times, lineups, videos, activity,
contexts and availability on random current teams, delete polls, and switch teams. The
model remembers, for every user reference, the natural key of the team (and series,
league) it was written against, computed with the tests' own SQL.

After every import:
- G1: no user reference points at nothing;
- G2: every user row the model knows is still there, with its primary key;
- G4: every reference is on the key it was written against, unless the run recorded a
  context mapping for it, and then it is on the renamed club's team of the same league
  and series, or (availability) on a series row of the same canonical series: the only
  moves context may make in this machine.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule, run_state_machine_as_test
from psycopg2 import sql

from bulletproof_etl import BulletproofTeamPreservation
from rally_etl.names import canonical_series
from support import USER_TABLES, entity_keys, user_ref_keys
from test_state_machine_core import RENAMED, ImportMachine

TEAM_REFS = [("users", "team_id"), ("polls", "team_id"), ("captain_messages", "team_id"),
             ("practice_times", "team_id"), ("saved_lineups", "team_id"), ("videos", "team_id"),
             ("activity_log", "team_id"), ("user_contexts", "team_id"), ("user_contexts", "active_team_id")]


class UserImportMachine(ImportMachine):
    """ImportMachine plus users' rows, restored by every import."""

    def __init__(self):
        super().__init__()
        self.expected: dict = {}  # (table, pk, column) -> key it was written against
        self.rows: set = set()  # (table, pk) of every user row written
        self.writes = 0
        self.last_run = None

    @initialize()
    def fresh_database(self):
        with self.conn.cursor() as cur:
            cur.execute(sql.SQL("TRUNCATE {} CASCADE").format(sql.SQL(", ").join(
                sql.Identifier(t) for t in USER_TABLES)))
        self.conn.commit()
        super().fresh_database()

    # -- imports run every stage ------------------------------------------------------------------
    def _import(self, records, *, clear=None):
        with BulletproofTeamPreservation(self.conn, force=True, durable=False) as p:
            p.backup_user_data()
            if clear is not None:
                clear(self.conn)
            result = p.preserve_teams_during_import(records)
            p.restore_user_data()
            p.validate_health(raise_on_critical=True)
        self.conn.commit()
        self.last_records = records
        self.last_run = p.report.run_id
        self.imports += 1
        self._check_users()
        self._users_on_new_teams()
        return result

    # -- user writes ---------------------------------------------------------------------------------
    def _active_teams(self) -> list:
        with self.conn.cursor() as cur:
            cur.execute("SELECT t.id, t.series_id, t.league_id, s.name FROM teams t JOIN series s ON s.id = t.series_id "
                        "WHERE t.is_active ORDER BY t.id")
            return cur.fetchall()

    @precondition(lambda self: self.imports > 0)
    @rule(data=st.data(), with_series=st.booleans())
    def users_write(self, data, with_series):
        teams = self._active_teams()
        if teams:
            self._write_unit(data.draw(st.sampled_from(teams)), with_series)
        else:
            self.conn.rollback()

    def _users_on_new_teams(self):
        """After an import, users start writing on every active team nobody wrote on yet."""
        keys = entity_keys(self.conn)
        used = {key for key in self.expected.values()}
        for team in self._active_teams():
            if keys["teams"][team[0]] not in used:
                self._write_unit(team, with_series=team[0] % 2 == 0)

    def _write_unit(self, team_row, with_series: bool):
        team, series, league, series_name = team_row
        keys = entity_keys(self.conn)
        self.writes += 1
        n = self.writes
        text = f"{series_name} practice on Monday?" if with_series else "Who can play on Monday?"
        with self.conn.cursor() as cur:
            cur.execute("INSERT INTO users (email, team_id, league_context) VALUES (%s, %s, %s) RETURNING id",
                        (f"sm{n}@example.org", team, league))
            user = cur.fetchone()[0]
            ids = {"users": user}
            for table, statement, params in (
                ("polls", "INSERT INTO polls (team_id, created_by, question) VALUES (%s, %s, %s) RETURNING id",
                 (team, user, text)),
                ("captain_messages", "INSERT INTO captain_messages (team_id, captain_user_id, message) "
                 "VALUES (%s, %s, %s) RETURNING id", (team, user, text)),
                ("practice_times", "INSERT INTO practice_times (team_id, league_id, day_of_week, start_time) "
                 "VALUES (%s, %s, %s, %s) RETURNING id", (team, league, f"day {n}", "18:00")),
                ("saved_lineups", "INSERT INTO saved_lineups (user_id, team_id, lineup_name) "
                 "VALUES (%s, %s, 'A') RETURNING id", (user, team)),
                ("videos", "INSERT INTO videos (team_id, title) VALUES (%s, 'drills') RETURNING id", (team,)),
                ("activity_log", "INSERT INTO activity_log (user_id, team_id, action_type) "
                 "VALUES (%s, %s, 'switch') RETURNING id", (user, team)),
                ("player_availability", "INSERT INTO player_availability (user_id, series_id, match_date) "
                 "VALUES (%s, %s, '2025-10-13') RETURNING id", (user, series)),
            ):
                cur.execute(statement, params)
                ids[table] = cur.fetchone()[0]
            cur.execute("INSERT INTO poll_choices (poll_id, choice_text) VALUES (%s, 'Yes') RETURNING id",
                        (ids["polls"],))
            ids["poll_choices"] = cur.fetchone()[0]
            cur.execute("INSERT INTO user_contexts (user_id, league_id, team_id, active_team_id) "
                        "VALUES (%s, %s, %s, %s)", (user, league, team, team))
            ids["user_contexts"] = user
        self.conn.commit()
        for table, pk in ids.items():
            self.rows.add((table, pk))
        for table, column in TEAM_REFS:
            self.expected[(table, ids[table], column)] = keys["teams"][team]
        for table, column in (("users", "league_context"), ("practice_times", "league_id"),
                              ("user_contexts", "league_id")):
            self.expected[(table, ids[table], column)] = keys["leagues"][league]
        self.expected[("player_availability", ids["player_availability"], "series_id")] = keys["series"][series]

    @precondition(lambda self: any(t == "polls" for t, _pk in self.rows))
    @rule(data=st.data())
    def user_deletes_a_poll(self, data):
        poll = data.draw(st.sampled_from(sorted(pk for t, pk in self.rows if t == "polls")))
        with self.conn.cursor() as cur:
            cur.execute("DELETE FROM polls WHERE id = %s RETURNING (SELECT array_agg(id) FROM poll_choices "
                        "WHERE poll_id = %s)", (poll, poll))
            choices = cur.fetchone()[0] or []
        self.conn.commit()
        self.rows.discard(("polls", poll))
        self.rows.difference_update(("poll_choices", c) for c in choices)
        self.expected.pop(("polls", poll, "team_id"), None)

    @precondition(lambda self: any(t == "users" for t, _pk in self.rows) and self.imports > 0)
    @rule(data=st.data())
    def user_switches_team(self, data):
        teams = self._active_teams()
        user = data.draw(st.sampled_from(sorted(pk for t, pk in self.rows if t == "users")))
        if not teams:
            self.conn.rollback()
            return
        team = data.draw(st.sampled_from(teams))[0]
        keys = entity_keys(self.conn)
        with self.conn.cursor() as cur:
            cur.execute("UPDATE users SET team_id = %s WHERE id = %s", (team, user))
        self.conn.commit()
        self.expected[("users", user, "team_id")] = keys["teams"][team]

    # -- the model's teams that users wrote on: dropping or renaming those matters most ------------
    def _used(self) -> list:
        """Model keys of present teams that some user row of the model points at."""
        used = {key for key in self.expected.values() if isinstance(key, tuple) and len(key) == 3}
        return sorted(t for t in self.present
                      if (t[0], " ".join(t[1].split()).casefold(), t[2].casefold()) in used)

    @precondition(lambda self: self.imports > 0 and self.expected)
    @rule(data=st.data())
    def drop_a_used_team(self, data):
        used = self._used()
        if used:
            del self.present[data.draw(st.sampled_from(used))]

    @precondition(lambda self: self.imports > 0 and self.expected)
    @rule(data=st.data())
    def rename_a_used_club(self, data):
        used = self._used()
        if used:
            league, club, label = data.draw(st.sampled_from(used))
            new_club = club[: -len(RENAMED)] if club.endswith(RENAMED) else club + RENAMED
            spec = self.present.pop((league, club, label))
            self.present.setdefault((league, new_club, label), spec)

    # -- a next season in one step: the churn that matters most for users' rows, then an import ------
    def _churn_used(self, data):
        if data.draw(st.booleans(), label="drop a used team"):
            self.drop_a_used_team(data)
        if data.draw(st.booleans(), label="rename a used club"):
            self.rename_a_used_club(data)

    @precondition(lambda self: self.imports > 0 and self.expected)
    @rule(data=st.data(), order=st.randoms(use_true_random=False))
    def next_season_after_a_legacy_clear(self, data, order):
        self._churn_used(data)
        self.legacy_clear_then_import(order)

    @precondition(lambda self: self.imports > 0 and self.expected)
    @rule(data=st.data())
    def next_season(self, data):
        self._churn_used(data)
        self.import_teams()

    # -- G1, G2, G4 -------------------------------------------------------------------------------------
    def _check_users(self):
        refs = user_ref_keys(self.conn)
        assert "ORPHAN" not in refs.values(), [r for r, k in refs.items() if k == "ORPHAN"]  # G1
        with self.conn.cursor() as cur:
            present = set()
            for table in {t for t, _pk in self.rows}:
                pk = "user_id" if table == "user_contexts" else "id"
                cur.execute(sql.SQL("SELECT {} FROM {}").format(sql.Identifier(pk), sql.Identifier(table)))
                present.update((table, r[0]) for r in cur.fetchall())
            cur.execute("SELECT table_name, (pk->>'id')::int, column_name FROM bulletproof.mappings "
                        "WHERE run_id = %s AND strategy = 'context' AND pk ? 'id' UNION ALL "
                        "SELECT table_name, (pk->>'user_id')::int, column_name FROM bulletproof.mappings "
                        "WHERE run_id = %s AND strategy = 'context' AND pk ? 'user_id'",
                        (self.last_run, self.last_run))
            moved = {tuple(r) for r in cur.fetchall()}
        self.conn.rollback()
        assert self.rows <= present, sorted(self.rows - present)  # G2
        for ref, key in list(self.expected.items()):  # G4
            now = refs[ref]
            if now == key:
                continue
            assert ref in moved, f"{ref} was on {key}, is on {now}, and no strategy moved it"
            if ref[2] == "series_id":  # a series spelled anew: the same canonical series
                assert canonical_series(None, now[0]) == canonical_series(None, key[0]), (ref, key, now)
            else:
                league, club, label = key
                assert now[0] == league and now[2] == label and now[1] in (club + RENAMED.casefold(),
                                                                            club.removesuffix(RENAMED.casefold())), \
                    f"{ref} moved from {key} to {now}"
            self.expected[ref] = now

    @invariant()
    def quarantine_is_empty(self):
        """Every reference in this machine has a team the ledger knows: nothing to quarantine."""
        with self.conn.cursor() as cur:
            cur.execute("SELECT to_regclass('bulletproof.quarantine')")
            if cur.fetchone()[0] is not None:
                cur.execute("SELECT count(*) FROM bulletproof.quarantine")
                assert cur.fetchone()[0] == 0
        self.conn.rollback()


def test_g1_g2_g4_random_imports_with_user_writes_keep_every_row_on_its_team(db_dsn):
    UserImportMachine.dsn = db_dsn
    run_state_machine_as_test(
        UserImportMachine,
        settings=settings(max_examples=15, stateful_step_count=14, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]),
    )
