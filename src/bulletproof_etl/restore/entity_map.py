"""Restoring user data: map every stale reference, re-insert what was deleted, quarantine the rest.

1. An entity-level map (old id -> new id, with the strategy) from the ids the user rows
   reference now or referenced in the snapshot: ``direct`` (ledger key -> the id of that key
   now), then ``context`` (the old team's club, name or alias among teams whose key is new,
   e.g. a renamed club; a series by its canonical name). A team retired in this run moves
   to a unique new-key team the same way. An id the ledger knows, that no strategy maps and
   that no row holds now, is kept alive: its old row comes back inactive (revive.py).
2. Ids nobody knows (no ledger entry: a database damaged before any snapshot) are mapped by
   the votes of their rows' evidence, paths found in the catalog (catalog_evidence.py:
   ``context`` for an id, ``content`` for a row mapped alone); ids whose rows hold no such
   evidence by row evidence (row_evidence.py): rows that name their team, leagues and series
   through the teams of the same row, all evidence unanimous (``context``); then, per row,
   series named in a poll or message plus the author's own teams (``content``).
3. Ids still unmapped: a NOT NULL column keeps the row valid with a placeholder entity and
   the row is quarantined; a nullable reference is set to NULL and the row quarantined.
4. Rows deleted since the snapshot (by the ETL or a cascade) are re-inserted with their
   primary keys, parents before children, their references rewritten through the maps.
5. Every change lands in ``mappings`` (table, primary key, column, old id, new id, strategy).
   Nothing is deleted.
"""

from __future__ import annotations

import logging

from psycopg2 import sql

from ..catalog import Catalog, current_keys
from ..config import PreservationConfig
from ..errors import BulletproofError
from ..health.constraints import validate_pending
from ..snapshot import keys as snapkeys
from ..state import copy_rows, pk_json, state
from . import catalog_evidence, custom_strategies, row_evidence, strategies
from .apply import apply_restore
from .damage import count_repaired, repair_damage
from .report import RestoreReport
from .revive import resurrect

logger = logging.getLogger(__name__)

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


def _ledger(cur, config, entity: str, ids, *, rows: bool = True) -> dict:
    """``{id: (key, row)}`` from the ledger; ``rows=False`` leaves out the row (JSON, costly
    to read for every id at scale)."""
    cur.execute(
        sql.SQL("SELECT id, key, {} FROM {} WHERE entity = %s AND id = ANY(%s)").format(
            sql.SQL("row" if rows else "NULL::jsonb"), state(config, "ledger")),
        (entity, list(ids)),
    )
    return {i: (tuple(k) if k else None, r) for i, k, r in cur.fetchall()}


def _teams(cur, config, keys: dict) -> list:
    cur.execute(
        sql.SQL("SELECT id, {}, {}, {} FROM {}").format(
            sql.Identifier(config.team_name), sql.Identifier(config.team_alias),
            sql.Identifier(config.team_active), sql.Identifier(config.schema, config.table("teams"))),
    )
    return [{"id": i, "team_name": n, "team_alias": a, "active": act, "key": keys.get(i)}
            for i, n, a, act in cur.fetchall()]


def _new_key_teams(cur, config, run_id, teams: list) -> list:
    """Active teams whose key no team had before this run: the only targets of a rename."""
    if run_id is None:
        return []
    cur.execute(sql.SQL("SELECT DISTINCT key FROM {} WHERE entity = 'teams' AND first_run < %s").format(
        state(config, "ledger")), (run_id,))
    old = {tuple(k) for (k,) in cur.fetchall() if k}
    return [t for t in teams if t["active"] and t["key"] is not None and t["key"] not in old]


def build_entity_map(cur, config, run_id, referenced: dict, keys: dict, *, retired=()) -> tuple:
    """``({entity: {old: (new, strategy)}}, {entity: unresolved ids}, {entity: ids to revive})``."""
    mapping: dict = {}
    unresolved: dict = {}
    revive: dict = {}
    teams = _teams(cur, config, keys["teams"])
    renamed_to: dict = {}  # (league, canonical series) -> teams with a new key there
    for t in _new_key_teams(cur, config, run_id, teams):
        renamed_to.setdefault((t["key"][0], t["key"][2]), []).append(t)

    def place(key):
        return renamed_to.get((key[0], key[2]), []) if key else []

    retired = set(retired)
    series_names = None
    for entity, ids in referenced.items():
        current = keys[entity]
        by_key: dict = {}
        for i, k in current.items():
            if k is not None:
                by_key.setdefault(k, []).append(i)
        # an id that is current and means what the ledger says needs no strategy: no old row
        ledger = _ledger(cur, config, entity, ids, rows=False)
        unsettled = {old for old in ids if not (old in current and ledger.get(old, (None,))[0] in (None, current[old])
                                                and not (entity == "teams" and old in retired))}
        if unsettled:
            ledger.update(_ledger(cur, config, entity, unsettled))
        emap, missing = {}, set()
        for old in sorted(ids):
            led_key, led_row = ledger.get(old, (None, None))
            if old in current and (led_key is None or led_key == current[old]):
                if entity == "teams" and old in retired:  # dropped in this run: renamed, perhaps
                    new = strategies.context(led_row, current[old], place(current[old]), config)
                    if new is not None:
                        emap[old] = (new, "context")
                continue
            new = strategies.direct(old, led_key, by_key)
            if new is not None and new != old:
                emap[old] = (new, "direct")
                continue
            hit = custom_strategies.after("direct", config, cur, entity, old, led_key, led_row, current)
            if hit is not None:  # a strategy registered in the configuration (issue 15)
                emap[old] = hit
                continue
            new = None
            if entity == "teams":
                new = strategies.context(led_row, led_key, place(led_key), config)
            elif entity == "series" and led_row:
                if series_names is None:  # canonical series -> {id: name} of the current rows
                    cur.execute(sql.SQL("SELECT id, {} FROM {}").format(
                        sql.Identifier(config.series_name), sql.Identifier(config.schema, config.table("series"))))
                    series_names = {}
                    for i, name in cur.fetchall():
                        series_names.setdefault(config.series_canonicaliser(None, name), {})[i] = name
                old_name = led_row.get(config.series_name)
                same = series_names.get(config.series_canonicaliser(None, old_name), {}) if old_name else {}
                new = strategies.series_context(old_name, same, config)
            if new is not None and new != old:
                emap[old] = (new, "context")
            elif hit := custom_strategies.after("context", config, cur, entity, old, led_key, led_row, current):
                emap[old] = hit
            elif led_row is not None and old not in current:
                revive.setdefault(entity, set()).add(old)  # its own key: bring the old row back
            else:
                missing.add(old)
        mapping[entity] = emap
        unresolved[entity] = missing
    return mapping, unresolved, revive


def _row_evidence(cur, config, catalog, run_id, keys, emap, unresolved, revive) -> dict:
    """Step 2 of the module docstring; moves what it maps from ``unresolved`` into ``emap``."""
    teams_now = keys["teams"]
    revived = revive.get("teams", set())

    def team_now(team):
        if team in emap.get("teams", {}):
            return emap["teams"][team][0]
        return team if team in teams_now or team in revived else None

    # votes over the evidence the schema's relationships offer (issue 13); the hint lists and
    # the content strategy below see only ids whose rows hold no such evidence at all
    voted, quiet = catalog_evidence.map_by_votes(cur, config, catalog, run_id, emap, unresolved, team_now)
    stale = unresolved.get("teams", set())
    if stale & quiet.get("teams", set()):
        cur.execute(sql.SQL("SELECT id, {}, {} FROM {}").format(
            sql.Identifier(config.team_name), sql.Identifier(config.team_alias),
            sql.Identifier(config.schema, config.table("teams"))))
        found = row_evidence.names_in_rows(cur, config, catalog, run_id, stale & quiet["teams"], cur.fetchall())
        for old, new in found.items():
            emap.setdefault("teams", {})[old] = (new, "context")
            stale.discard(old)
    for entity in ("leagues", "series"):
        found = row_evidence.parents_from_teams(cur, config, catalog, run_id, entity,
                                                unresolved.get(entity, set()) & quiet.get(entity, set()), team_now)
        for old, new in found.items():
            emap.setdefault(entity, {})[old] = (new, "context")
            unresolved[entity].discard(old)
    rowmap = row_evidence.content_matches(cur, config, catalog, run_id, stale & quiet.get("teams", set()),
                                          teams_now, team_now)
    return {**rowmap, **voted}


def restore(conn, config: PreservationConfig, catalog: Catalog, run_id, *, created=(), retired=()) -> RestoreReport:
    """Run steps 1-5 of the module docstring; returns per-table counts.

    ``created`` is accepted for callers of the first version; teams with a new key are
    found from the ledger now.
    """
    del created
    if run_id is None:
        raise BulletproofError("a restore records what it does under a run id: take a snapshot first "
                               "(backup_user_data)", stage="restore")
    report = RestoreReport(run_id=run_id)
    keys = current_keys(conn, config)
    with conn.cursor() as cur:
        # what the ETL's own restore or fixers changed goes back to the snapshot first (damage.py)
        keyed = snapkeys.keyed_tables(cur, config, run_id)
        repaired = repair_damage(cur, config, catalog, run_id, keyed)
        referenced = referenced_ids(cur, config, catalog, run_id)
        emap, unresolved, revive = build_entity_map(cur, config, run_id, referenced, keys, retired=retired)
        rowmap = _row_evidence(cur, config, catalog, run_id, keys, emap, unresolved, revive)
        emap = {e: _compose(m) for e, m in emap.items()}
        _push_maps(cur, emap, rowmap)
        repair_damage(cur, config, catalog, run_id, keyed, mapped=True, counts=repaired)
        needed = _not_null_unresolved(cur, config, catalog, run_id, unresolved)
        for entity, ids in revive.items():
            needed.setdefault(entity, set()).update(ids)
        report.resurrected = resurrect(cur, config, needed, emap, keys)
        report.unresolved = {e: sorted(v) for e, v in unresolved.items() if v}
        report.mapped_ids = {}
        for entity, m in emap.items():
            for _new, how in m.values():
                report.mapped_ids.setdefault(entity, {}).setdefault(how, 0)
                report.mapped_ids[entity][how] += 1
        apply_restore(cur, config, catalog, run_id, unresolved, report)
        count_repaired(report, repaired)
        catalog_evidence.annotate_quarantine(cur, config, catalog, run_id)
    # foreign keys added NOT VALID by validate_constraints are validated once orphans are fixed
    report.validated_constraints = validate_pending(conn, config)
    logger.info("restore of run %s: %s", run_id, report.to_dict()["totals"])
    return report


def _compose(emap: dict) -> dict:
    """Follow chains (3 -> 10 by key, 10 -> 30 renamed) to their end; context if any step was."""
    out = {}
    for old, (new, how) in emap.items():
        seen = {old}
        while new in emap and new not in seen:
            seen.add(new)
            new, step = emap[new]
            how = "context" if "context" in (how, step) else how
        out[old] = (new, how)
    return out


def _push_maps(cur, emap: dict, rowmap: dict) -> None:
    cur.execute("DROP TABLE IF EXISTS _bp_map; DROP TABLE IF EXISTS _bp_rowmap")
    cur.execute("CREATE TEMP TABLE _bp_map (entity text, old_id bigint, new_id bigint, strategy text, "
                "PRIMARY KEY (entity, old_id)) ON COMMIT DROP")
    cur.execute("CREATE TEMP TABLE _bp_rowmap (table_name text, pk jsonb, column_name text, old_id bigint, "
                "new_id bigint, strategy text, PRIMARY KEY (table_name, pk, column_name)) ON COMMIT DROP")
    copy_rows(cur, sql.Identifier("_bp_map"), ("entity", "old_id", "new_id", "strategy"),
               ((e, old, new, how) for e, m in emap.items() for old, (new, how) in m.items()))
    copy_rows(cur, sql.Identifier("_bp_rowmap"), ("table_name", "pk", "column_name", "old_id", "new_id", "strategy"),
               ((t, pk, c, old, new, "content") for (t, pk, c), (old, new) in rowmap.items()))
    cur.execute("ANALYZE _bp_map; ANALYZE _bp_rowmap")


def _not_null_unresolved(cur, config, catalog, run_id, unresolved: dict) -> dict:
    """Unresolved ids that a NOT NULL column still needs (rows without a content match)."""
    needed: dict = {}
    for dep in catalog.user_dependents():
        ids = unresolved.get(dep.entity)
        if dep.nullable or not ids or dep.table not in catalog.primary_keys:
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
                sql.SQL("SELECT DISTINCT (s.row->>%s)::bigint FROM {} s WHERE s.run_id = %s AND s.table_name = %s "
                        "AND (s.row->>%s)::bigint = ANY(%s) AND NOT EXISTS (SELECT 1 FROM _bp_rowmap r "
                        "WHERE r.table_name = s.table_name AND r.column_name = %s AND r.pk = s.pk)").format(
                    state(config, "snap_rows")),
                (dep.column, run_id, dep.table, dep.column, list(ids), dep.column),
            )
            found.update(r[0] for r in cur.fetchall())
        needed.setdefault(dep.entity, set()).update(found)
    return needed
