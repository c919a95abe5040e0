"""The protected import side by side with what a user would otherwise run, in one run.

Approaches, each importing the same generated teams into a clone of the same database:

- ``protected``: the library's full run on the caller's connection (constraints, durable
  snapshot, id-re-using upsert, restore, health), committed by the caller.
- ``bare``: the best unprotected set-based upsert (COPY into a temporary table, one
  ``INSERT ... ON CONFLICT DO UPDATE ... WHERE ... IS DISTINCT FROM``); no snapshot, no restore.
- ``original``: the specification's approach re-created faithfully: backup tables made with
  ``CREATE TABLE ... AS``, per-row look-ups and upsert in batches of 50 each committed, per-row
  remap of polls, captain messages and practice times by name, an orphan count.
- ``copy_floor``: COPY of the same rows into an empty temporary table (the physical floor).

Workloads: ``first`` (teams into a database holding only leagues, clubs and series), ``unchanged``
(the same season again), ``clear`` (the legacy ``clear_target_tables`` and parent import between
the snapshot and the teams, same season), ``churn`` (the same, next season with 10% churn). The
legacy steps are not timed and their writes are not counted for any approach. ``fresh`` (protected
and bare only) builds a new database without a template and measures runs 2-4 after the first
import (benchmarks/fresh.py). ``etl`` (only when named) times the whole ``ComprehensiveETL.run()``,
as written (``legacy``) and patched by the library (``protected``), on the same steady-state
re-import (benchmarks/whole_etl.py).
``users`` (only when named) runs an app client during a legacy and a protected import
(benchmarks/users.py).

Each measurement runs in a fresh Python process on a fresh clone of a prepared database, so its
peak memory and its ``pg_stat_user_tables`` deltas are its own. Usage::

    python scripts/benchmark.py --quick
    python scripts/benchmark.py --dsn postgresql://postgres@127.0.0.1:5432/postgres --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg2

from .constants import APPROACHES, ETL_WORKLOAD, ORIGINAL_LIMIT_SECONDS, USERS_WORKLOAD, WORKLOADS
from .databases import Server, prepare
from .fresh import FRESH_WORKLOAD, render_fresh, run_fresh, summarise_fresh
from .measure import measure
from .summary import render_table, summarise
from .users import render_users, run_users
from .whole_etl import render_etl, run_etl, summarise_etl
from .worker import worker


def describe_machine(server: Server) -> dict:
    mem_kb = 0
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="ascii") as fp:
        for line in fp:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="ascii") as fp:
        for line in fp:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "postgresql": server.version,
        "python": platform.python_version(),
        "psycopg2": psycopg2.__version__.split()[0],
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dsn", help="a server to create databases on (default: DATABASE_URL, else embedded)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="one small size, one repetition (about a minute)"
    )
    parser.add_argument("--sizes", help="comma-separated team counts (default 1000,10000,100000)")
    parser.add_argument(
        "--reps", type=int, help="repetitions below 100,000 teams (default 3; median reported)"
    )
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--approaches", default=",".join(APPROACHES))
    parser.add_argument("--json", type=Path, help="write every measurement and the summary here")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile the protected run and time each statement it sends (both in the JSON)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases (for inspection)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    from bulletproof_etl import db

    sizes = [
        int(s) for s in (args.sizes or ("1000" if args.quick else "1000,10000,100000")).split(",")
    ]
    reps = args.reps or (1 if args.quick else 3)
    workloads = [w for w in args.workloads.split(",") if w]
    approaches = [a for a in args.approaches.split(",") if a]
    server = Server(db.resolve_dsn(args.dsn), f"bpbench_{uuid.uuid4().hex[:6]}", args.keep)
    machine = describe_machine(server)
    command = "python scripts/benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:])
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    log(
        f"benchmark on PostgreSQL {server.version}, {machine['cpus']} CPUs, sizes {sizes}, {reps} repetitions"
    )
    workdir = Path(tempfile.mkdtemp(prefix="bpbench_"))
    results, skipped, users_results, fresh_results, etl_results = [], {}, [], [], []
    started = time.perf_counter()
    try:
        original_estimate = None
        for size in sizes:
            prepared = prepare(server, size, workdir, log)
            for workload in workloads:
                if workload == USERS_WORKLOAD:  # its own approaches and table: benchmarks/users.py
                    users_results.extend(run_users(server, prepared, size, workdir, log))
                    continue
                if workload == ETL_WORKLOAD:  # the whole ETL, legacy against patched: benchmarks/whole_etl.py
                    etl_results.extend(run_etl(server, prepared, size, reps, args.profile, log))
                    continue
                if workload == FRESH_WORKLOAD:  # new databases, runs 1-4: benchmarks/fresh.py
                    n = reps if size < 100_000 else 1
                    fresh_results.extend(run_fresh(server, prepared, size, approaches, n, args.profile, log))
                    continue
                for approach in approaches:
                    if approach == "original" and original_estimate is not None:
                        guess = original_estimate * size
                        if guess > ORIGINAL_LIMIT_SECONDS:
                            skipped[f"{size}/original"] = (
                                f"would take about {guess:.0f}s per run (> {ORIGINAL_LIMIT_SECONDS}s, "
                                "extrapolated linearly from the smaller size); measured at the smaller sizes only"
                            )
                            continue
                    n = reps if size < 100_000 else 1
                    for rep in range(n):
                        res = measure(
                            server,
                            prepared,
                            size,
                            workload,
                            approach,
                            rep,
                            args.profile and approach == "protected",
                            log,
                        )
                        results.append(res)
                        if approach == "original":
                            original_estimate = max(original_estimate or 0, res["seconds"] / size)
            for name in prepared["templates"].values():
                server.drop(name)
    finally:
        server.drop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    summary = summarise(results, sizes, skipped)
    table = render_table(summary, sizes)
    if results:  # not when only the users or fresh workloads ran
        print(table)
    if users_results:
        print(render_users(users_results))
    fresh = summarise_fresh(fresh_results)
    if fresh_results:
        print(render_fresh(fresh))
    etl = summarise_etl(etl_results)
    if etl_results:
        print(render_etl(etl))
    print(
        f"\n{len(results) + len(fresh_results) + len(etl_results)} measurements in {time.perf_counter() - started:.0f}s; machine: {machine}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "command": command,
                    "machine": machine,
                    "summary": summary,
                    "measurements": results,
                    "users": users_results,
                    "fresh": {"summary": fresh, "measurements": fresh_results},
                    "etl": {"summary": etl, "measurements": etl_results},
                },
                indent=2,
                default=str,
            )
        )
        log(f"wrote {args.json}")
    return 0 if all(c["met"] for c in summary["checks"] + fresh["checks"] + etl["checks"]) else 1
