"""Retiring teams an import no longer names, refusing an import that would retire too many, and
removing the entity rows nothing references any more.

A team absent from a full import is retired (``is_active = false``): users' rows may still
point at it. The team upsert retires at once (:func:`retire_staged`), or, in a protected ETL
run whose ETL may create teams after its team step, the run retires at its end
(:func:`retire_unnamed`). At the very end of a protected ETL run, after the restore,
:func:`remove_unreferenced` removes the retired teams and the leagues, clubs and series the
import no longer names that nothing references, as the legacy ETL removes them; the others stay.
"""

from __future__ import annotations

import logging

import psycopg2.errors
from psycopg2 import sql

from ..config import PreservationConfig
from ..errors import ImportRefused
from ..state import state, written_here

logger = logging.getLogger(__name__)


def _scope(config: PreservationConfig, league: str | None) -> tuple:
    if league is None:
        return sql.SQL("true"), ()
    return (
        sql.SQL("t.{lg} IN (SELECT id FROM {leagues} WHERE upper({code}) = upper(%s))").format(
            lg=sql.Identifier(config.team_league),
            leagues=sql.Identifier(config.schema, config.table("leagues")),
            code=sql.Identifier(config.league_code),
        ),
        (league,),
    )


def check_retirement(cur, config: PreservationConfig, league, force: bool, incoming: int) -> None:
    """Refuse an import that would retire every team, or more than the configured share."""
    scope, params = _scope(config, league)
    cur.execute(
        sql.SQL(
            "SELECT count(*) FILTER (WHERE s.id IS NULL), count(*) "
            "FROM {tbl} t LEFT JOIN (SELECT DISTINCT id FROM _bp_stage WHERE id IS NOT NULL) s ON s.id = t.id "
            "WHERE t.{active} AND {scope}"
        ).format(tbl=sql.Identifier(config.schema, config.table("teams")),
                 active=sql.Identifier(config.team_active), scope=scope),
        params,
    )
    retiring, total = cur.fetchone()
    if total == 0:  # a legacy clear emptied the table: measure against what the ledger saw last
        retiring, total = _ledger_baseline(cur, config, league)
    if incoming == 0 and total > 0 and not config.allow_empty_import and not force:
        raise ImportRefused(
            f"the import holds no teams and would retire all {total} active teams; "
            "refused (pass force=True or allow_empty_import=True if this is really wanted)",
            stage="upsert", retiring=retiring, total=total,
        )
    if total and retiring / total > config.max_retire_share and not force:
        raise ImportRefused(
            f"the import would retire {retiring} of {total} active teams "
            f"({retiring / total:.0%} > max_retire_share {config.max_retire_share:.0%}); refused "
            "(pass force=True to import anyway)",
            stage="upsert", retiring=retiring, total=total,
        )


def _ledger_baseline(cur, config: PreservationConfig, league) -> tuple:
    """``(absent from the import, total)`` among the active teams of the ledger's latest run
    (the snapshot of this run, taken before the legacy ETL deleted them: their ``last_run``
    is ``PRESENT``), within ``league``."""
    cur.execute(
        sql.SQL(
            "SELECT count(*) FILTER (WHERE s.key IS NULL), count(*) FROM {ledger} l "
            "LEFT JOIN (SELECT DISTINCT key FROM _bp_stage WHERE id IS NOT NULL) s ON s.key = l.key "
            "WHERE l.entity = 'teams' "
            "AND l.last_run = (SELECT max(last_run) FROM {ledger} WHERE entity = 'teams') "
            "AND coalesce((l.row->>%(active)s)::boolean, true) "
            "AND (%(league)s::text IS NULL OR l.key[1] = upper(%(league)s::text))"
        ).format(ledger=state(config, "ledger")),
        {"active": config.team_active, "league": league},
    )
    return cur.fetchone()


def retire_staged(cur, config: PreservationConfig, league) -> list:
    scope, params = _scope(config, league)
    cur.execute(
        sql.SQL(
            "UPDATE {tbl} t SET {active} = false WHERE t.{active} AND {scope} "
            "AND NOT EXISTS (SELECT 1 FROM _bp_stage s WHERE s.id = t.id) RETURNING t.id"
        ).format(tbl=sql.Identifier(config.schema, config.table("teams")),
                 active=sql.Identifier(config.team_active), scope=scope),
        params,
    )
    return [r[0] for r in cur.fetchall()]


def retire_unnamed(conn, config: PreservationConfig, catalog, league, named_ids, renamed_ids=()) -> list:
    """At the end of a run: retire the active teams (within ``league``) that the import did not
    name. Named are: the teams the import staged (``named_ids``), and the teams the run's ETL
    wrote after its team step or references from rows it wrote (a team it creates from its
    schedule, on every run). A team that gave up its name (``renamed_ids``) is not named.
    Returns the ids retired."""
    scope, params = _scope(config, league)
    used = [sql.SQL("EXISTS (SELECT 1 FROM {} e WHERE e.{} = t.id AND {})").format(
                sql.Identifier(config.schema, d.table), sql.Identifier(d.column), written_here("e"))
            for d in catalog.dependents if d.owner == "etl" and d.entity == "teams"]
    named_by_run = sql.SQL(" OR ").join([written_here("t"), *used])
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("UPDATE {tbl} t SET {active} = false WHERE t.{active} AND {scope} AND t.id <> ALL(%s) "
                    "AND (t.id = ANY(%s) OR NOT ({named})) RETURNING t.id").format(
                tbl=sql.Identifier(config.schema, config.table("teams")), active=sql.Identifier(config.team_active),
                scope=scope, named=named_by_run),
            [*params, list(named_ids), list(renamed_ids)],
        )
        return [r[0] for r in cur.fetchall()]


#: the order rows are removed in: teams first, their parents once no team of theirs is left
REMOVAL_ORDER = ("teams", "series", "clubs", "leagues")

_FOREIGN_KEYS = """
SELECT n.nspname, rel.relname, array_agg(a.attname::text ORDER BY a.attnum), con.conname
FROM pg_constraint con JOIN pg_class rel ON rel.oid = con.conrelid
JOIN pg_namespace n ON n.oid = rel.relnamespace
JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = ANY(con.conkey)
WHERE con.contype = 'f' AND con.confrelid = to_regclass(%s)
GROUP BY n.nspname, rel.relname, con.conname
"""


def _references(config: PreservationConfig, catalog, entity: str) -> list:
    """``[(schema, table, column)]`` that reference ``entity``: every dependent column the
    catalog knows (foreign keys and declared columns, user- and ETL-owned), and the parent
    columns of the other entity tables."""
    tables = {e: config.table(e) for e in REMOVAL_ORDER}
    out = {(d.schema, d.table, d.column) for d in catalog.dependents if d.entity == entity}
    for child, parent, column, *_rest in catalog.fk_edges:
        if parent == tables[entity] and child in tables.values():
            out.add((config.schema, child, column))
    if entity != "teams":
        column = {"leagues": config.team_league, "clubs": config.team_club, "series": config.team_series}[entity]
        out.add((config.schema, tables["teams"], column))
    return sorted(out)


def _unknown_keys(cur, config: PreservationConfig, entity: str, known: list) -> list:
    """Foreign keys to ``entity`` that ``known`` does not cover (another schema, several columns)."""
    cur.execute(_FOREIGN_KEYS, (".".join('"' + p.replace('"', '""') + '"'
                                         for p in (config.schema, config.table(entity))),))
    return [f"{schema}.{table}.{name}" for schema, table, columns, name in cur.fetchall()
            if len(columns) != 1 or (schema, table, columns[0]) not in known]


def remove_unreferenced(conn, config: PreservationConfig, catalog, league, named: dict) -> dict:
    """At the end of a run, after the restore: remove the entity rows the import no longer names
    and that nothing references any more, as the legacy ETL removes them; count the others.

    Not named are: inactive teams (within ``league``: retirement ran first), and leagues, clubs
    and series whose id is not in ``named[entity]`` (the rows the run's import steps wrote or
    found). Referenced means by any column in :func:`_references`, as it is now, so ETL rows
    the run re-imported count and those it cleared do not. A single-league run removes teams
    only (the legacy ETL keeps shared rows then). An entity with a foreign key the catalog does
    not cover is left alone. Returns ``{entity: {"removed": [ids], "kept_for_references": n}}``.
    """
    out = {}
    with conn.cursor() as cur:
        for entity in REMOVAL_ORDER:
            if entity != "teams" and (league is not None or entity not in named):
                continue
            known = _references(config, catalog, entity)
            unknown = _unknown_keys(cur, config, entity, known)
            used = sql.SQL(" OR ").join(
                sql.SQL("EXISTS (SELECT 1 FROM {} r WHERE r.{} = t.id)").format(
                    sql.Identifier(schema, table), sql.Identifier(column)) for schema, table, column in known)
            if entity == "teams":
                scope, params = _scope(config, league)
                unnamed = sql.SQL("NOT t.{} AND {}").format(sql.Identifier(config.team_active), scope)
            else:
                unnamed, params = sql.SQL("t.id <> ALL(%s)"), (sorted(named[entity]),)
            tbl = sql.Identifier(config.schema, config.table(entity))
            cur.execute(sql.SQL("SELECT count(*) FROM {} t WHERE {} AND ({})").format(tbl, unnamed, used), params)
            kept = cur.fetchone()[0]
            removed: list = []
            if unknown:
                cur.execute(sql.SQL("SELECT count(*) FROM {} t WHERE {}").format(tbl, unnamed), params)
                kept = cur.fetchone()[0]
                logger.warning("%s: not removing rows the import no longer names; foreign keys the catalog "
                               "does not cover reference it: %s", entity, ", ".join(unknown))
            else:
                removed, raced = _delete(cur, tbl, unnamed, used, params)
                kept += raced
            out[entity] = {"removed": removed, "kept_for_references": kept}
    return out


def _delete(cur, tbl, unnamed, used, params) -> tuple:
    """Delete the unreferenced rows in one statement; ``(ids removed, rows kept after all)``.

    A user who references one of them meanwhile (an insert that commits while the delete waits
    for its row lock) makes the statement fail on that foreign key: the rows are then deleted
    one at a time, each in a savepoint, and those referenced by now are kept."""
    delete = sql.SQL("DELETE FROM {} t WHERE {} AND NOT ({}) RETURNING t.id").format(tbl, unnamed, used)
    cur.execute("SAVEPOINT bp_remove")
    try:
        cur.execute(delete, params)
        removed = sorted(r[0] for r in cur.fetchall())
        cur.execute("RELEASE SAVEPOINT bp_remove")
        return removed, 0
    except psycopg2.errors.ForeignKeyViolation:
        cur.execute("ROLLBACK TO SAVEPOINT bp_remove")
        cur.execute("RELEASE SAVEPOINT bp_remove")
    cur.execute(sql.SQL("SELECT t.id FROM {} t WHERE {} AND NOT ({}) ORDER BY t.id").format(tbl, unnamed, used), params)
    removed, raced = [], 0
    one = sql.SQL("DELETE FROM {} t WHERE t.id = %s AND NOT ({})").format(tbl, used)
    for (id_,) in cur.fetchall():
        cur.execute("SAVEPOINT bp_remove")
        try:
            cur.execute(one, (id_,))
        except psycopg2.errors.ForeignKeyViolation:
            cur.execute("ROLLBACK TO SAVEPOINT bp_remove")
            raced += 1
        else:
            if cur.rowcount:
                removed.append(id_)
            else:
                raced += 1
        cur.execute("RELEASE SAVEPOINT bp_remove")
    logger.warning("%d row(s) were referenced while the run removed them: kept", raced)
    return removed, raced
