"""The review queue: quarantined rows grouped by stale reference, with candidates; the mappings.

Read-only. Each entry carries the row as it is now and its version, each candidate the team's
version: an action taken on them (``actions.py``) refuses when either changed meanwhile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import psycopg2
from psycopg2 import sql

from ..catalog import current_keys, read_catalog
from ..config import PreservationConfig
from ..state import relname, state
from .audit import lock_row, read_actions
from .candidates import Context, entity_candidates, team_candidates


@dataclass
class Entry:
    """One quarantine entry, as it stands now."""

    id: int
    run_id: int
    table_name: str
    pk: dict
    column_name: str | None
    entity: str | None
    stale_id: int | None
    reason: str
    created_at: str
    original: dict
    current: dict | None = None
    version: str | None = None
    status: str = "open"  # open, assigned, discarded
    decided_by: int | None = None  # the review action in force
    note: str | None = None
    candidates: list = field(default_factory=list)
    lookup_error: str | None = None  # "lookup failed" is not "no match"

    @property
    def current_ref(self):
        return (self.current or {}).get(self.column_name) if self.column_name else None

    def to_dict(self) -> dict:
        out = dict(self.__dict__)
        out["candidates"] = [c.to_dict() for c in self.candidates]
        out["current_ref"] = self.current_ref
        return out


@dataclass
class Mapping:
    id: str  # run:table:column:primary key (see MAPPING_KEY)
    run_id: int
    table_name: str
    pk: dict
    column_name: str
    old_id: int | None
    new_id: int | None
    strategy: str
    old_label: str = ""
    new_label: str = ""
    reverted_by: int | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Queue:
    entries: list = field(default_factory=list)
    mappings: list = field(default_factory=list)
    actions: list = field(default_factory=list)

    def groups(self) -> list:
        """``[(label, [entries])]`` by stale reference (entity and id), biggest first."""
        out: dict = {}
        for e in self.entries:
            label = f"{e.entity or e.table_name} {e.stale_id}" if e.stale_id is not None else \
                f"{e.table_name} (no reference)"
            out.setdefault(label, []).append(e)
        return sorted(out.items(), key=lambda kv: (-len(kv[1]), kv[0]))

    def counts(self) -> dict:
        out = {"open": 0, "assigned": 0, "discarded": 0}
        for e in self.entries:
            out[e.status] = out.get(e.status, 0) + 1
        return out

    def to_dict(self) -> dict:
        return {"counts": self.counts(),
                "groups": [{"stale_reference": label, "entries": [e.to_dict() for e in entries]}
                           for label, entries in self.groups()],
                "mappings": [m.to_dict() for m in self.mappings],
                "actions": [a.to_dict() for a in self.actions]}


def has_state(cur, config: PreservationConfig) -> bool:
    cur.execute("SELECT to_regclass(%s)", (relname(config.state_schema, "review_actions"),))
    return cur.fetchone()[0] is not None


def entity_of(catalog, table: str, column: str | None) -> str | None:
    for dep in catalog.user_dependents():
        if dep.table == table and dep.column == column:
            return dep.entity
    return None


def load_entries(cur, config, catalog, ctx, *, where: sql.Composable, params=(), candidates: bool = True) -> list:
    cur.execute(sql.SQL(
        "SELECT q.id, q.run_id, q.table_name, q.pk, q.column_name, q.reason, q.created_at, q.original, "
        "a.id, a.action, a.reason FROM {q} q LEFT JOIN LATERAL (SELECT id, action, reason FROM {a} "
        "WHERE quarantine_id = q.id AND undone_by IS NULL AND action <> 'undo' ORDER BY id DESC LIMIT 1) a "
        "ON true WHERE {w} ORDER BY q.id").format(
        q=state(config, "quarantine"), a=state(config, "review_actions"), w=where), params)
    out = []
    for qid, run_id, table, pk, column, reason, created, original, aid, action, note in cur.fetchall():
        stale = original.get(column) if column else None
        entry = Entry(qid, run_id, table, pk, column, entity_of(catalog, table, column),
                      int(stale) if stale is not None else None, reason, created.isoformat(timespec="seconds"),
                      original, decided_by=aid, note=note,
                      status={"discard": "discarded", None: "open"}.get(action, "assigned"))
        cur.execute("SAVEPOINT bp_review_lookup")
        try:
            entry.current, entry.version = lock_row(cur, config, table, pk, lock=False)
            if candidates and entry.status == "open" and entry.entity:
                if entry.entity == "teams":
                    entry.candidates = team_candidates(cur, ctx, entry.stale_id, entry.current or original, table)
                else:
                    entry.candidates = entity_candidates(cur, config, entry.entity, entry.stale_id, ctx.keys)
            cur.execute("RELEASE SAVEPOINT bp_review_lookup")
        except psycopg2.Error as exc:
            cur.execute("ROLLBACK TO SAVEPOINT bp_review_lookup")
            entry.lookup_error = str(exc).strip().splitlines()[0]
        out.append(entry)
    return out


def load_queue(conn, config: PreservationConfig, *, status: str = "open", run_id: int | None = None,
               limit: int = 500, candidates: bool = True) -> Queue:
    """The queue (``status``: open, assigned, discarded or all), the recent non-direct mappings
    and the recent review actions. Rolls back its read-only transaction before returning."""
    queue = Queue()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", (relname(config.state_schema, "quarantine"),))
            if cur.fetchone()[0] is None:
                return queue
            if not has_state(cur, config):  # a state schema older than the review: bring it up to date
                from ..state import ensure_state_schema

                ensure_state_schema(conn, config)
                conn.commit()
            catalog = read_catalog(conn, config)
            ctx = Context(cur, config, current_keys(conn, config))
            cond = [sql.SQL("true")]
            params: list = []
            if run_id is not None:
                cond.append(sql.SQL("q.run_id = %s"))
                params.append(run_id)
            entries = load_entries(cur, config, catalog, ctx, where=sql.SQL(" AND ").join(cond), params=params,
                                   candidates=candidates)
            queue.entries = [e for e in entries if status == "all" or e.status == status][:limit]
            queue.mappings = load_mappings(cur, config, ctx, run_id=run_id)
            queue.actions = read_actions(cur, config, limit=100)
    finally:
        conn.rollback()
    return queue


#: a mapping's name: "run:table:column:primary key values" (the mappings table has no id column;
#: a sequence would move in every dry run, which must change nothing)
MAPPING_KEY = sql.SQL("m.run_id::text || ':' || m.table_name || ':' || m.column_name || ':' || "
                      "(SELECT string_agg(value, ',' ORDER BY key) FROM jsonb_each_text(m.pk))")


def load_mappings(cur, config, ctx, *, run_id=None, limit: int = 300) -> list:
    """Mappings that moved a row to another natural key (every strategy but ``direct``), newest first."""
    cur.execute(sql.SQL(
        "SELECT x.*, a.id FROM (SELECT {key} AS key, m.run_id, m.table_name, m.pk, m.column_name, "
        "m.old_id, m.new_id, m.strategy FROM {m} m WHERE m.strategy <> 'direct' "
        "AND (%s::bigint IS NULL OR m.run_id = %s)) x LEFT JOIN LATERAL (SELECT id FROM {a} WHERE mapping = x.key "
        "AND undone_by IS NULL AND action = 'revert' LIMIT 1) a ON true "
        "ORDER BY x.run_id DESC, x.table_name, x.key LIMIT %s").format(
        key=MAPPING_KEY, m=state(config, "mappings"), a=state(config, "review_actions")), (run_id, run_id, limit))
    out = []
    for key, rid, table, pk, column, old, new, strategy, reverted in cur.fetchall():
        out.append(Mapping(key, rid, table, pk, column, old, new, strategy, ctx.team_label(old),
                           ctx.team_label(new), reverted))
    return out


def dumps(queue: Queue) -> str:
    return json.dumps(queue.to_dict(), indent=2, sort_keys=True, default=str)
