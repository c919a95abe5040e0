"""The row-by-row way of keeping ids alive (see :mod:`.revive`): a few statements per id.

It is the fallback for a batch that fails: each row is tried in a savepoint of its own, and a
ledger row a constraint refuses becomes a placeholder row with the same id.
"""

from __future__ import annotations

import json
import logging

import psycopg2
from psycopg2 import sql

from ..errors import BulletproofError
from ..state import state

logger = logging.getLogger(__name__)

PLACEHOLDER_LEAGUE = "UNKNOWN"
PLACEHOLDER_NAME = "(unknown {entity} {id})"
PARENTS = ("leagues", "clubs", "series")


class Keys:
    """Current ids by key per entity, kept up to date as rows come back."""

    def __init__(self, keys: dict) -> None:
        self.of = {e: dict(ids) for e, ids in keys.items()}
        self.by_key: dict = {}
        for entity, ids in keys.items():
            for i, k in ids.items():
                if k is not None:
                    self.by_key.setdefault(entity, {}).setdefault(k, []).append(i)

    def add(self, entity: str, id_, key) -> None:
        self.of.setdefault(entity, {})[id_] = key
        if key is not None:
            self.by_key.setdefault(entity, {}).setdefault(key, []).append(id_)


def _ledger(cur, config, entity: str, id_):
    cur.execute(sql.SQL("SELECT key, row FROM {} WHERE entity = %s AND id = %s").format(state(config, "ledger")),
                (entity, id_))
    found = cur.fetchone()
    return (tuple(found[0]) if found[0] else None, found[1]) if found else (None, None)


def _insert_row(cur, config, entity: str, row: dict) -> bool:
    """Insert a whole row with its id; False (and nothing written) if a constraint refuses it."""
    tbl = sql.Identifier(config.schema, config.table(entity))
    cur.execute("SAVEPOINT bp_revive")
    try:
        cur.execute(
            sql.SQL("INSERT INTO {tbl} SELECT (jsonb_populate_record(NULL::{tbl}, %s::jsonb)).*").format(tbl=tbl),
            (json.dumps(row, default=str),),
        )
    except psycopg2.Error as exc:
        cur.execute("ROLLBACK TO SAVEPOINT bp_revive")
        logger.warning("could not bring back %s %s: %s", entity, row.get("id"), str(exc).strip().splitlines()[0])
        return False
    cur.execute("RELEASE SAVEPOINT bp_revive")
    return True


def name_column(config, entity: str) -> str:
    return {"leagues": config.league_code, "clubs": config.club_name, "series": config.series_name}[entity]


def _placeholder_parent(cur, config, entity: str, name: str | None = None) -> int:
    """A placeholder league, club or series, created once per name."""
    column = name_column(config, entity)
    value = name or {"leagues": PLACEHOLDER_LEAGUE, "clubs": "(unknown club)", "series": "(unknown series)"}[entity]
    extra = {"leagues": {config.league_name: "Unknown league"}, "clubs": {},
             "series": {config.series_display: value}}[entity]
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


def _bring_back_parent(cur, config, entity: str, id_, keys: Keys) -> bool:
    """A league, club or series from its ledger row (True), or a placeholder row with its id."""
    key, row = _ledger(cur, config, entity, id_)
    if row is not None and _insert_row(cur, config, entity, row):
        keys.add(entity, id_, key)
        return True
    name = PLACEHOLDER_NAME.format(entity=entity.rstrip("s"), id=id_)
    row = {"id": id_, name_column(config, entity): name}
    if entity == "leagues":
        row[config.league_name] = name
    if entity == "series":
        row[config.series_display] = name
    if not _insert_row(cur, config, entity, row):
        raise BulletproofError(f"cannot create a placeholder {entity} with id {id_}", stage="restore")
    keys.add(entity, id_, None)
    return False


def _parent_now(cur, config, entity: str, old, emap: dict, keys: Keys, done: dict):
    """Where the parent ``old`` of a team that comes back is now (its key decides)."""
    if old is None:
        return _placeholder_parent(cur, config, entity)
    if old in emap.get(entity, {}):
        return emap[entity][old][0]
    led_key, led_row = _ledger(cur, config, entity, old)
    if old in keys.of.get(entity, {}) and (led_key is None or keys.of[entity][old] == led_key):
        return old
    if led_key is not None:
        ids = keys.by_key.get(entity, {}).get(led_key, [])
        if len(ids) == 1:
            return ids[0]
        if ids:  # rows differing only in case or spacing: any gives the team the same key
            return _same_name_first(cur, config, entity, ids, led_row.get(name_column(config, entity)) if led_row else None)
    if old not in keys.of.get(entity, {}) and led_key is not None:
        if _bring_back_parent(cur, config, entity, old, keys):
            done.setdefault(entity, []).append(old)
            return old
    return _placeholder_parent(cur, config, entity)


def _same_name_first(cur, config, entity: str, ids: list, name):
    cur.execute(sql.SQL("SELECT id FROM {} WHERE id = ANY(%s) ORDER BY {} = %s DESC, id LIMIT 1").format(
        sql.Identifier(config.schema, config.table(entity)), sql.Identifier(name_column(config, entity))),
        (ids, name))
    return cur.fetchone()[0]


def _taken(cur, config, columns: dict) -> bool:
    tbl = sql.Identifier(config.schema, config.table("teams"))
    where = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in columns)
    cur.execute(sql.SQL("SELECT 1 FROM {} WHERE {}").format(tbl, where), list(columns.values()))
    return cur.fetchone() is not None


def _bring_back_team(cur, config, id_, emap: dict, keys: Keys, done: dict) -> None:
    key, row = _ledger(cur, config, "teams", id_)
    if row is None:
        row = {"id": id_, config.team_name: PLACEHOLDER_NAME.format(entity="team", id=id_),
               config.team_league: None, config.team_club: None, config.team_series: None}
        row[config.team_display] = row[config.team_name]
    row = dict(row)
    for parent, column in (("leagues", config.team_league), ("clubs", config.team_club),
                           ("series", config.team_series)):
        old = row.get(column) if key is not None else None
        row[column] = _parent_now(cur, config, parent, old, emap, keys, done)
    row[config.team_active] = False
    # a live team may have taken the name meanwhile; the old one steps aside, visibly
    if _taken(cur, config, {config.team_name: row[config.team_name], config.team_league: row[config.team_league]}):
        row[config.team_name] = f"{row[config.team_name]} (retired #{id_})"
    slot = {config.team_club: row[config.team_club], config.team_series: row[config.team_series],
            config.team_league: row[config.team_league]}
    if _taken(cur, config, slot):  # only with duplicate keys; the old team keeps a club of its own
        row[config.team_club] = _placeholder_parent(cur, config, "clubs", f"(club of retired team #{id_})")
    if not _insert_row(cur, config, "teams", row):
        raise BulletproofError(f"cannot bring back team {id_}", stage="restore")
    keys.add("teams", id_, key)


def one_by_one(cur, config, needed: dict, emap: dict, keys: dict) -> dict:
    """The row-by-row path: a few statements per id; the fallback for a batch that fails."""
    known = Keys(keys)
    done: dict = {}
    for entity in (*PARENTS, "teams"):
        tbl = sql.Identifier(config.schema, config.table(entity))
        for id_ in sorted(needed.get(entity, ())):
            cur.execute(sql.SQL("SELECT 1 FROM {} WHERE id = %s").format(tbl), (id_,))
            if cur.fetchone():
                continue
            if entity == "teams":
                _bring_back_team(cur, config, id_, emap, known, done)
            else:
                _bring_back_parent(cur, config, entity, id_, known)
            done.setdefault(entity, []).append(id_)
    return done
