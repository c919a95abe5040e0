"""Snapshot ids back: entity rows renumbered to the ids of a snapshot (``repair --from-snapshot``).

Per entity, the ids wanted are the snapshot's (and, for keys the run itself added, the ids
the ledger saw last). A key now held under another id is moved back in one statement per
pass that also repoints every referencing column (data-modifying CTEs: foreign keys are
checked at the end of the statement), only where the wanted id is free; a pass may free
ids for the next. Keys nobody holds any more are re-inserted from the snapshot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import psycopg2
from psycopg2 import sql

from ..catalog import current_keys
from ..config import PreservationConfig
from ..state import copy_rows, state
from .ledger_ids import create_fk_indexes, drop_fk_indexes
from .upsert import keep_sequence_ahead

logger = logging.getLogger(__name__)


@dataclass
class EntityRepair:
    """What the snapshot repair did to one entity table."""

    entity: str
    in_snapshot: int = 0
    in_place: int = 0
    renumbered: int = 0
    reinserted: int = 0
    references_repointed: int = 0
    conflicts: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _referencing(catalog, config: PreservationConfig, entity: str) -> dict:
    """``{table: [columns]}`` of every column holding an id of ``entity``."""
    table = config.table(entity)
    out: dict = {}
    for child, parent, column, parent_column in catalog.fk_edges:
        if parent == table and parent_column == "id":
            out.setdefault(child, set()).add(column)
    for dep in catalog.dependents:
        if dep.entity == entity:
            out.setdefault(dep.table, set()).add(dep.column)
    return {t: sorted(cols) for t, cols in sorted(out.items())}


def renumber_statement(config: PreservationConfig, entity: str, referencing: dict) -> sql.Composed:
    """One statement: move rows of ``_bp_renum`` (new_id -> old_id) and repoint every reference."""
    renum = sql.Identifier("_bp_renum")
    parts = [sql.SQL("e AS (UPDATE {tbl} t SET id = r.old_id FROM {renum} r WHERE t.id = r.new_id RETURNING 1)").format(
        tbl=sql.Identifier(config.schema, config.table(entity)), renum=renum)]
    counts = [sql.SQL("(SELECT count(*) FROM e)")]
    for i, (table, columns) in enumerate(referencing.items()):
        name = sql.Identifier(f"c{i}")
        sets = sql.SQL(", ").join(
            sql.SQL("{c} = coalesce((SELECT r.old_id FROM {renum} r WHERE r.new_id = x.{c}), x.{c})").format(
                c=sql.Identifier(c), renum=renum) for c in columns)
        where = sql.SQL(" OR ").join(
            sql.SQL("x.{c} IN (SELECT new_id FROM {renum})").format(c=sql.Identifier(c), renum=renum)
            for c in columns)
        parts.append(sql.SQL("{name} AS (UPDATE {tbl} x SET {sets} WHERE {where} RETURNING 1)").format(
            name=name, tbl=sql.Identifier(config.schema, table), sets=sets, where=where))
        counts.append(sql.SQL("(SELECT count(*) FROM {})").format(name))
    repointed = sql.SQL(" + ").join(counts[1:]) if len(counts) > 1 else sql.SQL("0")
    return sql.SQL("WITH {} SELECT {}, {}").format(sql.SQL(", ").join(parts), repointed, counts[0])


def snapshot_entities(cur, config, run_id: int, entity: str) -> dict:
    cur.execute(sql.SQL("SELECT id, key FROM {} WHERE run_id = %s AND entity = %s").format(
        state(config, "snap_entities")), (run_id, entity))
    return {i: tuple(k) if k else None for i, k in cur.fetchall()}


def desired_ids(cur, config, run_id: int, entity: str, snap: dict) -> dict:
    """``{key: id}`` to bring back: the snapshot's ids, and for keys the run (or a later
    protected run) added, the id the ledger saw last."""
    cur.execute(sql.SQL("SELECT key, id FROM {} WHERE entity = %s AND key IS NOT NULL AND last_run >= %s "
                        "ORDER BY last_run, id").format(state(config, "ledger")), (entity, run_id))
    desired = {tuple(k): i for k, i in cur.fetchall()}
    desired.update({k: i for i, k in snap.items() if k is not None})
    return desired


def repair_entity(conn, config, catalog, run_id: int, entity: str, desired: dict) -> EntityRepair:
    out = EntityRepair(entity)
    with conn.cursor() as cur:
        snap = snapshot_entities(cur, config, run_id, entity)
        out.in_snapshot = len(snap)
        referencing = _referencing(catalog, config, entity)
        indexes = None  # temporary indexes on unindexed foreign keys, for the first pass's moves
        for _ in range(len(desired) + 1):  # each pass frees ids for the next; bounded
            now = current_keys(conn, config)[entity]
            holders: dict = {}
            for i, k in now.items():
                if k is not None:
                    holders.setdefault(k, []).append(i)
            moves = {}
            for key, want in sorted(desired.items(), key=lambda kv: kv[1]):
                if want in now:
                    continue
                # a key held twice (the legacy ETL wrote "Lakeview" and "LAKEVIEW"): the lowest id
                # moves back, the other stays a duplicate that health reports
                ids = sorted(i for i in holders.get(key, []) if desired.get(now[i]) != i)
                if ids and ids[0] not in moves:
                    moves[ids[0]] = want
            if not moves:
                break
            if indexes is None:
                indexes = create_fk_indexes(cur, config, entity, len(moves))
            cur.execute("DROP TABLE IF EXISTS _bp_renum")
            cur.execute("CREATE TEMP TABLE _bp_renum (new_id bigint PRIMARY KEY, old_id bigint UNIQUE) ON COMMIT DROP")
            copy_rows(cur, sql.Identifier("_bp_renum"), ("new_id", "old_id"), sorted(moves.items()))
            cur.execute("ANALYZE _bp_renum")  # the renumbering joins it to every referencing table
            cur.execute(renumber_statement(config, entity, referencing))
            repointed, moved = cur.fetchone()
            out.renumbered += moved
            out.references_repointed += repointed
        drop_fk_indexes(cur, indexes or [])  # one kept because its table was busy is logged
        now = current_keys(conn, config)[entity]
        held = {k for k in now.values() if k is not None}
        gone = [old for old, key in snap.items() if old not in now and key is not None and key not in held]
        if gone:
            back = _reinsert(cur, config, run_id, entity, gone, out)
            out.reinserted = len(back)
        now = current_keys(conn, config)[entity]
        for key, want in sorted(desired.items(), key=lambda kv: kv[1]):
            if want in now and now[want] != key:
                out.conflicts.append(f"{entity} {want}: the id now holds another key {list(now[want] or [])}")
            elif want not in now and key in {k for k in now.values()}:
                out.conflicts.append(f"{entity} {want}: its key is held by another id that could not move back")
        out.in_place = sum(1 for old, key in snap.items() if old in now and now[old] == key)
        keep_sequence_ahead(cur, config, entity)
    return out


def _reinsert(cur, config, run_id: int, entity: str, ids: list, out: EntityRepair) -> set:
    """Put snapshot rows back with their old ids: set-based; row by row only if that fails."""
    tbl = sql.Identifier(config.schema, config.table(entity))
    statement = sql.SQL(
        "INSERT INTO {tbl} SELECT (jsonb_populate_record(NULL::{tbl}, s.row)).* FROM {snap} s "
        "WHERE s.run_id = %s AND s.entity = %s AND s.id = ANY(%s) ORDER BY s.id "
        "ON CONFLICT DO NOTHING RETURNING id").format(tbl=tbl, snap=state(config, "snap_entities"))
    cur.execute("SAVEPOINT bp_repair")
    try:
        cur.execute(statement, (run_id, entity, ids))
        back = {r[0] for r in cur.fetchall()}
        cur.execute("RELEASE SAVEPOINT bp_repair")
    except psycopg2.Error:
        cur.execute("ROLLBACK TO SAVEPOINT bp_repair")
        back = set()
        for id_ in sorted(ids):  # only on this failure path: find the rows that cannot go back
            cur.execute("SAVEPOINT bp_repair")
            try:
                cur.execute(statement, (run_id, entity, [id_]))
                back.update(r[0] for r in cur.fetchall())
                cur.execute("RELEASE SAVEPOINT bp_repair")
            except psycopg2.Error as exc:
                cur.execute("ROLLBACK TO SAVEPOINT bp_repair")
                out.conflicts.append(f"{entity} {id_}: not re-inserted: {str(exc).strip().splitlines()[0]}")
    for id_ in sorted(set(ids) - back):
        if not any(c.startswith(f"{entity} {id_}:") for c in out.conflicts):
            out.conflicts.append(f"{entity} {id_}: not re-inserted (a unique value is taken)")
    return back
