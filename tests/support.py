"""Helpers shared by the tests: checksums, recounts and natural keys computed independently.

These deliberately do not use the library's own code to compute what they check, so a
test compares the library against a second opinion. Add functions; do not change the
meaning of existing ones.
"""

from __future__ import annotations

import psycopg2
from psycopg2 import sql

from rally_etl.names import canonical_series

USER_REFS = [
    # (table, pk column, reference column, entity table)
    ("users", "id", "team_id", "teams"),
    ("users", "id", "league_context", "leagues"),
    ("polls", "id", "team_id", "teams"),
    ("captain_messages", "id", "team_id", "teams"),
    ("practice_times", "id", "team_id", "teams"),
    ("practice_times", "id", "league_id", "leagues"),
    ("saved_lineups", "id", "team_id", "teams"),
    ("lineup_escrow", "id", "initiator_team_id", "teams"),
    ("lineup_escrow", "id", "recipient_team_id", "teams"),
    ("user_contexts", "user_id", "league_id", "leagues"),
    ("user_contexts", "user_id", "team_id", "teams"),
    ("user_contexts", "user_id", "active_team_id", "teams"),
    ("activity_log", "id", "team_id", "teams"),
    ("videos", "id", "team_id", "teams"),
    ("player_availability", "id", "series_id", "series"),
]
USER_TABLES = ["users", "user_player_associations", "polls", "poll_choices", "poll_responses",
               "captain_messages", "practice_times", "saved_lineups", "lineup_escrow", "user_contexts",
               "activity_log", "videos", "player_availability"]
PRACTICE_FILTER = "home_team ILIKE '%%practice%%'"


def public_tables(conn) -> list:
    with conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
                    "AND table_type = 'BASE TABLE' ORDER BY 1")
        return [r[0] for r in cur.fetchall()]


def table_checksums(conn, schemas=("public",)) -> dict:
    """``{schema.table: (row count, md5 of all rows in a fixed order)}``; sequences too."""
    out = {}
    with conn.cursor() as cur:
        cur.execute("SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = ANY(%s) "
                    "AND table_type = 'BASE TABLE' ORDER BY 1, 2", (list(schemas),))
        for schema, table in cur.fetchall():
            cur.execute(sql.SQL("SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                                "FROM {} t").format(sql.Identifier(schema, table)))
            out[f"{schema}.{table}"] = tuple(cur.fetchone())
        cur.execute("SELECT schemaname, sequencename, last_value FROM pg_sequences WHERE schemaname = ANY(%s)",
                    (list(schemas),))
        for schema, seq, last in cur.fetchall():
            out[f"seq {schema}.{seq}"] = last
    conn.rollback()
    return out


def count(conn, table: str, where: str = "true") -> int:
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE " + where).format(sql.Identifier(table)))
        n = cur.fetchone()[0]
    conn.rollback()
    return n


def team_keys(conn) -> dict:
    """``{team id: (league code, club name folded, canonical series)}`` computed by the test side."""
    with conn.cursor() as cur:
        cur.execute("SELECT t.id, l.league_id, c.name, s.name FROM teams t JOIN leagues l ON l.id = t.league_id "
                    "JOIN clubs c ON c.id = t.club_id JOIN series s ON s.id = t.series_id")
        rows = cur.fetchall()
    conn.rollback()
    return {i: (code.upper(), " ".join(club.split()).casefold(), canonical_series(code, name).casefold())
            for i, code, club, name in rows}


def entity_keys(conn) -> dict:
    """Keys of every entity row: teams as :func:`team_keys`, leagues by code, clubs and series by name."""
    out = {"teams": team_keys(conn)}
    with conn.cursor() as cur:
        cur.execute("SELECT id, upper(league_id) FROM leagues")
        out["leagues"] = {i: (c,) for i, c in cur.fetchall()}
        cur.execute("SELECT id, name FROM clubs")
        out["clubs"] = {i: (" ".join(n.split()).casefold(),) for i, n in cur.fetchall()}
        cur.execute("SELECT id, name FROM series")
        out["series"] = {i: (" ".join(n.split()).casefold(),) for i, n in cur.fetchall()}
    conn.rollback()
    return out


def user_ref_keys(conn) -> dict:
    """``{(table, pk, column): key of the referenced entity or None (NULL) or 'ORPHAN'}``."""
    keys = entity_keys(conn)
    out = {}
    with conn.cursor() as cur:
        for table, pk, col, entity in USER_REFS:
            cur.execute(sql.SQL("SELECT {}, {} FROM {}").format(sql.Identifier(pk), sql.Identifier(col),
                                                               sql.Identifier(table)))
            for pk_value, ref in cur.fetchall():
                out[(table, pk_value, col)] = None if ref is None else keys[entity].get(ref, "ORPHAN")
        cur.execute("SELECT id, home_team_id FROM schedule WHERE " + PRACTICE_FILTER)
        for pk_value, ref in cur.fetchall():
            out[("schedule", pk_value, "home_team_id")] = None if ref is None else keys["teams"].get(ref, "ORPHAN")
    conn.rollback()
    return out


def user_row_counts(conn) -> dict:
    out = {t: count(conn, t) for t in USER_TABLES}
    out["schedule(practice)"] = count(conn, "schedule", PRACTICE_FILTER)
    return out


def connect(dsn):
    return psycopg2.connect(dsn)


def snapshot_rows(conn, run_id: int) -> tuple:
    """One run's snapshot of user rows, read straight from the state tables.

    Returns ``(counts per table, {(table, pk, column): key or None})``: rows copied whole
    (``snap_rows``, with the key in ``refs``) and rows kept as keys (``snap_keys``: primary
    keys and referenced ids, the id's key taken from the run's ``snap_entities``).
    """
    counts: dict = {}
    refs: dict = {}
    with conn.cursor() as cur:
        cur.execute("SELECT table_name, pk, refs FROM bulletproof.snap_rows WHERE run_id = %s", (run_id,))
        for table, pk, row_refs in cur.fetchall():
            counts[table] = counts.get(table, 0) + 1
            pk_value = pk.get("id", pk.get("user_id"))
            for column, key in (row_refs or {}).items():
                refs[(table, pk_value, column)] = tuple(key) if key is not None else None
        cur.execute("SELECT entity, id, key FROM bulletproof.snap_entities WHERE run_id = %s", (run_id,))
        keys = {(e, i): tuple(k) if k is not None else None for e, i, k in cur.fetchall()}
        cur.execute("SELECT table_name, column_name, pks, ids FROM bulletproof.snap_keys WHERE run_id = %s "
                    "AND NOT whole", (run_id,))  # whole: the rows are in snap_rows, the arrays are an index
        keyed = cur.fetchall()
    conn.rollback()
    entity_of = {(t, c): e for t, _pk, c, e in USER_REFS}
    for table, column, pks, ids in keyed:
        if column == "":
            assert table not in counts, f"{table} is both whole and keyed"
            counts[table] = len(pks)
            continue
        for pk_value, ref in zip(pks, ids, strict=True):
            refs[(table, pk_value, column)] = None if ref is None else keys.get((entity_of[(table, column)], ref))
    return counts, refs


def snapshot_size(conn, run_id: int) -> int:
    """How many user rows one run's snapshot holds, whole or as keys."""
    return sum(snapshot_rows(conn, run_id)[0].values())
