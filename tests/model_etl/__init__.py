"""A second reference ETL for the tests, modelled on the real app's ``ComprehensiveETL``.

``ModelETL`` (etl.py, with its own user-data steps in etl_restore.py and name parsing in
names.py) runs on ``schema.sql``, a reduced schema shaped like the app's production dump.
``data.py`` builds small deterministic seasons, ``userdata.py`` writes user data by hand and
reads back what every user reference means. ``model_db`` here is the pytest fixture: a fresh
database on the tests' server with ``schema.sql`` loaded, dropped afterwards.
"""

from __future__ import annotations

import gzip
import os
import shutil
import uuid
from pathlib import Path

import psycopg2
from psycopg2 import sql

from .etl import ModelETL

SCHEMA = Path(__file__).with_name("schema.sql")


def _admin(dsn: str):
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


def create_model_database(server_dsn: str) -> str:
    """A new database on the server of ``server_dsn`` holding ``schema.sql``; its DSN."""
    name = f"bp_model_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = _admin(server_dsn)
    with admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    admin.close()
    params = psycopg2.extensions.parse_dsn(server_dsn)
    params["dbname"] = name
    dsn = psycopg2.extensions.make_dsn(**params)
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cur.execute(SCHEMA.read_text(encoding="utf-8"))
    conn.commit()
    conn.close()
    return dsn


def drop_model_database(server_dsn: str, dsn: str) -> None:
    name = psycopg2.extensions.parse_dsn(dsn)["dbname"]
    admin = _admin(server_dsn)
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                    "AND pid <> pg_backend_pid()", (name,))
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
    admin.close()


def model_database(server_dsn: str):
    """For a fixture (``yield from model_database(server_dsn)``): a fresh database with the
    modelled app's schema, dropped afterwards."""
    dsn = create_model_database(server_dsn)
    try:
        yield dsn
    finally:
        drop_model_database(server_dsn, dsn)


def run_etl(etl_class, dsn: str, data_dir) -> ModelETL:
    """An instance of ``etl_class`` (ModelETL or a protected subclass) run on ``data_dir``."""
    etl = etl_class(dsn)
    etl.data_dir = Path(data_dir)
    etl.ok = etl.run()
    return etl


def unpack_realdata(snapshot_dir: Path, target: Path) -> Path:
    """The gzipped real scrape ``snapshot_dir`` as the plain JSON files the ETL reads."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("players", "series_stats", "schedules"):
        with gzip.open(snapshot_dir / f"{name}.json.gz", "rb") as src, open(target / f"{name}.json", "wb") as dst:
            shutil.copyfileobj(src, dst)
    return target


__all__ = ["ModelETL", "create_model_database", "drop_model_database", "model_database", "run_etl", "unpack_realdata"]
