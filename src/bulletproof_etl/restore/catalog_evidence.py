"""Stale ids nobody knows, mapped by the votes of their rows' evidence (issue 13).

Runs after the ledger and context strategies, on the ids they left unresolved (a database
the legacy ETL damaged before any snapshot, or a reference that was already dangling):

1. teams: every stale team id's rows vote (:mod:`..health.evidence_votes`, paths in
   :mod:`..health.evidence_paths`); an id the votes decide is mapped for all its rows
   (``context``), single rows of a refused or shared id are mapped alone (``content``);
2. leagues and series follow: their rows' own teams and their users' teams, through the team
   map of step 1, vote the same way;
3. every decision is kept in ``evidence`` (run, entity, old id, decision, new id, rows
   agreeing, the votes per candidate and path, the reason), and the quarantine entries of
   refused ids carry the reason.

Ids whose rows hold no evidence at all are left to the configured hint lists and the
content strategy (row_evidence.py), as before; an id the votes refused is not.
"""

from __future__ import annotations

import logging

from psycopg2 import sql
from psycopg2.extras import Json

from ..health import evidence_paths, evidence_votes
from ..state import state

logger = logging.getLogger(__name__)

_DDL = """CREATE TABLE IF NOT EXISTS {} (
    run_id bigint NOT NULL,
    entity text NOT NULL,
    old_id bigint NOT NULL,
    decision text NOT NULL,
    new_id bigint,
    rows_holding integer NOT NULL,
    rows_agreeing integer NOT NULL,
    votes jsonb NOT NULL,
    reason text NOT NULL,
    PRIMARY KEY (run_id, entity, old_id))"""


_EXISTS = "SELECT to_regclass(format('%%I.%%I', %s::text, 'evidence'))"


def map_by_votes(cur, config, catalog, run_id, emap: dict, unresolved: dict, team_now) -> tuple:
    """Steps 1-3 of the module docstring. Moves the ids it maps from ``unresolved`` into
    ``emap`` and returns ``(rowmap, quiet)``: ``{(table, pk, column): (old, new)}`` for rows
    mapped alone, and ``{entity: ids whose rows hold no evidence}``."""
    rowmap: dict = {}
    quiet: dict = {}
    decided: list = []
    if not any(unresolved.get(e) for e in ("teams", "leagues", "series")):
        return rowmap, quiet
    schema = evidence_paths.read_schema(cur, config, catalog)
    current = evidence_paths.read_current(cur, config)
    for entity in ("teams", "leagues", "series"):
        stale = unresolved.get(entity, set())
        if not stale:
            continue
        found = evidence_votes.votes(cur, config, catalog, run_id, entity, stale, team_now=team_now,
                                     schema=schema, current=current)
        for old, v in found.items():
            decided.append(v)
            if v.decision == "mapped":
                emap.setdefault(entity, {})[old] = (v.new, "context")
                stale.discard(old)
            elif not v.with_evidence:
                quiet.setdefault(entity, set()).add(old)
            for key, new in v.row_map.items():
                rowmap[key] = (old, new)
    record(cur, config, run_id, decided)
    logger.info("evidence votes: %s", {e: sum(1 for v in decided if v.entity == e and v.decision == "mapped")
                                       for e in ("teams", "leagues", "series")})
    return rowmap, quiet


def record(cur, config, run_id, decided: list) -> None:
    """Every decision in ``evidence``, with the votes per candidate and path."""
    if run_id is None or not decided:
        return
    table = state(config, "evidence")
    cur.execute(sql.SQL(_DDL).format(table))
    cur.execute(sql.SQL("DELETE FROM {} WHERE run_id = %s").format(table), (run_id,))  # a restore run twice
    cur.executemany(
        sql.SQL("INSERT INTO {} (run_id, entity, old_id, decision, new_id, rows_holding, rows_agreeing, votes, "
                "reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)").format(table),
        [(run_id, v.entity, v.old, v.decision, v.new, v.rows, v.agreeing,
          Json({str(k): c for k, c in v.candidates.items()} | {"_conflicts": v.conflicts, "_ambiguous": v.ambiguous,
                                                                "_per_row": len(v.row_map)}), v.reason)
         for v in decided])


def recorded(cur, config, run_id) -> list:
    """The decisions a run recorded, as dicts (empty when it recorded none)."""
    cur.execute(_EXISTS, (config.state_schema,))
    if cur.fetchone()[0] is None:
        return []
    cur.execute(sql.SQL("SELECT entity, old_id, decision, new_id, rows_holding, rows_agreeing, votes, reason "
                        "FROM {} WHERE run_id = %s ORDER BY entity, old_id").format(state(config, "evidence")),
                (run_id,))
    return [{"entity": e, "old_id": o, "decision": d, "new_id": n, "rows": r, "rows_agreeing": a, "votes": v,
             "reason": why} for e, o, d, n, r, a, v, why in cur.fetchall()]


def annotate_quarantine(cur, config, catalog, run_id) -> int:
    """Put the votes' reason into the quarantine entries of this run's refused ids.

    The entry's reason keeps its form ("no strategy maps teams id 7 to exactly one team
    (<why>); reference set to NULL"), so what counts entries by their ending still counts.
    """
    cur.execute(_EXISTS, (config.state_schema,))
    if run_id is None or cur.fetchone()[0] is None:
        return 0
    changed = 0
    for dep in catalog.user_dependents():
        one = evidence_votes.ONE.get(dep.entity, dep.entity)
        cur.execute(
            sql.SQL("UPDATE {q} q SET reason = replace(q.reason, %s, %s || e.reason || ');') FROM {e} e "
                    "WHERE q.run_id = %s AND e.run_id = q.run_id AND q.table_name = %s AND q.column_name = %s "
                    "AND e.entity = %s AND e.decision <> 'mapped' "
                    "AND (q.original->>q.column_name)::bigint = e.old_id AND strpos(q.reason, %s) > 0").format(
                q=state(config, "quarantine"), e=state(config, "evidence")),
            (f" to exactly one {one};", f" to exactly one {one} (", run_id, dep.table, dep.column, dep.entity,
             f" to exactly one {one};"))
        changed += cur.rowcount
    return changed


def explain(votes: dict) -> list:
    """The votes as JSON-ready dicts, for reports."""
    return [v.to_dict() for _old, v in sorted(votes.items())]


__all__ = ["annotate_quarantine", "explain", "map_by_votes", "record", "recorded"]
