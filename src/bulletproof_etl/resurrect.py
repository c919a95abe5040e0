"""Keeping an entity alive for a NOT NULL reference that no strategy could map.

The old row comes back from the ledger, inactive, with its old id; an id the ledger never
saw gets a clearly named placeholder. Rows are never deleted to make a reference valid.
This path runs only for ids nobody can map, so it works row by row.
"""

from __future__ import annotations

import logging

from psycopg2 import sql

from .config import PreservationConfig
from .snapshot import state
from .upsert import keep_sequence_ahead

logger = logging.getLogger(__name__)

PLACEHOLDER_LEAGUE = "UNKNOWN"
PLACEHOLDER_NAME = "(unknown {entity} {id})"


def _exists(cur, config, entity: str, id_) -> bool:
    cur.execute(sql.SQL("SELECT 1 FROM {} WHERE id = %s").format(
        sql.Identifier(config.schema, config.table(entity))), (id_,))
    return cur.fetchone() is not None


def _ledger_row(cur, config, entity: str, id_):
    cur.execute(sql.SQL("SELECT row FROM {} WHERE entity = %s AND id = %s").format(state(config, "ledger")),
                (entity, id_))
    found = cur.fetchone()
    return found[0] if found else None


def _insert_row(cur, config, entity: str, row: dict) -> None:
    tbl = sql.Identifier(config.schema, config.table(entity))
    cur.execute(
        sql.SQL("INSERT INTO {tbl} SELECT (jsonb_populate_record(NULL::{tbl}, %s::jsonb)).*").format(tbl=tbl),
        (_json(row),),
    )


def _json(row: dict) -> str:
    import json

    return json.dumps(row, default=str)


def _placeholder_parent(cur, config, entity: str, club_name: str = "(unknown club)") -> int:
    """A placeholder league, club or series (created once per name)."""
    if entity == "leagues":
        column, value, extra = config.league_code, PLACEHOLDER_LEAGUE, {config.league_name: "Unknown league"}
    elif entity == "clubs":
        column, value, extra = config.club_name, club_name, {}
    else:
        column, value, extra = config.series_name, "(unknown series)", {config.series_display: "(unknown series)"}
    tbl = sql.Identifier(config.schema, config.table(entity))
    cur.execute(sql.SQL("SELECT id FROM {} WHERE {} = %s").format(tbl, sql.Identifier(column)), (value,))
    found = cur.fetchone()
    if found:
        return found[0]
    cols = [column, *extra]
    cur.execute(
        sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id").format(
            tbl, sql.SQL(", ").join(sql.Identifier(c) for c in cols), sql.SQL(", ").join(sql.Placeholder() * len(cols))),
        [value, *extra.values()],
    )
    return cur.fetchone()[0]


def _bring_back(cur, config, entity: str, id_, emap: dict) -> None:
    row = _ledger_row(cur, config, entity, id_)
    if entity != "teams":
        if row is None:
            name_col = {"leagues": config.league_code, "clubs": config.club_name, "series": config.series_name}[entity]
            row = {"id": id_, name_col: PLACEHOLDER_NAME.format(entity=entity.rstrip("s"), id=id_)}
            if entity == "leagues":
                row[config.league_name] = row[name_col]
            if entity == "series":
                row[config.series_display] = row[name_col]
        _insert_row(cur, config, entity, row)
        return
    if row is None:
        row = {"id": id_, config.team_name: PLACEHOLDER_NAME.format(entity="team", id=id_),
               config.team_league: None, config.team_club: None, config.team_series: None}
        row[config.team_display] = row[config.team_name]
    row = dict(row)
    for parent, column in (("leagues", config.team_league), ("clubs", config.team_club),
                           ("series", config.team_series)):
        pid = row.get(column)
        if pid is not None and pid in emap.get(parent, {}):
            pid = emap[parent][pid][0]
        if pid is None or not _exists(cur, config, parent, pid):
            pid = _placeholder_parent(cur, config, parent)
        row[column] = pid
    row[config.team_active] = False
    # a live team may have taken the name meanwhile; the old one steps aside, visibly
    cur.execute(
        sql.SQL("SELECT 1 FROM {} WHERE {} = %s AND {} = %s").format(
            sql.Identifier(config.schema, config.table("teams")), sql.Identifier(config.team_name),
            sql.Identifier(config.team_league)),
        (row[config.team_name], row[config.team_league]),
    )
    if cur.fetchone():
        row[config.team_name] = f"{row[config.team_name]} (retired #{id_})"
    cur.execute(
        sql.SQL("SELECT 1 FROM {} WHERE {} = %s AND {} = %s AND {} = %s").format(
            sql.Identifier(config.schema, config.table("teams")), sql.Identifier(config.team_club),
            sql.Identifier(config.team_series), sql.Identifier(config.team_league)),
        (row[config.team_club], row[config.team_series], row[config.team_league]),
    )
    if cur.fetchone():  # the (club, series, league) slot is taken: keep it under a club of its own
        row[config.team_club] = _placeholder_parent(cur, config, "clubs", f"(club of retired team #{id_})")
    _insert_row(cur, config, "teams", row)


def resurrect(cur, config: PreservationConfig, needed: dict, emap: dict) -> dict:
    """Bring back every id in ``needed`` ({entity: ids}); parents before teams."""
    done: dict = {}
    for entity in ("leagues", "clubs", "series", "teams"):
        for id_ in sorted(needed.get(entity, ())):
            if _exists(cur, config, entity, id_):
                continue
            _bring_back(cur, config, entity, id_, emap)
            done.setdefault(entity, []).append(id_)
            logger.info("kept %s %s alive (inactive) for rows no strategy could map", entity, id_)
        if done.get(entity):
            keep_sequence_ahead(cur, config, entity)
    return done
