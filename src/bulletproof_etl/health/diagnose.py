"""Diagnosis: orphaned references per dependent column, with example rows, and the runs kept.

Read-only. For each dangling id in the examples it says whether the identity ledger knows
its natural key (then the direct strategy can map it, and whether that key exists now).
For every dangling id of a user-owned column that the ledger does not know, it shows what
the emergency repair would decide from its rows' evidence (evidence_votes.py): the
candidates, their votes per path, and the decision with its reason (``stale_ids``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from psycopg2 import sql

from ..catalog import current_keys, read_catalog
from ..config import DEFAULT_CONFIG, PreservationConfig
from ..state import pk_json, state
from . import evidence_paths, evidence_votes

EXAMPLES = 5


@dataclass
class ColumnDiagnosis:
    column: str  # "table.column"
    entity: str
    owner: str  # "user" or "etl"
    has_fk: bool
    orphans: int = 0
    examples: list = field(default_factory=list)  # [{"pk": ..., "id": ..., "ledger_key": [...], "key_now": id}]


@dataclass
class DiagnoseReport:
    columns: list = field(default_factory=list)
    runs: list = field(default_factory=list)  # the newest runs: run_id, started_at, outcome, snapshot
    state_schema: bool = False
    # per dangling id the ledger does not know: entity, old_id, candidates {id: {rows, paths}},
    # decision (mapped, per_row, refused), new_id, reason
    stale_ids: list = field(default_factory=list)

    @property
    def user_orphans(self) -> int:
        return sum(c.orphans for c in self.columns if c.owner == "user")

    @property
    def etl_orphans(self) -> int:
        return sum(c.orphans for c in self.columns if c.owner == "etl")

    @property
    def exit_code(self) -> int:
        return 2 if self.user_orphans else 1 if self.etl_orphans else 0

    def to_dict(self) -> dict:
        return {"columns": [asdict(c) for c in self.columns], "runs": self.runs,
                "state_schema": self.state_schema, "user_orphans": self.user_orphans,
                "etl_orphans": self.etl_orphans, "stale_ids": self.stale_ids}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)


def _filter(config, dep):
    if dep.filter_column:
        return sql.SQL(" AND t.{} ILIKE %s").format(sql.Identifier(dep.filter_column)), [dep.filter_pattern]
    if dep.table in config.user_rows_in_etl_tables and dep.owner == "etl":
        column, pattern = config.user_rows_in_etl_tables[dep.table]
        return sql.SQL(" AND NOT coalesce(t.{} ILIKE %s, false)").format(sql.Identifier(column)), [pattern]
    return sql.SQL(""), []


def diagnose(conn, config: PreservationConfig | None = None, *, examples: int = EXAMPLES,
             votes: bool = True) -> DiagnoseReport:
    """Count orphans in every dependent column; up to ``examples`` rows each; with ``votes``,
    the evidence votes of every dangling id the ledger does not know. Writes nothing."""
    config = config or DEFAULT_CONFIG
    catalog = read_catalog(conn, config)
    report = DiagnoseReport()
    holders = None
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))", (config.state_schema, "ledger"))
        report.state_schema = cur.fetchone()[0] is not None
        for dep in catalog.dependents:
            col = ColumnDiagnosis(dep.label if not dep.filter_column else f"{dep.label} (user rows)",
                                  dep.entity, dep.owner, dep.has_fk)
            flt, params = _filter(config, dep)
            ent = sql.Identifier(config.schema, config.table(dep.entity))
            base = sql.SQL("FROM {tbl} t WHERE t.{c} IS NOT NULL{flt} AND NOT EXISTS "
                           "(SELECT 1 FROM {ent} e WHERE e.id = t.{c})").format(
                tbl=sql.Identifier(config.schema, dep.table), c=sql.Identifier(dep.column), flt=flt, ent=ent)
            cur.execute(sql.SQL("SELECT count(*) ") + base, params)
            col.orphans = cur.fetchone()[0]
            pk = catalog.primary_keys.get(dep.table)
            if col.orphans and pk:
                cur.execute(sql.SQL("SELECT {pk}, t.{c}::bigint ").format(pk=pk_json(pk, "t"),
                                                                          c=sql.Identifier(dep.column))
                            + base + sql.SQL(" ORDER BY 2, 1::text LIMIT %s"), params + [examples])
                col.examples = [{"pk": p, "id": i} for p, i in cur.fetchall()]
                if report.state_schema:
                    if holders is None:
                        holders = _holders(conn, config)
                    _explain(cur, config, dep.entity, col.examples, holders[dep.entity])
            report.columns.append(col)
        if report.state_schema:
            cur.execute(sql.SQL(
                "SELECT r.run_id, r.started_at, r.outcome, r.mode, EXISTS (SELECT 1 FROM {snap} s "
                "WHERE s.run_id = r.run_id) FROM {runs} r ORDER BY r.run_id DESC LIMIT 10").format(
                snap=state(config, "snap_entities"), runs=state(config, "runs")))
            report.runs = [{"run_id": r, "started_at": str(s), "outcome": o, "mode": m, "snapshot": has}
                           for r, s, o, m, has in cur.fetchall()]
        if votes and report.user_orphans:
            report.stale_ids = _votes(cur, config, catalog, report.state_schema)
    conn.rollback()
    return report


def _votes(cur, config, catalog, ledger: bool) -> list:
    """What the emergency repair's votes would decide for each dangling id no ledger knows."""
    stale: dict = {}
    for dep in catalog.user_dependents():
        flt, params = _filter(config, dep)
        cur.execute(sql.SQL("SELECT DISTINCT t.{c}::bigint FROM {tbl} t WHERE t.{c} IS NOT NULL{flt} AND NOT EXISTS "
                            "(SELECT 1 FROM {ent} e WHERE e.id = t.{c})").format(
            c=sql.Identifier(dep.column), tbl=sql.Identifier(config.schema, dep.table), flt=flt,
            ent=sql.Identifier(config.schema, config.table(dep.entity))), params)
        stale.setdefault(dep.entity, set()).update(r[0] for r in cur.fetchall())
    if ledger:
        for entity, ids in stale.items():
            cur.execute(sql.SQL("SELECT id FROM {} WHERE entity = %s AND id = ANY(%s)").format(
                state(config, "ledger")), (entity, sorted(ids)))
            ids.difference_update(r[0] for r in cur.fetchall())
    schema = evidence_paths.read_schema(cur, config, catalog)
    current = evidence_paths.read_current(cur, config)
    decided: dict = {}
    teams_now = set(current.parent["leagues"])

    def team_now(team):
        v = decided.get(("teams", team))
        return v.new if v is not None and v.decision == "mapped" else team if team in teams_now else None

    for entity in ("teams", "leagues", "series"):
        if stale.get(entity):
            found = evidence_votes.votes(cur, config, catalog, None, entity, stale[entity], team_now=team_now,
                                         schema=schema, current=current)
            decided.update({(entity, old): v for old, v in found.items()})
    return [v.to_dict() for _k, v in sorted(decided.items())]


def _holders(conn, config) -> dict:
    """``{entity: {key: [ids holding it now]}}``."""
    out: dict = {}
    for entity, ids in current_keys(conn, config).items():
        by_key = out.setdefault(entity, {})
        for i, k in ids.items():
            if k is not None:
                by_key.setdefault(tuple(k), []).append(i)
    return out


def _explain(cur, config, entity: str, examples: list, holders: dict) -> None:
    """Add what the ledger knows: the id's natural key, and the id holding that key now."""
    cur.execute(sql.SQL("SELECT id, key FROM {} WHERE entity = %s AND id = ANY(%s)").format(
        state(config, "ledger")), (entity, [e["id"] for e in examples]))
    known = dict(cur.fetchall())
    for example in examples:
        key = known.get(example["id"])
        example["ledger_key"] = key
        ids = holders.get(tuple(key), []) if key else []
        example["key_now"] = ids[0] if len(ids) == 1 else None
