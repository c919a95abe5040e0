"""Every guarantee on the real scrapes: 08-01, then 08-10, then 08-27 imported over it.

The first scrape is loaded by the unprotected legacy ETL and users create their data; the
next two are imported by the protected (wrapped) ETL. After each protected import: no user
reference points at nothing (G1), no user row is gone (G2), every team key that survives
keeps its id (G3), every user row sits on a team with the same natural key as before unless
a context/content mapping was recorded for it (G4); and re-importing the same scrape writes
nothing to teams or to any user table (G6). Keys are computed by tests/support.py, not by
the library.
"""

from __future__ import annotations

import pytest
from psycopg2 import sql

from bulletproof_etl.integration import create_bulletproof_etl_wrapper
from rally_etl import ComprehensiveETL
from rally_etl.activity import create_user_activity
from support import USER_TABLES, team_keys, user_ref_keys, user_row_counts

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

ProtectedETL = create_bulletproof_etl_wrapper(ComprehensiveETL)


def _mapped_rows(conn, run_id) -> set:
    """(table, pk, column) of rows the run moved on purpose (renames found by context/content)."""
    with conn.cursor() as cur:
        cur.execute("SELECT table_name, pk, column_name FROM bulletproof.mappings "
                    "WHERE run_id = %s AND strategy IN ('context', 'content')", (run_id,))
        rows = cur.fetchall()
    conn.rollback()
    return {(t, next(iter(pk.values())), c) for t, pk, c in rows}


def _write_marks(conn) -> dict:
    """A fingerprint of every row version (xmin, ctid) of teams and the user tables."""
    out = {}
    with conn.cursor() as cur:
        for table in ["teams", "leagues", "clubs", "series", *USER_TABLES]:
            cur.execute(sql.SQL("SELECT md5(coalesce(string_agg(xmin::text || ctid::text, ',' ORDER BY ctid), ''))"
                                " FROM {}").format(sql.Identifier(table)))
            out[table] = cur.fetchone()[0]
    conn.rollback()
    return out


def _protected(conn, db_dsn, data_dir, surviving_keys):
    before_refs = user_ref_keys(conn)
    before_counts = user_row_counts(conn)
    before_ids = {k: i for i, k in team_keys(conn).items()}
    etl = ProtectedETL(data_dir, db_dsn)
    assert etl.run() is True, etl.bulletproof_report
    run_id = etl.bulletproof_report.run_id
    after_refs = user_ref_keys(conn)
    # G1: nothing points at nothing
    assert [k for k, v in after_refs.items() if v == "ORPHAN"] == []
    # G2: every user row is still there (the protected path never removes one)
    assert user_row_counts(conn) == before_counts
    # G3: every team key that is still present kept its id
    now = {k: i for i, k in team_keys(conn).items()}
    assert len(before_ids.keys() & now.keys()) == surviving_keys
    changed_ids = {k: (before_ids[k], now[k]) for k in before_ids if k in now and now[k] != before_ids[k]}
    assert changed_ids == {}
    # G4: same key as before, except rows moved on purpose and recorded
    mapped = _mapped_rows(conn, run_id)
    moved = {ref: (before_refs[ref], key) for ref, key in after_refs.items()
             if ref in before_refs and key != before_refs[ref] and ref not in mapped}
    assert moved == {}
    return etl


def test_real_scrapes_imported_over_each_other_keep_every_guarantee(db_dsn, conn, realdata_dir):
    legacy = ComprehensiveETL(realdata_dir / "2025-08-01", db_dsn)
    assert legacy.run() is True
    created = create_user_activity(conn, seed=11, per_team=0.5)
    assert created["polls"] > 0

    # 565 teams of 08-01 are in 08-10; all 843 of 08-10 are in 08-27 (keys counted in
    # tests/test_etl_realdata.py from the files themselves)
    _protected(conn, db_dsn, realdata_dir / "2025-08-10", surviving_keys=565)
    _protected(conn, db_dsn, realdata_dir / "2025-08-27", surviving_keys=843)

    # G6: the same scrape again writes no row to teams, the parents or any user table
    marks = _write_marks(conn)
    _protected(conn, db_dsn, realdata_dir / "2025-08-27", surviving_keys=843)
    assert _write_marks(conn) == marks
