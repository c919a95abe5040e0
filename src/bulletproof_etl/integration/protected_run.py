"""One protected run of an ETL: the state a patched ``run()`` keeps on the ETL instance.

The ETL runs its own steps; the patched hooks call in here:

- the first ``get_connection()`` opens the real connection (through the ETL's own method,
  context manager or factory: ``etl_connection``), enters :class:`BulletproofTeamPreservation`
  on it (savepoint, advisory lock, the configuration checked, catalog), validates constraints
  and takes the durable snapshot at once, before the ETL's transaction holds any lock; it
  hands the ETL a :class:`DeferredConnection`, so its per-step commits become one
  transaction; later calls get the same proxy;
- the ETL's clear step runs under a statement guard that skips the deletes of entity rows
  (``clear_step``; or is replaced by the library's own clear); leagues, clubs and series are
  upserted in place, teams go through ``preserve_teams_during_import``;
- at the end, if the ETL said it succeeded, user data is restored and health checked, and
  the real connection commits once. Anything else rolls everything back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import psycopg2

from ..catalog import current_keys
from ..config import PreservationConfig
from ..errors import BulletproofError, StageFailed
from ..failures import first_line
from ..identity.upsert import upsert_entities
from ..lock_wait import bounded
from ..lock_wait import explain as explain_lock_wait
from ..preservation import BulletproofTeamPreservation, RunReport
from ..state import finish_run
from .clear_step import StatementGuard, clear_etl_rows
from .deferred_commits import DeferredConnection
from .etl_connection import EtlConnection

logger = logging.getLogger(__name__)


@dataclass
class StageEvent:
    """One progress event: a stage started, finished or failed (with a count and seconds)."""

    stage: str
    status: str  # "start", "done" or "failed"
    count: int | None = None
    detail: str = ""
    elapsed: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class ProtectedRun:
    """The protection of one ``run()``; see the module docstring."""

    def __init__(self, etl, config: PreservationConfig, hooks, *, dry_run: bool = False,
                 force: bool = False, progress=None) -> None:
        self.etl = etl
        self.config = config
        self.hooks = hooks
        self.dry_run = dry_run
        self.force = force
        self.progress = progress
        self.report = RunReport(dry_run=dry_run)
        self.p: BulletproofTeamPreservation | None = None
        self.handle: EtlConnection | None = None
        self.real = None
        self.proxy: DeferredConnection | None = None
        self.errors: list = []
        self.rollback_reason: str | None = None
        self.backed_up = False
        self.named: dict = {}  # entity -> ids of the rows its import step wrote or found

    # -- progress and failures ------------------------------------------------------------
    def emit(self, stage: str, status: str, count=None, detail: str = "", elapsed: float = 0.0) -> None:
        if self.progress is None:
            return
        try:
            self.progress(StageEvent(stage, status, count, detail, round(elapsed, 3)))
        except Exception:  # a broken progress display must not break the import
            logger.exception("the progress callback failed; continuing without it")
            self.progress = None

    def step(self, stage: str, action, count_of=None, detail_of=None, *, library: bool = True):
        """Run ``action()`` as one reported stage; record a failure, then re-raise it.

        A stage of the library waits for no lock longer than ``config.lock_timeout``."""
        self.emit(stage, "start")
        started = time.perf_counter()
        try:
            if library and self.real is not None:
                with bounded(self.real, self.config.lock_timeout):
                    result = action()
            else:
                result = action()
        except BaseException as raised:
            exc = explain_lock_wait(raised, dsn=self.p._side_dsn() if self.p else None,
                                    schemas=(self.config.schema, self.config.state_schema),
                                    timeout=self.config.lock_timeout, stage=stage)
            elapsed = time.perf_counter() - started
            self.errors.append(f"{stage}: {first_line(exc)}")
            self.emit(stage, "failed", detail=first_line(exc), elapsed=elapsed)
            if exc is not raised:
                raise exc from raised
            raise
        elapsed = time.perf_counter() - started
        count = count_of(result) if count_of else (result if isinstance(result, int) else None)
        self.emit(stage, "done", count, detail_of(result) if detail_of else "", elapsed)
        return result

    def etl_step(self, name: str, action):
        """One of the ETL's own steps (import_players ...), timed and counted in the report."""
        started = time.perf_counter()
        result = self.step(name, action, library=False)
        self.report.etl_steps[name] = {"result": result if isinstance(result, (int, float, str)) else None,
                                       "seconds": round(time.perf_counter() - started, 3)}
        return result

    def _rolled_back_by_etl(self, reason: str) -> None:
        """The ETL called rollback(): undo the whole run so far; the run will not commit."""
        if self.rollback_reason is None:
            self.rollback_reason = reason
        try:
            self.p.undo_to_start()
        except psycopg2.Error as err:  # a broken connection: end the transaction as it can
            logger.warning("undoing the run after the ETL's rollback failed (%s); rolling back", err)
            _quiet_rollback(self.real)

    # -- hooks ----------------------------------------------------------------------------
    def connection(self, open_original) -> DeferredConnection:
        if self.proxy is not None:
            return self.proxy

        def open_and_enter():
            handle = EtlConnection(open_original())
            league = getattr(self.etl, self.hooks.league_attribute, None) if self.hooks.league_attribute else None
            p = BulletproofTeamPreservation(handle.real, config=self.config, league=league, dry_run=self.dry_run,
                                            force=self.force, mode="etl")
            # a parent the ETL imports itself is not created for a team that names it
            p.create_parents = tuple(e for e in ("leagues", "clubs", "series") if e not in self.hooks.parents())
            p.defer_retirement = True  # the ETL may still create teams after its team step
            try:
                p.__enter__()
            except BaseException:
                handle.release()
                raise
            return handle, p

        self.handle, self.p = self.step("connect", open_and_enter, count_of=lambda _r: None,
                                        detail_of=lambda r: r[1].catalog.server_version, library=False)
        self.real = self.handle.real
        self.p.report.etl_steps.update(self.report.etl_steps)  # steps that ran before connecting
        self.report = self.p.report
        self.etl.bulletproof_report = self.report
        self.proxy = DeferredConnection(self.real, self._rolled_back_by_etl)
        # the snapshot now, while the ETL's transaction holds no lock (its schema step may ALTER)
        self.ensure_backup()
        return self.proxy

    def _require(self, hook: str) -> None:
        if self.p is None:
            raise BulletproofError(f"{hook} ran before the ETL opened its connection through "
                                   f"{self.hooks.get_connection}(); the protected run cannot follow it",
                                   stage="etl")

    def ensure_backup(self) -> None:
        """Constraints, then the durable snapshot: once, before the ETL changes anything."""
        self._require("the clear or import step")
        if self.backed_up:
            return
        self.backed_up = True
        self.step("constraints", self.p.validate_constraints, count_of=lambda r: len(r.repaired),
                  detail_of=lambda r: "repaired: " + "; ".join(r.repaired) if r.repaired else "ok")
        self.step("snapshot", self.p.backup_user_data,
                  count_of=lambda r: sum(r.get("rows", {}).values()),
                  detail_of=lambda r: f"run {self.report.run_id}"
                  + (" (durable)" if self.report.durable_snapshot else " (in the transaction)"))

    def clear(self, run_original) -> int:
        self.ensure_backup()
        if self.hooks.clear_mode == "replace":
            def do():
                deleted = clear_etl_rows(self.real, self.config, self.p.catalog, self.p.league)
                self.report.cleared = deleted
                return sum(deleted.values())

            return self.step("clear", do)
        guard = StatementGuard(self.config)
        self.proxy.guard = guard
        try:
            return self.step("clear", run_original, library=False)
        finally:
            self.proxy.guard = None
            self.report.cleared = dict(guard.deleted)
            self.report.clear_kept = dict(guard.skipped)

    def upsert_parent(self, entity: str, records) -> int:
        self.ensure_backup()

        def do():
            current = current_keys(self.real, self.config)[entity]
            result = upsert_entities(self.real, self.config, entity, list(records), current)
            rows = current.items() if self.config.team_identity == "parent_rows" else ()  # all rows of its keys
            self.named.setdefault(entity, set()).update(result.ids.values(), (i for i, k in rows if k in result.ids))
            self.report.parents[entity] = result.to_dict()
            return result.preserved + result.created

        return self.step(entity, do)

    def import_teams(self, teams_data) -> int:
        self.ensure_backup()
        if self.config.team_identity == "parent_rows":  # the ETL's lookup finds only the rows it imported
            self.p.parent_ids = {e: ids for e, ids in self.named.items()
                                 if self.config.table(e) in (self.report.clear_kept or {})} or None

        def do():
            out = self.p.preserve_teams_during_import(teams_data)
            return out["preserved"] + out["created"]

        return self.step("teams", do, detail_of=lambda _n: _teams_detail(self.report.teams))

    # -- the end --------------------------------------------------------------------------
    def failure_reason(self, etl_result) -> str | None:
        if self.errors:
            return self.errors[0]
        if self.rollback_reason:
            return self.rollback_reason
        if etl_result is False:
            return f"the ETL's {self.hooks.run}() returned False"
        return None

    def finish(self, etl_result):
        """Restore, check health and commit once; or roll everything back. Returns the result."""
        if self.p is None:  # the ETL never connected: nothing was protected, nothing written
            if self.errors or etl_result is False:
                self.report.error = self.report.error or (self.errors[0] if self.errors else
                                                          f"the ETL's {self.hooks.run}() returned False")
                self.report.outcome = "failed"
            else:
                self.report.outcome = "nothing_imported"
            return etl_result
        reason = self.failure_reason(etl_result)
        if reason is not None:
            self._roll_back(StageFailed(f"the protected run was rolled back: {reason}", stage="etl"))
            return False
        try:
            self.step("retire", self.p.retire_unnamed_teams, count_of=len)
            self.step("restore", self.p.restore_user_data, count_of=lambda r: r.total("remapped") + r.total("reinserted"),
                      detail_of=lambda r: _restore_detail(r))
            self.step("remove", lambda: self.p.remove_unreferenced(self.named),
                      count_of=lambda r: sum(len(v["removed"]) for v in r.values()),
                      detail_of=lambda r: ", ".join(f"{e} {len(v['removed'])} (kept for references "
                                                    f"{v['kept_for_references']})" for e, v in r.items()))
            self.step("health", lambda: self.p.validate_health(raise_on_critical=True),
                      count_of=lambda h: h.user_orphans, detail_of=lambda h: h.status.value)
        except BaseException as exc:
            self._roll_back(exc)
            if isinstance(exc, (BulletproofError, psycopg2.Error)):
                return False
            raise
        return self._commit(etl_result)

    def _commit(self, etl_result):
        p, real = self.p, self.real
        try:
            def do():
                p.__exit__(None, None, None)  # releases the savepoint (a dry run rolls back here)
                if self.dry_run:
                    real.rollback()
                    self.report.outcome = "dry_run"
                else:
                    real.commit()
                    self.report.outcome = "committed"
            self.step("rollback (dry run)" if self.dry_run else "commit", do, count_of=lambda _r: None, library=False)
        except BaseException as exc:
            self.report.outcome = "rolled_back"
            self.report.error = self.report.error or f"commit: {first_line(exc)}"
            _quiet_rollback(real)
            if p.report.run_id is not None:
                p._side(lambda c: finish_run(c, self.config, p.report.run_id, "failed", stage="commit",
                                             error=self.report.error))
            self.release()
            if isinstance(exc, (BulletproofError, psycopg2.Error)):
                return False
            raise
        self.release()
        if etl_result is None or etl_result is True:
            return True
        return etl_result

    def abort(self, exc: BaseException) -> None:
        """The ETL's run() raised: roll everything back, then the caller re-raises."""
        if self.p is None:
            self.report.error = self.report.error or (self.errors[0] if self.errors else first_line(exc))
            self.report.outcome = "failed"
            return
        self._roll_back(exc)

    def _roll_back(self, exc: BaseException) -> None:
        self.report.error = self.report.error or self.failure_reason(None) or first_line(exc)
        try:
            self.p.__exit__(type(exc), exc, exc.__traceback__)
        except BulletproofError:
            pass  # __exit__ re-raises driver errors as StageFailed; the reason is recorded above
        self.report.outcome = "rolled_back"
        _quiet_rollback(self.real)
        self.release()
        self.emit("rollback", "done", detail=self.report.error or "")

    def release(self) -> None:
        """Give the ETL's connection back (its context manager too); the run is over."""
        if self.handle is not None:
            self.handle.release()
        elif self.real is not None and not self.real.closed:
            self.real.close()


def _quiet_rollback(conn) -> None:
    if conn is None or conn.closed:
        return
    try:
        conn.rollback()
    except psycopg2.Error as err:  # never let a failed rollback hide the first error
        logger.error("rollback failed too: %s", err)


def _teams_detail(teams: dict | None) -> str:
    if not teams:
        return ""
    return ", ".join(f"{k} {teams.get(k, 0)}" for k in ("preserved", "created", "updated", "retired", "removed"))


def _restore_detail(result) -> str:
    return ", ".join(f"{k} {result.total(k)}" for k in ("remapped", "reinserted", "quarantined"))
