"""G7 concurrency (issue 6): users keep writing during an import; two imports never run at once.

- While a protected import runs (the legacy ETL wrapped by ``create_bulletproof_etl_wrapper``),
  four threads, each on its own connection, keep creating polls, captain messages and practice
  times against teams that existed before. Afterwards every write that committed is there, with
  its id, on the team with the natural key it was written for: none lost, none orphaned, none
  moved. The slow test does this for a 10,000-team season.
- Two imports at once: the second fails at once with ``ConcurrentRun`` (or, through a wrapped
  ``run()``, returns False saying so) and changes nothing; the first completes.
- Twenty imports in a row, alternating two seasons, each with four writers that also edit their
  own earlier rows: no deadlock, no failed write, no failed import.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import threading
import time

import psycopg2
import pytest
from psycopg2 import sql

import conftest
from bulletproof_etl import BulletproofTeamPreservation, ConcurrentRun
from bulletproof_etl.integration import create_bulletproof_etl_wrapper
from rally_etl import ComprehensiveETL
from reliability_support import (
    Background,
    changed_tables,
    clone,
    data_checksums,
    protected_etl,
    template_database,
    write_seasons,
)
from support import team_keys, user_row_counts

BulletproofETL = create_bulletproof_etl_wrapper(ComprehensiveETL)
WRITERS = 4
TABLES = ("polls", "captain_messages", "practice_times")
_SECONDS = itertools.count()  # practice start times never repeat within a test session
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class Writer:
    """One user of the app on its own connection: creates rows against existing teams."""

    def __init__(self, dsn: str, k: int, team_ids: list, importing, *, edit: bool = False) -> None:
        self.dsn, self.k, self.team_ids, self.importing = dsn, k, team_ids, importing
        self.edit = edit
        self.written: list = []  # (table, id, team id, during the import)
        self.errors: list = []
        self.n = 0
        self.user_id = None

    def setup(self) -> None:
        conn = psycopg2.connect(self.dsn)
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO users (email, team_id) VALUES (%s, %s) RETURNING id",
                (f"writer{self.k}-{time.monotonic_ns()}@example.org", self.team_ids[0]),
            )
            self.user_id = cur.fetchone()[0]
        conn.commit()
        conn.close()

    def loop(self, stop: threading.Event, minimum: int) -> None:
        rnd = random.Random(self.k)
        conn = psycopg2.connect(self.dsn)
        try:
            while not stop.is_set() or self.n < minimum:
                self.write(conn, rnd)
                time.sleep(0.005)  # a busy app, not a load generator
        finally:
            conn.close()

    def write(self, conn, rnd) -> None:
        team = rnd.choice(self.team_ids)
        table = TABLES[self.n % len(TABLES)]
        self.n += 1
        try:
            with conn.cursor() as cur:
                if table == "polls":
                    cur.execute(
                        "INSERT INTO polls (team_id, created_by, question) VALUES (%s, %s, %s) RETURNING id",
                        (team, self.user_id, f"writer {self.k} poll {self.n}"),
                    )
                elif table == "captain_messages":
                    cur.execute(
                        "INSERT INTO captain_messages (team_id, captain_user_id, message) "
                        "VALUES (%s, %s, %s) RETURNING id",
                        (team, self.user_id, f"writer {self.k} #{self.n}"),
                    )
                else:  # (team, day, start) is unique: a day per writer, a second per write
                    start = (dt.datetime(2025, 1, 1) + dt.timedelta(seconds=next(_SECONDS))).time()
                    cur.execute(
                        "INSERT INTO practice_times (team_id, day_of_week, start_time, location) "
                        "VALUES (%s, %s, %s, %s) RETURNING id",
                        (team, DAYS[self.k], start, "writer"),
                    )
                row_id = cur.fetchone()[0]
                if self.edit and self.written:  # and edit one of their own earlier rows (row locks)
                    old_table, old_id, _team, _d = rnd.choice(self.written)
                    if old_table == "polls":
                        cur.execute(
                            "UPDATE polls SET question = question || '!' WHERE id = %s", (old_id,)
                        )
                    elif old_table == "captain_messages":
                        cur.execute(
                            "UPDATE captain_messages SET message = message || '!' WHERE id = %s",
                            (old_id,),
                        )
            during = self.importing()
            conn.commit()
            self.written.append((table, row_id, team, during))
        except psycopg2.Error as exc:
            conn.rollback()
            self.errors.append(f"{table}: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}")


def _mapped_closure(cur) -> dict:
    """{old team id: every team id the import's recorded mappings lead to from it}."""
    cur.execute(
        "SELECT DISTINCT old_id, new_id FROM bulletproof.mappings m JOIN bulletproof.ledger l "
        "ON l.entity = 'teams' AND l.id = m.old_id WHERE old_id IS NOT NULL AND new_id IS NOT NULL"
    )
    edges: dict = {}
    for old, new in cur.fetchall():
        edges.setdefault(old, set()).add(new)
    closure = {}
    for start in edges:
        seen, todo = set(), [start]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        closure[start] = seen
    return closure


def _check_writes(dsn: str, writers: list, keys_before: dict) -> dict:
    """Written rows found, lost, orphaned and moved.

    A row may end on its own team or on a team the import's recorded mappings lead to (a renamed
    club's team: the rows written before the import went the same way); anything else is moved.
    """
    conn = psycopg2.connect(dsn)
    keys_now = team_keys(conn)
    out = {"written": 0, "found": 0, "followed_mapping": 0, "lost": 0, "orphaned": 0, "moved": 0}
    with conn.cursor() as cur:
        closure = _mapped_closure(cur)
        for writer in writers:
            for table, row_id, team, _during in writer.written:
                out["written"] += 1
                cur.execute(
                    sql.SQL("SELECT team_id FROM {} WHERE id = %s").format(sql.Identifier(table)),
                    (row_id,),
                )
                row = cur.fetchone()
                if row is None:
                    out["lost"] += 1
                elif row[0] not in keys_now:
                    out["orphaned"] += 1
                elif row[0] == team and keys_now[team] == keys_before[team]:
                    out["found"] += 1
                elif row[0] in closure.get(team, ()):
                    out["found"] += 1
                    out["followed_mapping"] += 1
                else:
                    out["moved"] += 1
    conn.rollback()
    conn.close()
    return out


def _run_with_writers(dsn: str, data_dir, *, minimum: int, edit: bool = False) -> tuple:
    """The wrapped ETL's run() on ``data_dir`` while WRITERS threads write; (result, writers, report)."""
    conn = psycopg2.connect(dsn)
    team_ids = sorted(team_keys(conn))
    conn.close()
    etl = BulletproofETL(data_dir, dsn)
    holder: dict = {}
    importing = threading.Event()
    writers = [Writer(dsn, k, team_ids, importing.is_set, edit=edit) for k in range(WRITERS)]
    for w in writers:
        w.setup()
    stop = threading.Event()
    threads = [threading.Thread(target=w.loop, args=(stop, minimum)) for w in writers]
    for t in threads:
        t.start()

    def do_import():
        importing.set()
        try:
            holder["result"] = etl.run()
        finally:
            importing.clear()

    run = Background(do_import)
    run.join()
    stop.set()
    for t in threads:
        t.join()
    if run.error is not None:
        raise run.error
    return holder["result"], writers, etl.bulletproof_report


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    seasons = write_seasons(tmp_path_factory.mktemp("concurrency"), 60)
    template = template_database(seasons[0])
    yield template, seasons
    conftest.drop_database(template)


# -- users write while an import runs -------------------------------------------------------------


@pytest.mark.slow
def test_g7_writers_lose_nothing_during_a_10000_team_import(tmp_path):
    seasons = write_seasons(tmp_path, 10_000, churn=0.05)
    dsn = template_database(seasons[0], per_team=0.2)
    try:
        conn = psycopg2.connect(dsn)
        keys_before = team_keys(conn)
        rows_before = user_row_counts(conn)
        conn.close()
        assert len(keys_before) == 10_000
        ok, writers, report = _run_with_writers(dsn, seasons[1], minimum=30)
        assert ok is True, report.error
        assert report.health["status"] in ("PERFECT", "WARNING")
        counts = _check_writes(dsn, writers, keys_before)
        during = sum(1 for w in writers for *_r, d in w.written if d)
        assert [e for w in writers for e in w.errors] == []
        assert counts["lost"] == counts["orphaned"] == counts["moved"] == 0
        assert counts["found"] == counts["written"] >= WRITERS * 30
        assert during >= WRITERS  # the writes really overlapped the import
        print(f"\n10,000 teams: {counts}, {during} committed while the import ran")
        conn = psycopg2.connect(dsn)
        rows_after = user_row_counts(conn)
        conn.close()
        per_table = {t: sum(1 for w in writers for r in w.written if r[0] == t) for t in TABLES}
        for table in TABLES:
            assert rows_after[table] == rows_before[table] + per_table[table], table
        assert rows_after["users"] == rows_before["users"] + WRITERS
    finally:
        conftest.drop_database(dsn)


def test_g7_writers_lose_nothing_during_an_import(small):
    template, seasons = small
    dsn = clone(template)
    try:
        conn = psycopg2.connect(dsn)
        keys_before = team_keys(conn)
        rows_before = user_row_counts(conn)
        conn.close()
        ok, writers, report = _run_with_writers(dsn, seasons[1], minimum=15)
        assert ok is True, report.error
        counts = _check_writes(dsn, writers, keys_before)
        assert [e for w in writers for e in w.errors] == []
        assert counts["lost"] == counts["orphaned"] == counts["moved"] == 0
        assert counts["found"] == counts["written"] >= WRITERS * 15
        conn = psycopg2.connect(dsn)
        rows_after = user_row_counts(conn)
        conn.close()
        for table in TABLES:
            assert rows_after[table] == rows_before[table] + sum(
                1 for w in writers for r in w.written if r[0] == table
            ), table
    finally:
        conftest.drop_database(dsn)


# -- two imports at once -------------------------------------------------------------------------------


def test_g7_second_import_fails_at_once_and_changes_nothing(small):
    template, seasons = small
    dsn = clone(template)
    etl = ComprehensiveETL(seasons[1])
    etl.load_json_files()
    teams = etl.extract_teams()
    first_entered, second_done = threading.Event(), threading.Event()
    outcome: dict = {}

    def first():
        conn = psycopg2.connect(dsn)
        try:
            with BulletproofTeamPreservation(conn) as p:
                first_entered.set()
                second_done.wait()  # the second import is tried while this one holds the lock
                outcome["first"] = p.run(teams)
            conn.commit()
        finally:
            conn.close()

    try:
        run = Background(first)
        first_entered.wait()
        conn = psycopg2.connect(dsn)
        with conn.cursor() as cur:
            cur.execute("SET lock_timeout = '30s'")  # had it waited for a lock, this would say so
        conn.commit()
        before = data_checksums(conn)
        try:
            with pytest.raises(ConcurrentRun) as caught, BulletproofTeamPreservation(conn) as p:
                p.run(teams)
            assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
            conn.rollback()
            assert changed_tables(before, data_checksums(conn)) == []
        finally:
            second_done.set()
            conn.close()
        run.join()
        assert run.error is None, run.error
        assert caught.value.stage == "lock"
        assert str(caught.value) == (
            "[lock] another protected import is running on this database; "
            "this one did nothing (try again when it has finished)"
        )
        assert outcome["first"].outcome.startswith("completed")
    finally:
        conftest.drop_database(dsn)


def test_g7_wrapped_run_returns_false_while_another_import_runs(small):
    template, seasons = small
    dsn = clone(template)
    try:
        holder = psycopg2.connect(dsn)
        before = data_checksums(holder)
        with BulletproofTeamPreservation(holder):  # an import in progress
            etl = BulletproofETL(seasons[1], dsn)
            assert etl.run() is False
            assert "another protected import is running" in (etl.bulletproof_report.error or "")
            check = psycopg2.connect(dsn)
            assert changed_tables(before, data_checksums(check)) == []
            check.close()
        holder.rollback()
        holder.close()
        etl = BulletproofETL(seasons[1], dsn)  # and once it is over, the import runs
        assert etl.run() is True
    finally:
        conftest.drop_database(dsn)


# -- no deadlock ---------------------------------------------------------------------------------------


def test_g7_no_deadlock_in_20_imports_with_writers(small):
    template, seasons = small
    dsn = clone(template)
    try:
        conn = psycopg2.connect(dsn)
        keys_before = team_keys(conn)
        conn.close()
        results, all_writers, deadlocks = [], [], 0
        for rep in range(20):
            conn = psycopg2.connect(dsn)
            keys_before.update(team_keys(conn))  # an id never changes key: one map for all imports
            conn.close()
            ok, writers, report = _run_with_writers(
                dsn, seasons[(rep + 1) % 2], minimum=6, edit=True
            )
            results.append(ok)
            all_writers += writers
            deadlocks += sum("DeadlockDetected" in e for w in writers for e in w.errors)
            assert ok is True, f"import {rep} failed: {report.error}"
        assert deadlocks == 0
        print(f"\n20 imports: {sum(len(w.written) for w in all_writers)} writes, "
              f"{sum(1 for w in all_writers for *_r, d in w.written if d)} while an import ran, 0 deadlocks")
        assert [e for w in all_writers for e in w.errors] == []
        assert results == [True] * 20
        counts = _check_writes(dsn, all_writers, keys_before)
        assert counts["lost"] == counts["orphaned"] == counts["moved"] == 0
        assert counts["found"] == counts["written"] >= 20 * WRITERS * 6
    finally:
        conftest.drop_database(dsn)


# -- users changing their own rows while an import runs: their change, never damage (issue 14) ---------


def _edit_during_import(small, edit) -> tuple:
    """A protected import during which another session commits ``edit(cursor)``; (error, dsn)."""
    template, seasons = small
    dsn = clone(template)

    def after_upsert(_p):
        other = psycopg2.connect(dsn)
        with other.cursor() as cur:
            edit(cur)
        other.commit()
        other.close()

    conn = psycopg2.connect(dsn)
    try:
        protected_etl(conn, seasons[1], hooks={"teams": after_upsert})
        error = None
    except Exception as exc:  # the test below says which outcome is right
        error = exc
    finally:
        conn.close()
    return error, dsn


def test_g7_a_poll_its_user_deletes_during_an_import_stays_deleted(small):
    """Polls are snapshotted as keys; the restore reads back only rows the run itself deleted
    (still there for a second connection), so the user's committed delete stands."""
    error, dsn = _edit_during_import(
        small, lambda cur: cur.execute("DELETE FROM polls WHERE id = 1")
    )
    try:
        assert error is None
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM polls WHERE id = 1")
            assert cur.fetchone()[0] == 0
    finally:
        conftest.drop_database(dsn)


def test_g7_a_user_changing_team_during_an_import_does_not_fail_it(small):
    """A user moves their own row to another team while the import runs: the row version is
    committed by the user's transaction, not the run's, so health does not take it for a
    misattachment and the restore leaves it where the user put it."""
    seen: dict = {}

    def move(cur):
        cur.execute("SELECT team_id FROM users WHERE id = 1")
        seen["before"] = cur.fetchone()[0]
        cur.execute("SELECT max(id) FROM teams")
        seen["chosen"] = cur.fetchone()[0]
        seen["key"] = team_keys(cur.connection)[seen["chosen"]]  # the key the user sees (ends with a rollback)
        cur.execute("UPDATE users SET team_id = %s WHERE id = 1", (seen["chosen"],))

    error, dsn = _edit_during_import(small, move)
    try:
        assert error is None, error
        assert seen["before"] != seen["chosen"]
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("SELECT team_id FROM users WHERE id = 1")
            assert cur.fetchone()[0] == seen["chosen"]  # exactly where the user put it
            assert team_keys(conn)[seen["chosen"]] == seen["key"]  # on the team the user chose
    finally:
        conftest.drop_database(dsn)
