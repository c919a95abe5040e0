"""G5 under faults: whatever breaks, and wherever, the database is exactly as before the run.

The protected ETL (``reliability_support.protected_etl``: the legacy ETL's steps inside one
``BulletproofTeamPreservation`` block) imports the next season over a seeded database while
something goes wrong:

- an exception between any two stages, and inside each library stage;
- the server connection terminated (``pg_terminate_backend`` from a second connection) in the
  middle of a statement: a trigger makes one row of the statement wait for an advisory lock
  the test holds, the test sees the backend waiting and terminates it, at five points (the
  durable snapshot, the team upsert, the ETL's own inserts, the restore, and COMMIT);
- ``statement_timeout`` and ``lock_timeout`` expiring;
- a COPY that fails the way a full disk makes it fail (the data source raises ENOSPC).

After each: every table of ``public`` has the checksum it had before (sequences aside: they
are not transactional in PostgreSQL, and stay ahead of every id), the error names the stage,
and the durable snapshot of the failed run is still in ``bulletproof`` with all its rows.
"""

from __future__ import annotations

import errno
import io
import re
import time
import types

import psycopg2
import pytest
from psycopg2 import sql

import bulletproof_etl.preservation as preservation_module
import bulletproof_etl.state as state_module
import conftest
from bulletproof_etl import DEFAULT_CONFIG, StageFailed
from bulletproof_etl.state import ensure_state_schema
from reliability_support import (
    BOUNDARIES,
    Background,
    changed_tables,
    clone,
    data_checksums,
    entity_total,
    protected_etl,
    run_row,
    sequences_behind,
    template_database,
    user_rows_total,
    write_seasons,
)
from support import team_keys, user_ref_keys, user_row_counts

N_TEAMS = 150
LOCK_KEY = 6006
SNAPSHOT_STAGES = ("snapshot", "validate", "upsert", "restore", "health", "commit")


@pytest.fixture(scope="module")
def seasons(tmp_path_factory):
    return write_seasons(tmp_path_factory.mktemp("faults"), N_TEAMS)


@pytest.fixture(scope="module")
def template(seasons):
    dsn = template_database(seasons[0])
    yield dsn
    conftest.drop_database(dsn)


@pytest.fixture
def dsn(template):
    fresh = clone(template)
    yield fresh
    conftest.drop_database(fresh)


class Before:
    """What the database held before the run, counted independently of the library."""

    def __init__(self, dsn: str) -> None:
        conn = psycopg2.connect(dsn)
        try:
            self.checksums = data_checksums(conn)
            self.user_rows = user_rows_total(conn)
            self.entities = entity_total(conn)
            self.refs = user_ref_keys(conn)
            self.counts = user_row_counts(conn)
        finally:
            conn.close()

    def assert_unchanged(self, dsn: str) -> None:
        conn = psycopg2.connect(dsn)
        try:
            assert changed_tables(self.checksums, data_checksums(conn)) == []
            assert sequences_behind(conn) == []
        finally:
            conn.close()


def _runs(dsn: str) -> list:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('bulletproof.runs') IS NOT NULL")
            if not cur.fetchone()[0]:
                return []
            cur.execute("SELECT run_id FROM bulletproof.runs ORDER BY run_id")
            ids = [r[0] for r in cur.fetchall()]
        return [dict(run_row(conn, i), run_id=i) for i in ids]
    finally:
        conn.close()


def assert_failed_run_kept(dsn: str, before: Before, stage: str) -> dict:
    """Exactly one run, recorded as failed at ``stage``, its snapshot complete."""
    runs = _runs(dsn)
    assert len(runs) == 1, runs
    run = runs[0]
    assert run["outcome"] == "failed"
    assert run["stage"] == stage
    assert run["snapshot_rows"] == before.user_rows
    assert run["snap_entities"] == before.entities
    return run


def assert_no_run_recorded(dsn: str) -> None:
    assert [r for r in _runs(dsn) if r["outcome"] != "failed"] == []


# -- exceptions at every stage boundary ----------------------------------------------------


class InjectedFault(Exception):
    pass


# the stage a failure after each boundary is charged to: the last stage that started
LAST_STAGE = {
    "constraints": "constraints",
    "snapshot": "snapshot",
    "clear": "snapshot",
    "parents": "snapshot",
    "teams": "upsert",
    "facts": "upsert",
    "restore": "restore",
    "health": "health",
}


def _notes(exc) -> str:
    return " ".join(getattr(exc, "__notes__", []))


@pytest.mark.parametrize("kind", ["python", "database"])
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_g5_failure_at_each_stage_boundary_changes_nothing(dsn, seasons, boundary, kind):
    """The caller's code fails between two stages: a Python exception or a failing statement."""
    before = Before(dsn)
    stage = LAST_STAGE[boundary]

    def explode(p):
        if kind == "python":
            raise InjectedFault(f"injected after {boundary}")
        with p.conn.cursor() as cur:
            cur.execute("SELECT 1 / 0")

    conn = psycopg2.connect(dsn)
    try:
        with pytest.raises(Exception) as caught:
            protected_etl(conn, seasons[1], hooks={boundary: explode})
    finally:
        conn.close()
    err = caught.value
    where = f"the caller's code after stage {stage!r} failed and everything was rolled back"
    if kind == "python":
        assert type(err) is InjectedFault  # the caller's own exception keeps its type
        assert where in _notes(err)
    else:
        assert isinstance(err, StageFailed)
        assert err.stage == stage
        assert str(err).startswith(f"[{stage}] {where}: division by zero")
        assert isinstance(err.__cause__, psycopg2.errors.DivisionByZero)
    before.assert_unchanged(dsn)
    if boundary == "constraints":
        assert _runs(dsn) == []  # nothing was snapshotted yet: nothing to keep
    else:
        run = assert_failed_run_kept(dsn, before, stage)
        if kind == "database":
            assert err.run_id == run["run_id"]
            assert f"the snapshot of run {run['run_id']} is kept for repair" in str(err)


def test_g5_failed_statement_keeps_the_callers_earlier_work(dsn, seasons):
    """On the caller's connection a failed statement aborts the whole transaction; the run still
    rolls back to its savepoint only, so what the caller did before the run can be committed."""
    before = Before(dsn)

    def explode(p):
        with p.conn.cursor() as cur:
            cur.execute("SELECT 1 / 0")

    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO users (email) VALUES ('caller@example.org')")
        with pytest.raises(StageFailed):
            protected_etl(conn, seasons[1], hooks={"teams": explode})
        assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
        conn.commit()
    finally:
        conn.close()
    with psycopg2.connect(dsn) as check, check.cursor() as cur:
        cur.execute("SELECT count(*) FROM users WHERE email = 'caller@example.org'")
        assert cur.fetchone()[0] == 1
        check.rollback()
    after = data_checksums(psycopg2.connect(dsn))
    assert changed_tables(before.checksums, after) == ["public.users"]


# -- exceptions inside each library stage ---------------------------------------------------

INSIDE = [
    ("validate_constraints", "constraints"),
    ("snapshot_user_rows", "snapshot"),
    ("validate_teams", "validate"),
    ("upsert_teams", "upsert"),
    ("ledger_add", "upsert"),
    ("restore", "restore"),
    ("check_health", "health"),
]


@pytest.mark.parametrize("kind", ["python", "database"])
@pytest.mark.parametrize("function, stage", INSIDE, ids=[f for f, _ in INSIDE])
def test_g5_failure_inside_each_stage_is_named_and_changes_nothing(
    dsn, seasons, monkeypatch, function, stage, kind
):
    before = Before(dsn)

    def broken(*_args, **_kwargs):
        if kind == "python":
            raise InjectedFault(f"{function} broke")
        raise psycopg2.OperationalError(f"{function} broke")

    monkeypatch.setattr(preservation_module, function, broken)
    conn = psycopg2.connect(dsn)
    try:
        with pytest.raises(Exception) as caught:
            protected_etl(conn, seasons[1])
    finally:
        conn.close()
    err = caught.value
    if kind == "python":
        assert type(err) is InjectedFault
        assert f"bulletproof-etl: {stage} failed and everything was rolled back" in _notes(err)
    else:
        assert isinstance(err, StageFailed)
        assert err.stage == stage
        assert str(err).startswith(
            f"[{stage}] {stage} failed and everything was rolled back: {function} broke"
        )
    before.assert_unchanged(dsn)
    if stage in ("constraints", "snapshot"):
        assert _runs(dsn) == []  # the snapshot never completed: no run, no half snapshot
    else:
        assert_failed_run_kept(dsn, before, stage)


# -- the connection terminated in the middle of a statement ---------------------------------

_WAIT_FUNCTION = """
CREATE OR REPLACE FUNCTION public.bp_fault_wait() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(%s);
    RETURN NEW;
END $$
"""


class Blocker:
    """Holds advisory lock ``LOCK_KEY``; rows matching a trigger's WHEN clause wait for it."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.dbname = psycopg2.extensions.parse_dsn(dsn)["dbname"]
        self.conn = psycopg2.connect(dsn)
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            cur.execute(_WAIT_FUNCTION, (LOCK_KEY,))
            cur.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))

    def trigger(
        self,
        table: sql.Composable,
        when: str,
        *,
        events: str = "INSERT OR UPDATE",
        deferred: bool = False,
    ) -> None:
        with self.conn.cursor() as cur:
            if deferred:
                cur.execute(
                    sql.SQL(
                        "CREATE CONSTRAINT TRIGGER bp_fault_wait AFTER {events} ON {table} DEFERRABLE INITIALLY "
                        "DEFERRED FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION public.bp_fault_wait()"
                    ).format(events=sql.SQL(events), table=table, when=sql.SQL(when))
                )
            else:
                cur.execute(
                    sql.SQL(
                        "CREATE TRIGGER bp_fault_wait BEFORE {events} ON {table} FOR EACH ROW WHEN ({when}) "
                        "EXECUTE FUNCTION public.bp_fault_wait()"
                    ).format(events=sql.SQL(events), table=table, when=sql.SQL(when))
                )

    def waiting(self, run: Background) -> tuple:
        """Wait until a backend of the database waits for our lock; its pid and query."""
        with self.conn.cursor() as cur:
            while run.alive():
                cur.execute(
                    "SELECT pid, query FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock' "
                    "AND wait_event = 'advisory' AND pid <> pg_backend_pid()",
                    (self.dbname,),
                )
                row = cur.fetchone()
                if row:
                    return row
                time.sleep(0.05)
        run.join()
        raise AssertionError(f"the run ended without reaching the fault point: {run.error!r}")

    def terminate(self, pid: int) -> None:
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
            assert cur.fetchone()[0]

    def release(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock_all()")

    def close(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute(
                "SET lock_timeout = '60s'"
            )  # a leftover session fails the test, never hangs it
            for table in ("teams", "players", "schedule"):
                cur.execute(
                    sql.SQL("DROP TRIGGER IF EXISTS bp_fault_wait ON {}").format(
                        sql.Identifier(table)
                    )
                )
            cur.execute("SELECT to_regclass('bulletproof.snap_rows') IS NOT NULL")
            if cur.fetchone()[0]:
                cur.execute("DROP TRIGGER IF EXISTS bp_fault_wait ON bulletproof.snap_rows")
            cur.execute("DROP FUNCTION IF EXISTS public.bp_fault_wait()")
        self.conn.close()


def _mid_team(seasons) -> str:
    from rally_etl import ComprehensiveETL

    etl = ComprehensiveETL(seasons[1])
    etl.load_json_files()
    teams = etl.extract_teams()
    return teams[len(teams) // 2]["team_name"]


TERMINATED = re.compile(
    r"failed and everything was rolled back: (terminating connection due to administrator "
    r"command|server closed the connection unexpectedly)"
)
# point -> (table, WHEN clause, the stage the error must name, is a snapshot kept)
KILL_POINTS = {
    "snapshot": (
        sql.Identifier("bulletproof", "snap_rows"),
        "NEW.table_name = 'schedule'",  # practice rows: copied whole (captain messages are kept as keys)
        "snapshot",
        False,
    ),
    "upsert": (sql.Identifier("teams"), "NEW.team_name = {mid}", "upsert", True),
    "etl-insert": (sql.Identifier("players"), "true", "upsert", True),
    "restore": (sql.Identifier("schedule"), "NEW.home_team ILIKE '%%practice%%'", "restore", True),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_g5_connection_killed_mid_statement_changes_nothing(dsn, seasons, point):
    table, when, stage, kept = KILL_POINTS[point]
    conn = psycopg2.connect(dsn)
    ensure_state_schema(conn, DEFAULT_CONFIG)  # so a trigger can sit on the snapshot table
    conn.commit()
    conn.close()
    before = Before(dsn)
    blocker = Blocker(dsn)
    try:
        with psycopg2.connect(dsn) as c, c.cursor() as cur:
            mid = cur.mogrify("%s", (_mid_team(seasons),)).decode()
        blocker.trigger(table, when.replace("{mid}", mid))
        main = psycopg2.connect(dsn)
        try:
            run = Background(lambda: protected_etl(main, seasons[1]))
            pid, query = blocker.waiting(run)
            blocker.terminate(pid)
            run.join()
        finally:
            main.close()
            blocker.release()
    finally:
        blocker.close()
    assert isinstance(run.error, StageFailed), run.error
    assert run.error.stage == stage
    assert run.error.__cause__ is not None
    assert TERMINATED.search(str(run.error)), str(run.error)
    before.assert_unchanged(dsn)
    if kept:
        assert_failed_run_kept(dsn, before, stage)
    else:
        assert_no_run_recorded(dsn)


def test_g5_connection_killed_during_commit_changes_nothing(dsn, seasons):
    """Own connection: the library commits; a deferred trigger makes COMMIT itself wait."""
    before = Before(dsn)
    blocker = Blocker(dsn)
    try:
        blocker.trigger(sql.Identifier("teams"), "true", deferred=True)
        run = Background(lambda: protected_etl(None, seasons[1], dsn=dsn))
        pid, query = blocker.waiting(run)
        assert query.strip().upper() == "COMMIT"
        blocker.terminate(pid)
        run.join()
        blocker.release()
    finally:
        blocker.close()
    assert isinstance(run.error, StageFailed), run.error
    assert run.error.stage == "commit"
    assert TERMINATED.search(str(run.error)), str(run.error)
    before.assert_unchanged(dsn)
    assert_failed_run_kept(dsn, before, "commit")


# -- timeouts -----------------------------------------------------------------------------------


# where a statement waits until statement_timeout cancels it: (table, WHEN clause, stage)
TIMEOUT_POINTS = {
    "upsert": (sql.Identifier("teams"), "true", "upsert"),
    "restore": (sql.Identifier("schedule"), "NEW.home_team ILIKE '%%practice%%'", "restore"),
}


@pytest.mark.parametrize("point", list(TIMEOUT_POINTS))
def test_g5_statement_timeout_rolls_back_and_names_the_stage(dsn, seasons, point):
    """A cancelled statement ends the run: no row-by-row fallback, no quarantine for it."""
    table, when, stage = TIMEOUT_POINTS[point]
    before = Before(dsn)
    blocker = Blocker(dsn)
    try:
        blocker.trigger(table, when)
        conn = psycopg2.connect(dsn)
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = '3s'")
        conn.commit()
        try:
            with pytest.raises(StageFailed) as caught:
                protected_etl(conn, seasons[1])
        finally:
            conn.close()
    finally:
        blocker.release()
        blocker.close()
    assert caught.value.stage == stage
    assert (
        f"[{stage}] {stage} failed and everything was rolled back: canceling statement due to "
        "statement timeout" in str(caught.value)
    )
    assert isinstance(caught.value.__cause__, psycopg2.errors.QueryCanceled)
    before.assert_unchanged(dsn)
    assert_failed_run_kept(dsn, before, stage)


def test_g5_lock_timeout_rolls_back_and_names_the_stage(dsn, seasons):
    """Another session holds a lock on the ledger once the snapshot is taken."""
    before = Before(dsn)
    holder = psycopg2.connect(dsn)

    def lock_ledger(_p):
        with holder.cursor() as cur:
            cur.execute(
                "SET lock_timeout = '10s'"
            )  # never hang the test if the order were different
            cur.execute("LOCK TABLE bulletproof.ledger IN ACCESS EXCLUSIVE MODE")

    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cur.execute("SET lock_timeout = '300ms'")
    conn.commit()
    try:
        with pytest.raises(StageFailed) as caught:
            protected_etl(conn, seasons[1], hooks={"snapshot": lock_ledger})
    finally:
        holder.rollback()
        holder.close()
        conn.close()
    assert caught.value.stage == "upsert"
    assert "lock timeout" in str(caught.value)
    assert isinstance(caught.value.__cause__, psycopg2.errors.LockNotAvailable)
    before.assert_unchanged(dsn)
    assert_failed_run_kept(dsn, before, "upsert")


# -- a COPY that fails like a full disk ---------------------------------------------------------


class _DiskFull(io.StringIO):
    def read(self, *_args):
        raise OSError(errno.ENOSPC, "No space left on device")


def _failing_copy(target: int):
    """An ``io`` namespace for the snapshot module whose buffers fail once ``target`` is copied."""
    calls = []

    def string_io(*args):
        calls.append(1)
        return _DiskFull(*args) if len(calls) == target else io.StringIO(*args)

    return types.SimpleNamespace(StringIO=string_io), calls


# the n-th COPY of a run: 1 = the snapshot's keys (second connection), 2 = the ledger's new keys,
# then the upsert's staging tables (leagues, clubs, series when new, then teams)
@pytest.mark.parametrize(
    "nth, stage, kept", [(1, "snapshot", False), (2, "upsert", True), (3, "upsert", True)]
)
def test_g5_failed_copy_rolls_back_and_names_the_stage(dsn, seasons, monkeypatch, nth, stage, kept):
    before = Before(dsn)
    fake_io, calls = _failing_copy(nth)
    monkeypatch.setattr(state_module, "io", fake_io)
    conn = psycopg2.connect(dsn)
    try:
        with pytest.raises(StageFailed) as caught:
            protected_etl(conn, seasons[1])
    finally:
        conn.close()
    assert len(calls) == nth  # the run stopped at the failing COPY
    assert caught.value.stage == stage
    assert "No space left on device" in str(caught.value)
    before.assert_unchanged(dsn)
    if kept:
        assert_failed_run_kept(dsn, before, stage)
    else:
        assert_no_run_recorded(dsn)


# -- and after a fault, the next run works ------------------------------------------------------


def test_g3_run_after_a_fault_ends_as_a_clean_run(template, dsn, seasons):
    """A failed run leaves nothing behind that changes the next one: same ids, same rows."""
    reference = clone(template)
    try:
        conn = psycopg2.connect(reference)
        protected_etl(conn, seasons[1])
        expected = (team_keys(conn), user_ref_keys(conn), user_row_counts(conn))
        conn.close()
    finally:
        conftest.drop_database(reference)

    def explode(_p):
        raise InjectedFault("the first attempt dies")

    conn = psycopg2.connect(dsn)
    with pytest.raises(InjectedFault):
        protected_etl(conn, seasons[1], hooks={"restore": explode})
    report = protected_etl(conn, seasons[1])
    assert (team_keys(conn), user_ref_keys(conn), user_row_counts(conn)) == expected
    conn.close()
    assert report.outcome.startswith("completed")
    assert [r["outcome"] for r in _runs(dsn)] == ["failed", "committed"]
