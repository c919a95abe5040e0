"""The server the benchmark creates its databases on, and the two template databases of each
size (season 1 imported, user activity created) that every measurement clones."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg2.extensions
from psycopg2 import sql

from .constants import PER_TEAM, SEED
from .counting import real_connect
from .legacy import legacy_segment


def with_dbname(dsn: str, dbname: str) -> str:
    params = psycopg2.extensions.parse_dsn(dsn)
    params["dbname"] = dbname
    return psycopg2.extensions.make_dsn(**params)


def admin_connect(dsn: str):
    conn = real_connect(dsn)
    conn.autocommit = True
    return conn


# -- preparing databases ------------------------------------------------------------------------
class Server:
    def __init__(self, dsn: str, prefix: str, keep: bool) -> None:
        self.dsn = dsn
        self.prefix = prefix
        self.keep = keep
        self.created: list = []
        with admin_connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("SHOW server_version")
            self.version = cur.fetchone()[0]
            cur.execute("SHOW server_version_num")
            self.version_num = int(cur.fetchone()[0])
        conn.close()

    def create(self, name: str, template: str | None = None) -> str:
        conn = admin_connect(self.dsn)
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            if template is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            elif self.version_num >= 150000:  # a file copy: much faster than WAL_LOG for big clones
                cur.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY = FILE_COPY").format(
                        sql.Identifier(name), sql.Identifier(template)
                    )
                )
            else:
                cur.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                        sql.Identifier(name), sql.Identifier(template)
                    )
                )
        conn.close()
        self.created.append(name)
        return with_dbname(self.dsn, name)

    def drop(self, name: str) -> None:
        if self.keep:
            return
        conn = admin_connect(self.dsn)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                "AND pid <> pg_backend_pid()",
                (name,),
            )
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.close()
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        for name in list(self.created):
            self.drop(name)


def new_parents_database(server: Server, name: str, data_dir) -> tuple:
    """A database created without a template: the reference schema, and the leagues, clubs and
    series of ``data_dir`` imported by the legacy steps; nothing analysed. ``(its DSN, the ETL
    with the files loaded)``."""
    from rally_etl import ComprehensiveETL, install_schema

    dsn = server.create(name)
    conn = real_connect(dsn)
    install_schema(conn)
    etl = ComprehensiveETL(data_dir, dsn)
    etl.load_json_files()
    legacy_segment(conn, etl, clear=False)
    conn.commit()
    conn.close()
    return dsn, etl


def install_capture(dsn: str) -> None:
    """What ``bulletproof-etl enable`` installs: the capture triggers (snapshot/capture.py)."""
    from bulletproof_etl.catalog import read_catalog
    from bulletproof_etl.config import DEFAULT_CONFIG
    from bulletproof_etl.snapshot import capture

    conn = real_connect(dsn)
    capture.install(conn, DEFAULT_CONFIG, read_catalog(conn, DEFAULT_CONFIG))
    conn.commit()
    conn.close()


def remove_capture(dsn: str) -> None:
    """``bulletproof-etl disable``: a clone for an approach without the library has no triggers."""
    from bulletproof_etl.config import DEFAULT_CONFIG
    from bulletproof_etl.snapshot import capture

    conn = real_connect(dsn)
    capture.uninstall(conn, DEFAULT_CONFIG)
    conn.commit()
    conn.close()


def prepare(server: Server, size: int, workdir: Path, log) -> dict:
    """Generate both seasons; build the two template databases of this size."""
    from bulletproof_etl import BulletproofTeamPreservation
    from rally_etl.activity import create_user_activity
    from rally_etl.generate import generate_season, write_season

    started = time.perf_counter()
    s1 = write_season(generate_season(size, SEED), workdir / f"s1_{size}")
    s2 = write_season(generate_season(size, SEED, 2, churn=0.1), workdir / f"s2_{size}")
    log(f"  generated both seasons of {size} teams in {time.perf_counter() - started:.1f}s")
    started = time.perf_counter()
    first = f"{server.prefix}_{size}_first"
    first_dsn, etl = new_parents_database(server, first, s1)
    install_capture(first_dsn)  # `bulletproof-etl enable` (the clones inherit it): the first import takes the full path
    base = f"{server.prefix}_{size}_s1"
    dsn = server.create(base, template=first)
    conn = real_connect(dsn)
    with BulletproofTeamPreservation(conn) as p:  # season 1, as a protected first import
        p.run(etl.extract_teams())
    conn.commit()
    etl.import_players(conn)
    etl.import_series_stats(conn)
    etl.import_match_scores(conn)
    etl.import_schedules(conn)
    conn.commit()
    activity = create_user_activity(conn, seed=SEED, per_team=PER_TEAM)
    with BulletproofTeamPreservation(conn) as p:  # a steady state: the library has run before
        p.run(etl.extract_teams())
    conn.commit()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
    conn.close()
    log(
        f"  prepared the databases of {size} teams in {time.perf_counter() - started:.1f}s "
        f"({sum(activity.values())} user rows)"
    )
    return {
        "dirs": {"s1": str(s1), "s2": str(s2)},
        "templates": {"first": first, "s1": base},
        "user_rows": sum(activity.values()),
    }
