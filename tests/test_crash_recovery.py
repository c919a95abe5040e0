"""Crash recovery (issue 6): the ETL process is killed with SIGKILL mid-run; ``repair`` brings it all back.

The ETL runs in a subprocess. A trigger on ``players`` makes the ETL's player import wait for
an advisory lock the test holds, so the kill lands at a known point: after the clear and the
team import, in the middle of a statement. The test then SIGKILLs the process, lets the
orphaned server backend notice its client is gone, and runs
``bulletproof-etl repair --from-snapshot RUN`` (the command line, in a subprocess).

- Patched ETL (``patch_existing_etl_class``): its per-step commits are deferred into one
  transaction, so the kill commits nothing; the durable snapshot of the killed run is there
  (outcome still ``running``) and the repair from it finds nothing to undo.
- An ETL that commits per step, with the protection's durable snapshot taken before it starts:
  the kill leaves the legacy clear committed (every id gone, practice rows in ``schedule``
  deleted), leagues, clubs, series and teams re-inserted under new ids, the player import
  half done and lost. The repair from that snapshot brings back every id and every user row.

Counts are checked against the state before, computed independently (``tests/support``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import psycopg2
import pytest

import conftest
from reliability_support import clone, run_row, template_database, write_seasons
from support import team_keys, user_ref_keys, user_row_counts

LOCK_KEY = 6008
ETL_SCRIPT = textwrap.dedent("""
    import sys

    from bulletproof_etl import BulletproofTeamPreservation
    from bulletproof_etl.integration import patch_existing_etl_class
    from rally_etl import ComprehensiveETL

    mode, data_dir, dsn = sys.argv[1:4]
    if mode == "patched":
        patch_existing_etl_class(ComprehensiveETL)
    else:  # "per-step": the durable snapshot first, then the ETL as it is, committing every step
        with BulletproofTeamPreservation(dsn=dsn) as p:
            p.validate_constraints()
            p.backup_user_data()
        print(p.report.run_id, flush=True)
    sys.exit(0 if ComprehensiveETL(data_dir, dsn).run() else 1)
""")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    base = tmp_path_factory.mktemp("crash")
    seasons = write_seasons(base, 150)
    template = template_database(seasons[0])
    script = base / "etl_run.py"
    script.write_text(ETL_SCRIPT)
    yield template, seasons, script
    conftest.drop_database(template)


class State:
    """Ids by natural key and user rows, counted independently of the library."""

    def __init__(self, dsn: str) -> None:
        conn = psycopg2.connect(dsn)
        try:
            self.team_ids = {k: i for i, k in team_keys(conn).items()}
            self.rows = user_row_counts(conn)
            self.refs = user_ref_keys(conn)
        finally:
            conn.close()


def _pause_players(dsn: str):
    """Holds the lock that the first player insert will wait for; returns the holding connection."""
    holder = psycopg2.connect(dsn)
    holder.autocommit = True
    with holder.cursor() as cur:
        cur.execute(
            "CREATE FUNCTION public.bp_crash_wait() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN PERFORM pg_advisory_xact_lock_shared(%s); RETURN NEW; END $$",
            (LOCK_KEY,),
        )
        cur.execute(
            "CREATE TRIGGER bp_crash_wait BEFORE INSERT ON players FOR EACH ROW "
            "EXECUTE FUNCTION public.bp_crash_wait()"
        )
        cur.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    return holder


def _kill_mid_run(dsn: str, script, mode: str, data_dir) -> None:
    """Start the ETL, wait until it is inside the player import, SIGKILL it, let its backend die."""
    dbname = psycopg2.extensions.parse_dsn(dsn)["dbname"]
    holder = _pause_players(dsn)
    proc = subprocess.Popen(
        [sys.executable, str(script), mode, str(data_dir), dsn],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        with holder.cursor() as cur:
            while True:
                cur.execute(
                    "SELECT pid, query FROM pg_stat_activity WHERE datname = %s AND wait_event = 'advisory' "
                    "AND pid <> pg_backend_pid()",
                    (dbname,),
                )
                row = cur.fetchone()
                if row:
                    break
                if proc.poll() is not None:
                    raise AssertionError(
                        f"the ETL ended before the player import: {proc.stdout.read()!r}"
                    )
                time.sleep(0.05)
            backend, query = row
            assert "INSERT INTO players" in query
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait() == -signal.SIGKILL
            # the backend finishes its statement, finds its client gone and aborts the transaction
            cur.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
            while True:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (backend,))
                if cur.fetchone()[0] == 0:
                    break
                time.sleep(0.05)
            cur.execute("DROP TRIGGER bp_crash_wait ON players")
            cur.execute("DROP FUNCTION public.bp_crash_wait()")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        holder.close()


def _repair(dsn: str, run_id: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "bulletproof_etl.cli",
            "repair",
            "--from-snapshot",
            str(run_id),
            "--dsn",
            dsn,
            "--json",
        ],
        capture_output=True,
        text=True,
    )


def _runs(dsn: str) -> list:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT run_id, outcome FROM bulletproof.runs ORDER BY run_id")
            return cur.fetchall()
    finally:
        conn.close()


def _assert_back(dsn: str, before: State) -> None:
    after = State(dsn)
    assert after.rows == before.rows  # every user row, table by table
    assert {
        k: after.team_ids.get(k) for k in before.team_ids
    } == before.team_ids  # every id, by key
    assert after.refs == before.refs  # every user reference on the team with the same key


def test_g5_killed_patched_run_commits_nothing_and_repair_confirms_it(seeded):
    template, seasons, script = seeded
    dsn = clone(template)
    try:
        before = State(dsn)
        _kill_mid_run(dsn, script, "patched", seasons[1])
        runs = _runs(dsn)
        assert [outcome for _run, outcome in runs] == ["running"]  # killed: never finished
        run_id = runs[0][0]
        conn = psycopg2.connect(dsn)
        snapshot = run_row(conn, run_id)
        conn.close()
        assert snapshot["snapshot_rows"] == sum(before.rows.values())  # the durable snapshot is whole
        _assert_back(dsn, before)  # nothing was committed
        result = _repair(dsn, run_id)
        assert result.returncode in (0, 1), result.stdout + result.stderr
        report = json.loads(result.stdout)
        assert report["nothing_to_do"] is True
        assert "nothing to repair" in report["message"]
        _assert_back(dsn, before)
    finally:
        conftest.drop_database(dsn)


def test_g2_g3_killed_per_step_etl_is_brought_back_by_repair_from_snapshot(seeded):
    """The worst case: the ETL commits its clear (every id gone, practice rows deleted), re-inserts
    leagues, clubs, series and teams under new ids, and dies in the player import."""
    template, seasons, script = seeded
    dsn = clone(template)
    try:
        before = State(dsn)
        assert before.rows["schedule(practice)"] == 150
        _kill_mid_run(dsn, script, "per-step", seasons[1])
        runs = _runs(dsn)
        assert len(runs) == 1
        run_id = runs[0][0]
        damaged = State(dsn)
        assert damaged.rows["schedule(practice)"] == 0  # the committed clear took them
        assert not set(damaged.team_ids.values()) & set(
            before.team_ids.values()
        )  # every team id new
        assert sum(1 for v in damaged.refs.values() if v == "ORPHAN") > 0
        conn = psycopg2.connect(dsn)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM players")
            assert cur.fetchone()[0] == 0  # killed mid-step: that step's rows never committed
        conn.close()

        result = _repair(dsn, run_id)
        assert result.returncode in (0, 1), result.stdout + result.stderr
        report = json.loads(result.stdout)
        assert report["nothing_to_do"] is False
        assert report["restore"]["totals"]["reinserted"] == 150  # the practice rows
        assert (
            report["entities"]["teams"]["renumbered"] + report["entities"]["teams"]["reinserted"]
            == 150
        )
        _assert_back(dsn, before)
    finally:
        conftest.drop_database(dsn)
