"""Restoring user data: map every stale reference, re-insert what was deleted, quarantine the rest.

1. An entity-level map (old id -> new id, with the strategy) is built in Python from the
   ids the user rows reference, the ledger and the current keys (direct, then context).
2. Row-level content matches for rows whose team no entity strategy could map.
3. Ids nobody can map but a NOT NULL column needs are kept alive: the old team comes back
   from the ledger as inactive (or, never seen, as a placeholder), so no row is deleted.
4. Rows deleted since the snapshot (by the ETL or a cascade) are re-inserted with their
   primary keys, their references rewritten through the map.
5. Live rows are remapped in one UPDATE per column; every change lands in ``mappings``.
6. Nullable references nobody can map are set to NULL, the original row in ``quarantine``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field

from psycopg2 import sql

from . import strategies
from .catalog import Catalog, current_keys
from .config import PreservationConfig
from .resurrect import resurrect
from .snapshot import _copy_rows, pk_json, state

logger = logging.getLogger(__name__)


@dataclass
class TableRestore:
    """What the restore did to one user-owned table."""

    table: str
    rows_before: int = 0
    kept: int = 0
    remapped: dict = field(default_factory=dict)  # strategy -> count
    reinserted: int = 0
    quarantined: int = 0
    nulled: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RestoreReport:
    tables: dict = field(default_factory=dict)
    resurrected: dict = field(default_factory=dict)  # entity -> ids kept alive
    unresolved: dict = field(default_factory=dict)  # entity -> count of ids no strategy mapped

    def total(self, what: str) -> int:
        if what == "remapped":
            return sum(sum(t.remapped.values()) for t in self.tables.values())
        return sum(getattr(t, what) for t in self.tables.values())

    def to_dict(self) -> dict:
        return {
            "tables": {k: v.to_dict() for k, v in self.tables.items()},
            "resurrected": {k: sorted(v) for k, v in self.resurrected.items()},
            "unresolved": self.unresolved,
            "totals": {w: self.total(w) for w in ("remapped", "reinserted", "quarantined", "nulled")},
        }


def _where_filter(dep, alias="t") -> tuple:
    if dep.filter_column:
        return sql.SQL(" AND {} ILIKE %s").format(sql.Identifier(alias, dep.filter_column)), [dep.filter_pattern]
    return sql.SQL(""), []


def referenced_ids(cur, config, catalog: Catalog, run_id) -> dict:
    """Every id a user row references now or referenced in the snapshot, per entity."""
    out: dict = {}
    for dep in catalog.user_dependents():
        flt, params = _where_filter(dep)
        cur.execute(
            sql.SQL("SELECT DISTINCT t.{c}::bigint FROM {tbl} t WHERE t.{c} IS NOT NULL{flt}").format(
                c=sql.Identifier(dep.column), tbl=sql.Identifier(config.schema, dep.table), flt=flt),
            params,
        )
        ids = out.setdefault(dep.entity, set())
        ids.update(r[0] for r in cur.fetchall())
        if run_id is not None:
            cur.execute(
                sql.SQL("SELECT DISTINCT (row->>%s)::bigint FROM {} WHERE run_id = %s AND table_name = %s "
                        "AND row->>%s IS NOT NULL").format(state(config, "snap_rows")),
                (dep.column, run_id, dep.table, dep.column),
            )
            ids.update(r[0] for r in cur.fetchall())
    return out


def _ledger(cur, config, entity: str, ids) -> dict:
    cur.execute(
        sql.SQL("SELECT id, key, row FROM {} WHERE entity = %s AND id = ANY(%s)").format(state(config, "ledger")),
        (entity, list(ids)),
    )
    return {i: (tuple(k) if k else None, row) for i, k, row in cur.fetchall()}


def _team_candidates(cur, config, keys: dict) -> list:
    cur.execute(
        sql.SQL("SELECT id, {}, {}, {} FROM {}").format(
            sql.Identifier(config.team_name), sql.Identifier(config.team_alias),
            sql.Identifier(config.team_active), sql.Identifier(config.schema, config.table("teams"))),
    )
    return [{"id": i, "team_name": n, "team_alias": a, "active": act, "key": keys.get(i)}
            for i, n, a, act in cur.fetchall()]


def build_entity_map(cur, config, referenced: dict, keys: dict, *, created=(), retired=()) -> tuple:
    """``({entity: {old: (new, strategy)}}, {entity: unresolved ids}, {entity: ids to revive})``.

    An id whose key nobody holds now, but which the ledger knows, is revived: its old row
    comes back inactive and every reference to it stays (G4: same key before and after).
    """
    mapping: dict = {}
    unresolved: dict = {}
    revive: dict = {}
    teams = _team_candidates(cur, config, keys["teams"])
    active_teams = [t for t in teams if t["active"]]
    created_teams = [t for t in teams if t["id"] in set(created)]
    retired = set(retired)
    series_names = None
    for entity, ids in referenced.items():
        current = keys[entity]
        by_key: dict = {}
        for i, k in current.items():
            if k is not None:
                by_key.setdefault(k, []).append(i)
        ledger = _ledger(cur, config, entity, ids)
        emap, missing = {}, set()
        for old in ids:
            led_key, led_row = ledger.get(old, (None, None))
            if old in current and (led_key is None or led_key == current[old]):
                if entity == "teams" and old in retired and created_teams:
                    new = strategies.context(led_row, current[old], created_teams, config)
                    if new is not None:
                        emap[old] = (new, "context")
                continue
            new = strategies.direct(old, led_key, by_key)
            if new is not None and new != old:
                emap[old] = (new, "direct")
                continue
            new = None
            if entity == "teams":
                new = strategies.context(led_row, led_key, active_teams, config)
            elif entity == "series" and led_row:
                if series_names is None:
                    cur.execute(sql.SQL("SELECT id, {} FROM {}").format(
                        sql.Identifier(config.series_name), sql.Identifier(config.schema, config.table("series"))))
                    series_names = dict(cur.fetchall())
                new = strategies.series_context(led_row.get(config.series_name), series_names, config)
            if new is not None and new != old:
                emap[old] = (new, "context")
            elif led_row is not None and old not in current:
                revive.setdefault(entity, set()).add(old)  # its own key: bring the old row back
            else:
                missing.add(old)
        mapping[entity] = emap
        unresolved[entity] = missing
    return mapping, unresolved, revive


def _author_teams(cur, config, hint, authors, keys, emap) -> dict:
    """Each author's current teams: their own team_id plus their players' teams."""
    out: dict = {}
    cur.execute(
        sql.SQL("SELECT id, {} FROM {} WHERE id = ANY(%s)").format(
            sql.Identifier(config.user_team_column), sql.Identifier(config.schema, config.user_table)),
        (list(authors),),
    )
    for uid, team in cur.fetchall():
        if team is not None:
            team = emap.get(team, (team, None))[0]
            out.setdefault(uid, set()).add(team)
    cur.execute("SELECT to_regclass('user_player_associations'), to_regclass('players')")
    if all(cur.fetchone()):
        cur.execute(
            "SELECT u.user_id, p.team_id FROM user_player_associations u "
            "JOIN players p ON p.tenniscores_player_id = u.tenniscores_player_id "
            "WHERE u.user_id = ANY(%s) AND p.team_id IS NOT NULL",
            (list(authors),),
        )
        for uid, team in cur.fetchall():
            out.setdefault(uid, set()).add(team)
    return {u: [{"id": t, "key": keys.get(t)} for t in ts if keys.get(t)] for u, ts in out.items()}


def content_matches(cur, config, catalog, run_id, unresolved_teams: set, keys, emap) -> list:
    """Row-level (table, pk, column, new id) for text rows whose team nobody else could map."""
    out = []
    if not unresolved_teams:
        return out
    for hint in config.text_hints:
        deps = [d for d in catalog.user_dependents() if d.table == hint.table and d.entity == "teams"]
        pk = catalog.primary_keys.get(hint.table)
        if not deps or not pk:
            continue
        for dep in deps:
            author = sql.Identifier(hint.author_column) if hint.author_column else sql.SQL("NULL")
            cur.execute(
                sql.SQL("SELECT {pk}, t.{txt}, t.{author} FROM {tbl} t WHERE t.{col} = ANY(%s) "
                        "UNION ALL SELECT s.pk, s.row->>%s, (s.row->>%s)::bigint FROM {snap} s "
                        "WHERE s.run_id = %s AND s.table_name = %s AND (s.row->>%s)::bigint = ANY(%s)").format(
                    pk=pk_json(pk, "t"), txt=sql.Identifier(hint.text_column), author=author,
                    tbl=sql.Identifier(config.schema, hint.table), col=sql.Identifier(dep.column),
                    snap=state(config, "snap_rows")),
                (list(unresolved_teams), hint.text_column, hint.author_column or "", run_id, hint.table,
                 dep.column, list(unresolved_teams)),
            )
            rows = cur.fetchall()
            authors = {a for _, _, a in rows if a is not None}
            teams_of = _author_teams(cur, config, hint, authors, keys, emap) if authors else {}
            for pk_value, text, author in rows:
                new = strategies.content(text, teams_of.get(author, []), config)
                if new is not None:
                    out.append((hint.table, json.dumps(pk_value, sort_keys=True), dep.column, new))
    return out


def restore(conn, config: PreservationConfig, catalog: Catalog, run_id, *, created=(), retired=()) -> RestoreReport:
    """Run steps 1-6 of the module docstring; returns per-table counts."""
    report = RestoreReport()
    keys = current_keys(conn, config)
    with conn.cursor() as cur:
        referenced = referenced_ids(cur, config, catalog, run_id)
        emap, unresolved, revive = build_entity_map(cur, config, referenced, keys, created=created, retired=retired)
        rowmap = content_matches(cur, config, catalog, run_id, unresolved.get("teams", set()), keys["teams"],
                                 emap.get("teams", {}))
        _push_maps(cur, emap, rowmap)
        needed = _not_null_unresolved(cur, config, catalog, run_id, unresolved)
        for entity, ids in revive.items():
            needed.setdefault(entity, set()).update(ids)
        report.resurrected = resurrect(cur, config, needed, emap)
        report.unresolved = {e: len(v) for e, v in unresolved.items() if v}
        from .apply import apply_restore
        apply_restore(cur, config, catalog, run_id, unresolved, report)
    return report


def _push_maps(cur, emap: dict, rowmap: list) -> None:
    cur.execute("DROP TABLE IF EXISTS _bp_map; DROP TABLE IF EXISTS _bp_rowmap")
    cur.execute("CREATE TEMP TABLE _bp_map (entity text, old_id bigint, new_id bigint, strategy text, "
                "PRIMARY KEY (entity, old_id)) ON COMMIT DROP")
    cur.execute("CREATE TEMP TABLE _bp_rowmap (table_name text, pk jsonb, column_name text, new_id bigint, "
                "strategy text) ON COMMIT DROP")
    _copy_rows(cur, sql.Identifier("_bp_map"), ("entity", "old_id", "new_id", "strategy"),
               ((e, old, new, how) for e, m in emap.items() for old, (new, how) in m.items()))
    _copy_rows(cur, sql.Identifier("_bp_rowmap"), ("table_name", "pk", "column_name", "new_id", "strategy"),
               ((t, pk, c, new, "content") for t, pk, c, new in rowmap))
    cur.execute("ANALYZE _bp_map; ANALYZE _bp_rowmap")


def _not_null_unresolved(cur, config, catalog, run_id, unresolved: dict) -> dict:
    """Unresolved ids that a NOT NULL column still needs (rows without a content match)."""
    needed: dict = {}
    for dep in catalog.user_dependents():
        ids = unresolved.get(dep.entity)
        if dep.nullable or not ids:
            continue
        flt, params = _where_filter(dep)
        cur.execute(
            sql.SQL("SELECT DISTINCT t.{c}::bigint FROM {tbl} t WHERE t.{c} = ANY(%s){flt} AND NOT EXISTS ("
                    "SELECT 1 FROM _bp_rowmap r WHERE r.table_name = %s AND r.column_name = %s "
                    "AND r.pk = {pk})").format(
                c=sql.Identifier(dep.column), tbl=sql.Identifier(config.schema, dep.table), flt=flt,
                pk=pk_json(catalog.primary_keys[dep.table], "t")),
            [list(ids)] + params + [dep.table, dep.column],
        )
        found = {r[0] for r in cur.fetchall()}
        if run_id is not None:
            cur.execute(
                sql.SQL("SELECT DISTINCT (row->>%s)::bigint FROM {} WHERE run_id = %s AND table_name = %s "
                        "AND (row->>%s)::bigint = ANY(%s)").format(state(config, "snap_rows")),
                (dep.column, run_id, dep.table, dep.column, list(ids)),
            )
            found.update(r[0] for r in cur.fetchall())
        needed.setdefault(dep.entity, set()).update(found)
    return needed
