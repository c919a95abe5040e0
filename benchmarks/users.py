"""The ``users`` workload: what an app user sees while season 2 is imported.

One prepared database of each size (season 1 imported, user data created: ``databases.prepare``)
is cloned twice. In one clone the legacy ``ComprehensiveETL`` imports season 2 (renamed clubs,
respelled series, removed, added, duplicated and messy teams); in the other the same class,
protected by the library (``create_bulletproof_etl_wrapper``). During each import an app client
(``users_client.client``, a process of its own, autocommit) loops over six operations on random
teams, half of them teams the import changes (a renamed club, a respelled series, a removed or
messy team), and a sampler records every lock wait.

Per approach: the import's time and outcome; user errors; reads that found data missing (a
team's polls or its schedule that existed before, missing from a read made before the import's
final commit); p50, p99 and max per operation during the import (and idle, before it); client
writes lost after the import; orphans after it; the lock waits, each with the row waited for and
what the run did to it. Usage::

    python scripts/benchmark.py --workloads users --sizes 10000
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import time
from pathlib import Path

import psycopg2

from .constants import SEED
from .databases import admin_connect, remove_capture
from .measure import recount
from .users_client import OPERATIONS, LockSampler, client

IDLE_SECONDS = 2.0  # the client runs alone first: its latencies as when nobody imports
AFTER_SECONDS = 1.0
SAMPLE_TEAMS = 2000  # half of them teams the import changes
ROW_TABLES = ("leagues", "clubs", "series", "teams", "users", "polls", "practice_times", "saved_lineups",
              "captain_messages")
TEAM_COLUMNS = (("club name", 1), ("series name", 2), ("team_name", 3), ("club_id", 4), ("series_id", 5),
                ("league_id", 6), ("is_active", 7))  # positions in a row of _teams()


def _teams(cur) -> dict:
    cur.execute("SELECT t.id, l.league_id, c.name, s.name, t.team_name, t.club_id, t.series_id, "
                "t.league_id, t.is_active FROM teams t JOIN leagues l ON l.id = t.league_id "
                "JOIN clubs c ON c.id = t.club_id JOIN series s ON s.id = t.series_id")
    return {r[0]: r[1:] for r in cur.fetchall()}


def _grouped(cur, query: str) -> dict:
    cur.execute(query)
    out: dict = {}
    for team, row in cur.fetchall():
        out.setdefault(team, []).append(row)
    return out


def client_spec(dsn: str, s2_teams: list, seed: int) -> tuple[dict, dict]:
    """The client's teams and what each had before the import; and every team row before."""
    conn = admin_connect(dsn)
    with conn.cursor() as cur:
        before = _teams(cur)
        incoming = {(t["league_id"], t["club_name"], t["series_name"], t["team_name"]) for t in s2_teams}
        incoming_clubs = {(t["league_id"], t["club_name"], t["team_name"]) for t in s2_teams}
        changed = sorted(i for i, r in before.items() if tuple(r[:4]) not in incoming)
        removed = {i for i, r in before.items() if (r[0], r[1], r[3]) not in incoming_clubs}
        rng = random.Random(seed)
        chosen = set(rng.sample(changed, min(len(changed), SAMPLE_TEAMS // 2)))
        rest = sorted(set(before) - chosen)
        chosen |= set(rng.sample(rest, min(len(rest), SAMPLE_TEAMS - len(chosen))))
        polls = _grouped(cur, "SELECT team_id, id FROM polls WHERE team_id IS NOT NULL")
        practice_rows = _grouped(cur, "SELECT home_team_id, id FROM schedule WHERE home_team ILIKE '%practice%'")
        cur.execute("SELECT t, count(*) FROM schedule, LATERAL (VALUES (home_team_id), (away_team_id)) v(t) "
                    "WHERE t IS NOT NULL AND home_team NOT ILIKE '%practice%' GROUP BY t")
        etl_rows = dict(cur.fetchall())
        practice = _grouped(cur, "SELECT team_id, id FROM practice_times")
        lineups = _grouped(cur, "SELECT team_id, id FROM saved_lineups")
    conn.close()
    pick = lambda d: {str(t): d[t] for t in chosen if t in d}  # noqa: E731
    spec = {
        "dsn": dsn, "seed": seed, "teams": [[t, t in removed, before[t][6]] for t in sorted(chosen)],
        "polls": pick(polls), "practice_rows": pick(practice_rows), "etl_rows": pick(etl_rows),
        "practice_times": pick(practice), "lineups": pick(lineups),
        "teams_changed": len(changed), "teams_removed": len(removed),
        "sample_changed": len(chosen & set(changed)),
    }
    return spec, before


def _import(approach: str, data_dir: str, dsn: str) -> dict:
    from rally_etl import ComprehensiveETL

    marks: dict = {}
    if approach == "protected":
        from bulletproof_etl.integration import create_bulletproof_etl_wrapper

        etl = create_bulletproof_etl_wrapper(ComprehensiveETL)(data_dir, dsn)

        def progress(event):
            if event.status == "start":
                marks.setdefault(event.stage, time.monotonic())

        etl.bulletproof_progress = progress
    else:
        etl = ComprehensiveETL(data_dir, dsn)
    started = time.monotonic()
    ok = etl.run()
    ended = time.monotonic()
    report = getattr(etl, "bulletproof_report", None)
    return {"ok": bool(ok), "started": started, "ended": ended, "stage_starts": marks,
            "outcome": getattr(report, "outcome", None), "error": getattr(report, "error", None)
            or (repr(etl.last_error) if getattr(etl, "last_error", None) else None)}


def _percentile(values: list, share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def _latency(ops: list) -> dict:
    out = {}
    for name in OPERATIONS:
        secs = [o[3] for o in ops if o[0] == name]
        if secs:
            out[name] = {"n": len(secs), "p50_ms": round(_percentile(secs, 0.5) * 1000, 2),
                         "p99_ms": round(_percentile(secs, 0.99) * 1000, 2),
                         "max_ms": round(max(secs) * 1000, 1)}
    return out


def _lost_writes(dsn: str, written: dict) -> dict:
    conn = admin_connect(dsn)
    with conn.cursor() as cur:
        ids = [p[0] for p in written["polls"]]
        cur.execute("SELECT p.id, t.is_active FROM polls p LEFT JOIN teams t ON t.id = p.team_id "
                    "WHERE p.id = ANY(%s)", (ids,))
        found = dict(cur.fetchall())
        cur.execute("SELECT id, end_time::text FROM practice_times WHERE id = ANY(%s)",
                    ([int(k) for k in written["practice"]],))
        practice = dict(cur.fetchall())
        cur.execute("SELECT id, lineup_data FROM saved_lineups WHERE id = ANY(%s)",
                    ([int(k) for k in written["lineups"]],))
        lineups = dict(cur.fetchall())
    conn.close()
    return {
        "polls_inserted": len(ids), "polls_lost": sum(1 for i in ids if i not in found),
        "polls_on_a_retired_or_missing_team": sum(1 for i in ids if i in found and found[i] is not True),
        "practice_updates_lost": sum(1 for k, v in written["practice"].items() if practice.get(int(k)) != v),
        "lineup_updates_lost": sum(1 for k, v in written["lineups"].items() if lineups.get(int(k)) != v),
    }


def _explain_waits(waits: list, before: dict, after: dict, stage_starts: dict) -> list:
    """One entry per wait of the client (its longest sample), with what the run did to the row."""
    stages = sorted(stage_starts.items(), key=lambda kv: kv[1])
    longest: dict = {}
    for w in waits:
        if w["client"]:
            key = (w["pid"], w["query"], w["locktype"], w["relation"], w["xid"])
            if key not in longest or w["waited"] > longest[key]["waited"]:
                longest[key] = w
    out = []
    for w in sorted(longest.values(), key=lambda w: -w["waited"]):
        began = w["t"] - w["waited"]
        entry = {k: w[k] for k in ("query", "locktype", "mode", "relation", "xid", "row", "holder_running")}
        entry["waited_at_least_s"] = round(w["waited"], 3)
        entry["run_stage_when_wait_began"] = next((s for s, t in reversed(stages) if t <= began), None)
        row = w["row"]
        if row and row[0] == "teams" and row[1] is not None:
            old, new = before.get(row[1]), after.get(row[1])
            if new is None:
                entry["row_change"] = "team deleted"
            else:
                cols = [c for c, i in TEAM_COLUMNS if old[i] != new[i]]
                entry["row_change"] = ("team row updated: " + ", ".join(cols)) if cols else "team row unchanged"
        out.append(entry)
    return out


def _row_census_tables(dsn: str) -> tuple:
    """The entity and user tables whose locked rows the sampler counts, when pgrowlocks is there."""
    conn = admin_connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS pgrowlocks")
    except psycopg2.Error:
        return ()
    finally:
        conn.close()
    return ROW_TABLES


def run_approach(server, prepared: dict, size: int, approach: str, s2_teams: list, log) -> dict:
    name = f"{server.prefix}_{size}_users_{approach}"
    dsn = server.create(name, template=prepared["templates"]["s1"])
    if approach == "legacy":  # the template carries the capture triggers `enable` installs
        remove_capture(dsn)
    spec, before = client_spec(dsn, s2_teams, SEED)
    ctx = multiprocessing.get_context("spawn")
    stop, ready = ctx.Event(), ctx.Event()
    out_path = os.path.join(prepared["workdir"], f"client_{size}_{approach}.json")
    proc = ctx.Process(target=client, args=(spec, stop, ready, out_path))
    proc.start()
    ready.wait(60)
    sampler = LockSampler(dsn, _row_census_tables(dsn))
    sampler.start()
    time.sleep(IDLE_SECONDS)
    run = _import(approach, prepared["dirs"]["s2"], dsn)
    time.sleep(AFTER_SECONDS)
    stop.set()
    proc.join(120)
    sampler.stop()
    result = json.loads(Path(out_path).read_text())
    ops = result["ops"]
    # a read is judged only before the final commit (the protected run's "commit" stage; the
    # legacy run commits step by step until it returns)
    window_end = run["stage_starts"].get("commit", run["ended"])
    during = [o for o in ops if run["started"] <= o[2] < run["ended"]]
    idle = [o for o in ops if o[2] < run["started"]]
    conn = admin_connect(dsn)
    with conn.cursor() as cur:
        after = _teams(cur)
    conn.close()
    out = {
        "size": size, "approach": approach, "run_returned": run["ok"], "outcome": run["outcome"],
        "error": run["error"], "import_seconds": round(run["ended"] - run["started"], 2),
        "teams_before": len(before), "teams_the_import_changes": spec["teams_changed"],
        "teams_removed": spec["teams_removed"], "client_teams": len(spec["teams"]),
        "client_teams_changed": spec["sample_changed"], "operations_during": len(during),
        "user_errors": sum(1 for o in during if o[4]),
        "error_examples": sorted({o[4] for o in during if o[4]})[:5],
        "errors_after_import": sum(1 for o in ops if o[2] >= run["ended"] and o[4]),
        "reads_during": sum(1 for o in during if o[0].startswith("read")),
        "reads_missing": sum(1 for o in during if o[5] and o[2] + o[3] <= window_end),
        "latency_during": _latency(during), "latency_idle": _latency(idle),
        "slowest_op": max(([o[0], round(o[3] * 1000, 1), o[4]] for o in during), key=lambda x: x[1],
                          default=None),
        "lost_writes": _lost_writes(dsn, result["written"]),
        "recount_after": recount(dsn),
        "stage_seconds_from_start": {k: round(v - run["started"], 2) for k, v in run["stage_starts"].items()},
        "lock_samples": sampler.samples,
        "client_waits": _explain_waits(sampler.waits, before, after, run["stage_starts"])[:40],
        "other_waits": [w for w in sampler.waits if not w["client"]][:20],
        "rows_locked": {k: {"first_s": round(v[0] - run["started"], 2), "last_s": round(v[1] - run["started"], 2),
                            "most_rows": v[2]} for k, v in sorted(sampler.rows.items())},
        "strong_table_locks": {k: {"first_s": round(v[0] - run["started"], 2),
                                   "last_s": round(v[1] - run["started"], 2), "samples": v[2]}
                               for k, v in sampler.strong.items()},
    }
    log(f"  users/{approach} {size}: import {out['import_seconds']}s, errors {out['user_errors']}, "
        f"missing reads {out['reads_missing']}, slowest {out['slowest_op']}")
    server.drop(name)
    return out


def run_users(server, prepared: dict, size: int, workdir, log) -> list:
    """Both approaches on clones of the same prepared database; one result each."""
    from rally_etl import ComprehensiveETL

    etl = ComprehensiveETL(prepared["dirs"]["s2"])
    etl.load_json_files()
    s2_teams = etl.extract_teams()
    prepared = dict(prepared, workdir=str(workdir))
    return [run_approach(server, prepared, size, a, s2_teams, log) for a in ("legacy", "protected")]


def frozen(result: dict, table: str) -> str:
    """Rows of ``table`` a user's insert referencing them waits on (locked FOR UPDATE, or
    updated in a key column or deleted), most at once, and from when to when (s into the run)."""
    hits = [v for k, v in result.get("rows_locked", {}).items() if k.split(" ", 1)[0] == table
            and any(m in ("For Update", "Update") for m in k.split(" ", 1)[1].split("+"))]
    if not hits:
        return "0"
    first, last = min(h["first_s"] for h in hits), max(h["last_s"] for h in hits)
    return f"{sum(h['most_rows'] for h in hits)} ({first}-{last}s)"


def render_users(results: list) -> str:
    lines = []
    for size in sorted({r["size"] for r in results}):
        pair = {r["approach"]: r for r in results if r["size"] == size}
        cols = [a for a in ("legacy", "protected") if a in pair]
        rows = [("import time (s)", lambda r: r["import_seconds"]),
                ("run() returned / outcome", lambda r: f"{r['run_returned']} / {r['outcome'] or '-'}"),
                ("user operations during the import", lambda r: r["operations_during"]),
                ("user errors", lambda r: r["user_errors"]),
                ("reads that found data missing", lambda r: f"{r['reads_missing']} / {r['reads_during']}"),
                ("client writes lost", lambda r: sum(v for k, v in r["lost_writes"].items() if k.endswith("lost"))),
                ("orphans after", lambda r: r["recount_after"]["orphans"]),
                ("teams frozen for inserts (most, when)", lambda r: frozen(r, "teams")),
                ("leagues frozen for inserts (most, when)", lambda r: frozen(r, "leagues"))]
        for op in OPERATIONS:
            rows.append((f"{op} p50 / p99 / max (ms)", lambda r, op=op: (
                "{p50_ms} / {p99_ms} / {max_ms}".format(**r["latency_during"][op])
                if op in r["latency_during"] else "-")))
        lines.append(f"\nusers workload, {size} teams ({pair[cols[0]]['teams_the_import_changes']} "
                     "teams changed by the import)")
        lines.append(f"{'':40} " + " ".join(f"{c:>26}" for c in cols))
        for label, get in rows:
            lines.append(f"{label:40} " + " ".join(f"{get(pair[c])!s:>26}" for c in cols))
    return "\n".join(lines)
