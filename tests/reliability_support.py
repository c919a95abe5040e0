"""Shared by the reliability tests (issue 6): a seeded database, the protected ETL, fault helpers.

The protected ETL here is the direct mode of the library on the legacy ``ComprehensiveETL``:
its steps run inside one ``BulletproofTeamPreservation`` block on one connection, its per-step
commits swallowed (``NoCommit``), its ``import_teams`` replaced by the id-re-using upsert.
``hooks`` are called at every stage boundary, so a test can raise, kill or block there.
"""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg2
from psycopg2 import sql

import conftest
from bulletproof_etl import BulletproofTeamPreservation
from rally_etl import ComprehensiveETL
from rally_etl.activity import create_user_activity
from rally_etl.generate import generate_season, write_season
from support import USER_TABLES, snapshot_size, table_checksums

SEED = 6006

#: Stage boundaries of :func:`protected_etl`, in order (a hook runs after each).
BOUNDARIES = ("constraints", "snapshot", "clear", "parents", "teams", "facts", "restore", "health")


class NoCommit:
    """A connection whose ``commit`` does nothing: the legacy ETL's steps join our transaction."""

    def __init__(self, conn) -> None:
        self._conn = conn

    def cursor(self, *args, **kwargs):
        return self._conn.cursor(*args, **kwargs)

    def commit(self) -> None:
        pass

    def __getattr__(self, name):
        return getattr(self._conn, name)


def write_seasons(directory: Path, n_teams: int, seed: int = SEED, churn: float = 0.1) -> tuple:
    """Season 1 and its churned season 2 as JSON directories."""
    s1, s2 = Path(directory) / "season1", Path(directory) / "season2"
    write_season(generate_season(n_teams, seed, season=1), s1)
    write_season(generate_season(n_teams, seed, season=2, churn=churn), s2)
    return s1, s2


def seed_database(
    dsn: str, data_dir: Path, *, per_team: float = 1.0, activity_seed: int = SEED
) -> None:
    """Load ``data_dir`` with the legacy ETL, then let users create their data; all committed."""
    assert ComprehensiveETL(data_dir, dsn).run()
    conn = psycopg2.connect(dsn)
    try:
        create_user_activity(conn, seed=activity_seed, per_team=per_team)
        conn.commit()
    finally:
        conn.close()


def template_database(data_dir: Path, *, per_team: float = 1.0) -> str:
    """A database seeded from ``data_dir``, to clone with ``conftest.create_database(template=...)``."""
    dsn = conftest.create_database()
    seed_database(dsn, data_dir, per_team=per_team)
    return dsn


def clone(template_dsn: str) -> str:
    name = psycopg2.extensions.parse_dsn(template_dsn)["dbname"]
    return conftest.create_database(template=name)


FROM_ETL = object()  # default teams_data: the teams the ETL extracts


def protected_etl(
    conn, data_dir: Path, *, hooks: dict | None = None, teams_data=FROM_ETL, config=None, **options
):
    """The legacy ETL, protected, in one transaction; commits on success. Returns the RunReport."""
    hooks = hooks or {}
    etl = ComprehensiveETL(data_dir)
    etl.load_json_files()

    def boundary(name, p):
        if name in hooks:
            hooks[name](p)

    kwargs = dict(options)
    if config is not None:
        kwargs["config"] = config
    with BulletproofTeamPreservation(conn, **kwargs) as p:
        nc = NoCommit(p.conn)
        p.validate_constraints()
        boundary("constraints", p)
        p.backup_user_data()
        boundary("snapshot", p)
        etl.clear_target_tables(nc)
        boundary("clear", p)
        etl.import_leagues(nc, etl.extract_leagues())
        etl.import_clubs(nc, etl.extract_clubs())
        etl.import_series(nc, etl.extract_series())
        etl.import_club_leagues(nc)
        etl.import_series_leagues(nc)
        boundary("parents", p)
        p.preserve_teams_during_import(
            etl.extract_teams() if teams_data is FROM_ETL else teams_data
        )
        boundary("teams", p)
        etl.import_players(nc)
        etl.import_series_stats(nc)
        etl.import_match_scores(nc)
        etl.import_schedules(nc)
        boundary("facts", p)
        p.restore_user_data()
        boundary("restore", p)
        p.validate_health(raise_on_critical=True)
        boundary("health", p)
    if conn is not None:
        conn.commit()
    return p.report


# -- comparing ---------------------------------------------------------------------------


def data_checksums(conn, schemas=("public",)) -> dict:
    """Row checksums of every table; sequences left out (PostgreSQL never rolls them back)."""
    return {k: v for k, v in table_checksums(conn, schemas).items() if not k.startswith("seq ")}


def changed_tables(before: dict, after: dict) -> list:
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


def sequences_behind(conn, schema: str = "public") -> list:
    """Tables whose id sequence would hand out an id that is already taken (should be none)."""
    behind = []
    with conn.cursor() as cur:
        cur.execute(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = %s "
            "AND column_name = 'id' AND column_default LIKE 'nextval%%'",
            (schema,),
        )
        for (table,) in cur.fetchall():
            rel = '"' + schema.replace('"', '""') + '"."' + table.replace('"', '""') + '"'
            cur.execute(
                sql.SQL(
                    "SELECT coalesce(max(id), 0) > coalesce(pg_sequence_last_value("
                    "pg_get_serial_sequence(%s, 'id')::regclass), 0) FROM {}"
                ).format(sql.Identifier(schema, table)),
                (rel,),
            )
            if cur.fetchone()[0]:
                behind.append(table)
    conn.rollback()
    return behind


def user_rows_total(conn) -> int:
    """Every user-owned row an import must keep: the user tables plus practice rows in schedule."""
    total = 0
    with conn.cursor() as cur:
        for table in USER_TABLES:
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            total += cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM schedule WHERE home_team ILIKE %s", ("%practice%",))
        total += cur.fetchone()[0]
    conn.rollback()
    return total


def run_row(conn, run_id: int) -> dict:
    """The state schema's record of one run and the size of its snapshot."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT outcome, stage, error FROM bulletproof.runs WHERE run_id = %s", (run_id,)
        )
        row = cur.fetchone()
        cur.execute("SELECT count(*) FROM bulletproof.snap_entities WHERE run_id = %s", (run_id,))
        entities = cur.fetchone()[0]
    conn.rollback()
    if row is None:
        return {}
    return {
        "outcome": row[0],
        "stage": row[1],
        "error": row[2],
        "snapshot_rows": snapshot_size(conn, run_id),
        "snap_entities": entities,
    }


def entity_total(conn) -> int:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT (SELECT count(*) FROM leagues) + (SELECT count(*) FROM clubs) "
            "+ (SELECT count(*) FROM series) + (SELECT count(*) FROM teams)"
        )
        n = cur.fetchone()[0]
    conn.rollback()
    return n


# -- running a protected import in a thread ------------------------------------------------


class Background:
    """Run ``target()`` in a thread; ``join()`` returns its result or re-raises its exception."""

    def __init__(self, target) -> None:
        self.result = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(target,), daemon=True)
        self._thread.start()

    def _run(self, target) -> None:
        try:
            self.result = target()
        except BaseException as exc:  # handed to the test thread by join()
            self.error = exc

    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self):
        self._thread.join()
        return self.result
