"""Telling apart the teams the ETL keeps apart although they share a natural key.

The ETL's identity of a team is its league, club and series rows; the natural key
canonicalises the series, so ``Division 10`` and ``S10`` of one club share a key. Within one
import the second such team gets a variant key (``10 [s10]``), stable from one import to the
next, and, where the table has a unique team name per league, the ETL's own disambiguated
name ``name (series)``.
"""

from __future__ import annotations

import psycopg2.errors
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


def respell_parents(conn, config: PreservationConfig, entity: str, wanted: dict, current: dict, result) -> dict:
    """The row of each parent key the teams name takes the teams' spelling, as the ETL writes it
    (``LifeSport-Lshire`` becomes ``Lifesport-Lshire``; a series' display name that only repeated
    its name follows it). Where several rows hold the key, the one already spelled so is used.
    A rename that a unique constraint refuses keeps the old spelling (``result.kept_spelling``).
    Only rows whose name differs are written. Returns ``{key: id}`` of the rows the teams use;
    ``result.spelled`` gets ``{name: id}`` of the rows of keys that several rows hold."""
    column = {"leagues": config.league_code, "clubs": config.club_name, "series": config.series_name}[entity]
    ids_of: dict = {}
    for id_, key in current.items():
        if key in wanted:
            ids_of.setdefault(key, []).append(id_)
    if not ids_of:
        return {}
    tbl, col = sql.Identifier(config.schema, config.table(entity)), sql.Identifier(column)
    chosen: dict = {}
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT id, {} FROM {} WHERE id = ANY(%s)").format(col, tbl),
                    ([i for ids in ids_of.values() for i in ids],))
        names = dict(cur.fetchall())
        renames = []
        for key, ids in ids_of.items():
            want = wanted[key][column]
            if len(ids) > 1:  # a key held by several rows (a legacy import): a team uses its spelling's
                result.spelled.update((names[i], i) for i in sorted(ids, reverse=True) if i in names)
            exact = sorted(i for i in ids if names.get(i) == want)
            chosen[key] = exact[0] if exact else min(ids)
            if not exact:
                renames.append((chosen[key], want))
        display = (sql.SQL(", {d} = CASE WHEN {d} = {c} THEN %(new)s ELSE {d} END").format(
            d=sql.Identifier(config.series_display), c=col) if entity == "series" else sql.SQL(""))
        update = sql.SQL("UPDATE {t} SET {c} = %(new)s{display} WHERE id = %(id)s AND {c} IS DISTINCT FROM %(new)s"
                         ).format(t=tbl, c=col, display=display)
        for id_, want in sorted(renames):
            cur.execute("SAVEPOINT bp_respell")
            try:
                cur.execute(update, {"new": want, "id": id_})
            except psycopg2.errors.UniqueViolation as exc:
                cur.execute("ROLLBACK TO SAVEPOINT bp_respell")
                result.kept_spelling.append({"id": id_, "kept": names.get(id_), "import": want,
                                             "constraint": exc.diag.constraint_name})
            else:
                result.respelled += cur.rowcount  # counted unchanged by the caller: updated instead
                result.updated += cur.rowcount
                result.unchanged -= cur.rowcount
            cur.execute("RELEASE SAVEPOINT bp_respell")
    return chosen
