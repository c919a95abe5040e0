"""Retiring teams an import no longer names, and refusing an import that would retire too many.

A team absent from a full import is retired (``is_active = false``), never deleted: users'
rows may still point at it. The team upsert retires at once (:func:`retire_staged`), or, in a
protected ETL run whose ETL may create teams after its team step, the run retires at its end
(:func:`retire_unnamed`).
"""

from __future__ import annotations

from psycopg2 import sql

from ..config import PreservationConfig
from ..errors import ImportRefused
from ..state import state, written_here


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
