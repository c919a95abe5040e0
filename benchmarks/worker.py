"""The worker (``--worker``): one approach, one workload, one database, in a process of its
own, so that its peak memory and its statement count are its own."""

from __future__ import annotations

import contextlib
import time

import psycopg2
from psycopg2 import sql

from .approaches import PARTIAL, RUNNERS
from .constants import USER_TABLES
from .counting import CountingConnection, counting_connect
from .databases import remove_capture


def memory_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fp:
        for line in fp:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def reset_peak_memory() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fp:
            fp.write("5")  # resets VmHWM to the current resident size
        return True
    except OSError:
        return False


# -- the worker: one approach, one workload, one database, one process ------------------------
def worker(spec: dict) -> dict:
    from rally_etl import ComprehensiveETL

    psycopg2.connect = counting_connect  # the library's side connection counts too
    etl = ComprehensiveETL(spec["data_dir"], spec["dsn"])
    etl.load_json_files()
    teams = etl.extract_teams()
    rss_input = memory_kb("VmRSS")
    resettable = reset_peak_memory()
    conn = psycopg2.connect(spec["dsn"])
    if spec["approach"] != "protected":  # the templates carry the capture triggers: only its own run keeps them
        remove_capture(spec["dsn"])
    with conn.cursor() as cur:  # every approach starts with the same warm buffers
        for table in ("leagues", "clubs", "series", "teams") + USER_TABLES + ("schedule",):
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
    conn.commit()
    CountingConnection.statements = 0
    # the legacy steps between snapshot and teams: none ("first" has its parents in the template)
    clear = {"first": None, "unchanged": None, "clear": True, "churn": True, "fresh": None}[spec["workload"]]
    started = time.perf_counter()
    error = None
    try:
        stages, legacy, report = RUNNERS[spec["approach"]](
            conn, etl, teams, clear, spec.get("profile", False)
        )
    except Exception as exc:  # a failed run is a result too: it is reported, not hidden
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:1500]}"
        stages, legacy, report = PARTIAL["stages"], PARTIAL["legacy"], {}
        with contextlib.suppress(psycopg2.Error):
            conn.rollback()
    wall = time.perf_counter() - started
    statements = CountingConnection.statements
    with conn.cursor() as cur:  # ask the server to publish this backend's counters now
        cur.execute("SELECT current_setting('server_version_num')::int")
        if cur.fetchone()[0] >= 150000:
            cur.execute("SELECT pg_stat_force_next_flush()")
    conn.commit()
    conn.close()
    peak = memory_kb("VmHWM")
    return {
        "seconds": round(sum(stages.values()), 4),
        "wall_including_legacy": round(wall, 4),
        "stages": {k: round(v, 4) for k, v in stages.items()},
        "legacy_writes": legacy,
        "statements": statements,
        "teams_in_input": len(teams),
        "peak_mb_beyond_input": round(max(0, peak - rss_input) / 1024, 1) if resettable else None,
        "input_rss_mb": round(rss_input / 1024, 1),
        "report": report,
        "error": error,
    }
