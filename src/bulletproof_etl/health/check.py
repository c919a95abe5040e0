"""Health: orphans per dependent column, lost and misattached rows, constraints, preservation.

Statuses, in order of precedence (the thresholds are ``PreservationConfig`` fields):

- CRITICAL, something a user would miss:
  a user-owned reference points at nothing (an orphan); a row of the run's snapshot is
  neither in its table nor withheld in quarantine (lost); a user reference is on a team
  with another natural key than at snapshot time and no context or content mapping
  explains it (misattached); under the ``since_snapshot`` NULL policy, a reference that
  was set at snapshot time is NULL now without a quarantine entry; or the preservation
  rate is below ``critical_preservation_below`` (default 0.9).
- WARNING, something an operator should look at:
  an ETL-owned reference points at nothing; a unique constraint the upsert relies on, or a
  foreign key of the teams, is missing or NOT VALID; two rows share a natural key; rows
  were quarantined by the run; under the ``forbidden`` NULL policy, a user reference is
  NULL; or the preservation rate is below ``warn_preservation_below`` (default 1.0).
- PERFECT: none of the above.

The preservation rate is ids kept / team keys that survived (keys held by a team both at
snapshot time and now). With no surviving key (an import of entirely new teams) or no run
it is undefined: ``None``, and it grades nothing.

NULL policies for user references: ``allowed`` (a NULL is never a problem; the default
without a run), ``since_snapshot`` (the default with a run) and ``forbidden``.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field

from psycopg2 import sql

from ..catalog import Catalog, current_keys
from ..config import PreservationConfig
from ..identity.team_identity import existing_parents
from ..snapshot import keys as snapkeys
from ..state import relname, state, written_here
from .against_snapshot import (
    _dep_filter,
    _stage_run_state,
    during_run,
    lost_rows,
    misattached_rows,
    null_counts,
)

NULL_POLICIES = ("allowed", "since_snapshot", "forbidden")


class HealthStatus(str, enum.Enum):
    PERFECT = "PERFECT"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"

    @property
    def exit_code(self) -> int:
        return {"PERFECT": 0, "WARNING": 1, "CRITICAL": 2}[self.value]


@dataclass
class HealthReport:
    status: HealthStatus = HealthStatus.PERFECT
    orphans: dict = field(default_factory=dict)  # "table.column" -> count (user- and ETL-owned)
    user_orphans: int = 0
    etl_orphans: int = 0
    nulls: dict = field(default_factory=dict)  # "table.column" -> NULLs counted under the policy
    null_policy: str = "allowed"
    lost: dict = field(default_factory=dict)  # table -> rows neither live nor withheld in quarantine
    misattached: dict = field(default_factory=dict)  # "table.column" -> rows on another key
    missing_constraints: list = field(default_factory=list)
    duplicate_keys: dict = field(default_factory=dict)  # entity -> keys held by more than one row
    quarantined: int = 0
    preservation_rate: float | None = None
    keys_survived: int | None = None
    ids_kept: int | None = None
    issues: list = field(default_factory=list)
    run_id: int | None = None
    server_version: str = ""
    # "database": every count above is over the whole database; "changes": over what the run
    # changed, read from the capture triggers (check_changes)
    scope: str = "database"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["status"] = self.status.value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_prometheus(self) -> str:
        """The report in the Prometheus text exposition format (version 0.0.4)."""
        from .prometheus import render

        return render(self)


REQUIRED_UNIQUE = {
    "leagues": lambda c: (c.league_code,),
    "clubs": lambda c: (c.club_name,),
    "series": lambda c: (c.series_name,),
    "teams": lambda c: (c.team_club, c.team_series, c.team_league),
}


def orphan_counts(cur, config: PreservationConfig, catalog: Catalog) -> dict:
    """``{(owner, "table.column"): references to no row}`` (NULL is never an orphan)."""
    out = {}
    for dep in catalog.dependents:
        flt, params = _dep_filter(config, dep)
        cur.execute(
            sql.SQL("SELECT count(*) FROM {tbl} t WHERE t.{col} IS NOT NULL{flt} "
                    "AND NOT EXISTS (SELECT 1 FROM {ent} e WHERE e.id = t.{col})").format(
                tbl=sql.Identifier(config.schema, dep.table), col=sql.Identifier(dep.column), flt=flt,
                ent=sql.Identifier(config.schema, config.table(dep.entity))),
            params,
        )
        out[(dep.owner, dep.label)] = cur.fetchone()[0]
    return out


def preservation(cur, config, run_id, keys_now: dict) -> tuple:
    """(team ids kept, team keys that survived) between the snapshot and now."""
    cur.execute(sql.SQL("SELECT id, key FROM {} WHERE run_id = %s AND entity = 'teams' AND key IS NOT NULL").format(
        state(config, "snap_entities")), (run_id,))
    before: dict = {}
    for i, k in cur.fetchall():
        before.setdefault(tuple(k), set()).add(i)
    now: dict = {}
    for i, k in keys_now["teams"].items():
        if k is not None:
            now.setdefault(k, set()).add(i)
    survived = [k for k in before if k in now]
    kept = sum(1 for k in survived if before[k] & now[k])
    return kept, len(survived)


def _missing_constraints(cur, config, catalog) -> list:
    out = []
    for entity, cols in REQUIRED_UNIQUE.items():
        wanted = cols(config)
        if not catalog.has_unique(config.table(entity), wanted):
            out.append(f"UNIQUE {config.table(entity)}({', '.join(wanted)})")
    cur.execute(
        "SELECT a.attname, c.convalidated FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid "
        "AND a.attnum = c.conkey[1] WHERE c.contype = 'f' AND c.conrelid = to_regclass(%s)",
        (relname(config.schema, config.table("teams")),),
    )
    fks = dict(cur.fetchall())
    for col in (config.team_club, config.team_series, config.team_league):
        if col not in fks:
            out.append(f"FOREIGN KEY {config.table('teams')}({col})")
        elif not fks[col]:
            out.append(f"FOREIGN KEY {config.table('teams')}({col}) NOT VALID")
    return out


def check_health(conn, config: PreservationConfig, catalog: Catalog, run_id=None, *,
                 null_policy: str | None = None) -> HealthReport:
    """Measure everything of the module docstring; ``run_id`` adds the checks against its snapshot."""
    policy = null_policy or getattr(config, "null_policy", None) or ("since_snapshot" if run_id else "allowed")
    if policy not in NULL_POLICIES:
        raise ValueError(f"null_policy must be one of {NULL_POLICIES}, got {policy!r}")
    report = HealthReport(run_id=run_id, server_version=catalog.server_version, null_policy=policy)
    keys_now = current_keys(conn, config)
    with conn.cursor() as cur:
        for (owner, label), count in orphan_counts(cur, config, catalog).items():
            report.orphans[label] = report.orphans.get(label, 0) + count
            if owner == "user":
                report.user_orphans += count
            else:
                report.etl_orphans += count
        report.missing_constraints = _missing_constraints(cur, config, catalog)
        report.duplicate_keys = _duplicate_keys(cur, config, keys_now)
        has_state = run_id is not None and _state_exists(cur, config)
        if has_state:
            _stage_run_state(cur, config, run_id)
        keyed = snapkeys.Keyed(cur, config, run_id, catalog) if has_state else None
        # during the run, a user's own committed change is not the run's (against_snapshot.py)
        users = set() if has_state and during_run(cur, config, run_id) else None
        report.nulls = null_counts(cur, config, catalog, run_id if has_state else None, policy, keyed, users=users)
        if has_state:
            report.lost = lost_rows(cur, config, catalog, run_id, keyed)
            report.misattached = misattached_rows(cur, config, catalog, run_id, keys_now, keyed, users=users)
            cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE run_id = %s").format(
                state(config, "quarantine")), (run_id,))
            report.quarantined = cur.fetchone()[0]
            kept, survived = preservation(cur, config, run_id, keys_now)
            report.ids_kept, report.keys_survived = kept, survived
            report.preservation_rate = kept / survived if survived else None
            cur.execute("DROP TABLE _bp_health_q; DROP TABLE _bp_health_explained")
    grade(report, config)
    return report


def check_changes(conn, config: PreservationConfig, catalog: Catalog, run_id: int, inserted: dict) -> HealthReport:
    """Health of a run on the capture path that deleted and updated no row (snapshot/capture.py).

    No reference can have lost its row, and the run wrote no user row: no orphan, lost,
    misattached or NULLed reference can be the run's, so none is counted (``scope`` is
    ``"changes"``; ``bulletproof-etl health`` counts them in the whole database). What the run
    did change, its inserts (``inserted``: ``{table: rows}``), can only add duplicate keys:
    those are counted, with the constraints. Every team that was there before the run kept
    its row, id and key: the preservation rate counts them.
    """
    report = HealthReport(run_id=run_id, server_version=catalog.server_version, scope="changes",
                          null_policy=getattr(config, "null_policy", None) or "since_snapshot")
    teams = sql.Identifier(config.schema, config.table("teams"))
    with conn.cursor() as cur:
        report.missing_constraints = _missing_constraints(cur, config, catalog)
        if any(inserted.values()):
            keys_now = current_keys(conn, config)
            report.duplicate_keys = _duplicate_keys(cur, config, keys_now)
            cur.execute(sql.SQL("SELECT t.id FROM {} t WHERE NOT {}").format(teams, written_here("t")))
            kept = len({keys_now["teams"].get(i) for (i,) in cur.fetchall()} - {None})
        else:  # keys are as unique as at the last run: every team is as it was
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(teams))
            kept = cur.fetchone()[0]
    report.ids_kept = report.keys_survived = kept
    report.preservation_rate = 1.0 if kept else None
    grade(report, config)
    return report


def _duplicate_keys(cur, config: PreservationConfig, keys_now: dict) -> dict:
    """``{entity: natural keys held by more than one row}``; with team_identity "parent_rows",
    teams are duplicates only on the same league, club and series rows: teams sharing a natural
    key on different rows are kept apart on purpose."""
    out = {}
    parent_rows = existing_parents(cur, config) if config.team_identity == "parent_rows" else {}
    for entity, ids in keys_now.items():
        seen: dict = {}
        for id_, k in ids.items():
            if entity == "teams" and k is not None:
                k = parent_rows.get(id_, k)
            if k is not None:
                seen[k] = seen.get(k, 0) + 1
        dups = sum(1 for n in seen.values() if n > 1)
        if dups:
            out[entity] = dups
    return out


def _state_exists(cur, config) -> bool:
    cur.execute("SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))", (config.state_schema, "snap_rows"))
    return cur.fetchone()[0] is not None


def grade(report: HealthReport, config: PreservationConfig) -> None:
    """Set ``status`` and ``issues`` from the counts (the rules of the module docstring)."""
    critical, warning = [], []
    if report.user_orphans:
        critical.append(f"{report.user_orphans} user-owned references point at nothing")
    if report.lost:
        critical.append(f"{sum(report.lost.values())} user rows lost: {report.lost}")
    if report.misattached:
        critical.append(f"{sum(report.misattached.values())} user rows on another team: {report.misattached}")
    if report.nulls:
        what = "set to NULL without a quarantine entry" if report.null_policy == "since_snapshot" else "NULL"
        (critical if report.null_policy == "since_snapshot" else warning).append(
            f"{sum(report.nulls.values())} user references {what}: {report.nulls}")
    rate = report.preservation_rate
    if rate is not None and rate < config.critical_preservation_below:
        critical.append(f"preservation rate {rate:.1%} below {config.critical_preservation_below:.0%}")
    elif rate is not None and rate < config.warn_preservation_below:
        warning.append(f"preservation rate {rate:.1%} below {config.warn_preservation_below:.0%}")
    if report.etl_orphans:
        warning.append(f"{report.etl_orphans} ETL-owned references point at nothing")
    if report.missing_constraints:
        warning.append("missing constraints: " + "; ".join(report.missing_constraints))
    if report.duplicate_keys:
        warning.append(f"duplicate natural keys: {report.duplicate_keys}")
    if report.quarantined:
        warning.append(f"{report.quarantined} quarantine entries written by run {report.run_id}")
    report.issues = critical + warning
    report.status = (HealthStatus.CRITICAL if critical else HealthStatus.WARNING if warning
                     else HealthStatus.PERFECT)
