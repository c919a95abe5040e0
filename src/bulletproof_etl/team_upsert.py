"""The team upsert: parents first, then teams by natural key, then retirement.

A team absent from a full import is retired (``is_active = false``), never deleted: users'
rows may still point at it.
"""

from __future__ import annotations

import logging

import psycopg2
from psycopg2 import sql

from .catalog import current_keys
from .config import PreservationConfig
from .errors import ImportRefused
from .upsert import (
    UpsertResult,
    _collect,
    _ledger_ids,
    _new_ids,
    _run_upsert,
    _stage,
    keep_sequence_ahead,
    team_rows,
    upsert_entities,
)

logger = logging.getLogger(__name__)

_TEAM_STAGE_COLS = ("club_id", "series_id", "league_id", "team_name", "team_alias", "display_name")


def ensure_parents(conn, config: PreservationConfig, records: list, current: dict) -> dict:
    """Make sure every league, club and series the teams name exists (old ids re-used)."""
    results = {}
    wanted = {
        "leagues": {r.league_code: {config.league_code: r.league_code} for r in records},
        "clubs": {config.entity_key("clubs", r.club_name): {config.club_name: r.club_name} for r in records},
        "series": {config.entity_key("series", r.series_name): {config.series_name: r.series_name}
                   for r in records},
    }
    for entity, items in wanted.items():
        known = {k for k in current[entity].values() if k is not None}
        missing = [rec for key, rec in items.items() if config.entity_key(entity, *_first(rec)) not in known]
        if missing:
            results[entity] = upsert_entities(conn, config, entity, missing, current[entity])
            for key, id_ in results[entity].ids.items():
                current[entity][id_] = key
    return results


def _first(record: dict):
    return (next(iter(record.values())),)


def upsert_teams(conn, config: PreservationConfig, records: list, *, league: str | None = None,
                 force: bool = False) -> tuple:
    """Upsert validated :class:`TeamRecord` items; returns (UpsertResult, parent results, keys)."""
    current = current_keys(conn, config)
    parent_results = ensure_parents(conn, config, records, current)
    parents = {e: {k: i for i, k in current[e].items() if k is not None} for e in ("leagues", "clubs", "series")}
    result = UpsertResult("teams", read=len(records))
    rows = team_rows(records, config, parents, current["teams"], result)
    tbl = sql.Identifier(config.schema, config.table("teams"))
    cols = [config.team_club, config.team_series, config.team_league, config.team_name,
            config.team_alias, config.team_display]
    ident = [sql.Identifier(c) for c in cols]
    active = sql.Identifier(config.team_active)
    with conn.cursor() as cur:
        _stage(cur, _TEAM_STAGE_COLS, rows)
        _ledger_ids(cur, config, "teams")
        _new_ids(cur, config, "teams")
        _check_retirement(cur, config, league, force, len(rows))
        updated_at = (sql.SQL(", {} = now()").format(sql.Identifier(config.team_updated_at))
                      if config.team_updated_at else sql.SQL(""))
        statement = sql.SQL(
            "INSERT INTO {tbl} AS t (id, {cols}, {active}) "
            "SELECT s.id, s.c0::int, s.c1::int, s.c2::int, s.c3, coalesce(s.c4, cur.{alias}), "
            "coalesce(s.c5, cur.{display}, s.c3), true "
            "FROM _bp_stage s LEFT JOIN {tbl} cur ON cur.id = s.id ORDER BY s.ord "
            "ON CONFLICT (id) DO UPDATE SET ({cols}, {active}) = ROW({excl}, true){updated_at} "
            "WHERE ({tcols}, t.{active}) IS DISTINCT FROM ({excl}, true) RETURNING t.id, (xmax = 0)"
        ).format(
            tbl=tbl, cols=sql.SQL(", ").join(ident), active=active,
            alias=sql.Identifier(config.team_alias), display=sql.Identifier(config.team_display),
            excl=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(c) for c in ident),
            tcols=sql.SQL(", ").join(sql.SQL("t.{}").format(c) for c in ident),
            updated_at=updated_at,
        )
        _run_upsert(conn, cur, statement, result)
        if result.path == "manual":
            _manual_teams(cur, config, result)
        _collect(cur, result)
        result.retired_ids = _retire(cur, config, league)
        result.retired = len(result.retired_ids)
        keep_sequence_ahead(cur, config, "teams")
    return result, parent_results


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


def _check_retirement(cur, config: PreservationConfig, league, force: bool, incoming: int) -> None:
    """Refuse an import that would retire every team, or more than the configured share."""
    scope, params = _scope(config, league)
    cur.execute(
        sql.SQL(
            "SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM _bp_stage s WHERE s.id = t.id)), count(*) "
            "FROM {tbl} t WHERE t.{active} AND {scope}"
        ).format(tbl=sql.Identifier(config.schema, config.table("teams")),
                 active=sql.Identifier(config.team_active), scope=scope),
        params,
    )
    retiring, total = cur.fetchone()
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


def _retire(cur, config: PreservationConfig, league) -> list:
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


def _manual_teams(cur, config: PreservationConfig, result: UpsertResult) -> None:
    """Row by row inside savepoints: update the row with the id, else insert it."""
    tbl = sql.Identifier(config.schema, config.table("teams"))
    cols = [config.team_club, config.team_series, config.team_league, config.team_name]
    ident = sql.SQL(", ").join(sql.Identifier(c) for c in cols)
    cur.execute("SELECT ord, id, c0::int, c1::int, c2::int, c3, c4, c5 FROM _bp_stage ORDER BY ord")
    for ord_, id_, club, series, league, name, alias, display in cur.fetchall():
        cur.execute("SAVEPOINT bp_row")
        try:
            cur.execute(
                sql.SQL(
                    "UPDATE {tbl} t SET ({cols}, {alias}, {display}, {active}) = "
                    "(%s, %s, %s, %s, coalesce(%s, t.{alias}), coalesce(%s, t.{display}), true) "
                    "WHERE t.id = %s AND (({cols}, {active}) IS DISTINCT FROM (%s, %s, %s, %s, true))"
                ).format(tbl=tbl, cols=ident, alias=sql.Identifier(config.team_alias),
                         display=sql.Identifier(config.team_display),
                         active=sql.Identifier(config.team_active)),
                (club, series, league, name, alias, display, id_, club, series, league, name),
            )
            if cur.rowcount:
                result.updated += 1
            else:
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {tbl} (id, {cols}, {alias}, {display}, {active}) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, true) ON CONFLICT (id) DO NOTHING"
                    ).format(tbl=tbl, cols=ident, alias=sql.Identifier(config.team_alias),
                             display=sql.Identifier(config.team_display),
                             active=sql.Identifier(config.team_active)),
                    (id_, club, series, league, name, alias, display or name),
                )
                if cur.rowcount:
                    result.created += 1
                else:
                    result.unchanged += 1
            cur.execute("RELEASE SAVEPOINT bp_row")
        except psycopg2.Error as exc:
            cur.execute("ROLLBACK TO SAVEPOINT bp_row")
            diag = getattr(exc, "diag", None)
            result.errors.append({
                "record": ord_, "team_name": name,
                "constraint": getattr(diag, "constraint_name", None),
                "error": str(exc).strip().splitlines()[0],
            })
            # a failed new row gets no id; a failed existing row keeps its id (and is not retired)
            cur.execute("UPDATE _bp_stage SET id = NULL WHERE ord = %s AND NOT existed", (ord_,))
