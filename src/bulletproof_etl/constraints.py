"""validate_constraints and repairs that lose nothing.

Checks: the unique constraints the upsert relies on, the teams' foreign keys to their
parents, teams sharing one natural key, teams with a NULL key part. Repairs, in one pass
(never recursive): duplicate teams are merged by first repointing every dependent column
to the survivor (the lowest id), then the emptied duplicates are removed (entity rows,
never user rows); a missing unique constraint is added; a missing foreign key is added
``NOT VALID`` and validated only when no row violates it. ``repair=False`` reports only.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import psycopg2
from psycopg2 import sql

from .catalog import Catalog, current_keys
from .config import PreservationConfig
from .health import REQUIRED_UNIQUE

logger = logging.getLogger(__name__)


@dataclass
class ConstraintReport:
    missing_unique: list = field(default_factory=list)
    missing_foreign_keys: list = field(default_factory=list)
    duplicate_teams: list = field(default_factory=list)  # [[survivor, dup, ...], ...]
    null_key_parts: int = 0
    repaired: list = field(default_factory=list)
    not_repaired: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        unresolved = bool(self.missing_unique or self.missing_foreign_keys or self.duplicate_teams
                          or self.null_key_parts)
        return not unresolved or (not self.not_repaired and bool(self.repaired))

    def to_dict(self) -> dict:
        out = asdict(self)
        out["ok"] = self.ok
        return out


def _missing_fks(cur, config: PreservationConfig) -> list:
    wanted = [(config.team_club, "clubs"), (config.team_series, "series"), (config.team_league, "leagues")]
    cur.execute(
        "SELECT a.attname FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid "
        "AND a.attnum = c.conkey[1] WHERE c.contype = 'f' AND c.conrelid = to_regclass(%s)",
        (_rel(config, "teams"),),
    )
    have = {r[0] for r in cur.fetchall()}
    return [(col, parent) for col, parent in wanted if col not in have]


def _rel(config, entity) -> str:
    def q(name):
        return '"' + name.replace('"', '""') + '"'
    return f"{q(config.schema)}.{q(config.table(entity))}"


def validate_constraints(conn, config: PreservationConfig, catalog: Catalog, *, repair: bool = True,
                         dry_run: bool = False) -> ConstraintReport:
    report = ConstraintReport()
    teams = sql.Identifier(config.schema, config.table("teams"))
    with conn.cursor() as cur:
        for entity, cols in REQUIRED_UNIQUE.items():
            if not catalog.has_unique(config.table(entity), cols(config)):
                report.missing_unique.append((entity, list(cols(config))))
        report.missing_foreign_keys = [list(x) for x in _missing_fks(cur, config)]
        cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL OR {} IS NULL OR {} IS NULL").format(
            teams, sql.Identifier(config.team_club), sql.Identifier(config.team_series),
            sql.Identifier(config.team_league)))
        report.null_key_parts = cur.fetchone()[0]
        groups: dict = {}
        for id_, key in current_keys(conn, config)["teams"].items():
            if key is not None:
                groups.setdefault(key, []).append(id_)
        report.duplicate_teams = [sorted(ids) for ids in groups.values() if len(ids) > 1]
        if not repair:
            return report
        for ids in report.duplicate_teams:
            _merge(cur, config, catalog, ids[0], ids[1:], report)
        for entity, cols in report.missing_unique:
            name = sql.Identifier(f"bp_unique_{config.table(entity)}_{'_'.join(cols)}"[:63])
            _try(cur, report, f"add UNIQUE {entity}({', '.join(cols)})",
                 sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} UNIQUE ({})").format(
                     sql.Identifier(config.schema, config.table(entity)), name,
                     sql.SQL(", ").join(sql.Identifier(c) for c in cols)))
        for col, parent in report.missing_foreign_keys:
            name = sql.Identifier(f"bp_fk_teams_{col}"[:63])
            added = _try(cur, report, f"add FOREIGN KEY teams({col}) NOT VALID",
                         sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} (id) NOT VALID").format(
                             teams, name, sql.Identifier(col), sql.Identifier(config.schema, config.table(parent))))
            if added:
                _try(cur, report, f"validate FOREIGN KEY teams({col})",
                     sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(teams, name))
    return report


def _try(cur, report: ConstraintReport, what: str, statement) -> bool:
    cur.execute("SAVEPOINT bp_fix")
    try:
        cur.execute(statement)
    except psycopg2.Error as exc:
        cur.execute("ROLLBACK TO SAVEPOINT bp_fix")
        report.not_repaired.append(f"{what}: {str(exc).strip().splitlines()[0]}")
        return False
    cur.execute("RELEASE SAVEPOINT bp_fix")
    report.repaired.append(what)
    return True


def _merge(cur, config: PreservationConfig, catalog: Catalog, survivor: int, others: list,
           report: ConstraintReport) -> None:
    """Repoint every reference to ``others`` at ``survivor``, then drop the emptied rows."""
    cur.execute("SAVEPOINT bp_merge")
    try:
        for dep in catalog.dependents:
            if dep.entity != "teams" or dep.filter_column:
                continue
            cur.execute(sql.SQL("UPDATE {} SET {} = %s WHERE {} = ANY(%s)").format(
                sql.Identifier(config.schema, dep.table), sql.Identifier(dep.column), sql.Identifier(dep.column)),
                (survivor, others))
        cur.execute(sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(
            sql.Identifier(config.schema, config.table("teams"))), (others,))
    except psycopg2.Error as exc:
        cur.execute("ROLLBACK TO SAVEPOINT bp_merge")
        report.not_repaired.append(f"merge teams {others} into {survivor}: {str(exc).strip().splitlines()[0]}")
        return
    cur.execute("RELEASE SAVEPOINT bp_merge")
    report.repaired.append(f"merged teams {others} into {survivor}")
