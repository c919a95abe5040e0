"""validate_constraints and repairs that lose nothing.

Checks: the unique constraints the upsert relies on (one per entity key), the teams'
foreign keys to their parents, teams sharing one natural key (with ``team_identity``
``"parent_rows"``: the same league, club and series rows), teams with a NULL key part.

Repairs, in one pass (never recursive, never repeated):

1. Duplicate teams are merged: every column holding team ids (foreign keys from any schema,
   user- and ETL-owned, plus the declared columns without a key) is repointed to the survivor first (the active one with the lowest id), then the
   emptied duplicates are removed. Only entity rows are removed, never user rows; if a
   repoint would break a unique constraint of a user table (two practices of the merged
   teams at the same time), the merge of that group is refused and reported instead.
2. A missing unique constraint is added (it fails, reported, while duplicates remain).
3. A missing foreign key is added ``NOT VALID`` (new rows are checked at once) and validated
   when no row violates it; otherwise it stays pending and :func:`validate_pending` validates
   it later, once the restore has fixed the orphans.

``repair=False`` reports only; nothing is written.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import psycopg2
from psycopg2 import sql

from ..catalog import Catalog, current_keys
from ..config import PreservationConfig
from ..identity.team_identity import existing_parents
from ..state import relname
from .check import REQUIRED_UNIQUE

logger = logging.getLogger(__name__)

FK_PREFIX = "bp_fk_"


@dataclass
class ConstraintReport:
    missing_unique: list = field(default_factory=list)  # [[entity, [columns]], ...]
    missing_foreign_keys: list = field(default_factory=list)  # [[column, parent entity], ...]
    duplicate_teams: list = field(default_factory=list)  # [[survivor, dup, ...], ...]
    null_key_parts: int = 0
    repaired: list = field(default_factory=list)
    not_repaired: list = field(default_factory=list)
    repointed: dict = field(default_factory=dict)  # "table.column" -> rows moved to a survivor
    removed_teams: list = field(default_factory=list)  # duplicate ids merged away
    pending_validation: list = field(default_factory=list)  # foreign keys added NOT VALID, not yet valid

    @property
    def problems(self) -> int:
        return (len(self.missing_unique) + len(self.missing_foreign_keys) + len(self.duplicate_teams)
                + (1 if self.null_key_parts else 0))

    @property
    def ok(self) -> bool:
        """True when nothing was wrong, or everything wrong was repaired."""
        return self.problems == 0 or (not self.not_repaired and not self.pending_validation
                                      and bool(self.repaired))

    def to_dict(self) -> dict:
        out = asdict(self)
        out["ok"] = self.ok
        out["problems"] = self.problems
        return out


def _rel(config, entity) -> str:
    return relname(config.schema, config.table(entity))


def _missing_fks(cur, config: PreservationConfig) -> list:
    wanted = [(config.team_club, "clubs"), (config.team_series, "series"), (config.team_league, "leagues")]
    cur.execute(
        "SELECT a.attname FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid "
        "AND a.attnum = c.conkey[1] WHERE c.contype = 'f' AND c.conrelid = to_regclass(%s)",
        (_rel(config, "teams"),),
    )
    have = {r[0] for r in cur.fetchall()}
    return [[col, parent] for col, parent in wanted if col not in have]


def _has_unique(cur, config, entity: str, columns) -> bool:
    """Read from the server, not the catalog: the catalog may predate a repair."""
    cur.execute(
        "SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_index i "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indisunique AND i.indrelid = to_regclass(%s) GROUP BY i.indexrelid",
        (_rel(config, entity),),
    )
    return sorted(columns) in [r[0] for r in cur.fetchall()]


def _survivor_first(cur, config, ids: list) -> list:
    cur.execute(sql.SQL("SELECT id FROM {} WHERE id = ANY(%s) ORDER BY {} DESC, id").format(
        sql.Identifier(config.schema, config.table("teams")), sql.Identifier(config.team_active)), (ids,))
    return [r[0] for r in cur.fetchall()]


def validate_constraints(conn, config: PreservationConfig, catalog: Catalog, *, repair: bool = True,
                         dry_run: bool = False) -> ConstraintReport:
    """Report what is wrong and, unless ``repair`` is False, repair it without losing a row.

    ``dry_run`` is accepted for symmetry: a dry run rolls the whole transaction back anyway.
    """
    del dry_run
    report = ConstraintReport()
    teams = sql.Identifier(config.schema, config.table("teams"))
    with conn.cursor() as cur:
        for entity, cols in REQUIRED_UNIQUE.items():
            if not _has_unique(cur, config, entity, cols(config)):
                report.missing_unique.append([entity, list(cols(config))])
        report.missing_foreign_keys = _missing_fks(cur, config)
        cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL OR {} IS NULL OR {} IS NULL").format(
            teams, sql.Identifier(config.team_club), sql.Identifier(config.team_series),
            sql.Identifier(config.team_league)))
        report.null_key_parts = cur.fetchone()[0]
        # duplicates are teams of one natural key; with team_identity "parent_rows" only teams on
        # the same league, club and series rows: teams that share a natural key on different rows
        # (a series spelled two ways) are kept apart, as the ETL keeps them (identity/team_identity.py)
        groups: dict = {}
        keys_now = current_keys(conn, config)["teams"]
        parent_rows = existing_parents(cur, config) if config.team_identity == "parent_rows" else {}
        for id_, key in keys_now.items():
            if key is not None:
                groups.setdefault(parent_rows.get(id_, key), []).append(id_)
        report.duplicate_teams = sorted(_survivor_first(cur, config, ids) for ids in groups.values() if len(ids) > 1)
        if report.null_key_parts:
            report.not_repaired.append(f"{report.null_key_parts} teams have a NULL club, series or league; "
                                       "they are reported, not guessed")
        if not repair:
            return report
        for ids in report.duplicate_teams:
            _merge(cur, config, catalog, ids[0], ids[1:], report)
        for entity, cols in report.missing_unique:
            name = sql.Identifier(f"bp_unique_{config.table(entity)}_{'_'.join(cols)}"[:63])
            _try(cur, report, f"add UNIQUE {config.table(entity)}({', '.join(cols)})",
                 sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} UNIQUE ({})").format(
                     sql.Identifier(config.schema, config.table(entity)), name,
                     sql.SQL(", ").join(sql.Identifier(c) for c in cols)))
        for col, parent in report.missing_foreign_keys:
            name = f"{FK_PREFIX}teams_{col}"[:63]
            if _try(cur, report, f"add FOREIGN KEY teams({col}) NOT VALID",
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} (id) NOT VALID").format(
                        teams, sql.Identifier(name), sql.Identifier(col),
                        sql.Identifier(config.schema, config.table(parent)))):
                report.pending_validation.append(name)
        validate_pending(conn, config, report)
    return report


def validate_pending(conn, config: PreservationConfig, report: ConstraintReport | None = None) -> list:
    """Validate every foreign key this library added ``NOT VALID``; returns the names validated.

    One that still has violating rows stays pending (in ``report.pending_validation``).
    """
    validated = []
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.conname, c.conrelid::regclass::text FROM pg_constraint c "
            "JOIN pg_namespace n ON n.oid = c.connamespace "
            "WHERE c.contype = 'f' AND NOT c.convalidated AND n.nspname = %s AND c.conname LIKE %s",
            (config.schema, FK_PREFIX + "%"),
        )
        for name, _rel_name in cur.fetchall():
            cur.execute("SAVEPOINT bp_validate")
            try:
                cur.execute(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                    sql.Identifier(config.schema, config.table("teams")), sql.Identifier(name)))
            except psycopg2.Error as exc:
                cur.execute("ROLLBACK TO SAVEPOINT bp_validate")
                logger.info("foreign key %s stays NOT VALID for now: %s", name, str(exc).strip().splitlines()[0])
                if report is not None and name not in report.pending_validation:
                    report.pending_validation.append(name)
                continue
            cur.execute("RELEASE SAVEPOINT bp_validate")
            validated.append(name)
            if report is not None:
                report.repaired.append(f"validated FOREIGN KEY {name}")
                if name in report.pending_validation:
                    report.pending_validation.remove(name)
    return validated


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


def _team_columns(cur, config: PreservationConfig) -> list:
    """``(schema, table, column)`` of every single-column foreign key to teams, from any schema
    (a cascade from another schema must not fire), plus the declared columns without a key."""
    cur.execute(
        "SELECT n.nspname, rel.relname, a.attname FROM pg_constraint con "
        "JOIN pg_class rel ON rel.oid = con.conrelid JOIN pg_namespace n ON n.oid = rel.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1] "
        "WHERE con.contype = 'f' AND con.confrelid = to_regclass(%s) AND array_length(con.conkey, 1) = 1",
        (_rel(config, "teams"),),
    )
    found = {tuple(r) for r in cur.fetchall()}
    cur.execute("SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND a.attnum > 0 "
                "AND NOT a.attisdropped", (config.schema,))
    existing = {tuple(r) for r in cur.fetchall()}
    for dep in config.declared:
        if dep.entity == "teams" and (dep.table, dep.column) in existing:
            found.add((config.schema, dep.table, dep.column))
    return sorted(found)


def _merge(cur, config: PreservationConfig, catalog: Catalog, survivor: int, others: list,
           report: ConstraintReport) -> None:
    """Repoint every reference to ``others`` at ``survivor``, then remove the emptied team rows."""
    moved: dict = {}
    cur.execute("SAVEPOINT bp_merge")
    try:
        for schema, table, column in _team_columns(cur, config):
            cur.execute(sql.SQL("UPDATE {} SET {} = %s WHERE {} = ANY(%s)").format(
                sql.Identifier(schema, table), sql.Identifier(column), sql.Identifier(column)),
                (survivor, others))
            if cur.rowcount:
                label = f"{table}.{column}" if schema == config.schema else f"{schema}.{table}.{column}"
                moved[label] = moved.get(label, 0) + cur.rowcount
        cur.execute(sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(
            sql.Identifier(config.schema, config.table("teams"))), (others,))
    except psycopg2.Error as exc:
        cur.execute("ROLLBACK TO SAVEPOINT bp_merge")
        report.not_repaired.append(f"merge teams {others} into {survivor}: {str(exc).strip().splitlines()[0]}")
        return
    cur.execute("RELEASE SAVEPOINT bp_merge")
    for label, n in moved.items():
        report.repointed[label] = report.repointed.get(label, 0) + n
    report.removed_teams.extend(others)
    report.repaired.append(f"merged teams {others} into {survivor}")
    logger.info("merged duplicate teams %s into %s: %s", others, survivor, moved)
