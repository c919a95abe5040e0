"""Health: orphans per dependent column, lost and misattached rows, constraints, preservation.

Statuses, in order of precedence:

- CRITICAL: a user-owned reference points at nothing; a snapshotted user row is neither in
  its table nor in quarantine (lost); a user row sits on a team with another natural key
  than before without a recorded context/content mapping (misattached); or the
  preservation rate is below ``critical_preservation_below`` (default 0.9).
- WARNING: an ETL-owned reference points at nothing; a constraint the library relies on is
  missing; two rows share a natural key; rows were quarantined in this run; or the
  preservation rate is below ``warn_preservation_below`` (default 1.0).
- PERFECT: none of the above.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field

from psycopg2 import sql

from .catalog import Catalog, current_keys
from .config import PreservationConfig
from .snapshot import pk_json, state


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
    lost: dict = field(default_factory=dict)  # table -> rows neither live nor quarantined
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

    def to_dict(self) -> dict:
        out = asdict(self)
        out["status"] = self.status.value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_prometheus(self) -> str:
        lines = [
            "# HELP bulletproof_health_status 0 perfect, 1 warning, 2 critical",
            "# TYPE bulletproof_health_status gauge",
            f"bulletproof_health_status {self.status.exit_code}",
            "# HELP bulletproof_orphans Rows whose reference points at no row",
            "# TYPE bulletproof_orphans gauge",
        ]
        for label, count in sorted(self.orphans.items()):
            table, column = label.split(".", 1)
            lines.append(f'bulletproof_orphans{{table="{_esc(table)}",column="{_esc(column)}"}} {count}')
        lines += ["# HELP bulletproof_lost_rows Snapshotted user rows neither live nor quarantined",
                  "# TYPE bulletproof_lost_rows gauge"]
        for table, count in sorted(self.lost.items()):
            lines.append(f'bulletproof_lost_rows{{table="{_esc(table)}"}} {count}')
        lines += ["# HELP bulletproof_quarantined_rows Rows quarantined by the last run",
                  "# TYPE bulletproof_quarantined_rows gauge", f"bulletproof_quarantined_rows {self.quarantined}"]
        if self.preservation_rate is not None:
            lines += ["# HELP bulletproof_preservation_rate Ids kept / natural keys that survived",
                      "# TYPE bulletproof_preservation_rate gauge",
                      f"bulletproof_preservation_rate {self.preservation_rate}"]
        return "\n".join(lines) + "\n"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


REQUIRED_UNIQUE = {
    "leagues": lambda c: (c.league_code,),
    "clubs": lambda c: (c.club_name,),
    "series": lambda c: (c.series_name,),
    "teams": lambda c: (c.team_club, c.team_series, c.team_league),
}


def orphan_counts(cur, config: PreservationConfig, catalog: Catalog) -> dict:
    out = {}
    for dep in catalog.dependents:
        flt = sql.SQL("")
        params: list = []
        if dep.filter_column:
            flt = sql.SQL(" AND t.{} ILIKE %s").format(sql.Identifier(dep.filter_column))
            params = [dep.filter_pattern]
        elif dep.table in config.user_rows_in_etl_tables and dep.owner == "etl":
            column, pattern = config.user_rows_in_etl_tables[dep.table]
            flt = sql.SQL(" AND t.{} NOT ILIKE %s").format(sql.Identifier(column))
            params = [pattern]
        cur.execute(
            sql.SQL("SELECT count(*) FROM {tbl} t WHERE t.{col} IS NOT NULL{flt} "
                    "AND NOT EXISTS (SELECT 1 FROM {ent} e WHERE e.id = t.{col})").format(
                tbl=sql.Identifier(config.schema, dep.table), col=sql.Identifier(dep.column), flt=flt,
                ent=sql.Identifier(config.schema, config.table(dep.entity))),
            params,
        )
        out[(dep.owner, dep.label)] = cur.fetchone()[0]
    return out


def lost_rows(cur, config, catalog, run_id) -> dict:
    out = {}
    for table in catalog.user_tables():
        pk = catalog.primary_keys.get(table)
        if not pk:
            continue
        cur.execute(
            sql.SQL("SELECT count(*) FROM {snap} s WHERE s.run_id = %s AND s.table_name = %s "
                    "AND NOT EXISTS (SELECT 1 FROM {tbl} t WHERE {pk} = s.pk) "
                    "AND NOT EXISTS (SELECT 1 FROM {q} q WHERE q.run_id = s.run_id AND q.table_name = s.table_name "
                    "AND q.pk = s.pk)").format(
                snap=state(config, "snap_rows"), tbl=sql.Identifier(config.schema, table),
                pk=pk_json(pk, "t"), q=state(config, "quarantine")),
            (run_id, table),
        )
        n = cur.fetchone()[0]
        if n:
            out[table] = n
    return out


def misattached_rows(cur, config, catalog, run_id) -> dict:
    """Rows whose reference now has another natural key than at snapshot time, unexplained."""
    out = {}
    for dep in catalog.user_dependents():
        pk = catalog.primary_keys.get(dep.table)
        if not pk:
            continue
        cur.execute(
            sql.SQL(
                "SELECT count(*) FROM {snap} s JOIN {tbl} t ON {pk} = s.pk "
                "JOIN {ents} b ON b.run_id = s.run_id AND b.entity = %s AND b.id = (s.row->>%s)::bigint "
                "JOIN {ledger} a ON a.entity = %s AND a.id = t.{col} "
                "WHERE s.run_id = %s AND s.table_name = %s AND b.key IS NOT NULL AND a.key IS DISTINCT FROM b.key "
                "AND NOT EXISTS (SELECT 1 FROM {maps} m WHERE m.run_id = s.run_id AND m.table_name = s.table_name "
                "AND m.pk = s.pk AND m.column_name = %s AND m.strategy IN ('context', 'content'))"
            ).format(snap=state(config, "snap_rows"), tbl=sql.Identifier(config.schema, dep.table),
                     pk=pk_json(pk, "t"), ents=state(config, "snap_entities"), ledger=state(config, "ledger"),
                     col=sql.Identifier(dep.column), maps=state(config, "mappings")),
            (dep.entity, dep.column, dep.entity, run_id, dep.table, dep.column),
        )
        n = cur.fetchone()[0]
        if n:
            out[dep.label] = n
    return out


def preservation(cur, config, run_id, keys_now: dict) -> tuple:
    """(ids kept, keys that survived) for teams between the snapshot and now."""
    cur.execute(sql.SQL("SELECT id, key FROM {} WHERE run_id = %s AND entity = 'teams' AND key IS NOT NULL").format(
        state(config, "snap_entities")), (run_id,))
    before = {tuple(k): i for i, k in cur.fetchall()}
    now = {}
    for i, k in keys_now["teams"].items():
        if k is not None:
            now.setdefault(k, set()).add(i)
    survived = [k for k in before if k in now]
    kept = sum(1 for k in survived if before[k] in now[k])
    return kept, len(survived)


def check_health(conn, config: PreservationConfig, catalog: Catalog, run_id=None) -> HealthReport:
    report = HealthReport(run_id=run_id, server_version=catalog.server_version)
    keys_now = current_keys(conn, config)
    with conn.cursor() as cur:
        for (owner, label), count in orphan_counts(cur, config, catalog).items():
            report.orphans[label] = report.orphans.get(label, 0) + count
            if owner == "user":
                report.user_orphans += count
            else:
                report.etl_orphans += count
        for entity, cols in REQUIRED_UNIQUE.items():
            wanted = cols(config)
            if not catalog.has_unique(config.table(entity), wanted):
                report.missing_constraints.append(f"UNIQUE {config.table(entity)}({', '.join(wanted)})")
        for entity, ids in keys_now.items():
            seen: dict = {}
            for k in ids.values():
                if k is not None:
                    seen[k] = seen.get(k, 0) + 1
            dups = sum(1 for n in seen.values() if n > 1)
            if dups:
                report.duplicate_keys[entity] = dups
        if run_id is not None:
            cur.execute("SELECT to_regclass(%s)", (f'"{config.state_schema}".snap_rows',))
            if cur.fetchone()[0] is not None:
                report.lost = lost_rows(cur, config, catalog, run_id)
                report.misattached = misattached_rows(cur, config, catalog, run_id)
                cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE run_id = %s").format(
                    state(config, "quarantine")), (run_id,))
                report.quarantined = cur.fetchone()[0]
                kept, survived = preservation(cur, config, run_id, keys_now)
                report.ids_kept, report.keys_survived = kept, survived
                report.preservation_rate = 1.0 if survived == 0 else kept / survived
    _grade(report, config)
    return report


def _grade(report: HealthReport, config: PreservationConfig) -> None:
    critical, warning = [], []
    if report.user_orphans:
        critical.append(f"{report.user_orphans} user-owned references point at nothing")
    if report.lost:
        critical.append(f"{sum(report.lost.values())} user rows lost: {report.lost}")
    if report.misattached:
        critical.append(f"{sum(report.misattached.values())} user rows on another team: {report.misattached}")
    rate = report.preservation_rate
    if rate is not None and rate < config.critical_preservation_below:
        critical.append(f"preservation rate {rate:.1%} below {config.critical_preservation_below:.0%}")
    elif rate is not None and rate < config.warn_preservation_below:
        warning.append(f"preservation rate {rate:.1%}")
    if report.etl_orphans:
        warning.append(f"{report.etl_orphans} ETL-owned references point at nothing")
    if report.missing_constraints:
        warning.append("missing constraints: " + "; ".join(report.missing_constraints))
    if report.duplicate_keys:
        warning.append(f"duplicate natural keys: {report.duplicate_keys}")
    if report.quarantined:
        warning.append(f"{report.quarantined} rows quarantined in this run")
    report.issues = critical + warning
    report.status = (HealthStatus.CRITICAL if critical else HealthStatus.WARNING if warning
                     else HealthStatus.PERFECT)
