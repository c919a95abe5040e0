"""The ``etl`` workload: the WHOLE legacy ETL run against the same run patched by the library.

``ComprehensiveETL(data_dir, dsn).run()`` imports season 1 again into a clone of the steady-state
template (season 1 imported twice, user activity present): ``legacy`` runs the class as written
(clear with foreign keys off, every id new, a commit per step), ``protected`` runs it patched by
``patch_existing_etl_class`` (one transaction, guarded clear, id-keeping upsert, restore, health).
Each run is a fresh Python process on a fresh clone; the clock covers ``run()`` only (reading the
JSON included, as the ETL does it inside ``run()``). Rows written per table come from the
``pg_stat_user_tables`` deltas; user rows and orphans are recounted with plain SQL after the run.
The ratio protected/legacy is the issue's "whole protected ETL" figure (at most 0.8).

Run on its own: ``python -m benchmarks.whole_etl '{"dsn": ..., "approach": ..., "data_dir": ...}'``
is the worker; ``scripts/benchmark.py --workloads etl`` is the usual way.
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import statistics
import sys
import time

from .constants import ETL_WORKLOAD, USER_TABLES
from .databases import remove_capture
from .measure import run_child

ETL_APPROACHES = ("legacy", "protected")
ETL_LIMIT = 0.8  # protected/legacy at most this on a steady-state re-import (issue 14)


LEGACY_STEPS = ("load_json_files", "clear_target_tables", "import_leagues", "import_clubs", "import_series",
                "import_club_leagues", "import_series_leagues", "import_teams", "import_players",
                "import_series_stats", "import_match_scores", "import_schedules")


def _timed(method, name: str, stages: dict):
    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            stages[name] = round(stages.get(name, 0) + time.perf_counter() - started, 3)
    return timed


def etl_worker(spec: dict) -> dict:
    """One whole ETL run in this process: ``legacy`` or ``protected`` (the class patched)."""
    from rally_etl import ComprehensiveETL

    from .worker import memory_kb, reset_peak_memory

    stages: dict = {}  # seconds per stage: the ETL's own steps, and the library's when protected
    if spec["approach"] == "protected":
        from bulletproof_etl.integration import patch_existing_etl_class

        patch_existing_etl_class(ComprehensiveETL)
    else:  # the same step names as the protected run's report, timed around the legacy methods
        for name in LEGACY_STEPS:
            setattr(ComprehensiveETL, name, _timed(getattr(ComprehensiveETL, name), name, stages))
    etl = ComprehensiveETL(spec["data_dir"], spec["dsn"])
    etl.bulletproof_progress = lambda e: e.status == "done" and stages.__setitem__(
        e.stage, round(stages.get(e.stage, 0) + e.elapsed, 3))
    resettable = reset_peak_memory()
    rss = memory_kb("VmRSS")
    prof = cProfile.Profile() if spec.get("profile") else None
    started = time.perf_counter()
    if prof:
        prof.enable()
    ok = etl.run()
    if prof:
        prof.disable()
    seconds = time.perf_counter() - started
    out = {
        "seconds": round(seconds, 4),
        "ok": bool(ok),
        "error": None if ok else repr(etl.last_error)[:1500],
        "stats": etl.stats,
        "stages": stages,
        "peak_mb": round(max(0, memory_kb("VmHWM") - rss) / 1024, 1) if resettable else None,
    }
    report = getattr(etl, "bulletproof_report", None)
    if report is not None:
        data = report.to_dict()
        out["library"] = {k: data.get(k) for k in ("outcome", "timings", "steps", "health") if k in data}
    if prof:
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(45)
        out["profile"] = text.getvalue()
    return out


def _one(server, prepared: dict, size: int, approach: str, rep: int, profile: bool, log) -> dict:
    name = f"{server.prefix}_{size}_etl_{approach}_{rep}"
    dsn = server.create(name, template=prepared["templates"]["s1"])
    if approach == "legacy":  # the template carries the capture triggers `enable` installs
        remove_capture(dsn)
    try:
        spec = {"dsn": dsn, "approach": approach, "data_dir": prepared["dirs"]["s1"], "profile": profile}
        result = run_child(dsn, ["benchmarks.whole_etl", json.dumps(spec)], f"etl/{approach}/{size}")
    finally:
        server.drop(name)
    user_tables = {f"public.{t}" for t in USER_TABLES}
    written = result["rows_written"]
    rows = lambda tables: sum(sum(v.values()) for k, v in written.items() if k in tables)  # noqa: E731
    result.update(
        size=size,
        workload=ETL_WORKLOAD,
        approach=approach,
        rep=rep,
        teams_rows_written=rows({"public.teams"}),
        user_rows_written=rows(user_tables),
    )
    log(
        f"    {size:>7} etl       {approach:<10} #{rep}: {result['seconds']:8.3f}s ok={result['ok']}, "
        f"teams rows written {result['teams_rows_written']}, user rows written {result['user_rows_written']}, "
        f"orphans after {result['orphans_after']}, user rows {result['user_rows_before']} -> {result['user_rows_after']}"
    )
    return result


def run_etl(server, prepared: dict, size: int, reps: int, profile: bool, log) -> list:
    """Both approaches, alternating, ``reps`` times each (one at 100,000 teams)."""
    out = []
    for rep in range(reps if size < 100_000 else 1):
        for approach in ETL_APPROACHES:
            out.append(_one(server, prepared, size, approach, rep, profile and approach == "protected", log))
    return out


def summarise_etl(results: list) -> dict:
    rows, checks = [], []
    for size in sorted({r["size"] for r in results}):
        med = {}
        for approach in ETL_APPROACHES:
            mine = [r for r in results if r["size"] == size and r["approach"] == approach]
            if mine:
                med[approach] = statistics.median(r["seconds"] for r in mine)
        prot = [r for r in results if r["size"] == size and r["approach"] == "protected"]
        ratio = med["protected"] / med["legacy"] if {"protected", "legacy"} <= med.keys() else None
        rows.append({"size": size, **{f"{a}_seconds": round(s, 3) for a, s in med.items()},
                     "ratio": round(ratio, 3) if ratio is not None else None,
                     "protected_teams_rows_written": max((r["teams_rows_written"] for r in prot), default=None),
                     "protected_user_rows_written": max((r["user_rows_written"] for r in prot), default=None)})
        if ratio is not None:
            checks.append({"check": f"{size} etl protected/legacy <= {ETL_LIMIT}",
                           "value": round(ratio, 3), "met": ratio <= ETL_LIMIT})
        checks.append({"check": f"{size} etl protected: ok, 0 orphans, 0 lost rows",
                       "value": [(r["ok"], r["orphans_after"], r["user_rows_before"] - r["user_rows_after"])
                                 for r in prot],
                       "met": all(r["ok"] and r["orphans_after"] == 0
                                  and r["user_rows_after"] >= r["user_rows_before"] for r in prot)})
    return {"rows": rows, "checks": checks}


def render_etl(summary: dict) -> str:
    lines = ["\nWhole ETL run, steady-state re-import (median seconds; rows written by the protected run)",
             f"{'teams':>8} {'legacy':>9} {'protected':>10} {'ratio':>7} {'teams rows':>11} {'user rows':>10}"]
    for r in summary["rows"]:
        lines.append(f"{r['size']:>8} {r.get('legacy_seconds', float('nan')):>9.3f} "
                     f"{r.get('protected_seconds', float('nan')):>10.3f} {r['ratio'] or float('nan'):>7.3f} "
                     f"{r['protected_teams_rows_written']!s:>11} {r['protected_user_rows_written']!s:>10}")
    lines += [f"  {'met' if c['met'] else 'NOT MET'}: {c['check']} ({c['value']})" for c in summary["checks"]]
    return "\n".join(lines)


if __name__ == "__main__":
    print(json.dumps(etl_worker(json.loads(sys.argv[1])), default=str))
