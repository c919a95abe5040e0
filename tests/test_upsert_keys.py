"""current_keys, which the upsert, the ledger, the restore and health read: the same keys as
the plain per-team version, on messy legacy data with orphaned teams, and with a
configuration that makes its own keys."""

from __future__ import annotations

from psycopg2 import sql

from bulletproof_etl.catalog import current_keys
from bulletproof_etl.config import DEFAULT_CONFIG, ENTITIES, PreservationConfig
from core_support import legacy_run, season


def _plain_keys(conn, config) -> dict:
    """Every key through ``config.entity_key``/``team_key``, one team at a time."""
    out: dict = {}
    names: dict = {}
    with conn.cursor() as cur:
        for entity, column in (("leagues", config.league_code), ("clubs", config.club_name),
                               ("series", config.series_name)):
            cur.execute(sql.SQL("SELECT id, {} FROM {}").format(
                sql.Identifier(column), sql.Identifier(config.schema, config.table(entity))))
            names[entity] = dict(cur.fetchall())
            out[entity] = {i: config.entity_key(entity, n) for i, n in names[entity].items()}
        cur.execute(sql.SQL("SELECT id, {}, {}, {} FROM {}").format(
            sql.Identifier(config.team_league), sql.Identifier(config.team_club),
            sql.Identifier(config.team_series), sql.Identifier(config.schema, config.table("teams"))))
        out["teams"] = {}
        for id_, lg, cl, se in cur.fetchall():
            parts = (names["leagues"].get(lg), names["clubs"].get(cl), names["series"].get(se))
            out["teams"][id_] = None if None in parts else config.team_key(*parts)
    conn.rollback()
    return out


class _OwnKeys(PreservationConfig):
    """A configuration that makes team keys itself (the per-team path of current_keys)."""

    def team_key(self, league_code, club_name, series_name):
        return (league_code.lower(), club_name.upper(), series_name)


def _orphan_some_teams(conn) -> None:
    with conn.cursor() as cur:  # the legacy way: parents deleted under their teams
        cur.execute("SET session_replication_role = replica")
        cur.execute("DELETE FROM clubs WHERE id = (SELECT min(club_id) FROM teams)")
        cur.execute("DELETE FROM series WHERE id = (SELECT max(series_id) FROM teams)")
        cur.execute("UPDATE teams SET league_id = -1 WHERE id = (SELECT max(id) FROM teams)")
        cur.execute("SET session_replication_role = DEFAULT")
    conn.commit()


def test_current_keys_equal_the_plain_per_team_keys(db_dsn, conn, tmp_path):
    legacy_run(db_dsn, season(tmp_path / "s2", n_teams=150, seed=23, number=2, churn=0.3))
    _orphan_some_teams(conn)
    keys = current_keys(conn, DEFAULT_CONFIG)
    conn.rollback()
    assert keys == _plain_keys(conn, DEFAULT_CONFIG)
    assert sum(k is None for k in keys["teams"].values()) >= 3  # the orphans have no key
    assert len({k for k in keys["clubs"].values()}) < len(keys["clubs"])  # a key spelled two ways
    own = _OwnKeys()
    keys = current_keys(conn, own)
    conn.rollback()
    assert keys == _plain_keys(conn, own)
    assert all(k is None or k[0].islower() for k in keys["teams"].values())
    assert set(keys) == set(ENTITIES)
