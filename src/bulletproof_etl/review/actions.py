"""The review actions. Each one is one transaction, audited, reversible, and refuses when stale.

- :func:`assign`: a quarantined row (or every open row of the same stale reference) onto a team;
- :func:`accept`: the top candidate, when exactly one has the top score;
- :func:`discard`: the row stays quarantined (and where it is), marked with a reason;
- :func:`revert`: a recorded mapping undone (the row goes back to the team it had, e.g. a
  followed club rename that was wrong), while that team still exists;
- :func:`undo`: any earlier action, while the row is still as that action left it.

"Stale" means: the row's version (``expect_row``) or the team's (``expect_team``) differs from
the one shown, or the reference is no longer what the quarantine (or the mapping) left. A
refused action changes nothing and raises :class:`ReviewRefused`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg2 import sql

from ..catalog import current_keys, read_catalog
from ..config import PreservationConfig
from ..state import state
from .audit import (
    ReviewRefused,
    default_actor,
    lock_entity,
    lock_row,
    open_decision,
    read_actions,
    record,
    review_transaction,
)
from .candidates import Context, entity_candidates, team_candidates
from .queue import entity_of, load_entries


@dataclass
class ActionResult:
    action: str
    actions: list = field(default_factory=list)  # ids in review_actions
    rows: list = field(default_factory=list)  # "table pk"
    message: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _entries(cur, config, quarantine_ids: list, ctx=None, candidates=False) -> list:
    catalog = read_catalog(cur.connection, config)
    cur.execute(sql.SQL("SELECT id FROM {} WHERE id = ANY(%s) FOR UPDATE").format(state(config, "quarantine")),
                (quarantine_ids,))
    return load_entries(cur, config, catalog, ctx, where=sql.SQL("q.id = ANY(%s)"), params=(quarantine_ids,),
                        candidates=candidates)


def _entry(cur, config, qid: int, ctx=None, candidates=False):
    found = _entries(cur, config, [qid], ctx, candidates)
    if not found:
        raise ReviewRefused(f"quarantine entry {qid} does not exist", why="not_found")
    return found[0]


def _check_row(cur, config, entry, expect_row):
    row, version = lock_row(cur, config, entry.table_name, entry.pk)
    where = f"{entry.table_name} {_pk(entry.pk)}"
    if row is None:
        raise ReviewRefused(f"{where} is no longer in its table (quarantine entry {entry.id}); nothing changed",
                            why="row_gone")
    if expect_row and expect_row != version:
        raise ReviewRefused(f"{where} changed since it was shown (version {expect_row}, now {version}); "
                            "reload the queue; nothing changed", why="row_changed")
    ref = row.get(entry.column_name)
    if ref is not None and ref != entry.stale_id:
        raise ReviewRefused(f"{where}.{entry.column_name} is {ref} now, not what the quarantine left "
                            f"({entry.stale_id} or NULL): someone changed it; nothing changed", why="row_changed")
    return row


def _check_target(cur, config, entity: str, target: int, expect_team):
    row, version = lock_entity(cur, config, entity, target)
    if row is None:
        raise ReviewRefused(f"{entity} {target} does not exist; nothing changed", why="team_gone")
    if entity == "teams" and not row.get(config.team_active, True):
        raise ReviewRefused(f"team {target} is inactive (retired or a placeholder): choose an active team; "
                            "nothing changed", why="team_inactive")
    if expect_team and expect_team != version:
        raise ReviewRefused(f"{entity} {target} changed since it was shown (version {expect_team}, now {version}); "
                            "reload the queue; nothing changed", why="team_changed")


def _set(cur, config, table: str, pk: dict, column: str, value):
    from .audit import pk_where

    where, params = pk_where(pk)
    cur.execute(sql.SQL("UPDATE {tbl} t SET {c} = %s WHERE {w} RETURNING to_jsonb(t)").format(
        tbl=sql.Identifier(config.schema, table), c=sql.Identifier(column), w=where), [value, *params])
    return cur.fetchone()[0]


def _pk(pk: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in pk.items())


def assign(conn, config: PreservationConfig, quarantine_id: int, team_id: int, *, actor: str | None = None,
           expect_row: str | None = None, expect_team: str | None = None, same_reference: bool = False,
           _action: str = "assign") -> ActionResult:
    """Put the quarantined row on ``team_id`` (every open row of the same stale reference with
    ``same_reference``); the quarantine entry stays, marked assigned by the audited action."""
    actor = actor or default_actor()
    with review_transaction(conn, config) as cur:
        entry = _entry(cur, config, quarantine_id)
        return _assign(cur, config, entry, team_id, actor, expect_row, expect_team, same_reference, _action)


def _assign(cur, config, entry, team_id, actor, expect_row, expect_team, same_reference, action):
    if entry.status != "open":
        raise ReviewRefused(f"quarantine entry {entry.id} is {entry.status} already (action {entry.decided_by}); "
                            "undo that action first; nothing changed", why="decided")
    if not entry.column_name or not entry.entity:
        raise ReviewRefused(f"quarantine entry {entry.id} holds a row that could not be re-inserted, not a "
                            "reference: re-insert it by hand; nothing changed", why="not_a_reference")
    entries = [entry]
    if same_reference:
        cur.execute(sql.SQL("SELECT id FROM {} WHERE id <> %s AND original->>column_name = %s").format(
            state(config, "quarantine")), (entry.id, str(entry.stale_id)))
        others = [i for (i,) in cur.fetchall()]
        entries += [e for e in (_entries(cur, config, others) if others else [])
                    if e.entity == entry.entity and e.status == "open"]
    _check_target(cur, config, entry.entity, team_id, expect_team)
    result = ActionResult(action)
    for e in entries:
        before = _check_row(cur, config, e, expect_row if e is entry else None)
        after = _set(cur, config, e.table_name, e.pk, e.column_name, team_id)
        result.actions.append(record(cur, config, actor=actor, action=action, quarantine_id=e.id,
                                     table_name=e.table_name, pk=e.pk, column_name=e.column_name,
                                     before=before, after=after))
        result.rows.append(f"{e.table_name} {_pk(e.pk)}")
    result.message = (f"{len(entries)} row(s) moved to {entry.entity} {team_id}: {', '.join(result.rows)} "
                      f"(action {', '.join(map(str, result.actions))})")
    return result


def accept(conn, config: PreservationConfig, quarantine_id: int, *, actor: str | None = None,
           expect_row: str | None = None) -> ActionResult:
    """Assign the row to its top candidate; refuses when there is none or the top is shared."""
    actor = actor or default_actor()
    with review_transaction(conn, config) as cur:
        ctx = Context(cur, config, current_keys(conn, config))
        entry = _entry(cur, config, quarantine_id)
        if entry.entity == "teams":
            ranked = team_candidates(cur, ctx, entry.stale_id, entry.current or entry.original, entry.table_name)
        elif entry.entity:
            ranked = entity_candidates(cur, config, entry.entity, entry.stale_id, ctx.keys)
        else:
            ranked = []
        if not ranked:
            raise ReviewRefused(f"quarantine entry {quarantine_id}: no candidate; assign a team by hand; "
                                "nothing changed", why="no_candidate")
        if len(ranked) > 1 and ranked[1].score == ranked[0].score:
            tied = ", ".join(str(c.id) for c in ranked if c.score == ranked[0].score)
            raise ReviewRefused(f"quarantine entry {quarantine_id}: candidates {tied} share the top score "
                                f"{ranked[0].score}; choose one with assign; nothing changed", why="ambiguous")
        return _assign(cur, config, entry, ranked[0].id, actor, expect_row, ranked[0].version, False, "accept")


def discard(conn, config: PreservationConfig, quarantine_id: int, reason: str, *, actor: str | None = None,
            expect_row: str | None = None) -> ActionResult:
    """Mark the entry discarded: the row stays quarantined and where it is."""
    if not reason or not reason.strip():
        raise ReviewRefused("discard needs a reason", why="no_reason")
    actor = actor or default_actor()
    with review_transaction(conn, config) as cur:
        entry = _entry(cur, config, quarantine_id)
        if entry.status != "open":
            raise ReviewRefused(f"quarantine entry {quarantine_id} is {entry.status} already "
                                f"(action {entry.decided_by}); nothing changed", why="decided")
        row, version = lock_row(cur, config, entry.table_name, entry.pk)
        if expect_row and expect_row != version:
            raise ReviewRefused(f"{entry.table_name} {_pk(entry.pk)} changed since it was shown; reload; "
                                "nothing changed", why="row_changed")
        aid = record(cur, config, actor=actor, action="discard", quarantine_id=quarantine_id,
                     table_name=entry.table_name, pk=entry.pk, column_name=entry.column_name,
                     before={"status": "open"}, after={"status": "discarded"}, reason=reason.strip())
        return ActionResult("discard", [aid], [f"{entry.table_name} {_pk(entry.pk)}"],
                            f"quarantine entry {quarantine_id} discarded (action {aid}); the row stays quarantined")


def revert(conn, config: PreservationConfig, mapping: str, *, actor: str | None = None,
           expect_row: str | None = None) -> ActionResult:
    """Put a mapped row back on the entity it referenced before the mapping.

    ``mapping`` is its name as ``review`` lists it: ``run:table:column:primary key``."""
    from .queue import MAPPING_KEY

    actor = actor or default_actor()
    with review_transaction(conn, config) as cur:
        cur.execute(sql.SQL("SELECT m.table_name, m.pk, m.column_name, m.old_id, m.new_id, m.strategy FROM {} m "
                            "WHERE m.run_id::text = split_part(%s, ':', 1) AND {key} = %s "
                            "FOR UPDATE").format(state(config, "mappings"), key=MAPPING_KEY), (mapping, mapping))
        found = cur.fetchall()
        if not found:
            raise ReviewRefused(f"mapping {mapping} does not exist (name it run:table:column:primary key, "
                                "as `review` lists it)", why="not_found")
        if len(found) > 1:
            raise ReviewRefused(f"mapping {mapping} names {len(found)} recorded mappings; nothing changed",
                                why="ambiguous")
        table, pk, column, old, new, strategy = found[0]
        mapping_id = mapping
        where = f"{table} {_pk(pk)}"
        if strategy == "direct":
            raise ReviewRefused(f"mapping {mapping_id} is direct: the row kept its natural key, nothing to revert",
                                why="direct")
        done = open_decision(cur, config, mapping=mapping_id, lock=True)
        if done is not None:
            raise ReviewRefused(f"mapping {mapping_id} was reverted already (action {done.id})", why="decided")
        row, version = lock_row(cur, config, table, pk)
        if row is None:
            raise ReviewRefused(f"{where} is no longer in its table; nothing changed", why="row_gone")
        if (expect_row and expect_row != version) or row.get(column) != new:
            raise ReviewRefused(f"{where}.{column} changed since the mapping (it is {row.get(column)}, the mapping "
                                f"set {new}); nothing changed", why="row_changed")
        entity = entity_of(read_catalog(conn, config), table, column) or "teams"
        if old is None or lock_entity(cur, config, entity, old)[0] is None:
            raise ReviewRefused(f"{entity} {old} no longer exists: reverting would orphan {where}; "
                                "assign it instead; nothing changed", why="team_gone")
        after = _set(cur, config, table, pk, column, old)
        aid = record(cur, config, actor=actor, action="revert", mapping=mapping_id, table_name=table, pk=pk,
                     column_name=column, before=row, after=after)
        return ActionResult("revert", [aid], [where],
                            f"{where}.{column} back from {new} to {old} (mapping {mapping_id}, action {aid})")


def undo(conn, config: PreservationConfig, action_id: int, *, actor: str | None = None) -> ActionResult:
    """Undo an earlier action while its row is still exactly as the action left it."""
    actor = actor or default_actor()
    with review_transaction(conn, config) as cur:
        from psycopg2 import sql as _sql

        found = read_actions(cur, config, where=_sql.SQL("id = %s"), params=(action_id,), limit=1, lock=True)
        if not found:
            raise ReviewRefused(f"review action {action_id} does not exist", why="not_found")
        act = found[0]
        if act.action == "undo":
            raise ReviewRefused(f"action {action_id} is itself an undo: repeat the original action instead",
                                why="undo_of_undo")
        if act.undone_by is not None:
            raise ReviewRefused(f"action {action_id} was undone already (action {act.undone_by})", why="decided")
        rows = []
        before = after = None
        if act.action in ("assign", "accept", "revert"):
            row, _version = lock_row(cur, config, act.table_name, act.pk)
            where = f"{act.table_name} {_pk(act.pk)}"
            if row is None:
                raise ReviewRefused(f"{where} is no longer in its table; nothing changed", why="row_gone")
            if row != act.after:
                raise ReviewRefused(f"{where} changed since action {action_id}; nothing changed", why="row_changed")
            before, after = row, _set(cur, config, act.table_name, act.pk, act.column_name,
                                      act.before.get(act.column_name))
            rows.append(where)
        aid = record(cur, config, actor=actor, action="undo", quarantine_id=act.quarantine_id,
                     mapping=act.mapping, table_name=act.table_name, pk=act.pk, column_name=act.column_name,
                     before=before, after=after, undoes=action_id)
        cur.execute(sql.SQL("UPDATE {} SET undone_by = %s WHERE id = %s").format(state(config, "review_actions")),
                    (aid, action_id))
        return ActionResult("undo", [aid], rows, f"action {action_id} ({act.action} of {act.target}) undone "
                                                 f"(action {aid})")
