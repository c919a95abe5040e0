#!/usr/bin/env python3
"""Run the rally app's own ComprehensiveETL, bare or protected, on its production schema.

The class is not part of this project: ``../shared/realetl/prepare.py`` extracts it (and its
schema, and data sets it can read) from a git copy of the public repository into a scratch
folder, and this script loads it from there::

    RALLY_MIRROR=<git dir> python ../shared/realetl/prepare.py /tmp/realetl-scratch
    pip install -e '.[realetl]'            # python-dotenv, SQLAlchemy, Flask: what the class imports
    python scripts/real_rally_etl.py --scratch /tmp/realetl-scratch --mode patched

What it does, in a new database on the server of ``--dsn``:

1. loads the production schema dump, the captain_messages migration, and
   ``ALTER TABLE teams ALTER COLUMN display_name DROP NOT NULL`` (the class inserts teams
   without a display name);
2. imports the first data set with the class as it is (the app's state before);
3. writes user data by hand on ``--teams`` teams (a captain linked to one of the team's
   players, a poll with two choices, a captain message, two practice times, an availability
   row, the user's league and league context) and records the natural key each reference means;
4. imports the second data set, bare or protected (``--mode patched``: the class patched with
   ``RALLY_APP_CONFIG`` and ``RALLY_APP_HOOKS``, configuration only);
5. prints what became of every user reference: kept on the same team, orphaned, NULLed,
   deleted, moved to another team; and how many teams kept their ids.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
from psycopg2 import sql

ETL_FILE = "data/etl/database_import/import_all_jsons_to_database.py"
DUMP = "data/dbschema/migrations/production_backup_20250709_121814.sql"
MIGRATION = "data/dbschema/migrations/20250713_120000_add_captain_messages.sql"

# every user reference the script writes: (table, column, entity)
REFERENCES = (("polls", "team_id", "teams"), ("captain_messages", "team_id", "teams"),
              ("schedule", "home_team_id", "teams"), ("player_availability", "series_id", "series"),
              ("users", "league_context", "leagues"), ("users", "league_id", "leagues"))
KEY_SQL = {
    "teams": "SELECT t.id, l.league_id || ' / ' || c.name || ' / ' || s.name FROM teams t "
             "JOIN leagues l ON l.id = t.league_id JOIN clubs c ON c.id = t.club_id JOIN series s ON s.id = t.series_id",
    "series": "SELECT id, name FROM series",
    "clubs": "SELECT id, name FROM clubs",
    "leagues": "SELECT id, league_id FROM leagues",
}


def with_db(dsn: str, name: str) -> str:
    """The same server, database ``name``, as a URL (the class's ``get_db`` parses URLs only)."""
    p = psycopg2.extensions.parse_dsn(dsn)
    auth = p.get("user", "postgres") + (f":{p['password']}" if p.get("password") else "")
    return f"postgresql://{auth}@{p.get('host', '127.0.0.1')}:{p.get('port', '5432')}/{name}"


def create_database(admin_dsn: str, name: str, rally: Path) -> str:
    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conn.close()
    dsn = with_db(admin_dsn, name)
    for path in (rally / DUMP, rally / MIGRATION):
        out = subprocess.run(["psql", "-q", "-X", "-d", dsn, "-f", str(path)], capture_output=True, text=True)
        errors = [line for line in out.stderr.splitlines() if "ERROR" in line]
        # the dump names roles and extensions of the app's host; those errors are expected
        print(f"loaded {path.name}: {len(errors)} errors" + (f" (first: {errors[0]})" if errors else ""))
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE teams ALTER COLUMN display_name DROP NOT NULL")
    conn.close()
    return dsn


def load_class(rally: Path):
    sys.path.insert(0, str(rally))
    spec = importlib.util.spec_from_file_location("rally_import_all_jsons", rally / ETL_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ComprehensiveETL


def keys(cur, entity: str) -> dict:
    """``{id: natural key}`` as the library keys it (league code, canonical club, canonical series)."""
    from bulletproof_etl.config import DEFAULT_CONFIG as C

    cur.execute(KEY_SQL[entity])
    out = {}
    for id_, name in cur.fetchall():
        if entity == "teams":
            out[id_] = C.team_key(*name.split(" / ", 2))
        else:
            out[id_] = C.entity_key(entity, name)
    return out


def write_user_data(dsn: str, n_teams: int) -> dict:
    """User data on ``n_teams`` teams, by hand; returns {(table, pk, column): key it means}."""
    conn = psycopg2.connect(dsn)
    meant = {}
    with conn, conn.cursor() as cur:
        cur.execute("SELECT t.id, t.team_name, t.league_id, t.club_id, t.series_id, s.name, c.name, "
                    "(SELECT array[p.tenniscores_player_id, p.first_name || ' ' || p.last_name] FROM players p "
                    " WHERE p.team_id = t.id AND p.is_active AND p.series_id = t.series_id ORDER BY p.tenniscores_player_id LIMIT 1) "
                    "FROM teams t JOIN series s ON s.id = t.series_id JOIN clubs c ON c.id = t.club_id "
                    "WHERE t.is_active AND EXISTS (SELECT 1 FROM players p WHERE p.team_id = t.id AND p.is_active AND p.series_id = t.series_id) "
                    "ORDER BY md5(t.team_name)")
        teams = cur.fetchall()
        step = max(1, len(teams) // n_teams)
        chosen = teams[::step][:n_teams]
        for i, (team_id, team_name, league, _club, series, series_name, club_name, (player, player_name)) in enumerate(chosen):
            cur.execute("INSERT INTO users (email, password_hash, first_name, last_name, league_context, "
                        "league_id, tenniscores_player_id) VALUES (%s, 'x', 'Captain', %s, %s, %s, %s) "
                        "RETURNING id", (f"captain{i}@example.org", f"No{i}", league, league, player))
            user = cur.fetchone()[0]
            cur.execute("INSERT INTO user_player_associations (user_id, tenniscores_player_id, is_primary) "
                        "VALUES (%s, %s, true)", (user, player))
            cur.execute("INSERT INTO polls (team_id, created_by, question) VALUES (%s, %s, %s) RETURNING id",
                        (team_id, user, f"Who can play for {team_name} next week?"))
            poll = cur.fetchone()[0]
            for choice in ("Yes", "No"):
                cur.execute("INSERT INTO poll_choices (poll_id, choice_text) VALUES (%s, %s)", (poll, choice))
            cur.execute("INSERT INTO captain_messages (team_id, captain_user_id, message) VALUES (%s, %s, %s) "
                        "RETURNING id", (team_id, user, f"{team_name}: bring new balls on Saturday"))
            message = cur.fetchone()[0]
            practices = []
            for day in (1, 2):
                cur.execute("INSERT INTO schedule (match_date, match_time, home_team, away_team, location, league_id, "
                            "home_team_id) VALUES (%s, '18:00', %s, '', 'home courts', %s, %s) RETURNING id",
                            (f"2025-10-0{day}", f"{club_name} Practice - {series_name}", league, team_id))
                practices.append(cur.fetchone()[0])
            cur.execute("INSERT INTO player_availability (player_name, availability_status, series_id, match_date, "
                        "user_id) VALUES (%s, 1, %s, '2025-10-04 00:00:00+00', %s) RETURNING id",
                        (player_name, series, user))
            availability = cur.fetchone()[0]
            for table, pk, column, value, entity in (
                    [("polls", poll, "team_id", team_id, "teams"), ("captain_messages", message, "team_id", team_id, "teams"),
                     ("player_availability", availability, "series_id", series, "series"),
                     ("users", user, "league_context", league, "leagues"), ("users", user, "league_id", league, "leagues")]
                    + [("schedule", p, "home_team_id", team_id, "teams") for p in practices]):
                meant[(table, pk, column)] = (entity, value)
        names = {e: keys(cur, e) for e in KEY_SQL}
    conn.close()
    return {ref: (entity, names[entity][value]) for ref, (entity, value) in meant.items()}


def outcome(dsn: str, meant: dict, ids_before: dict) -> dict:
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        names = {e: keys(cur, e) for e in KEY_SQL}
        result = {"kept": 0, "orphaned": 0, "nulled": 0, "deleted": 0, "moved": 0}
        per_table: dict = {}
        for (table, pk, column), (entity, key) in meant.items():
            cur.execute(sql.SQL("SELECT {} FROM {} WHERE id = %s").format(sql.Identifier(column), sql.Identifier(table)),
                        (pk,))
            row = cur.fetchone()
            if row is None:
                state = "deleted"
            elif row[0] is None:
                state = "nulled"
            elif row[0] not in names[entity]:
                state = "orphaned"
            elif names[entity][row[0]] != key:
                state = "moved"
            else:
                state = "kept"
            result[state] += 1
            per_table.setdefault(f"{table}.{column}", {}).setdefault(state, 0)
            per_table[f"{table}.{column}"][state] += 1
        cur.execute("SELECT count(*) FROM polls")
        polls = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM poll_choices")
        choices = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM captain_messages")
        messages = cur.fetchone()[0]
        now = names["teams"]  # {id: key}
        alive = set(now.values())
        surviving = {i: k for i, k in ids_before.items() if k in alive}  # old id -> key still imported
        kept_ids = sum(1 for i, k in surviving.items() if now.get(i) == k)
        cur.execute("SELECT count(*), count(*) FILTER (WHERE is_active) FROM teams")
        teams_now, active_now = cur.fetchone()
    conn.close()
    return {"references": result, "per_column": per_table, "rows": {"polls": polls, "poll_choices": choices,
            "captain_messages": messages}, "teams": {"ids_before": len(ids_before), "whose_key_survives": len(surviving),
            "kept_their_id": kept_ids, "rows_now": teams_now, "active_now": active_now}}


def run_etl(etl_class, data_dir: Path, dsn: str) -> tuple:
    os.environ["DATABASE_URL"] = dsn
    etl = etl_class()
    etl.data_dir = str(data_dir)
    started = time.perf_counter()
    result = etl.run()
    return etl, result, round(time.perf_counter() - started, 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scratch", default=os.environ.get("REALETL_SCRATCH", "/tmp/realetl-scratch"))
    parser.add_argument("--dsn", default=os.environ.get("BULLETPROOF_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
                        help="a server to create the database on (admin DSN)")
    parser.add_argument("--db", default="rally_real_etl")
    parser.add_argument("--mode", choices=("bare", "patched"), default="patched")
    parser.add_argument("--first", default="2025-08-10", help="data set imported bare, before the user data")
    parser.add_argument("--then", default="2025-08-10,2025-08-27",
                        help="data sets re-imported in order with the user data present (bare or patched)")
    parser.add_argument("--teams", type=int, default=40)
    parser.add_argument("--quiet-etl", action="store_true", help="hide the class's own log lines")
    parser.add_argument("--capture", action="store_true",
                        help="install the capture triggers (bulletproof-etl enable) after the user data, "
                             "before the re-imports")
    args = parser.parse_args(argv)
    scratch = Path(args.scratch)
    rally = scratch / "rally"
    if not (rally / ETL_FILE).exists():
        parser.error(f"{rally / ETL_FILE} is missing: run ../shared/realetl/prepare.py first")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    dsn = create_database(args.dsn, args.db, rally)
    etl_class = load_class(rally)
    if args.quiet_etl:
        etl_class.log = lambda self, message, level="INFO": (print(message) if level in ("ERROR",) else None)
    _etl, result, seconds = run_etl(etl_class, scratch / "data" / args.first, dsn)
    print(f"first import ({args.first}, bare): run() returned {result} in {seconds} s")
    meant = write_user_data(dsn, args.teams)
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        ids_before = keys(cur, "teams")  # {id: natural key}
    conn.close()
    print(f"user data: {len(meant)} references on {args.teams} teams")
    if args.capture:
        from bulletproof_etl.catalog import read_catalog
        from bulletproof_etl.integration.rally_app import RALLY_APP_CONFIG
        from bulletproof_etl.snapshot import capture

        conn = psycopg2.connect(dsn)
        catalog = read_catalog(conn, RALLY_APP_CONFIG)
        made = capture.install(conn, RALLY_APP_CONFIG, catalog)
        conn.commit()
        print(f"capture triggers: {len(made)} installed on {len({m.split(':')[0] for m in made})} tables, "
              f"{capture.status(conn, RALLY_APP_CONFIG, catalog).state}")
        conn.close()
    if args.mode == "patched":
        from bulletproof_etl.integration import patch_existing_etl_class
        from bulletproof_etl.integration.rally_app import RALLY_APP_CONFIG, RALLY_APP_HOOKS
        patch_existing_etl_class(etl_class, RALLY_APP_CONFIG, hooks=RALLY_APP_HOOKS)
    for name in args.then.split(","):
        etl, result, seconds = run_etl(etl_class, scratch / "data" / name, dsn)
        print(f"import of {name} ({args.mode}): run() returned {result} in {seconds} s")
        report = getattr(etl, "bulletproof_report", None)
        if report is not None:
            r = report.to_dict()
            teams = r.get("teams") or {}
            print(json.dumps({
                "outcome": r["outcome"], "error": r["error"],
                "teams": {k: teams.get(k) for k in ("read", "preserved", "created", "updated", "unchanged", "retired",
                                                    "path")},
                "team records: exact duplicates / skipped": [len(teams.get("duplicates", [])),
                                                             len(teams.get("skipped", []))],
                "clear kept": r.get("clear_kept"), "restore totals": (r.get("restore") or {}).get("totals"),
                "capture": r.get("capture"),
                "health": {k: (r.get("health") or {}).get(k) for k in ("status", "issues", "keys_survived", "ids_kept")},
                "warnings": len(r.get("warnings", [])),
                "series warnings": [w for w in r.get("warnings", []) if "names series" in w],
            }, default=str, indent=1))
    print(json.dumps(outcome(dsn, meant, ids_before), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
