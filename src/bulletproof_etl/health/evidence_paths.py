"""Evidence for a stale id, from the schema's own relationships (found in the catalog).

For every user row that holds a stale id, what the database says about the entity the row
meant, as sets of current candidates, one set per path:

- ``author``: the row's user column (a foreign key to the user table, a column declared in
  ``config.user_columns``, or the user table's own primary key) -> the table that joins
  users to the ETL's players by the players' stable key (found from the catalog: a table
  with a foreign key to users and a column of a unique key of a table with a foreign key to
  teams; or ``config.membership``) -> those players' current teams. A user column named for
  a role (``initiator_user_id``) speaks only for the entity column of the same role
  (``initiator_team_id``) when the table has several.
- ``text``: every text or JSON column of the row, read for the full name of a current team,
  or for a club and a series together (word-bounded, canonicalised); a club alone or a
  series alone only narrows the other paths (a filter, never a vote).
- ``row_team`` and ``user_team`` (leagues and series only): the row's own team columns, and
  its user's team column, through the team map found so far (``team_now``).
- a parent column of the same row that points at a current league, club or series narrows
  the candidate teams (a filter).

Leagues and series follow their teams: each team candidate stands for its league or series.
Read-only; the votes over these sets are in :mod:`.evidence_votes`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from psycopg2 import sql

from ..state import pk_json, state
from . import evidence_text

_TEXT_TYPES = ("text", "character varying", "character", "json", "jsonb")
_ENTITY_COLUMN = {"leagues": "team_league", "series": "team_series", "clubs": "team_club"}


@dataclass
class RowEvidence:
    """What one row says about the stale id in one of its columns."""

    table: str
    pk: str  # the primary key as JSON text
    column: str
    old: int
    paths: dict = field(default_factory=dict)  # path -> frozenset of candidate ids
    filters: dict = field(default_factory=dict)  # filter -> frozenset of candidate ids


@dataclass
class Schema:
    """The paths the catalog offers: user columns, the membership join, text columns."""

    user_columns: dict  # table -> [user column]
    membership: list  # [(link, link user col, link key col, players, players key col, players team col)]
    text_columns: dict  # table -> [column]
    columns: dict  # table -> {column: type}


def read_schema(cur, config, catalog) -> Schema:
    cur.execute("SELECT c.relname, a.attname, format_type(a.atttypid, NULL) FROM pg_attribute a "
                "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped",
                (config.schema,))
    columns: dict = {}
    for table, column, kind in cur.fetchall():
        columns.setdefault(table, {})[column] = kind
    users = config.user_table
    user_columns: dict = {}
    for child, parent, child_col, _parent_col in catalog.fk_edges:
        if parent == users and child != users:
            user_columns.setdefault(child, []).append(child_col)
    for table, column in config.user_columns:
        if column in columns.get(table, {}) and column not in user_columns.get(table, []):
            user_columns.setdefault(table, []).append(column)
    user_columns.setdefault(users, []).extend(catalog.primary_keys.get(users, [])[:1])
    text_columns = {t: [c for c, k in cols.items() if k in _TEXT_TYPES] for t, cols in columns.items()}
    return Schema(user_columns, _membership(config, catalog, columns, user_columns), text_columns, columns)


def _membership(config, catalog, columns: dict, user_columns: dict) -> list:
    if getattr(config, "membership", None):
        return [tuple(config.membership)]
    teams = config.table("teams")
    entity_tables = {config.table(e) for e in ("leagues", "clubs", "series", "teams")}
    team_fk: dict = {}
    for child, parent, child_col, _p in catalog.fk_edges:
        if parent == teams and child not in entity_tables:
            team_fk.setdefault(child, []).append(child_col)
    found = []
    for link, link_users in sorted(user_columns.items()):
        if link == config.user_table or len(link_users) != 1 or link in team_fk:
            continue
        for players, team_cols in sorted(team_fk.items()):
            if len(team_cols) != 1 or players == link:
                continue
            unique = {c for cols in catalog.unique_sets.get(players, []) for c in cols}
            for key in sorted(set(columns.get(link, {})) & unique - {link_users[0]}):
                if columns[link][key] in _TEXT_TYPES[:3] and columns[players].get(key) == columns[link][key]:
                    found.append((link, link_users[0], key, players, key, team_cols[0]))
    return found


def _role(column: str, suffix: str) -> str:
    return column[: -len(suffix)].rstrip("_") if column.endswith(suffix) and column != suffix else ""


def paired_user_columns(schema: Schema, config, catalog, table: str, column: str, entity: str) -> list:
    """The user columns that speak for ``table.column``: all of them when the table has one
    column of the entity, else a generic one (``user_id``) or one of the same role."""
    mine = schema.user_columns.get(table, [])
    if table == config.user_table:
        return mine
    same = [d.column for d in catalog.user_dependents() if d.table == table and d.entity == entity]
    if len(same) <= 1:
        return mine
    role = column.split("_")[0]
    return [u for u in mine if not _role(u, "user_id") or _role(u, "user_id") == role]


@dataclass
class Current:
    """The current teams and what names them."""

    parent: dict  # entity -> {team id: parent id}
    teams: evidence_text.NameIndex
    clubs: evidence_text.NameIndex
    club_teams: dict  # club id -> {team ids}
    series_teams: dict  # canonical series -> {team ids}
    parent_teams: dict  # (entity, parent id) -> {team ids}


def read_current(cur, config) -> Current:
    names = [c for c in (config.team_name, config.team_alias, config.team_display) if c]  # optional ones may be None
    names += [config.team_name] * (3 - len(names))
    cur.execute(sql.SQL("SELECT t.id, t.{n}, t.{a}, t.{d}, t.{c}, t.{s}, t.{lg}, s.{sn} FROM {teams} t "
                        "LEFT JOIN {series} s ON s.id = t.{s} WHERE t.{act}").format(
        n=sql.Identifier(names[0]), a=sql.Identifier(names[1]),
        d=sql.Identifier(names[2]), c=sql.Identifier(config.team_club),
        s=sql.Identifier(config.team_series), lg=sql.Identifier(config.team_league),
        sn=sql.Identifier(config.series_name), act=sql.Identifier(config.team_active),
        teams=sql.Identifier(config.schema, config.table("teams")),
        series=sql.Identifier(config.schema, config.table("series"))))
    rows = cur.fetchall()
    parent: dict = {"clubs": {}, "series": {}, "leagues": {}}
    series_teams: dict = {}
    parent_teams: dict = {}
    for tid, _n, _a, _d, club, series, league, series_name in rows:
        for entity, pid in (("clubs", club), ("series", series), ("leagues", league)):
            parent[entity][tid] = pid
            parent_teams.setdefault((entity, pid), set()).add(tid)
        if series_name:
            series_teams.setdefault(config.series_canonicaliser(None, series_name), set()).add(tid)
    cur.execute(sql.SQL("SELECT id, {} FROM {}").format(
        sql.Identifier(config.club_name), sql.Identifier(config.schema, config.table("clubs"))))
    clubs = evidence_text.name_index(cur.fetchall())
    return Current(parent, evidence_text.name_index([(r[0], r[1], r[2], r[3]) for r in rows]), clubs,
                   dict(parent_teams_of(parent_teams, "clubs")), series_teams, parent_teams)


def parent_teams_of(parent_teams: dict, entity: str):
    return ((pid, tids) for (e, pid), tids in parent_teams.items() if e == entity)


def text_teams(text: str | None, current: Current, config) -> tuple:
    """``(named teams, club filter, series filter)`` of one text; empty sets when it names none."""
    teams = evidence_text.named_ids(text, current.teams)
    if teams or not text:
        return frozenset(teams), frozenset(), frozenset()
    clubs = evidence_text.named_ids(text, current.clubs)
    club_teams = set().union(*(current.club_teams.get(c, set()) for c in clubs)) if clubs else set()
    refs = evidence_text.series_references(text, config)
    series_teams = set().union(*(current.series_teams.get(r, set()) for r in refs)) if refs else set()
    if club_teams and series_teams and club_teams & series_teams:
        return frozenset(club_teams & series_teams), frozenset(), frozenset()
    return frozenset(), frozenset(club_teams), frozenset(series_teams)


def user_teams(cur, config, schema: Schema, users) -> dict:
    """``{user id: {current team ids}}`` through the membership join. A user linked to a
    player the current data has no team for gets ``None`` among their teams: the user's
    rows may mean that player's team, which is gone, so this path alone cannot name one."""
    out: dict = {}
    if not users:
        return out
    for link, link_user, link_key, players, player_key, player_team in schema.membership:
        cur.execute(
            sql.SQL("SELECT l.{lu}, p.{pt} FROM {link} l LEFT JOIN {players} p ON p.{pk} = l.{lk} "
                    "WHERE l.{lu} = ANY(%s)").format(
                lu=sql.Identifier(link_user), pt=sql.Identifier(player_team),
                link=sql.Identifier(config.schema, link), players=sql.Identifier(config.schema, players),
                pk=sql.Identifier(player_key), lk=sql.Identifier(link_key)),
            (sorted(users),))
        for uid, team in cur.fetchall():
            out.setdefault(uid, set()).add(team)
    return out


def holding_rows(cur, config, catalog, run_id, dep, stale) -> list:
    """``(pk JSON text, row dict)`` of live rows, and of snapshot rows gone since, whose
    ``dep.column`` holds one of ``stale``."""
    flt, params = sql.SQL(""), []
    if dep.filter_column:
        flt, params = sql.SQL(" AND t.{} ILIKE %s").format(sql.Identifier(dep.filter_column)), [dep.filter_pattern]
    cur.execute(sql.SQL("SELECT {pk}, to_jsonb(t) FROM {tbl} t WHERE t.{col} = ANY(%s){flt}").format(
        pk=pk_json(catalog.primary_keys[dep.table], "t"), tbl=sql.Identifier(config.schema, dep.table),
        col=sql.Identifier(dep.column), flt=flt), [sorted(stale), *params])
    out, seen = [], set()
    for pk, row in cur.fetchall():
        marker = json.dumps(pk, sort_keys=True)
        seen.add(marker)
        out.append((marker, row))
    if run_id is not None:
        cur.execute(sql.SQL("SELECT pk, row FROM {} WHERE run_id = %s AND table_name = %s "
                            "AND (row->>%s)::bigint = ANY(%s)").format(state(config, "snap_rows")),
                    (run_id, dep.table, dep.column, sorted(stale)))
        for pk, row in cur.fetchall():
            marker = json.dumps(pk, sort_keys=True)
            if marker not in seen:  # a live row wins over its own snapshot
                seen.add(marker)
                out.append((marker, row))
    return out


def _int(value):
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def collect(cur, config, catalog, run_id, entity: str, stale, *, team_now=None, schema=None,
            current=None) -> dict:
    """``{stale id: [RowEvidence]}`` for every user row holding one of ``stale`` (an entity's ids).

    ``team_now(id)``: the current team a (possibly stale) team id stands for, or None; used
    for leagues and series (their rows' own teams and their users' teams).
    """
    stale = set(stale)
    out: dict = {old: [] for old in stale}
    if not stale:
        return out
    schema = schema or read_schema(cur, config, catalog)
    current = current or read_current(cur, config)
    deps = [d for d in catalog.user_dependents() if d.entity == entity and d.table in catalog.primary_keys]
    fetched = [(dep, holding_rows(cur, config, catalog, run_id, dep, stale)) for dep in deps]
    users = set()
    for dep, rows in fetched:
        for _pk, row in rows:
            users.update(_int(row.get(u)) for u in schema.user_columns.get(dep.table, []))
    users.discard(None)
    teams_of_user = user_teams(cur, config, schema, users)
    own_team: dict = {}
    if (entity != "teams" and team_now is not None and users and config.user_team_column
            and config.user_team_column in schema.columns.get(config.user_table, {})):
        cur.execute(sql.SQL("SELECT id, {} FROM {} WHERE id = ANY(%s)").format(
            sql.Identifier(config.user_team_column), sql.Identifier(config.schema, config.user_table)),
            (sorted(users),))
        own_team = {u: team_now(t) for u, t in cur.fetchall() if t is not None}
    if entity == "teams":
        def lift(teams):
            return frozenset(teams)
    else:  # a team stands for its league or series; None (a team that is gone) stays unknown
        def lift(teams):
            return frozenset(None if t is None else current.parent[entity].get(t) for t in teams)
    all_deps = catalog.user_dependents()
    for dep, rows in fetched:
        paired = paired_user_columns(schema, config, catalog, dep.table, dep.column, entity)
        team_cols = [d.column for d in all_deps if d.table == dep.table and d.entity == "teams"]
        parent_cols = [(d.column, d.entity) for d in all_deps
                       if d.table == dep.table and d.entity != "teams" and d.column != dep.column]
        for marker, row in rows:
            old = _int(row.get(dep.column))
            if old not in stale:
                continue
            ev = RowEvidence(dep.table, marker, dep.column, old)
            author = set()
            for u in paired:
                author |= teams_of_user.get(_int(row.get(u)), set())
            if author:
                ev.paths["author"] = lift(author)
            named, clubs, series = set(), set(), set()
            for column in schema.text_columns.get(dep.table, []):
                found = text_teams(evidence_text.flatten(row.get(column)), current, config)
                named |= found[0]
                clubs |= found[1]
                series |= found[2]
            if named:
                ev.paths["text"] = lift(named)
            for name, teams in (("text_club", clubs), ("text_series", series)):
                if teams:
                    ev.filters[name] = lift(teams)
            if entity != "teams" and team_now is not None:
                mine = {team_now(_int(row.get(c))) for c in team_cols if row.get(c) is not None} - {None}
                if mine:
                    ev.paths["row_team"] = lift(mine)
                theirs = {own_team.get(_int(row.get(u))) for u in paired} - {None}
                if theirs:
                    ev.paths["user_team"] = lift(theirs)
            for column, parent in parent_cols:  # a current parent in the same row narrows the teams
                pid = _int(row.get(column))
                teams = current.parent_teams.get((parent, pid)) if parent != "teams" else None
                if teams:
                    ev.filters["row_" + parent] = lift(teams)
            out[old].append(ev)
    return out
