"""The ``fresh`` workload: a new user's first imports, on a new database (issue 14, "no cliff").

Every other workload clones a prepared template, whose tables were analysed when it was built.
A new user has no statistics: until autovacuum comes round, the planner sees the library's state
tables as empty. Here, per approach and repetition, a database is created without a template;
the reference schema is installed, leagues, clubs and series are imported by the legacy steps,
run 1 imports season 1 with the approach (not measured), the ETL's other steps and the users'
rows follow, then runs 2, 3 and 4 import the same season again, each in a process of its own,
and are measured. Autovacuum stays on, as for a new user; the analyses it made of the state
schema before each run are recorded (``autoanalyze_before``).

The steady state is the last run (run 4); each run is reported with its ratio to it. The figure,
from 10,000 teams on as the other ratios: no run more than ``MAX_OVER_STEADY`` times the steady
state. Usage::

    python scripts/benchmark.py --workloads fresh --approaches protected,bare --sizes 10000 --reps 1
"""

from __future__ import annotations

import statistics

from .constants import PER_TEAM, SEED
from .counting import real_connect
from .databases import Server, admin_connect, new_parents_database
from .measure import measure_in

FRESH_WORKLOAD = "fresh"
MEASURED_RUNS = (2, 3, 4)  # run 1 is the first import; the last run is the steady state
MAX_OVER_STEADY = 1.5
CHECKED_FROM = 10_000  # as the other ratios: below, a run takes a quarter second and noise rules


def _autoanalyzed(dsn: str) -> int:
    """Analyses autovacuum has made of the library's state tables so far."""
    conn = admin_connect(dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT coalesce(sum(autoanalyze_count), 0) FROM pg_stat_user_tables "
                    "WHERE schemaname = 'bulletproof'")
        out = int(cur.fetchone()[0])
    conn.close()
    return out


def _user_data(dsn: str, data_dir: str) -> int:
    """The ETL's other steps and the users' rows, after run 1 (as in ``databases.prepare``)."""
    from rally_etl import ComprehensiveETL
    from rally_etl.activity import create_user_activity

    conn = real_connect(dsn)
    etl = ComprehensiveETL(data_dir, dsn)
    etl.load_json_files()
    etl.import_players(conn)
    etl.import_series_stats(conn)
    etl.import_match_scores(conn)
    etl.import_schedules(conn)
    conn.commit()
    rows = sum(create_user_activity(conn, seed=SEED, per_team=PER_TEAM).values())
    conn.close()
    return rows


def run_fresh(server: Server, prepared: dict, size: int, approaches: list, reps: int,
              profile: bool, log) -> list:
    """Runs 1-4 of each approach on new databases; one result per measured run."""
    data_dir = prepared["dirs"]["s1"]
    results = []
    for approach in approaches:
        if approach not in ("protected", "bare"):
            continue  # the original and the COPY floor say nothing about statistics
        for rep in range(reps):
            name = f"{server.prefix}_{size}_fresh_{approach}_{rep}"
            dsn, _etl = new_parents_database(server, name, data_dir)
            try:
                measure_in(dsn, size, "first", approach, rep, False, data_dir, log, " run 1 (fresh)")
                user_rows = _user_data(dsn, data_dir)
                for run in MEASURED_RUNS:
                    auto = _autoanalyzed(dsn)
                    res = measure_in(dsn, size, FRESH_WORKLOAD, approach, rep, profile and approach == "protected",
                                     data_dir, log, f" run {run}")
                    res.update(run=run, autoanalyze_before=auto, user_rows_created=user_rows)
                    results.append(res)
            finally:
                server.drop(name)
    return results


def summarise_fresh(results: list) -> dict:
    """Per size and approach: the median time of each run over the repetitions, its ratio to
    the steady state (the last run), and the figure."""
    groups: dict = {}
    for r in results:
        groups.setdefault((r["size"], r["approach"]), {}).setdefault(r["run"], []).append(r)
    cells, checks = {}, []
    for (size, approach), runs in sorted(groups.items()):
        seconds = {run: statistics.median(x["seconds"] for x in rs) for run, rs in sorted(runs.items())}
        steady = seconds[max(seconds)]
        ratios = {run: round(s / steady, 2) if steady else None for run, s in seconds.items()}
        errors = [x["error"] for rs in runs.values() for x in rs if x.get("error")]
        cell = {
            "seconds": seconds,
            "over_steady": ratios,
            "stages": {run: rs[0]["stages"] for run, rs in runs.items()},
            "autoanalyze_before": {run: [x["autoanalyze_before"] for x in rs] for run, rs in runs.items()},
            "orphans_after": max(x["orphans_after"] for rs in runs.values() for x in rs),
            "user_rows_lost": max(x["user_rows_before"] - x["user_rows_after"] for rs in runs.values() for x in rs),
            "error": errors[0] if errors else None,
        }
        cells[f"{size}/fresh/{approach}"] = cell
        if approach == "protected" and size >= CHECKED_FROM:
            worst = max(v for v in ratios.values() if v is not None) if steady else None
            checks.append({"figure": f"{size} fresh: no protected run more than {MAX_OVER_STEADY:g} times the "
                                     "steady state (run 4)",
                           "met": cell["error"] is None and worst is not None and worst <= MAX_OVER_STEADY,
                           "measured": cell["error"] or worst})
        if approach == "protected":
            checks.append({"figure": f"{size} fresh: protected leaves no orphan and loses no row",
                           "met": cell["orphans_after"] == 0 and cell["user_rows_lost"] == 0,
                           "measured": f"{cell['orphans_after']} orphans, {cell['user_rows_lost']} lost"})
    return {"cells": cells, "checks": checks}


def render_fresh(summary: dict) -> str:
    lines = ["", "fresh: a new database (no template, no statistics), runs 2-4 after the first import",
             f"{'teams':>7} {'approach':<10} {'run':>3} {'seconds':>9} {'/steady':>8}  stages"]
    lines.append("-" * len(lines[-1]))
    for key, cell in summary["cells"].items():
        size, _w, approach = key.split("/")
        if cell["error"]:
            lines.append(f"{size:>7} {approach:<10} FAILED: {cell['error'][:300]}")
            continue
        for run, sec in cell["seconds"].items():
            stages = ", ".join(f"{k} {v:.2f}" for k, v in cell["stages"][run].items())
            lines.append(f"{size:>7} {approach:<10} {run:>3} {sec:>9.3f} {cell['over_steady'][run]:>8}  {stages}")
    lines.append("")
    for check in summary["checks"]:
        lines.append(f"[{'met' if check['met'] else 'NOT MET'}] {check['figure']}: {check['measured']}")
    return "\n".join(lines)
