"""Row-level evidence for references that neither the ledger nor the old team's row explains.

Used when an id is unknown (a database the legacy ETL damaged before any snapshot, or a
reference that was already dangling). Three kinds of evidence, each accepted only when it
names exactly one current entity and no other evidence for the same id disagrees:

- names in rows (context): a text column that names the team its row points at, e.g.
  ``activity_log.details->>'team_name'``, ``videos.title`` ("Drills for Lakeview - 22"),
  the practice rows' ``schedule.home_team``. All rows pointing at one stale id must agree;
  the id is then mapped for every row that uses it.
- the row's own teams (context): a stale league or series id in a row that also points at
  a team (``practice_times.league_id`` beside ``team_id``), or whose user does
  (``player_availability.user_id`` -> ``users.team_id``), maps to that team's league or series.
- series named in a text plus the author's teams (content): per row, never per id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from psycopg2 import sql

from ..state import pk_json, relname, state
from . import strategies


@dataclass(frozen=True)
class NameHint:
    """A text column (or a key of a JSON column) that names the team ``reference_column`` points at."""

    table: str
    text_column: str
    reference_column: str
    json_key: str | None = None


DEFAULT_NAME_HINTS = (
    NameHint("activity_log", "details", "team_id", "team_name"),
    NameHint("videos", "title", "team_id"),
    NameHint("schedule", "home_team", "home_team_id"),
)
#: how a user's own teams are found besides the user table's team column (a config may
#: override it as ``membership``, and the name hints as ``name_hints``):
#: (link table, its user column, its player column, player table, player key column, player team column)
MEMBERSHIP = ("user_player_associations", "user_id", "tenniscores_player_id", "players",
              "tenniscores_player_id", "team_id")


def _dep(catalog, table: str, column: str):
    return next((d for d in catalog.user_dependents() if d.table == table and d.column == column), None)


def _flt(dep) -> tuple:
    if dep is not None and dep.filter_column:
        return sql.SQL(" AND {} ILIKE %s").format(sql.Identifier("t", dep.filter_column)), [dep.filter_pattern]
    return sql.SQL(""), []


def _live_and_snapshot(cur, config, catalog, run_id, table: str, dep, columns: list, ids) -> list:
    """``columns`` (plain column names, or (json column, key)) of live and snapshot rows whose
    ``dep.column`` is in ``ids``, with the row's pk as JSON first; live rows first."""
    live, snap = [], []
    for col in columns:
        if isinstance(col, tuple):
            live.append(sql.SQL("t.{}->>{}").format(sql.Identifier(col[0]), sql.Literal(col[1])))
            snap.append(sql.SQL("s.row->{}->>{}").format(sql.Literal(col[0]), sql.Literal(col[1])))
        else:
            live.append(sql.SQL("t.{}::text").format(sql.Identifier(col)))
            snap.append(sql.SQL("s.row->>{}").format(sql.Literal(col)))
    flt, params = _flt(dep)
    statement = sql.SQL("SELECT {pk}, {live} FROM {tbl} t WHERE t.{col} = ANY(%s){flt}").format(
        pk=pk_json(catalog.primary_keys[table], "t"), live=sql.SQL(", ").join(live),
        tbl=sql.Identifier(config.schema, table), col=sql.Identifier(dep.column), flt=flt)
    params = [list(ids), *params]
    if run_id is not None:
        statement = sql.SQL("{} UNION ALL SELECT s.pk, {} FROM {} s WHERE s.run_id = %s AND s.table_name = %s "
                            "AND (s.row->>%s)::bigint = ANY(%s)").format(
            statement, sql.SQL(", ").join(snap), state(config, "snap_rows"))
        params += [run_id, table, dep.column, list(ids)]
    cur.execute(statement, params)
    seen, out = set(), []
    for pk, *values in cur.fetchall():
        marker = json.dumps(pk, sort_keys=True)
        if marker not in seen:  # a live row wins over its own snapshot
            seen.add(marker)
            out.append((marker, *values))
    return out


def _agree(votes: dict) -> dict:
    """``{stale id: new id}`` for ids whose evidence names exactly one entity."""
    return {old: next(iter(new)) for old, new in votes.items() if len(new) == 1}


def names_in_rows(cur, config, catalog, run_id, stale: set, teams: list, hints=None) -> dict:
    """Stale team ids that rows name unanimously. ``teams``: ``(id, name, alias)`` of current teams."""
    if not stale:
        return {}
    index = strategies.name_index(teams)
    votes: dict = {}
    if hints is None:
        hints = getattr(config, "name_hints", None) or DEFAULT_NAME_HINTS
    for hint in hints:
        dep = _dep(catalog, hint.table, hint.reference_column)
        if dep is None or dep.entity != "teams" or hint.table not in catalog.primary_keys:
            continue
        text = (hint.text_column, hint.json_key) if hint.json_key else hint.text_column
        for _pk_value, ref, value in _live_and_snapshot(cur, config, catalog, run_id, hint.table, dep,
                                                         [hint.reference_column, text], stale):
            found = strategies.named_team(value, index)
            if found is not None:
                votes.setdefault(int(ref), set()).add(found)
    return _agree(votes)


def parents_from_teams(cur, config, catalog, run_id, entity: str, stale: set, team_now) -> dict:
    """Stale league or series ids mapped through the teams of their own rows (or users).

    ``team_now(id)`` gives the current team id a (possibly stale) team reference stands for,
    or None.
    """
    if not stale:
        return {}
    parent_col = {"leagues": config.team_league, "series": config.team_series}[entity]
    cur.execute(sql.SQL("SELECT id, {} FROM {}").format(
        sql.Identifier(parent_col), sql.Identifier(config.schema, config.table("teams"))))
    parent_of = dict(cur.fetchall())
    user_team = _user_teams(cur, config)
    votes: dict = {}
    deps = catalog.user_dependents()
    for dep in (d for d in deps if d.entity == entity and d.table in catalog.primary_keys):
        team_cols = [d.column for d in deps if d.table == dep.table and d.entity == "teams"]
        user_cols = [child_col for child, parent, child_col, _p in catalog.fk_edges
                     if child == dep.table and parent == config.user_table]
        if not team_cols and not user_cols:
            continue
        for row in _live_and_snapshot(cur, config, catalog, run_id, dep.table, dep,
                                      [dep.column, *team_cols, *user_cols], stale):
            ref, values = int(row[1]), row[2:]
            teams = [int(v) for v in values[:len(team_cols)] if v is not None]
            teams += [user_team[int(u)] for u in values[len(team_cols):] if u is not None and int(u) in user_team]
            for team in teams:
                now = team_now(team)
                if now is not None and parent_of.get(now) is not None:
                    votes.setdefault(ref, set()).add(parent_of[now])
    return _agree(votes)


def _user_teams(cur, config) -> dict:
    cur.execute(sql.SQL("SELECT id, {} FROM {} WHERE {} IS NOT NULL").format(
        sql.Identifier(config.user_team_column), sql.Identifier(config.schema, config.user_table),
        sql.Identifier(config.user_team_column)))
    return dict(cur.fetchall())


def _author_teams(cur, config, authors, keys: dict, team_now) -> dict:
    """Each author's current teams: their own team column (mapped) plus their players' teams."""
    out: dict = {}
    cur.execute(
        sql.SQL("SELECT id, {} FROM {} WHERE id = ANY(%s)").format(
            sql.Identifier(config.user_team_column), sql.Identifier(config.schema, config.user_table)),
        (list(authors),),
    )
    for uid, team in cur.fetchall():
        now = team_now(team) if team is not None else None
        if now is not None:
            out.setdefault(uid, set()).add(now)
    link, link_user, link_player, players, player_key, player_team = getattr(config, "membership", None) or MEMBERSHIP
    cur.execute("SELECT to_regclass(%s), to_regclass(%s)",
                (relname(config.schema, link), relname(config.schema, players)))
    if all(cur.fetchone()):
        cur.execute(
            sql.SQL("SELECT u.{lu}, p.{pt} FROM {link} u JOIN {players} p ON p.{pk} = u.{lp} "
                    "WHERE u.{lu} = ANY(%s) AND p.{pt} IS NOT NULL").format(
                lu=sql.Identifier(link_user), pt=sql.Identifier(player_team),
                link=sql.Identifier(config.schema, link), players=sql.Identifier(config.schema, players),
                pk=sql.Identifier(player_key), lp=sql.Identifier(link_player)),
            (list(authors),),
        )
        for uid, team in cur.fetchall():
            out.setdefault(uid, set()).add(team)
    return {u: [{"id": t, "key": keys.get(t)} for t in ts if keys.get(t)] for u, ts in out.items()}


def content_matches(cur, config, catalog, run_id, stale: set, keys: dict, team_now) -> dict:
    """``{(table, pk json, column): (stale id, new team id)}`` for text rows pointing at ``stale`` ids."""
    out: dict = {}
    if not stale:
        return out
    for hint in config.text_hints:
        for dep in (d for d in catalog.user_dependents() if d.table == hint.table and d.entity == "teams"):
            if hint.table not in catalog.primary_keys:
                continue
            columns = [dep.column, hint.text_column] + ([hint.author_column] if hint.author_column else [])
            rows = _live_and_snapshot(cur, config, catalog, run_id, hint.table, dep, columns, stale)
            authors = {int(r[3]) for r in rows if len(r) > 3 and r[3] is not None}
            teams_of = _author_teams(cur, config, authors, keys, team_now) if authors else {}
            for marker, ref, text, *author in rows:
                mine = teams_of.get(int(author[0]), []) if author and author[0] is not None else []
                new = strategies.content(text, mine, config)
                if new is not None:
                    out[(hint.table, marker, dep.column)] = (int(ref), new)
    return out
