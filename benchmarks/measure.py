"""One measurement from outside: clone a template database, run the worker in a fresh process,
then count the rows written (``pg_stat_user_tables``) and recount user rows and orphans."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from psycopg2 import sql

from .constants import PRACTICE, USER_REFS, USER_TABLES
from .databases import Server, admin_connect


def stat_writes(dsn: str) -> dict:
    """``{schema.table: (ins, upd, del)}`` once the counters stop moving (other backends flush late)."""
    previous = None
    for _ in range(20):
        conn = admin_connect(dsn)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT schemaname || '.' || relname, n_tup_ins, n_tup_upd, n_tup_del "
                "FROM pg_stat_user_tables"
            )
            now = {name: (i, u, d) for name, i, u, d in cur.fetchall()}
        conn.close()
        if now == previous:
            return now
        previous = now
        time.sleep(0.25)
    return previous or {}


def written_since(dsn: str, *earlier: dict) -> dict:
    """``{schema.table: {"ins", "upd", "del"}}`` written since the counts ``earlier`` (each a
    :func:`stat_writes`; several are subtracted, e.g. the state before and the legacy steps'
    own writes), tables with no write left out."""
    written = {}
    for table, counts in stat_writes(dsn).items():
        ins, upd, dele = (a - sum(e.get(table, (0, 0, 0))[k] for e in earlier) for k, a in enumerate(counts))
        if ins or upd or dele:
            written[table] = {"ins": ins, "upd": upd, "del": dele}
    return written


def recount(dsn: str) -> dict:
    """User rows and user references pointing at nothing, counted with plain SQL."""
    conn = admin_connect(dsn)
    out = {"user_rows": 0, "orphans": 0}
    with conn.cursor() as cur:
        for table in USER_TABLES:
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            out["user_rows"] += cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM schedule WHERE home_team ILIKE %s", (PRACTICE,))
        out["user_rows"] += cur.fetchone()[0]
        for table, column, entity in USER_REFS:
            cur.execute(
                sql.SQL(
                    "SELECT count(*) FROM {t} x WHERE x.{c} IS NOT NULL AND NOT EXISTS "
                    "(SELECT 1 FROM {e} e WHERE e.id = x.{c})"
                ).format(
                    t=sql.Identifier(table), c=sql.Identifier(column), e=sql.Identifier(entity)
                )
            )
            out["orphans"] += cur.fetchone()[0]
        cur.execute(
            "SELECT count(*) FROM schedule x WHERE x.home_team ILIKE %s AND x.home_team_id IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM teams e WHERE e.id = x.home_team_id)",
            (PRACTICE,),
        )
        out["orphans"] += cur.fetchone()[0]
    conn.close()
    return out


def run_child(dsn: str, args: list, what: str) -> dict:
    """Run ``python -m ARGS`` (a process measuring one run on ``dsn``) and return the result it
    prints last, with the rows written meanwhile (less the legacy steps' own writes it reports)
    and the user rows and orphans before and after it, counted from outside."""
    before = recount(dsn)
    writes_before = stat_writes(dsn)
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    written = written_since(dsn, result.get("legacy_writes", {}), writes_before)
    after = recount(dsn)
    result.update(
        rows_written=written,
        user_rows_before=before["user_rows"],
        user_rows_after=after["user_rows"],
        orphans_before=before["orphans"],
        orphans_after=after["orphans"],
    )
    return result


def measure(
    server: Server,
    prepared: dict,
    size: int,
    workload: str,
    approach: str,
    rep: int,
    profile: bool,
    log,
) -> dict:
    template = prepared["templates"]["first" if workload == "first" else "s1"]
    name = f"{server.prefix}_{size}_{workload}_{approach}_{rep}"
    dsn = server.create(name, template=template)
    try:
        data_dir = prepared["dirs"]["s2" if workload == "churn" else "s1"]
        result = measure_in(dsn, size, workload, approach, rep, profile, data_dir, log)
    finally:
        server.drop(name)
    return result


def measure_in(
    dsn: str,
    size: int,
    workload: str,
    approach: str,
    rep: int,
    profile: bool,
    data_dir: str,
    log,
    label: str = "",
) -> dict:
    """Run the worker once on ``dsn`` (a database of its own or one that ``fresh`` reuses);
    rows written are this run's: the counters' difference before and after it."""
    spec = {
        "dsn": dsn,
        "approach": approach,
        "workload": workload,
        "profile": profile,
        "data_dir": data_dir,
    }
    # the package's own entry point (benchmarks/__main__.py), wherever the script is
    result = run_child(dsn, ["benchmarks", "--worker", json.dumps(spec)], f"{approach}/{workload}/{size}")
    result.update(size=size, workload=workload, approach=approach, rep=rep)
    log(
        f"    {size:>7} {workload:<9} {approach:<10} #{rep}{label}: {result['seconds']:8.3f}s "
        f"{result['statements']:>7} statements, orphans after {result['orphans_after']}, "
        f"user rows {result['user_rows_before']} -> {result['user_rows_after']}"
    )
    return result
