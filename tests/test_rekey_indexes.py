"""G3 at scale: renumbering re-inserted parents does not scan unindexed foreign keys per row.

Giving a re-inserted series its ledger id back changes a referenced primary key, and
PostgreSQL checks every foreign key to it once per row; a referencing column without an
index is read whole each time (dead rows included). ``rekey`` builds a temporary index on
each such column first, in the caller's transaction, and drops it after the renumbering.

Each test: a season loaded by the legacy ETL, plus ``series_notes`` (a table of some
hundreds of pages whose ``series_id`` references ``series`` with no index), a snapshot that
records every id in the ledger, then the legacy clear and parent import under new ids, then
``rekey_entity`` for series. Indexes are checked in ``pg_class``; ids by natural key.
"""

from __future__ import annotations

import uuid

import psycopg2
import pytest
from psycopg2 import sql

import conftest
from bulletproof_etl import BulletproofTeamPreservation
from bulletproof_etl.catalog import current_keys
from bulletproof_etl.identity.ledger_ids import INDEX_WORTH, rekey_entity
from core_support import ids_by_key, legacy_clear_and_parents, legacy_run, loaded_etl, season

NOTES_PER_SERIES = 2000
PAD = "x" * 150


def _temporary_indexes(conn) -> list:
    with conn.cursor() as cur:
        cur.execute("SELECT relname FROM pg_class WHERE relkind = 'i' AND relname LIKE '\\_bp\\_fk\\_%' ORDER BY 1")
        return [r[0] for r in cur.fetchall()]


def _indexed_columns(conn, names: list) -> list:
    """``table.column`` of each index in ``names`` (one key column each here)."""
    with conn.cursor() as cur:
        cur.execute("SELECT t.relname || '.' || a.attname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
                    "JOIN pg_class t ON t.oid = i.indrelid "
                    "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
                    "WHERE ic.relname = ANY(%s) ORDER BY 1", (names,))
        return [r[0] for r in cur.fetchall()]


def _notes_by_series_name(conn) -> dict:
    with conn.cursor() as cur:
        cur.execute("SELECT s.name, count(*) FROM series_notes n JOIN series s ON s.id = n.series_id GROUP BY 1")
        return dict(cur.fetchall())


def _seed(db_dsn, conn, tmp_path, *, index_notes: bool = False):
    """A legacy season and ``series_notes``; returns the loaded ETL."""
    data = season(tmp_path, n_teams=120, seed=21)
    legacy_run(db_dsn, data)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE series_notes (id serial PRIMARY KEY, series_id integer NOT NULL "
                    "REFERENCES series (id), note text)")
        cur.execute("INSERT INTO series_notes (series_id, note) SELECT s.id, %s FROM series s, "
                    "generate_series(1, %s)", (PAD, NOTES_PER_SERIES))
        if index_notes:
            cur.execute("CREATE INDEX series_notes_series ON series_notes (series_id)")
    conn.commit()
    return loaded_etl(data, db_dsn)


def _clear_and_rekey(conn, etl, *, between=None):
    """Snapshot (the ledger learns every id), legacy clear and parents (each step committed,
    as the legacy ETL does), then re-key the series in the run's transaction."""
    with BulletproofTeamPreservation(conn) as p:
        p.backup_user_data()
        legacy_clear_and_parents(etl, conn)
        with conn.cursor() as cur:  # the notes follow their series to its new id, as an ETL would
            cur.execute("UPDATE series_notes n SET series_id = s.id FROM series s, "
                        "bulletproof.ledger l WHERE l.entity = 'series' AND l.id = n.series_id "
                        "AND l.row->>'name' = s.name")
        conn.commit()
        if between is not None:
            between()
        current = current_keys(conn, p.config)["series"]
        return rekey_entity(conn, p.config, "series", current, ledger_known=True)


def _series_ids(conn) -> dict:
    with conn.cursor() as cur:
        cur.execute("SELECT name, id FROM series")
        return dict(cur.fetchall())


def _pages(conn, table: str) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int", (table,))
        return cur.fetchone()[0]


def test_g3_rekey_indexes_unindexed_foreign_keys_for_the_renumbering_and_drops_them(db_dsn, conn, tmp_path):
    etl = _seed(db_dsn, conn, tmp_path)
    before, notes_before = ids_by_key(conn), _notes_by_series_name(conn)
    n_series = len(before["series"])
    assert n_series * _pages(conn, "series_notes") >= INDEX_WORTH  # big enough to be worth an index
    seen = {}

    result = _clear_and_rekey(conn, etl, between=lambda: seen.setdefault("before", _temporary_indexes(conn)))

    assert seen["before"] == []
    assert result.rekeyed == n_series and result.blocked == []
    # players.series_id and teams.series_id have no index either, but their few pages here
    # are not worth one
    assert "public.series_notes(series_id)" in result.indexes
    assert len(result.indexes) == len(set(result.indexes))
    assert result.indexes_kept == []
    assert _temporary_indexes(conn) == []  # dropped in the same transaction, before the commit
    assert result.repointed["public.series_notes.series_id"] == n_series * NOTES_PER_SERIES
    conn.commit()
    assert ids_by_key(conn)["series"] == before["series"]
    assert _notes_by_series_name(conn) == notes_before


def test_g3_rekey_builds_no_index_where_a_usable_one_exists(db_dsn, conn, tmp_path):
    etl = _seed(db_dsn, conn, tmp_path, index_notes=True)
    before = ids_by_key(conn)

    result = _clear_and_rekey(conn, etl)

    assert "public.series_notes(series_id)" not in result.indexes
    assert result.rekeyed == len(before["series"])
    conn.commit()
    assert ids_by_key(conn)["series"] == before["series"]
    assert _temporary_indexes(conn) == []


def test_g5_a_rolled_back_rekey_leaves_no_index_and_no_id_changed(db_dsn, conn, tmp_path):
    etl = _seed(db_dsn, conn, tmp_path)
    seen = {}

    def record():
        seen["ids"] = _series_ids(conn)
        with conn.cursor() as cur:
            cur.execute("SELECT indexrelid::regclass::text FROM pg_index ORDER BY 1")
            seen["indexes"] = cur.fetchall()

    result = _clear_and_rekey(conn, etl, between=record)
    assert result.rekeyed == len(seen["ids"]) and result.indexes
    conn.rollback()

    assert _series_ids(conn) == seen["ids"]  # the ids the legacy ETL gave, as before the run
    with conn.cursor() as cur:
        cur.execute("SELECT indexrelid::regclass::text FROM pg_index ORDER BY 1")
        assert cur.fetchall() == seen["indexes"]


def test_g3_a_table_busy_past_the_lock_wait_keeps_its_index_and_says_so(db_dsn, conn, tmp_path):
    """Dropping an index locks its table; a reader holding it makes the drop give up after
    LOCK_WAIT: the run neither waits nor deadlocks, and the kept index is reported."""
    etl = _seed(db_dsn, conn, tmp_path)
    before = ids_by_key(conn)
    reader = psycopg2.connect(db_dsn)
    try:
        def read():  # a long report query of the app, in its own transaction
            with reader.cursor() as cur:
                cur.execute("SELECT count(*) FROM series_notes")

        result = _clear_and_rekey(conn, etl, between=read)
    finally:
        reader.rollback()
        reader.close()

    kept = [name.split(".")[1] for name in result.indexes_kept]
    assert _indexed_columns(conn, kept) == ["series_notes.series_id"]
    assert result.rekeyed == len(before["series"])
    conn.commit()
    assert ids_by_key(conn)["series"] == before["series"]
    assert _temporary_indexes(conn) == kept


def _owner_role(dsn: str, name: str) -> str:
    """A LOGIN role, not a superuser, made owner of every table of public but ``series_notes``,
    with CREATE on the schema (as the role that made the app's tables has); returns its DSN."""
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER PASSWORD %s").format(sql.Identifier(name)), (name,))
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'series_notes'")
            for (table,) in cur.fetchall():
                cur.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(
                    sql.Identifier("public", table), sql.Identifier(name)))
            cur.execute(sql.SQL("GRANT SELECT, UPDATE ON series_notes TO {}").format(sql.Identifier(name)))
            cur.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(name)))
            cur.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
                sql.Identifier(psycopg2.extensions.parse_dsn(dsn)["dbname"]), sql.Identifier(name)))
    finally:
        admin.close()
    params = psycopg2.extensions.parse_dsn(dsn)
    params.update(user=name, password=name)
    return psycopg2.extensions.make_dsn(**params)


def test_g3_a_non_superuser_owner_rekeys_with_indexes_on_its_tables_and_without_on_others(tmp_path):
    """The owner of the app tables indexes its own (players); series_notes belongs to another
    role, so it is renumbered without an index (logged), with the same result."""
    dsn, role = conftest.create_database(), f"bp_rekey_{uuid.uuid4().hex[:8]}"
    root = psycopg2.connect(dsn)
    try:
        etl = _seed(dsn, root, tmp_path)
        before, notes_before = ids_by_key(root), _notes_by_series_name(root)
        root.commit()
        conn = psycopg2.connect(_owner_role(dsn, role))
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                assert cur.fetchone() == (False,)
            with BulletproofTeamPreservation(conn) as p:  # the role's run: the ledger learns every id
                p.backup_user_data()
            conn.commit()
            # the legacy ETL (a superuser: its clear switches foreign keys off) clears and
            # re-inserts the parents; players (an ETL table) come back under the new ids
            legacy_clear_and_parents(etl, root)
            with root.cursor() as cur:
                cur.execute("UPDATE series_notes n SET series_id = s.id FROM series s, bulletproof.ledger l "
                            "WHERE l.entity = 'series' AND l.id = n.series_id AND l.row->>'name' = s.name")
                cur.execute("INSERT INTO players (tenniscores_player_id, league_id, club_id, series_id) "
                            "SELECT 'p' || n, (SELECT min(id) FROM leagues), (SELECT min(id) FROM clubs), s.id "
                            "FROM series s, generate_series(1, 6000) n")
            root.commit()
            with BulletproofTeamPreservation(conn) as p:
                result = rekey_entity(conn, p.config, "series", current_keys(conn, p.config)["series"])
                assert "public.players(series_id)" in result.indexes
                assert "public.series_notes(series_id)" not in result.indexes
                assert result.indexes_kept == [] and _temporary_indexes(conn) == []
            conn.commit()
        finally:
            conn.close()
        assert ids_by_key(root)["series"] == before["series"]
        assert _notes_by_series_name(root) == notes_before
    finally:
        root.close()
        conftest.drop_database(dsn)
        admin = psycopg2.connect(conftest._server["dsn"])
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.close()


pytestmark = pytest.mark.usefixtures("server_dsn")
