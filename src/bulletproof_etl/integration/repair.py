"""Repairs: the emergency orphan repair, and bringing a database back to a durable snapshot.

The emergency repair maps stale ids through the ledger where one exists and, for ids no
ledger knows (a database the legacy ETL damaged before any protected run), through the
votes of their rows' evidence (restore/catalog_evidence.py); its report lists every
decision with its votes (``evidence``).

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

from psycopg2 import sql

from ..config import DEFAULT_CONFIG, ENTITIES, PreservationConfig
from ..errors import HealthCheckFailed, SnapshotNotFound
from ..health.check import HealthReport, HealthStatus, check_health
from ..identity.snapshot_ids import EntityRepair, desired_ids, repair_entity, snapshot_entities
from ..preservation import BulletproofTeamPreservation
from ..restore import catalog_evidence
from ..restore.entity_map import restore
from ..state import ensure_state_schema, pk_json, state
from .deferred_commits import real_connection

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
    # per stale id no ledger knew: the decision of its rows' evidence votes (restore/catalog_evidence.py)
    evidence: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"before": self.before.to_dict(), "after": self.after.to_dict() if self.after else None,
                "run_id": self.run_id, "dry_run": self.dry_run, "constraints": self.constraints,
                "restore": self.restore, "outcome": self.outcome, "evidence": self.evidence}


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
                why = (f" (run {self.run_id} is recorded as {self.run_outcome!r}: a protected run that fails "
                       "or is killed commits nothing, so there is nothing to undo)")
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
            with p.conn.cursor() as cur:
                result.evidence = catalog_evidence.recorded(cur, config, result.run_id)
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
    """The run to go back to: an id, or ``latest`` (the newest committed import whose snapshot is kept).

    A snapshot may hold no rows (the first import started from an empty database): the run's
    own ids are then in the ledger, which the repair reads as well.
    """
    ensure_state_schema(cur.connection, config)
    runs = state(config, "runs")
    if run in (None, "latest"):
        cur.execute(sql.SQL("SELECT max(run_id) FROM {} WHERE outcome = 'committed' AND counts ? 'entities' "
                            "AND coalesce(mode, '') NOT IN ('repair', 'emergency')").format(runs))
        found = cur.fetchone()[0]
        if found is None:
            raise SnapshotNotFound("no committed protected import has a snapshot here yet", stage="repair",
                                   run_id=None)
        return found
    try:
        run_id = int(run)
    except (TypeError, ValueError) as exc:
        raise SnapshotNotFound(f"{run!r} is not a run id (a number, or 'latest')", stage="repair",
                               run_id=run) from exc
    cur.execute(sql.SQL("SELECT outcome, counts ? 'entities' FROM {} WHERE run_id = %s").format(runs), (run_id,))
    row = cur.fetchone()
    if row is None or row[0].endswith("+expired") or not row[1]:
        why = ("no such run" if row is None else f"retention removed its snapshot (outcome {row[0]!r})"
               if row[0].endswith("+expired") else f"it took none (outcome {row[0]!r}): on the capture path "
               "a run takes one only once it deletes or updates a row (repair from the run before it, or 'latest')")
        raise SnapshotNotFound(f"run {run_id} has no durable snapshot: {why}", stage="repair", run_id=run_id)
    return run_id


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
            desired = {e: desired_ids(cur, config, run_id, e, snapshot_entities(cur, config, run_id, e))
                       for e in ENTITIES}
        p.backup_user_data()
        result.repair_run_id = p.report.run_id
        for entity in ENTITIES:
            result.entities[entity] = repair_entity(p.conn, config, p.catalog, run_id, entity, desired[entity])
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


__all__ = ["EmergencyRepairReport", "EntityRepair", "SnapshotRepairReport", "emergency_repair",
           "repair_from_snapshot", "replay_moves"]
