"""BulletproofTeamPreservation: the context manager that runs the stages in one transaction.

On the caller's connection it works inside a savepoint and never commits or closes; with
its own connection it commits once, at the end. The snapshot is made durable first, on a
second connection, so it survives a crash of the run; a dry run keeps even that inside the
transaction and rolls everything back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from . import _sequences as sequences
from . import db, failures
from .catalog import current_keys, read_catalog
from .config import DEFAULT_CONFIG, PreservationConfig
from .constraints import ConstraintReport, validate_constraints
from .errors import BulletproofError, ConcurrentRun, HealthCheckFailed
from .health import HealthReport, HealthStatus, check_health
from .ledger import ledger_add
from .restore import RestoreReport, restore
from .snapshot import (
    apply_retention,
    ensure_state_schema,
    finish_run,
    snapshot_entities,
    snapshot_user_rows,
    start_run,
)
from .team_upsert import upsert_teams
from .validate import validate_teams

logger = logging.getLogger(__name__)

#: pg_advisory lock key: two protected imports never run at once on one database.
LOCK_KEY = 0x62756C6C  # "bull"


@dataclass
class RunReport:
    """Everything one protected run did, stage by stage."""

    run_id: int | None = None
    dry_run: bool = False
    durable_snapshot: bool = False
    constraints: dict | None = None
    backup: dict = field(default_factory=dict)
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
    etl_steps: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class BulletproofTeamPreservation:
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

    # -- transaction handling ---------------------------------------------------------
    def __enter__(self) -> BulletproofTeamPreservation:
        if self._own:
            self.conn = db.connect(self.dsn)
        elif self.conn.autocommit:
            raise BulletproofError("the connection is in autocommit mode; one transaction is needed",
                                   stage="start")
        with self.conn.cursor() as cur:
            if not self._own:
                cur.execute("SAVEPOINT bp_run")
            cur.execute("SELECT now()")
            self._xact_started = cur.fetchone()[0]
            cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK_KEY,))
            if not cur.fetchone()[0]:
                self._rollback()
                if self._own:  # nobody else will close the connection we opened
                    self.conn.close()
                raise ConcurrentRun("another protected import is running on this database; "
                                    "this one did nothing (try again when it has finished)", stage="lock")
        try:
            # nextval() survives a rollback: remember the sequences the run may move (see _sequences)
            self._sequences = sequences.capture(self.conn, self.config)
            self._side_target = self._side_dsn() if self.durable else None
            self.catalog = read_catalog(self.conn, self.config)
        except Exception as exc:  # nothing was written: give back the savepoint and say why, clearly
            self._rollback()
            error = failures.translate(exc, stage="start", in_stage=True, run_id=None, conn=self.conn,
                                       schemas=(self.config.schema, self.config.state_schema))
            if self._own:
                self.conn.close()
            if error is not None:
                raise error from exc
            raise
        self._entered = True
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if not self._entered:
            return False
        error = None
        try:
            if exc_type is not None or self.dry_run:
                self._rollback()
                self.report.outcome = "dry_run" if exc_type is None else "rolled_back"
                if exc_type is not None:
                    self._record_failure(exc)
            else:
                try:
                    self._commit()
                except psycopg2.Error as err:
                    if self.report.outcome != "running":  # committed; only recording the run failed
                        logger.error("the import was committed, but recording run %s failed: %s",
                                     self.report.run_id, err)
                    else:  # COMMIT itself failed (a killed connection): nothing was committed
                        exc, tb = err, err.__traceback__
                        self._rollback()
                        self._record_failure(err)
            if exc is not None:  # one clear error: the stage, the cause, the missing privilege
                error = failures.translate(exc, stage=self.stage, in_stage=self.stage == "commit"
                                           or failures.raised_in_stage(tb, type(self)), run_id=self.report.run_id,
                                           conn=self.conn, schemas=(self.config.schema, self.config.state_schema))
        finally:
            if self._own:
                self.conn.close()
        if error is not None:
            raise error from exc
        return False

    def _same_transaction(self) -> bool:
        """False when the caller committed or rolled back while we ran (our savepoint is gone)."""
        if self._own:
            return True
        with self.conn.cursor() as cur:
            cur.execute("SELECT now()")
            return cur.fetchone()[0] == self._xact_started

    def _rollback(self) -> None:
        try:
            if self._own:
                self.conn.rollback()
            else:
                try:  # first, as it works in an aborted transaction too (where nothing can be asked)
                    with self.conn.cursor() as cur:
                        cur.execute("ROLLBACK TO SAVEPOINT bp_run")
                        cur.execute("RELEASE SAVEPOINT bp_run")
                except psycopg2.errors.InvalidSavepointSpecification:
                    logger.warning("the caller's transaction ended during the protected run; "
                                   "only what it had not committed can be rolled back")
                    self.conn.rollback()
                    return
        except psycopg2.Error as err:  # never let a failed rollback hide the original error
            logger.error("rollback failed too: %s", err)
            return
        self._reset_sequences()

    def undo_to_start(self) -> None:
        """Undo every write since ``__enter__`` and stay in the run (a wrapped ETL rolled back).

        The run itself is then bound to fail: its caller rolls back at the end as well.
        """
        with self.conn.cursor() as cur:
            if self._own:
                self.conn.rollback()
            else:
                cur.execute("ROLLBACK TO SAVEPOINT bp_run")
            cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK_KEY,))
            cur.fetchone()
        self._reset_sequences()

    def _reset_sequences(self) -> None:
        """Set back the sequences the rolled-back run moved, under the lock (released by the rollback)."""
        if not getattr(self, "_sequences", None):
            return
        try:
            with self.conn.cursor() as cur:
                cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK_KEY,))
                if cur.fetchone()[0]:
                    moved = sequences.reset(self.conn, self._sequences)
                    if moved:
                        logger.info("set %d id sequences back to where they were", moved)
            if self._own:
                self.conn.rollback()
        except psycopg2.Error as err:
            logger.warning("could not set the id sequences back (ids will have a gap): %s", err)
            if self._own and not self.conn.closed:
                self.conn.rollback()

    def _commit(self) -> None:
        self.stage = "commit"
        if self._own:
            self.conn.commit()
            self.report.outcome = "committed"
        elif not self._same_transaction():
            self.report.outcome = "completed (the caller committed during the run: not atomic)"
        else:
            with self.conn.cursor() as cur:
                cur.execute("RELEASE SAVEPOINT bp_run")
            self.report.outcome = "completed (the caller commits)"
        if self.report.run_id is not None:
            self._side(lambda c: finish_run(c, self.config, self.report.run_id, "committed",
                                        report=_jsonable(self.report.to_dict())))

    def _record_failure(self, exc) -> None:
        self.report.outcome = "rolled_back"
        if self.report.error is None:
            self.report.error = str(exc).strip() or type(exc).__name__
        if self.report.run_id is not None:
            try:
                self._side(lambda c: finish_run(c, self.config, self.report.run_id, "failed", stage=self.stage,
                                                error=str(exc)[:2000]))
            except psycopg2.Error as err:  # never let the bookkeeping hide the original error
                logger.error("could not record run %s as failed: %s", self.report.run_id, err)

    def _side_dsn(self) -> str | None:
        if getattr(self, "_side_target", None):  # read while the connection lived (it may be dead now)
            return self._side_target
        if self.dsn or self._own:
            return db.resolve_dsn(self.dsn)
        return db.dsn_of(self.conn)

    def _side(self, action) -> bool:
        """Run ``action(conn)`` on a second connection and commit it (durable bookkeeping)."""
        if not self.durable:
            return False
        try:
            side = psycopg2.connect(self._side_dsn())
        except psycopg2.Error as err:
            logger.warning("no second connection for durable bookkeeping: %s", str(err).strip())
            return False
        try:
            action(side)
            side.commit()
            return True
        finally:
            side.close()

    # -- the five stages ----------------------------------------------------------------
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

    def backup_user_data(self) -> dict:
        """The snapshot: entity rows with keys, the ledger, and every user-owned row."""
        self.stage = "snapshot"
        started = time.perf_counter()
        keys = current_keys(self.conn, self.config)

        def first(side):
            ensure_state_schema(side, self.config)
            run_id = start_run(side, self.config, self.mode)  # known to the run once its snapshot is whole
            self.report.backup = {"entities": snapshot_entities(side, self.config, run_id, keys),
                                  "rows": snapshot_user_rows(side, self.config, run_id, self.catalog)}
            apply_retention(side, self.config)
            self.report.run_id = run_id

        if self.durable and self._side(first):
            self.report.durable_snapshot = True
        else:
            ensure_state_schema(self.conn, self.config)
            first(self.conn)
        self.report.timings["snapshot"] = round(time.perf_counter() - started, 3)
        return self.report.backup

    def preserve_teams_during_import(self, teams_data) -> dict:
        self.stage = "validate"
        with self.conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT {} FROM {}").format(
                sql.Identifier(self.config.league_code),
                sql.Identifier(self.config.schema, self.config.table("leagues"))))
            known = {r[0].upper() for r in cur.fetchall()}
        records = validate_teams(teams_data, known_leagues=known or None)
        if self.league:
            records = [r for r in records if r.league_code == self.league.upper()]
        if self.report.run_id is None:
            self.backup_user_data()
        self.stage = "upsert"
        started = time.perf_counter()
        keys: dict = {}  # filled by the upsert with the keys it leaves: the ledger needs no second read
        result, parents = upsert_teams(self.conn, self.config, records, league=self.league, force=self.force,
                                       current=keys)
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

    def restore_user_data(self) -> RestoreReport:
        self.stage = "restore"
        started = time.perf_counter()
        if self.report.run_id is None:
            self.backup_user_data()
        ledger_add(self.conn, self.config, self.report.run_id)
        up = self._upsert
        result = restore(self.conn, self.config, self.catalog, self.report.run_id,
                         created=up.new_ids if up else (), retired=up.retired_ids if up else ())
        self.report.restore = result.to_dict()
        self.report.timings["restore"] = round(time.perf_counter() - started, 3)
        return result

    def validate_health(self, *, raise_on_critical: bool = False) -> HealthReport:
        self.stage = "health"
        started = time.perf_counter()
        report = check_health(self.conn, self.config, self.catalog, self.report.run_id)
        self.report.health = report.to_dict()
        self.report.timings["health"] = round(time.perf_counter() - started, 3)
        if raise_on_critical and report.status is HealthStatus.CRITICAL:
            raise HealthCheckFailed("health is CRITICAL before commit; everything was rolled back: "
                                    + "; ".join(report.issues), stage="health", report=report)
        return report

    def run(self, teams_data) -> RunReport:
        """All five stages in order; CRITICAL health rolls everything back (HealthCheckFailed)."""
        self.validate_constraints()
        self.backup_user_data()
        self.preserve_teams_during_import(teams_data)
        self.restore_user_data()
        self.validate_health(raise_on_critical=True)
        return self.report


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, HealthStatus):
        return value.value
    return value
