"""The app client of the ``users`` workload and the lock sampler that watches it.

The client is a process of its own (its latencies are not those of the importer's Python) with
one autocommit connection, as a web app has: it loops over six operations on random teams
(read a team's polls, read its schedule, insert a poll, update a practice time, update a saved
lineup, insert a practice time), times each one and checks each read against what the team had before the import.

The sampler is a thread of the benchmark with its own connection: every ``SAMPLE_EVERY`` seconds
it records every backend of the database waiting on a lock (the lock, the row it waits for, the
holder and what the holder is running) and every table lock stronger than a row lock that a
backend other than the client holds.
"""

from __future__ import annotations

import json
import random
import threading
import time

import psycopg2

CLIENT_NAME = "bp_users_client"
SAMPLER_NAME = "bp_users_sampler"
SAMPLE_EVERY = 0.05
ROW_CENSUS_EVERY = 10  # every tenth sample counts locked rows
#: Seconds the client waits between two operations (a user's think time, and CPU for the import).
PAUSE = 0.005
OPERATIONS = ("read_polls", "read_schedule", "insert_poll", "update_practice", "update_lineup",
              "insert_practice")


def client(spec: dict, stop, ready, out_path: str) -> None:
    """Loop over the operations until ``stop`` is set; write ``[op, team, t0, seconds, error,
    missing]`` per operation (t0 on the monotonic clock shared by every process) to ``out_path``."""
    rng = random.Random(spec["seed"])
    conn = psycopg2.connect(spec["dsn"], application_name=CLIENT_NAME)
    conn.autocommit = True
    cur = conn.cursor()
    teams = spec["teams"]  # [team id, removed in season 2, league id]
    polls = {int(k): set(v) for k, v in spec["polls"].items()}
    practice_rows = {int(k): set(v) for k, v in spec["practice_rows"].items()}
    etl_rows = {int(k): v for k, v in spec["etl_rows"].items()}
    practice_ids = {int(k): v for k, v in spec["practice_times"].items()}
    lineup_ids = {int(k): v for k, v in spec["lineups"].items()}
    log, written = [], {"polls": [], "practice": {}, "lineups": {}}
    ready.set()
    n = 0
    while not stop.is_set():
        team, removed, league = teams[rng.randrange(len(teams))]
        op = OPERATIONS[n % len(OPERATIONS)]
        n += 1
        error, missing = None, False
        t0 = time.monotonic()
        try:
            if op == "read_polls":
                cur.execute("SELECT id, question FROM polls WHERE team_id = %s", (team,))
                missing = not polls.get(team, set()) <= {r[0] for r in cur.fetchall()}
            elif op == "read_schedule":
                cur.execute("SELECT id, home_team FROM schedule WHERE home_team_id = %s "
                            "OR away_team_id = %s", (team, team))
                rows = cur.fetchall()
                ids = {r[0] for r in rows}
                etl = sum(1 for r in rows if "practice" not in (r[1] or "").lower())
                missing = (not practice_rows.get(team, set()) <= ids
                           or (not removed and etl_rows.get(team, 0) > 0 and etl == 0))
            elif op == "insert_poll":
                cur.execute("INSERT INTO polls (team_id, question) VALUES (%s, %s) RETURNING id",
                            (team, f"Practice on {rng.choice(('Monday', 'Thursday'))}? (client {n})"))
                written["polls"].append([cur.fetchone()[0], team])
            elif op == "update_practice" and practice_ids.get(team):
                row = rng.choice(practice_ids[team])
                value = f"{rng.randrange(18, 23):02d}:{rng.randrange(60):02d}:00"
                cur.execute("UPDATE practice_times SET end_time = %s WHERE id = %s", (value, row))
                if cur.rowcount == 1:
                    written["practice"][row] = value
            elif op == "update_lineup" and lineup_ids.get(team):
                row = rng.choice(lineup_ids[team])
                value = {"client": n, "slots": [rng.randrange(100) for _ in range(4)]}
                cur.execute("UPDATE saved_lineups SET lineup_data = %s WHERE id = %s", (json.dumps(value), row))
                if cur.rowcount == 1:
                    written["lineups"][row] = value
            elif op == "insert_practice":  # checks two foreign keys: the team and the league
                cur.execute("INSERT INTO practice_times (team_id, league_id, day_of_week, start_time, end_time, "
                            "location) VALUES (%s, %s, 'Sunday', %s, '23:00', 'client') ON CONFLICT DO NOTHING",
                            (team, league, f"{rng.randrange(6, 20):02d}:{rng.randrange(60):02d}:{n % 60:02d}"))
            else:
                continue  # a team without a practice time or a lineup: nothing to time
        except psycopg2.Error as exc:
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        log.append([op, team, t0, time.monotonic() - t0, error, missing])
        time.sleep(PAUSE)
    conn.close()
    with open(out_path, "w", encoding="utf-8") as fp:
        json.dump({"ops": log, "written": written}, fp)


_WAITING = """
SELECT a.pid, a.application_name, a.wait_event, left(a.query, 160), l.locktype, l.mode,
       l.relation::regclass::text, l.transactionid::text, pg_blocking_pids(a.pid),
       (SELECT json_agg(json_build_array(t.relation::regclass::text, t.page, t.tuple))
          FROM pg_locks t WHERE t.pid = a.pid AND t.locktype = 'tuple'),
       extract(epoch FROM clock_timestamp() - a.query_start)
FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted
WHERE a.datname = current_database() AND a.wait_event_type = 'Lock'
"""
_QUERY_OF = "SELECT pid, left(query, 160) FROM pg_stat_activity WHERE pid = ANY(%s)"
_STRONG = """
SELECT l.pid, l.relation::regclass::text, l.mode
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid JOIN pg_class c ON c.oid = l.relation
WHERE a.datname = current_database() AND l.locktype = 'relation' AND l.granted AND c.relpersistence <> 't'
  AND l.mode NOT IN ('AccessShareLock', 'RowShareLock', 'RowExclusiveLock')
  AND a.application_name NOT IN (%s, %s) AND l.relation::regclass::text NOT LIKE 'pg\\_%%'
"""


class LockSampler(threading.Thread):
    """Samples lock waits and strong table locks until :meth:`stop`; see the module docstring."""

    def __init__(self, dsn: str, row_tables: tuple = ()) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.row_tables = row_tables  # tables whose locked rows are counted (needs pgrowlocks)
        self.rows: dict = {}  # "table mode" -> [first seen, last seen, most rows at once]
        self._client_pids = None
        self.waits: list = []
        self.strong: dict = {}  # (relation, mode) -> [first seen, last seen, samples]
        self.samples = 0
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def run(self) -> None:
        conn = psycopg2.connect(self.dsn, application_name=SAMPLER_NAME)
        conn.autocommit = True
        with conn.cursor() as cur:
            while not self._halt.is_set():
                now = time.monotonic()
                self.samples += 1
                cur.execute(_WAITING)
                rows = cur.fetchall()
                holders = sorted({p for r in rows for p in (r[8] or [])})
                queries = {}
                if holders:
                    cur.execute(_QUERY_OF, (holders,))
                    queries = dict(cur.fetchall())
                for (pid, app, event, query, locktype, mode, rel, xid, blockers, tuples, waited) in rows:
                    row_id = self._row_id(cur, tuples)
                    self.waits.append({
                        "t": now, "pid": pid, "client": app == CLIENT_NAME, "wait_event": event,
                        "query": " ".join((query or "").split()), "locktype": locktype, "mode": mode,
                        "relation": rel, "xid": xid, "blockers": blockers, "tuple": tuples,
                        "row": row_id, "waited": float(waited or 0),
                        "holder_running": [" ".join((queries.get(b) or "").split()) for b in blockers or []],
                    })
                if self.row_tables and self.samples % ROW_CENSUS_EVERY == 1:
                    self._row_census(cur, now)
                cur.execute(_STRONG, (CLIENT_NAME, SAMPLER_NAME))
                for _pid, rel, mode in cur.fetchall():
                    seen = self.strong.setdefault(f"{rel} {mode}", [now, now, 0])
                    seen[1], seen[2] = now, seen[2] + 1
                self._halt.wait(SAMPLE_EVERY)
        conn.close()

    def _row_census(self, cur, now: float) -> None:
        """Rows locked by a backend other than the client, per table and lock mode (pgrowlocks)."""
        from psycopg2 import sql

        for table in self.row_tables:
            cur.execute(sql.SQL("SELECT array_to_string(modes, '+'), count(*) FROM pgrowlocks(%s) "
                                "WHERE NOT (pids && %s::int[]) GROUP BY 1"), (table, self.client_pids()))
            for mode, count in cur.fetchall():
                seen = self.rows.setdefault(f"{table} {mode}", [now, now, 0])
                seen[1], seen[2] = now, max(seen[2], count)

    def client_pids(self) -> list:
        if self._client_pids is None:
            with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
                cur.execute("SELECT array_agg(pid) FROM pg_stat_activity WHERE application_name = %s",
                            (CLIENT_NAME,))
                self._client_pids = cur.fetchone()[0] or []
            conn.close()
        return self._client_pids

    @staticmethod
    def _row_id(cur, tuples):
        """The id of the row a waiter waits for (its tuple lock), as this snapshot sees it."""
        if not tuples:
            return None
        rel, page, tup = tuples[0]
        try:
            from psycopg2 import sql

            cur.execute(sql.SQL("SELECT id FROM {} WHERE ctid = %s::tid").format(sql.Identifier(rel)),
                        (f"({page},{tup})",))
            got = cur.fetchone()
            return [rel, got[0] if got else None]
        except psycopg2.Error:
            return [rel, None]
