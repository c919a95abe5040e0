"""Keeping an entity alive, with its old id, for references no strategy maps elsewhere.

Two cases. A team (or league, club, series) the ledger knows but that no row holds now
comes back from its ledger row, inactive, with its old id: its key is still the right
answer for the rows that point at it (G4). Its parents are found by their own ledger keys
(the club the team had, wherever its id is now), or come back the same way. An id that
nobody ever recorded, but that a NOT NULL column needs, gets a clearly named placeholder
("(unknown team 17)") so the row stays valid; such rows are also quarantined. Rows are
never deleted to make a reference valid.

After a season with churn that is thousands of teams, so it is done set-based (``_Batch``):
the rows the ledger has are read at once, parents and name or slot conflicts are settled in
Python in id order, exactly as the row-by-row path decides them, and each table gets one
insert. A batch that fails (a constraint the plan did not foresee) is undone to its
savepoint and the row-by-row path, which copes with every such row, runs instead.
"""

from __future__ import annotations

import json
import logging

import psycopg2
from psycopg2 import sql

from ..config import PreservationConfig
from ..identity.upsert import keep_sequence_ahead
from ..state import state
from .revive_row_by_row import (
    PARENTS,
    PLACEHOLDER_LEAGUE,
    PLACEHOLDER_NAME,
    Keys,
    name_column,
    one_by_one,
)

logger = logging.getLogger(__name__)


class _Fallback(Exception):
    """A case the batch leaves to the row-by-row path (which handles every case)."""


_PLACEHOLDER = "placeholder"  # a token ("placeholder", entity, name) until the row has an id


class _Batch:
    """The set-based path: reads, then decisions in id order in Python, then one insert per table."""

    def __init__(self, cur, config, emap: dict, keys: dict) -> None:
        self.cur, self.config, self.emap = cur, config, emap
        self.known = Keys(keys)
        self.done: dict = {}
        self.ledger: dict = {}  # (entity, id) -> (key, row)
        self.rows: dict = {e: [] for e in PARENTS}  # parent rows to insert with their ids
        self.names: dict = {e: {} for e in PARENTS}  # id -> name, for rows sharing a key
        self.wanted: dict = {e: {} for e in PARENTS}  # placeholder name -> (first need, None or id)

    def _tbl(self, entity: str) -> sql.Composed:
        return sql.Identifier(self.config.schema, self.config.table(entity))

    def _read_ledger(self, pairs) -> None:
        pairs = sorted({p for p in pairs if p not in self.ledger})
        if not pairs:
            return
        self.cur.execute(sql.SQL("SELECT l.entity, l.id, l.key, l.row FROM {} l JOIN unnest(%s::text[], %s::bigint[]) "
                                 "AS p(entity, id) USING (entity, id)").format(state(self.config, "ledger")),
                         ([e for e, _ in pairs], [i for _, i in pairs]))
        for entity, id_, key, row in self.cur.fetchall():
            self.ledger[(entity, id_)] = (tuple(key) if key else None, row)

    def _parent_columns(self) -> tuple:
        c = self.config
        return (("leagues", c.team_league), ("clubs", c.team_club), ("series", c.team_series))

    def run(self, needed: dict) -> dict:
        missing = {}
        for entity in (*PARENTS, "teams"):
            ids = sorted(needed.get(entity, ()))
            if ids:
                self.cur.execute(sql.SQL("SELECT id FROM {} WHERE id = ANY(%s)").format(self._tbl(entity)), (ids,))
                there = {r[0] for r in self.cur.fetchall()}
                missing[entity] = [i for i in ids if i not in there]
        self._read_ledger((e, i) for e, ids in missing.items() for i in ids)
        teams = [(i, *self.ledger.get(("teams", i), (None, None))) for i in missing.get("teams", [])]
        self._read_ledger((p, row.get(col)) for _i, key, row in teams if key is not None and row
                          for p, col in self._parent_columns() if row.get(col) is not None
                          and row.get(col) not in self.emap.get(p, {}))
        if teams:
            self._read_names()
        for entity in PARENTS:
            for id_ in missing.get(entity, []):
                self._revive(entity, id_, *self.ledger.get((entity, id_), (None, None)), placeholder=True)
        planned = [(id_, self._team(pos, id_, key, row)) for pos, (id_, key, row) in enumerate(teams)]
        for entity in PARENTS:
            self._insert_rows(entity, self.rows[entity])
        self._find_placeholders()
        if planned:
            self._settle_conflicts(planned)
            self._find_placeholders()
        self._create_placeholders()
        if planned:
            self._insert_rows("teams", [{k: self._id(v) for k, v in row.items()} for _id, row in planned])
            self.done["teams"] = [id_ for id_, _row in planned]
        return self.done

    def _read_names(self) -> None:
        """Names of the rows that share a key with another, or with a row that may come back
        (a team's parent is then picked by its name)."""
        for entity in PARENTS:
            back = {key for (e, _i), (key, _row) in self.ledger.items() if e == entity and key is not None}
            ids = [i for key, group in self.known.by_key.get(entity, {}).items()
                   if len(group) > 1 or key in back for i in group]
            if ids:
                self.cur.execute(sql.SQL("SELECT id, {} FROM {} WHERE id = ANY(%s)").format(
                    sql.Identifier(name_column(self.config, entity)), self._tbl(entity)), (ids,))
                self.names[entity].update(self.cur.fetchall())

    def _revive(self, entity: str, id_, key, row, *, placeholder: bool) -> None:
        """Plan a parent row with its id: its ledger row, else (if allowed) a placeholder row."""
        if row is None:
            if not placeholder:
                raise _Fallback(f"{entity} {id_}: a ledger key without a row")
            name = PLACEHOLDER_NAME.format(entity=entity.rstrip("s"), id=id_)
            row = {"id": id_, name_column(self.config, entity): name}
            if entity == "leagues":
                row[self.config.league_name] = name
            if entity == "series":
                row[self.config.series_display] = name
            key = None
        self.rows[entity].append(row)
        self.known.add(entity, id_, key)
        self.names[entity][id_] = row.get(name_column(self.config, entity))
        self.done.setdefault(entity, []).append(id_)

    def _placeholder(self, entity: str, name: str | None, need: tuple) -> tuple:
        value = name or {"leagues": PLACEHOLDER_LEAGUE, "clubs": "(unknown club)", "series": "(unknown series)"}[entity]
        self.wanted[entity].setdefault(value, [need, None])
        return (_PLACEHOLDER, entity, value)

    def _parent_now(self, entity: str, old, pos: int):
        """Where the parent ``old`` of a team that comes back is now: as ``_parent_now`` decides."""
        if old is None:
            return self._placeholder(entity, None, (pos, 0))
        if old in self.emap.get(entity, {}):
            return self.emap[entity][old][0]
        led_key, led_row = self.ledger.get((entity, old), (None, None))
        now = self.known.of.get(entity, {})
        if old in now and (led_key is None or now[old] == led_key):
            return old
        if led_key is not None:
            ids = self.known.by_key.get(entity, {}).get(led_key, [])
            if len(ids) == 1:
                return ids[0]
            if ids:  # rows differing only in case or spacing: the one with the ledger's spelling first
                name = led_row.get(name_column(self.config, entity)) if led_row else None
                if any(i not in self.names[entity] for i in ids):
                    raise _Fallback(f"{entity}: no name read for one of {ids}")
                # as ORDER BY name = %s DESC, id: NULL first (DESC), then equal, then the rest
                return min(ids, key=lambda i: (0 if name is None or self.names[entity][i] is None
                                               else 1 if self.names[entity][i] == name else 2, i))
            if old not in now:
                self._revive(entity, old, led_key, led_row, placeholder=False)
                return old
        return self._placeholder(entity, None, (pos, 0))

    def _team(self, pos: int, id_, key, row) -> dict:
        c = self.config
        if row is None:
            row = {"id": id_, c.team_name: PLACEHOLDER_NAME.format(entity="team", id=id_),
                   c.team_league: None, c.team_club: None, c.team_series: None}
            row[c.team_display] = row[c.team_name]
        row = dict(row)
        for parent, column in self._parent_columns():
            row[column] = self._parent_now(parent, row.get(column) if key is not None else None, pos)
        row[c.team_active] = False
        return row

    def _id(self, value):
        """An id, or a placeholder's token while its row does not exist yet."""
        if isinstance(value, tuple) and value[:1] == (_PLACEHOLDER,):
            found = self.wanted[value[1]][value[2]][1]
            return value if found is None else found
        return value

    def _find_placeholders(self) -> None:
        """Placeholders that exist already (created once per name, by an earlier team or run)."""
        for entity in PARENTS:
            names = [n for n, (_need, id_) in self.wanted[entity].items() if id_ is None]
            if not names:
                continue
            column = sql.Identifier(name_column(self.config, entity))
            self.cur.execute(sql.SQL("SELECT {c}, id FROM {t} WHERE {c} = ANY(%s) ORDER BY id DESC").format(
                c=column, t=self._tbl(entity)), (names,))
            for name, id_ in self.cur.fetchall():  # the lowest id last, so it wins
                self.wanted[entity][name][1] = id_

    def _settle_conflicts(self, planned: list) -> None:
        """A live team's name (in the league) or slot (club, series, league) taken: as ``_bring_back_team``."""
        c = self.config
        names = sorted({r[c.team_name] for _i, r in planned if r[c.team_name] is not None})
        self.cur.execute(sql.SQL("SELECT {n}, {lg} FROM {t} WHERE {n} = ANY(%s)").format(
            n=sql.Identifier(c.team_name), lg=sql.Identifier(c.team_league), t=self._tbl("teams")), (names,))
        taken_names = set(self.cur.fetchall())
        slots = [tuple(self._id(r[col]) for col in (c.team_club, c.team_series, c.team_league)) for _i, r in planned]
        known_slots = [s for s in slots if all(isinstance(v, int) for v in s)]
        self.cur.execute(sql.SQL("SELECT {a}, {b}, {c} FROM {t} WHERE ({a}, {b}, {c}) IN "
                                 "(SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]))").format(
            a=sql.Identifier(c.team_club), b=sql.Identifier(c.team_series), c=sql.Identifier(c.team_league),
            t=self._tbl("teams")), tuple([s[k] for s in known_slots] for k in range(3)))
        taken_slots = set(self.cur.fetchall())
        for pos, (id_, row) in enumerate(planned):
            league = self._id(row[c.team_league])
            if row[c.team_name] is not None and (row[c.team_name], league) in taken_names:
                row[c.team_name] = f"{row[c.team_name]} (retired #{id_})"
            slot = (self._id(row[c.team_club]), self._id(row[c.team_series]), league)
            if slot in taken_slots:  # only with duplicate keys; the old team keeps a club of its own
                row[c.team_club] = self._placeholder("clubs", f"(club of retired team #{id_})", (pos, 1))
            taken_names.add((row[c.team_name], league))
            taken_slots.add((self._id(row[c.team_club]), slot[1], league))

    def _create_placeholders(self) -> None:
        """The placeholders no row has yet, in the order the row-by-row path would create them."""
        for entity in PARENTS:
            names = sorted((need, n) for n, (need, id_) in self.wanted[entity].items() if id_ is None)
            if not names:
                continue
            cols = [name_column(self.config, entity)]
            values = [sql.SQL("u.v")]
            if entity == "leagues":
                cols.append(self.config.league_name)
                values.append(sql.Literal("Unknown league"))
            if entity == "series":
                cols.append(self.config.series_display)
                values.append(sql.SQL("u.v"))
            self.cur.execute(sql.SQL("INSERT INTO {t} ({cols}) SELECT {vals} FROM unnest(%s::text[]) "
                                     "WITH ORDINALITY AS u(v, n) ORDER BY u.n RETURNING {name}, id").format(
                t=self._tbl(entity), cols=sql.SQL(", ").join(sql.Identifier(x) for x in cols),
                vals=sql.SQL(", ").join(values), name=sql.Identifier(cols[0])), ([n for _need, n in names],))
            for name, id_ in self.cur.fetchall():
                self.wanted[entity][name][1] = id_

    def _insert_rows(self, entity: str, rows: list) -> None:
        """Whole rows with their ids, in one statement; a row a unique constraint refuses sends
        the batch to the row-by-row path (which gives it a placeholder, as it always did)."""
        if not rows:
            return
        tbl = self._tbl(entity)
        self.cur.execute(sql.SQL("INSERT INTO {tbl} SELECT (jsonb_populate_record(NULL::{tbl}, x.r)).* "
                                 "FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS x(r, n) ORDER BY x.n "
                                 "ON CONFLICT DO NOTHING RETURNING id").format(tbl=tbl),
                         (json.dumps(rows, default=str),))
        if len(self.cur.fetchall()) != len(rows):
            raise _Fallback(f"{entity}: a row conflicts with one in place")


def resurrect(cur, config: PreservationConfig, needed: dict, emap: dict, keys: dict | None = None) -> dict:
    """Bring back every id in ``needed`` (``{entity: ids}``), parents before teams.

    Returns ``{entity: [ids brought back]}``, parents brought back for a team included.
    """
    if not any(needed.values()):
        return {}
    cur.execute("SAVEPOINT bp_revive_batch")
    try:
        done = _Batch(cur, config, emap, keys or {}).run(needed)
    except (psycopg2.Error, _Fallback) as exc:
        try:
            cur.execute("ROLLBACK TO SAVEPOINT bp_revive_batch")
        except psycopg2.Error:  # the connection is gone: the first error is the one to see
            raise exc from None
        logger.warning("bringing ids back together failed (%s); one by one instead",
                       str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        done = one_by_one(cur, config, needed, emap, keys or {})
    else:
        cur.execute("RELEASE SAVEPOINT bp_revive_batch")
    for entity, ids in done.items():
        keep_sequence_ahead(cur, config, entity)
        logger.info("kept %d %s ids alive for rows that point at them", len(ids), entity)
    return {e: sorted(ids) for e, ids in done.items()}
