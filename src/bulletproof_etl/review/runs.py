"""The run history from ``runs``: outcome, duration, teams, orphans, quarantine; what changed; trends.

Read-only. A run's numbers come from the report it recorded; a run that recorded none (it
failed, or is still running) shows "-" for them, never a zero it did not count.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from psycopg2 import sql

from ..config import PreservationConfig
from ..state import relname, state

#: outcomes of a run that changed the database as its report says
SUCCESS = ("committed", "committed+expired")


@dataclass
class RunRow:
    run_id: int
    started_at: dt.datetime
    finished_at: dt.datetime | None
    outcome: str
    mode: str | None
    stage: str | None
    error: str | None
    report: dict | None
    quarantine_entries: int = 0

    @property
    def duration(self) -> float | None:
        if self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at).total_seconds(), 3)

    @property
    def ok(self) -> bool:
        return self.outcome in SUCCESS

    def _teams(self, name: str):
        return ((self.report or {}).get("teams") or {}).get(name)

    def summary(self) -> dict:
        health = (self.report or {}).get("health") or {}
        restore = ((self.report or {}).get("restore") or {}).get("totals") or {}
        return {
            "run_id": self.run_id, "started_at": self.started_at.isoformat(timespec="seconds"),
            "finished_at": self.finished_at.isoformat(timespec="seconds") if self.finished_at else None,
            "duration": self.duration, "outcome": self.outcome, "mode": self.mode, "stage": self.stage,
            "error": self.error, "health": health.get("status"),
            "preserved": self._teams("preserved"), "created": self._teams("created"),
            "retired": self._teams("retired"), "updated": self._teams("updated"),
            "orphans": health.get("user_orphans"), "remapped": restore.get("remapped"),
            "quarantined": restore.get("quarantined"), "quarantine_entries": self.quarantine_entries,
            "preservation_rate": health.get("preservation_rate"),
        }


def has_runs(cur, config: PreservationConfig) -> bool:
    cur.execute("SELECT to_regclass(%s)", (relname(config.state_schema, "runs"),))
    return cur.fetchone()[0] is not None


def history(conn, config: PreservationConfig, *, limit: int = 50) -> list:
    """The newest ``limit`` runs, newest first."""
    with conn.cursor() as cur:
        if not has_runs(cur, config):
            return []
        cur.execute(sql.SQL(
            "SELECT r.run_id, r.started_at, r.finished_at, r.outcome, r.mode, r.stage, r.error, r.report, "
            "(SELECT count(*) FROM {q} q WHERE q.run_id = r.run_id) FROM {r} r ORDER BY r.run_id DESC LIMIT %s").format(
            r=state(config, "runs"), q=state(config, "quarantine")), (limit,))
        rows = [RunRow(*row[:8], quarantine_entries=row[8]) for row in cur.fetchall()]
    conn.rollback()
    return rows


def last_success(conn, config: PreservationConfig):
    """When the newest committed import finished, or None (no state schema, or never)."""
    with conn.cursor() as cur:
        if not has_runs(cur, config):
            conn.rollback()
            return None
        cur.execute(sql.SQL("SELECT max(finished_at) FROM {} WHERE outcome = ANY(%s) AND mode IN ('etl', 'direct')")
                    .format(state(config, "runs")), (list(SUCCESS),))
        found = cur.fetchone()[0]
    conn.rollback()
    return found


def age_hours(when, now=None) -> float | None:
    if when is None:
        return None
    now = now or dt.datetime.now(dt.timezone.utc)
    return round((now - when).total_seconds() / 3600, 2)


@dataclass
class RunDetail:
    run: RunRow
    previous: RunRow | None
    changes: list = field(default_factory=list)  # (what, before, now)
    mappings: dict = field(default_factory=dict)  # strategy -> rows
    entities: dict = field(default_factory=dict)  # entity -> {"new": [...], "gone": [...]}

    def to_dict(self) -> dict:
        return {"run": self.run.summary(), "previous": self.previous.summary() if self.previous else None,
                "changes": self.changes, "mappings": self.mappings, "entities": self.entities,
                "report": self.run.report}


_COMPARED = ("outcome", "health", "duration", "preserved", "created", "updated", "retired", "orphans",
             "remapped", "quarantined", "preservation_rate")


def detail(conn, config: PreservationConfig, run_id: int) -> RunDetail | None:
    """One run, what differs from the previous import, its mappings by strategy and the teams
    it added or no longer imported (from the ledger)."""
    runs = {r.run_id: r for r in history(conn, config, limit=100000)}
    run = runs.get(run_id)
    if run is None:
        return None
    previous = next((runs[i] for i in sorted(runs, reverse=True) if i < run_id), None)
    out = RunDetail(run, previous)
    now, before = run.summary(), previous.summary() if previous else {}
    for what in _COMPARED:
        if not previous or now.get(what) != before.get(what):
            out.changes.append((what, before.get(what), now.get(what)))
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT strategy, count(*) FROM {} WHERE run_id = %s GROUP BY 1 ORDER BY 1").format(
            state(config, "mappings")), (run_id,))
        out.mappings = dict(cur.fetchall())
        cur.execute(sql.SQL(
            "SELECT entity, 'new', array_to_string(key, ' / ') FROM {l} WHERE first_run = %s "
            "AND first_run > (SELECT coalesce(min(run_id), 0) FROM {r}) "
            "UNION ALL SELECT entity, 'gone', array_to_string(key, ' / ') FROM {l} WHERE last_run = %s "
            "ORDER BY 1, 2, 3 LIMIT 400").format(l=state(config, "ledger"), r=state(config, "runs")),
            (run_id, previous.run_id if previous else -1))
        for entity, kind, key in cur.fetchall():
            out.entities.setdefault(entity, {"new": [], "gone": []})[kind].append(key)
    conn.rollback()
    return out


def trends(rows: list) -> dict:
    """Series for the charts, oldest first: duration, quarantine size, preservation rate."""
    ordered = sorted(rows, key=lambda r: r.run_id)
    return {
        "duration": [(r.run_id, r.duration) for r in ordered if r.duration is not None],
        "quarantine": [(r.run_id, r.quarantine_entries) for r in ordered if r.report is not None],
        "preservation": [(r.run_id, r.summary()["preservation_rate"]) for r in ordered
                         if r.summary()["preservation_rate"] is not None],
    }
