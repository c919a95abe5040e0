"""A database with quarantined rows, made the way production makes them (issue 15's tests).

Season 1 is imported protected; users create their data; then rows appear whose team no
longer exists and that nothing maps (the app wrote them with an id from an old import), and
the next protected run quarantines them: two polls without an author on the same stale team
99901 (set to NULL), one captain message on 99905 (NOT NULL: kept on an inactive placeholder
team) whose author's own team is its one candidate.
"""

from __future__ import annotations

import psycopg2

from bulletproof_etl.cli import main
from rally_etl.activity import create_user_activity


def make_quarantine(dsn: str) -> dict:
    assert main(["run", "-q", "--dsn", dsn]) == 0
    conn = psycopg2.connect(dsn)
    try:
        create_user_activity(conn, seed=3, per_team=0.1)
        with conn.cursor() as cur:
            cur.execute("SELECT id, team_id FROM users WHERE team_id IS NOT NULL ORDER BY id LIMIT 1")
            author, author_team = cur.fetchone()
            cur.execute("SET session_replication_role = replica")  # the stale ids the app wrote
            cur.execute("INSERT INTO polls (id, team_id, created_by, question) VALUES "
                        "(9001, 99901, NULL, 'Who can play on Jan 3?'), "
                        "(9002, 99901, NULL, 'Bring balls on Friday?')")
            cur.execute("INSERT INTO captain_messages (id, team_id, captain_user_id, message) VALUES "
                        "(9005, 99905, %s, 'Lineup is up')", (author,))
            cur.execute("SET session_replication_role = DEFAULT")
        conn.commit()
    finally:
        conn.close()
    assert main(["run", "-q", "--dsn", dsn]) == 1  # WARNING: rows were quarantined
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT table_name, (pk->>'id')::int, id FROM bulletproof.quarantine ORDER BY id")
            entries = {(t, pk): qid for t, pk, qid in cur.fetchall()}
            cur.execute("SELECT id FROM teams WHERE is_active AND id <> %s ORDER BY id LIMIT 1", (author_team,))
            other = cur.fetchone()[0]
        conn.rollback()
    finally:
        conn.close()
    assert sorted(entries) == [("captain_messages", 9005), ("polls", 9001), ("polls", 9002)]
    return {"author": author, "author_team": author_team, "other_team": other,
            "poll1": entries[("polls", 9001)], "poll2": entries[("polls", 9002)],
            "message": entries[("captain_messages", 9005)]}


def value(dsn: str, query: str, params=()):
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            found = cur.fetchall()
        conn.rollback()
        return found
    finally:
        conn.close()
