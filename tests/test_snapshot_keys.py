"""The snapshot's two forms: rows a run can delete are copied whole, the others kept as keys.

Which tables are at risk comes from the catalog and the configuration. A row of a keyed
table that the run deletes anyway is read back from the committed state and put back; one
that another session deleted during the run stays deleted; ``snapshot_rows="all"`` copies
every table whole.
"""

from __future__ import annotations

import psycopg2
import pytest

from bulletproof_etl import BulletproofTeamPreservation, HealthCheckFailed, HealthStatus
from bulletproof_etl.catalog import read_catalog
from bulletproof_etl.config import DEFAULT_CONFIG
from bulletproof_etl.snapshot.keys import compact_tables
from restore_support import load_with_activity, write_seasons
from support import snapshot_rows, table_checksums, user_row_counts

# every user table of the reference schema (SCHEMA.md) and how the snapshot keeps it
WHOLE = {"schedule",  # user rows (practice times) inside a table the ETL clears
         "videos",  # ON DELETE CASCADE from teams
         "user_player_associations"}  # no one-column integer primary key
KEYED = {"users": "id", "polls": "id", "poll_choices": "id",
         "poll_responses": "id", "captain_messages": "id", "practice_times": "id", "saved_lineups": "id",
         "lineup_escrow": "id", "user_contexts": "user_id", "activity_log": "id", "player_availability": "id"}


@pytest.fixture
def season(tmp_path, db_dsn, conn):
    s1, _s2, _ = write_seasons(tmp_path, 30, 37)
    load_with_activity(db_dsn, conn, s1)
    return s1


def test_tables_at_risk_are_whole_and_the_others_keyed(season, conn):
    catalog = read_catalog(conn, DEFAULT_CONFIG)
    with conn.cursor() as cur:
        keyed = compact_tables(cur, DEFAULT_CONFIG, catalog)
        assert compact_tables(cur, DEFAULT_CONFIG.replace(snapshot_rows="all"), catalog) == {}
        with pytest.raises(ValueError, match="snapshot_rows"):
            compact_tables(cur, DEFAULT_CONFIG.replace(snapshot_rows="some"), catalog)
    conn.rollback()
    assert keyed == {t: pk for t, pk in KEYED.items() if t in catalog.user_tables()}
    assert set(catalog.user_tables()) - set(keyed) == WHOLE


def test_a_cascade_from_a_table_at_risk_puts_its_children_at_risk(season, conn):
    with conn.cursor() as cur:  # captain messages now die with their team: they must be copied whole
        cur.execute("ALTER TABLE captain_messages DROP CONSTRAINT captain_messages_team_id_fkey, "
                    "ADD FOREIGN KEY (team_id) REFERENCES teams (id) ON DELETE SET NULL")
        cur.execute("CREATE TABLE message_reads (id serial PRIMARY KEY, message_id integer "
                    "REFERENCES captain_messages (id) ON DELETE CASCADE, team_id integer REFERENCES teams (id))")
        keyed = compact_tables(cur, DEFAULT_CONFIG, read_catalog(conn, DEFAULT_CONFIG))
    conn.rollback()
    assert "captain_messages" not in keyed and "message_reads" not in keyed
    assert "polls" in keyed


def _delete_messages_in_run(conn, config, ids, *, dsn=None, elsewhere=(), **kw):
    """A protected run whose ETL deletes users' messages ``ids`` itself, while another session
    deletes and commits messages ``elsewhere``."""
    with BulletproofTeamPreservation(conn, config=config, **kw) as p:
        p.backup_user_data()
        with conn.cursor() as cur:  # an ETL step that deletes users' messages itself
            cur.execute("DELETE FROM captain_messages WHERE id = ANY(%s)", (list(ids),))
        if elsewhere:
            other = psycopg2.connect(dsn)
            with other.cursor() as cur:
                cur.execute("DELETE FROM captain_messages WHERE id = ANY(%s)", (list(elsewhere),))
            other.commit()
            other.close()
        p.restore_user_data()
        health = p.validate_health(raise_on_critical=True)
    return p.report, health


def _message_ids(conn) -> list:
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM captain_messages ORDER BY id")
        ids = [r[0] for r in cur.fetchall()]
    conn.rollback()
    return ids


def test_a_keyed_row_the_run_deletes_is_read_back_and_put_back(season, conn):
    before = table_checksums(conn, ("public",))
    report, health = _delete_messages_in_run(conn, DEFAULT_CONFIG, [2, 3, 5])
    conn.commit()
    assert report.durable_snapshot is True
    assert report.restore["tables"]["captain_messages"]["reinserted"] == 3
    assert report.restore["tables"]["captain_messages"]["left_deleted"] == 0
    assert health.lost == {} and health.status is not HealthStatus.CRITICAL
    assert table_checksums(conn, ("public",)) == before  # same keys, same content


def test_a_keyed_row_a_user_deletes_during_the_run_stays_deleted(season, conn, db_dsn):
    ids = _message_ids(conn)
    report, health = _delete_messages_in_run(conn, DEFAULT_CONFIG, [2, 3], dsn=db_dsn, elsewhere=[7, 11])
    conn.commit()
    assert report.restore["tables"]["captain_messages"]["reinserted"] == 2
    assert report.restore["tables"]["captain_messages"]["left_deleted"] == 2
    assert health.lost == {} and health.status is not HealthStatus.CRITICAL
    assert _message_ids(conn) == [i for i in ids if i not in (7, 11)]


def test_without_a_durable_snapshot_a_row_deleted_elsewhere_is_lost(season, conn, db_dsn):
    ids = _message_ids(conn)
    with pytest.raises(HealthCheckFailed) as failed:  # dry run: the snapshot is not committed
        _delete_messages_in_run(conn, DEFAULT_CONFIG, [2], dsn=db_dsn, elsewhere=[7], dry_run=True)
    assert failed.value.report.lost == {"captain_messages": 1}
    conn.rollback()
    assert _message_ids(conn) == [i for i in ids if i != 7]  # only the other session's delete stays


def test_with_whole_snapshots_of_every_table_the_vanished_row_is_put_back(season, conn):
    before = table_checksums(conn, ("public",))
    rows = user_row_counts(conn)
    report, health = _delete_messages_in_run(conn, DEFAULT_CONFIG.replace(snapshot_rows="all"), [2, 3, 5])
    assert report.restore["tables"]["captain_messages"]["left_deleted"] == 0
    conn.commit()
    assert report.restore["tables"]["captain_messages"]["reinserted"] == 3
    assert health.lost == {} and health.status is not HealthStatus.CRITICAL
    assert table_checksums(conn, ("public",)) == before
    counts, _refs = snapshot_rows(conn, report.run_id)
    assert counts == {("schedule" if t == "schedule(practice)" else t): n for t, n in rows.items()}
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM bulletproof.snap_keys WHERE run_id = %s AND NOT whole", (report.run_id,))
        assert cur.fetchone()[0] == 0
    conn.rollback()
