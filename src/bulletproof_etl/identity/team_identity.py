"""Telling apart the teams the ETL keeps apart although they share a natural key.

The ETL's identity of a team is its league, club and series rows; the natural key
canonicalises the series, so ``Division 10`` and ``S10`` of one club share a key. Within one
import the second such team gets a variant key (``10 [s10]``), stable from one import to the
next, and, where the table has a unique team name per league, the ETL's own disambiguated
name ``name (series)``.
"""

from __future__ import annotations

from psycopg2 import sql

from ..config import PreservationConfig


def variant(key: tuple, config: PreservationConfig, series_name: str) -> tuple:
    """The key of a second team of one natural key, told apart by its series' spelling."""
    return (*key[:-1], f"{key[-1]} [{config.name_canonicaliser(series_name)}]")


def existing_parents(cur, config: PreservationConfig) -> dict:
    """``{team id: (league id, club id, series id)}`` of every existing team."""
    cur.execute(sql.SQL("SELECT id, {}, {}, {} FROM {}").format(
        sql.Identifier(config.team_league), sql.Identifier(config.team_club), sql.Identifier(config.team_series),
        sql.Identifier(config.schema, config.table("teams"))))
    return {i: (lg, cl, se) for i, lg, cl, se in cur.fetchall()}


def unique_names(cur, config: PreservationConfig) -> bool:
    """True when the teams table has a unique index on exactly (team name, league)."""
    cur.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.indisunique AND n.nspname = %s AND c.relname = %s "
        "AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a "
        "     WHERE a.attrelid = c.oid AND a.attnum = ANY(i.indkey)) = %s)",
        (config.schema, config.table("teams"), sorted([config.team_name, config.team_league])))
    return cur.fetchone()[0]


def free_names(cur, config: PreservationConfig) -> list:
    """A team the import no longer names gives up its name to an imported team of its league
    (the legacy ETL deleted it; here it stays, retired, as ``name (retired #id)``); their ids."""
    cur.execute(sql.SQL(
        "UPDATE {t} t SET {n} = t.{n} || ' (retired #' || t.id || ')' FROM _bp_stage s "
        "WHERE s.c2::int = t.{lg} AND s.c3 = t.{n} AND s.id IS DISTINCT FROM t.id "
        "AND NOT EXISTS (SELECT 1 FROM _bp_stage s2 WHERE s2.id = t.id) RETURNING t.id").format(
        t=sql.Identifier(config.schema, config.table("teams")), n=sql.Identifier(config.team_name),
        lg=sql.Identifier(config.team_league)))
    return [r[0] for r in cur.fetchall()]
