"""Repairs: the emergency orphan repair, and bringing a database back to a durable snapshot.

Neither deletes a user row. Both take the advisory lock (no import runs meanwhile), take a
snapshot of the state they start from (so a repair can itself be repaired), work in one
transaction and check health before they commit; a dry run rolls everything back.

``repair_from_snapshot(RUN)`` brings back every entity id and user row of run RUN:

1. per entity (leagues, clubs, series, teams, parents first): a key of the snapshot (or one
   the run itself added, through the ledger) now held under another id is renumbered back
   to that id, in one statement per entity
   that also repoints every referencing column (data-modifying CTEs: foreign keys are
   checked at the end of the statement), and only where the old id is free; a key nobody
   holds any more is re-inserted from the snapshot with its old id;
2. user rows: the restore re-inserts rows of the snapshot that are gone and remaps stale
   references (strategies as in a protected run); rows the run had moved to another team
   (a renamed club: ``mappings``, by context or content) are moved again;
3. health against the snapshot (no orphans, nothing lost, nothing on another team).

A protected run that was killed never committed anything, so the database is as it was
before it: the repair then finds nothing to do, and says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import psycopg2
from psycopg2 import sql

from .catalog import current_keys
from .config import DEFAULT_CONFIG, ENTITIES, PreservationConfig
from .errors import HealthCheckFailed, SnapshotNotFound
from .health import HealthReport, HealthStatus, check_health
from .preservation import BulletproofTeamPreservation
from .restore import restore
from .snapshot import _copy_rows, ensure_state_schema, pk_json, state
from .upsert import keep_sequence_ahead

logger = logging.getLogger(__name__)


@dataclass
class EmergencyRepairReport:
    """Health before and after an emergency repair, and what the repair did."""

    before: HealthReport
    after: HealthReport | None = None
    run_id: int | None = None
    dry_run: bool = False
    constraints: dict | None = None
    restore: dict | None = None
    outcome: str = "running"

    def to_dict(self) -> dict:
        return {"before": self.before.to_dict(), "after": self.after.to_dict() if self.after else None,
                "run_id": self.run_id, "dry_run": self.dry_run, "constraints": self.constraints,
                "restore": self.restore, "outcome": self.outcome}


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


@dataclass
class SnapshotRepairReport:
    """What ``repair --from-snapshot RUN`` did; ``nothing_to_do`` when all was in place."""

    run_id: int
    run_outcome: str | None = None
    repair_run_id: int | None = None
    dry_run: bool = False
    entities: dict = field(default_factory=dict)
    restore: dict | None = None
    replayed: int = 0
    health: HealthReport | None = None
    outcome: str = "running"

    @property
    def nothing_to_do(self) -> bool:
        moved = sum(e.renumbered + e.reinserted for e in self.entities.values())
        totals = (self.restore or {}).get("totals", {})
        return moved == 0 and not self.replayed and not any(totals.values())

    def message(self) -> str:
        if self.nothing_to_do:
            why = ""
            if self.run_outcome and not self.run_outcome.startswith("committed"):
                why = (f" (run {self.run_id} ended {self.run_outcome!r}: a protected run that fails or is "
                       "killed commits nothing, so there is nothing to undo)")
            return f"nothing to repair: every entity id and user row of run {self.run_id} is in place{why}"
        ents = sum(e.renumbered + e.reinserted for e in self.entities.values())
        totals = (self.restore or {}).get("totals", {})
        return (f"brought back run {self.run_id}: {ents} entity ids "
                f"({sum(e.renumbered for e in self.entities.values())} renumbered, "
                f"{sum(e.reinserted for e in self.entities.values())} re-inserted), "
                f"{totals.get('reinserted', 0)} user rows re-inserted, {totals.get('remapped', 0)} remapped, "
                f"{self.replayed} moved again as run {self.run_id} had moved them")

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "run_outcome": self.run_outcome, "repair_run_id": self.repair_run_id, "dry_run": self.dry_run,
                "entities": {k: v.to_dict() for k, v in self.entities.items()}, "restore": self.restore,
                "replayed": self.replayed,
                "health": self.health.to_dict() if self.health else None, "outcome": self.outcome,
                "nothing_to_do": self.nothing_to_do, "message": self.message()}


def _preservation(dsn_or_conn, config, dry_run: bool, mode: str) -> BulletproofTeamPreservation:
    if dsn_or_conn is None or isinstance(dsn_or_conn, str):
        return BulletproofTeamPreservation(dsn=dsn_or_conn, config=config, dry_run=dry_run, mode=mode)
    from ._deferred import real_connection

    return BulletproofTeamPreservation(real_connection(dsn_or_conn), config=config, dry_run=dry_run, mode=mode)


def emergency_repair(dsn_or_conn=None, config: PreservationConfig | None = None, *, constraints: bool = False,
                     dry_run: bool = False) -> EmergencyRepairReport:
    """Health, (constraints,) snapshot, restore through the strategies, health again.

    A CRITICAL result afterwards rolls the repair back (``outcome`` says so): a repair that
    would leave rows lost or on the wrong team is not committed.
    """
    config = config or DEFAULT_CONFIG
    p = _preservation(dsn_or_conn, config, dry_run, "emergency")
    result = None
    try:
        with p:
            result = EmergencyRepairReport(before=p.validate_health(), dry_run=dry_run)
            if constraints:
                result.constraints = p.validate_constraints().to_dict()
            p.backup_user_data()
            result.run_id = p.report.run_id
            result.restore = p.restore_user_data().to_dict()
            result.after = p.validate_health()
            if result.after.status is HealthStatus.CRITICAL:
                raise HealthCheckFailed("health is still CRITICAL after the repair; it was rolled back: "
                                        + "; ".join(result.after.issues), stage="health", report=result.after)
    except HealthCheckFailed:
        result.outcome = "rolled_back"
        return result
    result.outcome = p.report.outcome
    return result


def _resolve_run(cur, config: PreservationConfig, run) -> int:
    ensure_state_schema(cur.connection, config)
    if run in (None, "latest"):
        cur.execute(sql.SQL("SELECT max(run_id) FROM {}").format(state(config, "snap_entities")))
        found = cur.fetchone()[0]
        if found is None:
            raise SnapshotNotFound("no durable snapshot exists yet (no protected run has started here)",
                                   stage="repair", run_id=None)
        return found
    try:
        run_id = int(run)
    except (TypeError, ValueError) as exc:
        raise SnapshotNotFound(f"{run!r} is not a run id (a number, or 'latest')", stage="repair",
                               run_id=run) from exc
    cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE run_id = %s").format(state(config, "snap_entities")),
                (run_id,))
    if not cur.fetchone()[0]:
        cur.execute(sql.SQL("SELECT outcome FROM {} WHERE run_id = %s").format(state(config, "runs")), (run_id,))
        row = cur.fetchone()
        why = "no such run" if row is None else f"its snapshot is gone (outcome {row[0]!r})"
        raise SnapshotNotFound(f"run {run_id} has no durable snapshot: {why}", stage="repair", run_id=run_id)
    return run_id


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


def _snapshot_entities(cur, config, run_id: int, entity: str) -> dict:
    cur.execute(sql.SQL("SELECT id, key FROM {} WHERE run_id = %s AND entity = %s").format(
        state(config, "snap_entities")), (run_id, entity))
    return {i: tuple(k) if k else None for i, k in cur.fetchall()}


def _desired_ids(cur, config, run_id: int, entity: str, snap: dict) -> dict:
    """``{key: id}`` to bring back: the snapshot's ids, and for keys the run (or a later
    protected run) added, the id the ledger saw last."""
    cur.execute(sql.SQL("SELECT key, id FROM {} WHERE entity = %s AND key IS NOT NULL AND last_run >= %s "
                        "ORDER BY last_run, id").format(state(config, "ledger")), (entity, run_id))
    desired = {tuple(k): i for k, i in cur.fetchall()}
    desired.update({k: i for i, k in snap.items() if k is not None})
    return desired


def _repair_entity(conn, config, catalog, run_id: int, entity: str, desired: dict) -> EntityRepair:
    out = EntityRepair(entity)
    with conn.cursor() as cur:
        snap = _snapshot_entities(cur, config, run_id, entity)
        out.in_snapshot = len(snap)
        referencing = _referencing(catalog, config, entity)
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
            cur.execute("DROP TABLE IF EXISTS _bp_renum")
            cur.execute("CREATE TEMP TABLE _bp_renum (new_id bigint PRIMARY KEY, old_id bigint UNIQUE) ON COMMIT DROP")
            _copy_rows(cur, sql.Identifier("_bp_renum"), ("new_id", "old_id"), sorted(moves.items()))
            cur.execute(renumber_statement(config, entity, referencing))
            repointed, moved = cur.fetchone()
            out.renumbered += moved
            out.references_repointed += repointed
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


def replay_moves(conn, config: PreservationConfig, catalog, run_id: int) -> int:
    """Move user rows again as run ``run_id`` moved them (a renamed club: context, content).

    The snapshot holds the rows as they were before the run; the run itself had moved some
    of them to another team and recorded it in ``mappings``. Only rows still on the id the
    run moved them away from are touched.
    """
    moved = 0
    with conn.cursor() as cur:
        for dep in catalog.user_dependents():
            pk = catalog.primary_keys.get(dep.table)
            if not pk:
                continue
            cur.execute(
                sql.SQL("UPDATE {tbl} t SET {col} = m.new_id FROM {maps} m WHERE m.run_id = %s "
                        "AND m.table_name = %s AND m.column_name = %s AND m.strategy IN ('context', 'content') "
                        "AND m.pk = {pk} AND t.{col} = m.old_id AND m.new_id IS NOT NULL "
                        "AND EXISTS (SELECT 1 FROM {ent} e WHERE e.id = m.new_id)").format(
                    tbl=sql.Identifier(config.schema, dep.table), col=sql.Identifier(dep.column),
                    maps=state(config, "mappings"), pk=pk_json(pk, "t"),
                    ent=sql.Identifier(config.schema, config.table(dep.entity))),
                (run_id, dep.table, dep.column))
            moved += cur.rowcount
    return moved


def repair_from_snapshot(dsn_or_conn=None, run="latest", config: PreservationConfig | None = None, *,
                         dry_run: bool = False) -> SnapshotRepairReport:
    """Bring back every entity id and user row of run ``run`` (see the module docstring)."""
    config = config or DEFAULT_CONFIG
    p = _preservation(dsn_or_conn, config, dry_run, "repair")
    with p:
        with p.conn.cursor() as cur:
            run_id = _resolve_run(cur, config, run)
        result = SnapshotRepairReport(run_id=run_id, dry_run=dry_run)
        with p.conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT outcome FROM {} WHERE run_id = %s").format(state(config, "runs")), (run_id,))
            row = cur.fetchone()
            result.run_outcome = row[0] if row else None
        with p.conn.cursor() as cur:  # before this repair's own snapshot adds today's ids to the ledger
            desired = {e: _desired_ids(cur, config, run_id, e, _snapshot_entities(cur, config, run_id, e))
                       for e in ENTITIES}
        p.backup_user_data()
        result.repair_run_id = p.report.run_id
        for entity in ENTITIES:
            result.entities[entity] = _repair_entity(p.conn, config, p.catalog, run_id, entity, desired[entity])
        result.restore = restore(p.conn, config, p.catalog, run_id).to_dict()
        result.replayed = replay_moves(p.conn, config, p.catalog, run_id)
        result.health = check_health(p.conn, config, p.catalog, run_id)
        p.report.health = result.health.to_dict()
        if result.health.status is HealthStatus.CRITICAL:
            raise HealthCheckFailed("health against the snapshot is CRITICAL after the repair; it was rolled "
                                    "back: " + "; ".join(result.health.issues), stage="health",
                                    report=result.health)
    result.outcome = p.report.outcome
    return result
