"""BulletproofTeamPreservation: the context manager that runs the stages in one transaction.

On the caller's connection it works inside a savepoint and never commits or closes; with
its own connection it commits once, at the end. The snapshot is made durable first, on a
second connection, so it survives a crash of the run; a dry run keeps even that inside the
transaction and rolls everything back. The transaction itself (savepoint, lock, commit,
rollback, the second connection) is :class:`._transaction.RunTransaction`; this module holds
the stages, in the order :meth:`BulletproofTeamPreservation.run` calls them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from psycopg2 import sql

from ._callbacks import staged
from ._transaction import RunTransaction
from .catalog import current_keys, read_catalog
from .config import DEFAULT_CONFIG, PreservationConfig
from .errors import BulletproofError, HealthCheckFailed
from .health.check import HealthReport, HealthStatus, check_changes, check_health
from .health.constraints import ConstraintReport, validate_constraints
from .identity.ledger import ledger_add
from .identity.retirement import remove_unreferenced, retire_unnamed
from .identity.team_upsert import upsert_teams
from .identity.validate import validate_teams
from .restore.entity_map import restore
from .restore.report import RestoreReport
from .snapshot import capture
from .snapshot.entities import snapshot_entities
from .snapshot.retention import apply_retention
from .snapshot.rows import snapshot_user_rows
from .state import ensure_state_schema, start_run

logger = logging.getLogger(__name__)


@dataclass
class RunReport:
    """Everything one protected run did, stage by stage."""

    run_id: int | None = None
    dry_run: bool = False
    durable_snapshot: bool = False
    constraints: dict | None = None
    backup: dict = field(default_factory=dict)
    # the capture path (snapshot/capture.py): which path the run took and why, what it changed
    capture: dict = field(default_factory=dict)
    teams: dict | None = None
    parents: dict = field(default_factory=dict)
    restore: dict | None = None
    health: dict | None = None
    timings: dict = field(default_factory=dict)
    outcome: str = "running"
    # filled by the integration (a protected ETL run): why it failed, what its clear
    # deleted per table, and the ETL's own steps (result and seconds)
    error: str | None = None
    cleared: dict = field(default_factory=dict)
    clear_kept: dict = field(default_factory=dict)  # entity tables whose deletes the clear skipped
    etl_steps: dict = field(default_factory=dict)
    # findings on single records that did not refuse the import, each naming its record
    warnings: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class BulletproofTeamPreservation(RunTransaction):
    """Protects one import. Use as ``with BulletproofTeamPreservation(conn) as p: p.run(teams)``."""

    def __init__(self, conn=None, *, dsn: str | None = None, config: PreservationConfig | None = None,
                 league: str | None = None, dry_run: bool = False, force: bool = False,
                 durable: bool = True, repair_constraints: bool = True, mode: str = "direct") -> None:
        self.config = config or DEFAULT_CONFIG
        self.conn = conn
        self.dsn = dsn
        self.league = league
        self.dry_run = dry_run
        self.force = force
        self.durable = durable and not dry_run
        self.repair_constraints = repair_constraints
        self.mode = mode
        self.report = RunReport(dry_run=dry_run)
        self.catalog = None
        self.stage = "start"
        self._own = conn is None
        self._entered = False
        self._xact_started = None
        self._upsert = None
        # parents the team upsert creates when a team names a missing one (the integration
        # leaves out those the ETL imports itself)
        self.create_parents = ("leagues", "clubs", "series")
        # True: teams the import does not name are retired by retire_unnamed_teams() at the end of
        # the run (the integration: the ETL may create teams after its team step)
        self.defer_retirement = False
        # {entity: ids}: with defer_retirement, a team on another row of these entities is retired
        # (the integration: the rows the ETL's own parent steps wrote or found, where its clear
        # would have deleted the others and the ETL skipped their teams)
        self.parent_ids = None
        # the capture path: the run's snapshot waits until the run first deletes or updates a row
        self._deferred = False
        self._capture_snapshot = None  # pg_current_snapshot() when the run started (capture.mark_seen)
        self._one_call = False  # run(): no caller code between the stages

    # -- the five stages ----------------------------------------------------------------
    @staged("constraints")  # before/after callbacks (issue 15)
    def validate_constraints(self, repair: bool | None = None) -> ConstraintReport:
        self.stage = "constraints"
        result = validate_constraints(self.conn, self.config, self.catalog,
                                      repair=self.repair_constraints if repair is None else repair,
                                      dry_run=self.dry_run)
        if result.repaired:
            self.catalog = read_catalog(self.conn, self.config)
            self.durable = False  # a side connection would wait on the repairs' locks and not see them
        self.report.constraints = result.to_dict()
        return result

    @staged("snapshot")  # before/after callbacks (issue 15)
    def backup_user_data(self) -> dict:
        """The snapshot: entity rows with keys, the ledger, and every user-owned row.

        On the capture path (snapshot/capture.py) the run starts without it, and takes it
        when the run first deletes or updates a row (:meth:`_deferred_snapshot`)."""
        self.stage = "snapshot"
        started = time.perf_counter()
        path = self._choose_path()
        if path == "capture":
            def begin(side):
                ensure_state_schema(side, self.config)
                self.report.run_id = start_run(side, self.config, self.mode)

            if self._side(begin):
                with self.conn.cursor() as cur:
                    capture.arm(cur, self.report.run_id)
                self._deferred = True
                self.report.capture = {"path": "capture", "snapshot": "deferred"}
                self.report.timings["snapshot"] = round(time.perf_counter() - started, 3)
                return self.report.backup
            path = "no second connection"
        self.report.capture = {"path": "full", "why": path}
        keys = current_keys(self.conn, self.config)

        def first(side):
            ensure_state_schema(side, self.config)
            run_id = start_run(side, self.config, self.mode)  # known to the run once its snapshot is whole
            self._snapshot(side, run_id, keys)
            self.report.run_id = run_id

        if self.durable and self._side(first):
            self.report.durable_snapshot = True
        else:
            ensure_state_schema(self.conn, self.config)
            first(self.conn)
        self.report.timings["snapshot"] = round(time.perf_counter() - started, 3)
        return self.report.backup

    def _snapshot(self, conn, run_id: int, keys: dict) -> None:
        self.report.backup = {"entities": snapshot_entities(conn, self.config, run_id, keys),
                              "rows": snapshot_user_rows(conn, self.config, run_id, self.catalog)}
        apply_retention(conn, self.config)

    def _choose_path(self) -> str:
        """``"capture"``, or why the run takes the full path (snapshot/capture.py)."""
        found = capture.status(self.conn, self.config, self.catalog)
        eligible = self.mode == "direct" and self._one_call and self.durable
        if found.state != "enabled":
            why = ("no capture triggers (bulletproof-etl enable installs them)" if found.state == "missing" else
                   "capture triggers missing or not ENABLE ALWAYS: "
                   + ", ".join((found.missing + found.disabled)[:5]) + "; run bulletproof-etl enable again")
            if eligible or found.state != "missing":  # the fallback, or triggers half in place
                logger.warning("full snapshot: %s", why)
            return why
        with self.conn.cursor() as cur:
            self._capture_snapshot = capture.current_snapshot(cur)  # before the look: see capture.mark_seen
            pending = capture.unseen(cur, self.config)
        if self.mode != "direct":
            return f"a run in mode {self.mode!r} takes the full snapshot"
        if not self._one_call:
            return "a run called stage by stage takes the full snapshot (the caller's steps between may commit)"
        if not self.durable:
            return "no durable snapshot (a dry run, or constraints repaired in the run)"
        if pending:
            return "changes no run has seen yet: " + ", ".join(
                f"{op} {table or '(triggers installed)'}" + (f" ({rows} rows)" if rows is not None else "")
                for table, op, rows in pending[:5])
        return "capture"

    def _deferred_snapshot(self, when: str) -> None:
        """On the capture path: if the run has deleted or updated a row, take the whole snapshot
        now, on the second connection, which still sees the database as it was before the run."""
        if not self._deferred:
            return
        with self.conn.cursor() as cur:
            done = capture.changed(cur, self.config, self.report.run_id)
        changes = {op: tables for op, tables in done.items() if op != "INSERT"}
        self.report.capture["changed"] = changes
        self.report.capture["inserted"] = done.get("INSERT", {})
        if not changes:
            return
        if not self._same_transaction():
            raise BulletproofError(
                "the caller's transaction ended during the run after the run changed rows ("
                + capture.describe(changes) + "): the state before the run is no longer readable, so this run "
                "cannot restore from it; the next run takes the full path", stage="snapshot")
        started = time.perf_counter()
        taken = self._side(lambda side: self._snapshot(side, self.report.run_id, current_keys(side, self.config)))
        if not taken:
            raise BulletproofError("no second connection for the snapshot the run needs now; "
                                   "nothing was committed", stage="snapshot")
        self._deferred = False
        self.report.durable_snapshot = True
        self.report.capture["snapshot"] = f"taken {when}, after " + capture.describe(changes)
        self.report.timings["snapshot"] = round(self.report.timings.get("snapshot", 0)
                                                + time.perf_counter() - started, 3)

    def _before_commit(self) -> None:
        """Mark the changes this run took into account as seen, and stop recording (capture.py)."""
        if self._capture_snapshot is None or self.report.run_id is None:
            return
        with self.conn.cursor() as cur:
            capture.mark_seen(cur, self.config, self.report.run_id, self._capture_snapshot)
            if self._deferred or self.report.capture.get("path") == "capture":
                capture.arm(cur, None)

    @staged("upsert")  # before/after callbacks (issue 15)
    def preserve_teams_during_import(self, teams_data) -> dict:
        self.stage = "validate"
        with self.conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT {} FROM {}").format(
                sql.Identifier(self.config.league_code),
                sql.Identifier(self.config.schema, self.config.table("leagues"))))
            known = {r[0].upper() for r in cur.fetchall()}
        records = validate_teams(teams_data, known_leagues=known or None,
                                 warnings=None if self.config.strict else self.report.warnings)
        if self.report.warnings:
            logger.warning("%d input finding(s) imported as given (strict=False): %s", len(self.report.warnings),
                           "; ".join(self.report.warnings[:5]))
        if self.league:
            records = [r for r in records if r.league_code == self.league.upper()]
        if self.report.run_id is None:
            self.backup_user_data()
        self._deferred_snapshot("before the team upsert")
        self.stage = "upsert"
        started = time.perf_counter()
        keys: dict = {}  # filled by the upsert with the keys it leaves: the ledger needs no second read
        result, parents = upsert_teams(self.conn, self.config, records, league=self.league, force=self.force,
                                       current=keys, create_parents=self.create_parents,
                                       retire=not self.defer_retirement, rekey=not self._deferred)
        self._deferred_snapshot("after the team upsert")
        for skip in result.skipped:
            self.report.warnings.append(f"teams_data record {skip['record']} (team {skip['team']!r}): "
                                        f"{skip['missing']} does not exist; skipped, as the ETL skips it")
        ledger_add(self.conn, self.config, self.report.run_id, keys)
        self._upsert = result
        self.report.teams = result.to_dict()
        for entity, res in parents.items():
            # an ETL step may have reported this entity already; what the teams needed besides is separate
            if entity not in self.report.parents:
                self.report.parents[entity] = res.to_dict()
            elif res.created or res.updated:
                self.report.parents[f"{entity} (for teams)"] = res.to_dict()
        self.report.timings["upsert"] = round(time.perf_counter() - started, 3)
        return self.report.teams

    def retire_unnamed_teams(self) -> list:
        """With ``defer_retirement``: retire the teams neither the import nor the run named."""
        up = self._upsert
        if up is None or not self.defer_retirement:
            return []
        up.retired_ids = retire_unnamed(self.conn, self.config, self.catalog, self.league, up.ids.values(),
                                        up.renamed_ids, self.parent_ids)
        up.retired = len(up.retired_ids)
        self.report.teams["retired"] = up.retired
        return up.retired_ids

    def remove_unreferenced(self, named: dict) -> dict:
        """After the restore (an ETL run): remove the entity rows the import no longer names and
        nothing references (``named``: ``{entity: ids}`` the run's import steps wrote or found),
        as the legacy ETL removes them; the report counts them and those kept for references.
        A team removed is no longer counted as retired."""
        up = self._upsert
        if up is None:  # no team step ran: nothing was named, nothing is removed
            return {}
        out = remove_unreferenced(self.conn, self.config, self.catalog, self.league, named)
        for entity, done in out.items():
            counts = self.report.teams if entity == "teams" else self.report.parents.get(entity)
            if counts is not None:
                counts.update(removed=len(done["removed"]), kept_for_references=done["kept_for_references"])
        teams = out.get("teams", {})
        gone = set(teams.get("removed", ()))
        up.removed, up.kept_for_references = len(gone), teams.get("kept_for_references", 0)
        up.retired_ids = [i for i in up.retired_ids if i not in gone]
        up.retired = self.report.teams["retired"] = len(up.retired_ids)
        return out

    @staged("restore")  # before/after callbacks (issue 15)
    def restore_user_data(self) -> RestoreReport:
        self.stage = "restore"
        started = time.perf_counter()
        if self.report.run_id is None:
            self.backup_user_data()
        inserted = self.report.capture.get("inserted")  # as the upsert's ledger_add found them
        self._deferred_snapshot("before the restore")
        if not (self._deferred and self._upsert and inserted == self.report.capture.get("inserted")):
            ledger_add(self.conn, self.config, self.report.run_id)
        up = self._upsert
        if self._deferred:  # nothing deleted or updated: no reference can have lost its row
            result = RestoreReport(run_id=self.report.run_id)
            self.report.restore = dict(result.to_dict(), skipped="the run deleted and updated no row")
            self.report.timings["restore"] = round(time.perf_counter() - started, 3)
            return result
        result = restore(self.conn, self.config, self.catalog, self.report.run_id,
                         created=up.new_ids if up else (), retired=up.retired_ids if up else ())
        self.report.restore = result.to_dict()
        self.report.timings["restore"] = round(time.perf_counter() - started, 3)
        return result

    @staged("health")  # before/after callbacks (issue 15)
    def validate_health(self, *, raise_on_critical: bool = False) -> HealthReport:
        self.stage = "health"
        started = time.perf_counter()
        self._deferred_snapshot("before the health check")
        if self._deferred:
            report = check_changes(self.conn, self.config, self.catalog, self.report.run_id,
                                   self.report.capture.get("inserted", {}))
        else:
            report = check_health(self.conn, self.config, self.catalog, self.report.run_id)
        self.report.health = report.to_dict()
        self.report.timings["health"] = round(time.perf_counter() - started, 3)
        if raise_on_critical and report.status is HealthStatus.CRITICAL:
            raise HealthCheckFailed("health is CRITICAL before commit; everything was rolled back: "
                                    + "; ".join(report.issues), stage="health", report=report)
        return report

    def run(self, teams_data) -> RunReport:
        """All five stages in order; CRITICAL health rolls everything back (HealthCheckFailed).

        With the capture triggers installed, the snapshot waits until the run deletes or
        updates a row, and a run that changes nothing copies nothing (snapshot/capture.py)."""
        self._one_call = True
        self.validate_constraints()
        self.backup_user_data()
        self.preserve_teams_during_import(teams_data)
        self.restore_user_data()
        self.validate_health(raise_on_critical=True)
        return self.report
