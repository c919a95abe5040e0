"""Proof that nothing changed: a checksum of every table (and id sequence) in some schemas."""

from __future__ import annotations

from psycopg2 import sql


def checksums(conn, schemas) -> dict:
    """``{"schema.table": (rows, md5 of the rows in a fixed order)}`` plus ``"seq schema.name": value``.

    Reads every row: meant for ``bulletproof-etl test`` and dry runs, not for a hot path.
    """
    out = {}
    with conn.cursor() as cur:
        cur.execute("SELECT table_schema, table_name FROM information_schema.tables "
                    "WHERE table_schema = ANY(%s) AND table_type = 'BASE TABLE' ORDER BY 1, 2", (list(schemas),))
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


def differences(before: dict, after: dict) -> list:
    """Names whose checksum differs (or that exist on one side only)."""
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
