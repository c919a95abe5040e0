"""Issue 14, per-run costs: re-keying plans only the rows the ledger does not already settle, and
a library stage of a protected ETL run runs without JIT compilation, the setting restored after.

G3 (ids kept) is what the first test guards: skipping a row must never change what re-keying
does, so the plan of the skipped rows is run anyway and must be empty, and after a legacy clear
(every parent under a new id) the plan of the remaining rows must equal the plan of all rows.
"""

from __future__ import annotations

from bulletproof_etl import BulletproofTeamPreservation
from bulletproof_etl.catalog import current_keys
from bulletproof_etl.config import DEFAULT_CONFIG
from bulletproof_etl.identity.ledger_ids import _plan, _settled
from bulletproof_etl.lock_wait import bounded
from core_support import legacy_clear_and_parents, legacy_run, loaded_etl, season

ENTITIES = ("leagues", "clubs", "series", "teams")


def _show(conn, name: str) -> str:
    with conn.cursor() as cur:
        cur.execute("SELECT current_setting(%s)", (name,))
        return cur.fetchone()[0]


def test_g3_rekey_skips_exactly_the_rows_the_plan_would_leave_alone(db_dsn, conn, tmp_path):
    data = season(tmp_path, n_teams=60, seed=5)
    legacy_run(db_dsn, data)
    etl = loaded_etl(data, db_dsn)
    with BulletproofTeamPreservation(conn) as p:  # the ledger learns every id
        p.run(etl.extract_teams())
    conn.commit()

    with BulletproofTeamPreservation(conn) as p:  # a repeated run: every row is settled
        p.backup_user_data()
        keys = current_keys(conn, p.config)
        with conn.cursor() as cur:
            for entity in ENTITIES:
                keyed = {i for i, k in keys[entity].items() if k is not None}
                settled = _settled(cur, DEFAULT_CONFIG, entity, keys[entity])
                assert settled == keyed and len(keyed) > 0
                assert _plan(cur, DEFAULT_CONFIG, entity, keys[entity]) == ([], [])
        p.dry_run = True
    conn.rollback()

    with BulletproofTeamPreservation(conn) as p:  # parents re-inserted under new ids: none settled
        p.backup_user_data()
        legacy_clear_and_parents(etl, conn)
        keys = current_keys(conn, p.config)
        with conn.cursor() as cur:
            for entity in ("leagues", "clubs", "series"):
                settled = _settled(cur, DEFAULT_CONFIG, entity, keys[entity])
                rest = {i: k for i, k in keys[entity].items() if i not in settled}
                full = _plan(cur, DEFAULT_CONFIG, entity, keys[entity])
                assert _plan(cur, DEFAULT_CONFIG, entity, rest) == full
                assert len(full[0]) == len(keys[entity])  # every parent moves back to its ledger id
                assert settled == set()
    conn.rollback()


def test_a_library_stage_runs_without_jit_and_gives_the_setting_back(conn):
    with conn.cursor() as cur:
        cur.execute("SET jit = on")
        cur.execute("SET lock_timeout = '0'")
    for timeout in ("5s", None):
        with bounded(conn, timeout):
            assert _show(conn, "jit") == "off"
            assert _show(conn, "lock_timeout") == ("5s" if timeout else "0")
        assert _show(conn, "jit") == "on"
        assert _show(conn, "lock_timeout") == "0"
    conn.rollback()
