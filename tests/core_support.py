"""Helpers for the Core I tests (identity, atomicity, idempotence): seasons, legacy steps,
ids by natural key and write fingerprints, computed with the tests' own SQL."""

from __future__ import annotations

import psycopg2
from psycopg2 import sql

from rally_etl import ComprehensiveETL
from rally_etl.generate import generate_season, write_season
from support import entity_keys

ENTITY_TABLES = ("leagues", "clubs", "series", "teams")


def season(path, n_teams: int = 120, seed: int = 11, number: int = 1, churn: float = 0.0):
    """A generated season written to ``path``; returns the directory."""
    return write_season(generate_season(n_teams, seed, season=number, churn=churn), path)


def legacy_run(dsn: str, data_dir) -> ComprehensiveETL:
    etl = ComprehensiveETL(data_dir, dsn)
    assert etl.run(), etl.last_error
    return etl


def loaded_etl(data_dir, dsn: str | None = None) -> ComprehensiveETL:
    etl = ComprehensiveETL(data_dir, dsn)
    etl.load_json_files()
    return etl


def legacy_season_with_users(dsn: str, conn, path, *, n_teams: int, seed: int, activity_seed: int,
                             per_team: float) -> ComprehensiveETL:
    """A generated season imported by the legacy ETL, then users' activity (committed by
    ``create_user_activity``); returns the ETL with the season's files loaded."""
    from rally_etl.activity import create_user_activity

    data = season(path, n_teams=n_teams, seed=seed)
    legacy_run(dsn, data)
    create_user_activity(conn, seed=activity_seed, per_team=per_team)
    return loaded_etl(data, dsn)


def legacy_clear_and_parents(etl: ComprehensiveETL, conn) -> None:
    """What the legacy ETL does before its team import: clear everything (and commit), then
    insert leagues, clubs and series again, under new serial ids."""
    etl.clear_target_tables(conn)
    etl.import_leagues(conn, etl.extract_leagues())
    etl.import_clubs(conn, etl.extract_clubs())
    etl.import_series(conn, etl.extract_series())
    etl.import_club_leagues(conn)
    etl.import_series_leagues(conn)


def ids_by_key(conn) -> dict:
    """``{entity: {natural key: id}}`` from the tests' own key computation; every key once."""
    out = {}
    for entity, ids in all_ids_by_key(conn).items():
        for key, found in ids.items():
            assert len(found) == 1, f"{entity} rows {sorted(found)} share the key {key}"
        out[entity] = {key: min(found) for key, found in ids.items()}
    return out


def all_ids_by_key(conn) -> dict:
    """``{entity: {natural key: set of ids}}``: messy input can give one key several rows."""
    out = {}
    for entity, by_id in entity_keys(conn).items():
        inverted: dict = {}
        for id_, key in by_id.items():
            inverted.setdefault(key, set()).add(id_)
        out[entity] = inverted
    return out


def write_fingerprint(conn, schema: str = "public") -> dict:
    """``{table: (rows, md5 of every row's xmin and ctid)}``: any insert, update or delete
    (even one that rewrites a row with equal values) changes it; row locks do not."""
    out = {}
    with conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                    "AND table_type = 'BASE TABLE' ORDER BY 1", (schema,))
        for (table,) in cur.fetchall():
            cur.execute(sql.SQL("SELECT count(*), md5(coalesce(string_agg(xmin::text || ctid::text, ',' "
                                "ORDER BY ctid), '')) FROM {}").format(sql.Identifier(schema, table)))
            out[table] = tuple(cur.fetchone())
    return out


def xact_writes(conn, schema: str = "public") -> dict:
    """Rows inserted, updated and deleted in this backend's open transaction, per table
    (``pg_stat_xact_user_tables``; use a fresh connection: PostgreSQL 15 keeps unflushed
    counts of earlier transactions in this view)."""
    with conn.cursor() as cur:
        cur.execute("SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_xact_user_tables "
                    "WHERE schemaname = %s AND n_tup_ins + n_tup_upd + n_tup_del > 0 ORDER BY 1", (schema,))
        return {r[0]: r[1:] for r in cur.fetchall()}


def sequence_state(conn, table: str) -> tuple:
    """``(next value the sequence will give, largest id in the table)``, without consuming it."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_get_serial_sequence(%s, 'id')", (table,))
        seq = cur.fetchone()[0]
        cur.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(sql.SQL(seq)))
        last, called = cur.fetchone()
        cur.execute(sql.SQL("SELECT max(id) FROM {}").format(sql.Identifier(table)))
        top = cur.fetchone()[0]
    return (last + 1 if called else last), top


def ledger_max(conn, entity: str) -> int | None:
    with conn.cursor() as cur:
        cur.execute("SELECT max(id) FROM bulletproof.ledger WHERE entity = %s", (entity,))
        return cur.fetchone()[0]


def one_value(conn, query, params=()):
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchone()[0]


def connect(dsn: str):
    return psycopg2.connect(dsn)
