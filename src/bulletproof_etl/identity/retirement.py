"""Retiring teams an import no longer names, refusing an import that would retire too many, and
removing the entity rows nothing references any more.

A team absent from a full import is retired (``is_active = false``): users' rows may still
point at it. The team upsert retires at once (:func:`retire_staged`), or, in a protected ETL
run whose ETL may create teams after its team step, the run retires at its end
(:func:`retire_unnamed`). At the very end of a protected ETL run, after the restore,
:func:`remove_unreferenced` removes the retired teams and the leagues, clubs and series the
import no longer names that nothing references, as the legacy ETL removes them; the others stay.
"""

from __future__ import annotations

import logging

import psycopg2.errors
from psycopg2 import sql

from ..catalog import current_keys, foreign_keys_to
from ..config import PreservationConfig
from ..errors import ImportRefused
from ..state import copy_rows, state, written_here
from .ledger_ids import create_fk_indexes, drop_fk_indexes

logger = logging.getLogger(__name__)


def _scope(config: PreservationConfig, league: str | None) -> tuple:
    if league is None:
        return sql.SQL("true"), ()
    return (
        sql.SQL("t.{lg} IN (SELECT id FROM {leagues} WHERE upper({code}) = upper(%s))").format(
            lg=sql.Identifier(config.team_league),
            leagues=sql.Identifier(config.schema, config.table("leagues")),
            code=sql.Identifier(config.league_code),
        ),
        (league,),
    )


def check_retirement(cur, config: PreservationConfig, league, force: bool, incoming: int) -> None:
    """Refuse an import that would retire every team, or more than the configured share."""
    scope, params = _scope(config, league)
    cur.execute(
        sql.SQL(
            "SELECT count(*) FILTER (WHERE s.id IS NULL), count(*) "
            "FROM {tbl} t LEFT JOIN (SELECT DISTINCT id FROM _bp_stage WHERE id IS NOT NULL) s ON s.id = t.id "
            "WHERE t.{active} AND {scope}"
        ).format(tbl=sql.Identifier(config.schema, config.table("teams")),
                 active=sql.Identifier(config.team_active), scope=scope),
        params,
    )
    retiring, total = cur.fetchone()
    if total == 0:  # a legacy clear emptied the table: measure against what the ledger saw last
        retiring, total = _ledger_baseline(cur, config, league)
    if incoming == 0 and total > 0 and not config.allow_empty_import and not force:
        raise ImportRefused(
            f"the import holds no teams and would retire all {total} active teams; "
            "refused (pass force=True or allow_empty_import=True if this is really wanted)",
            stage="upsert", retiring=retiring, total=total,
        )
    if total and retiring / total > config.max_retire_share and not force:
        raise ImportRefused(
            f"the import would retire {retiring} of {total} active teams "
            f"({retiring / total:.0%} > max_retire_share {config.max_retire_share:.0%}); refused "
            "(pass force=True to import anyway)",
            stage="upsert", retiring=retiring, total=total,
        )


def _ledger_baseline(cur, config: PreservationConfig, league) -> tuple:
    """``(absent from the import, total)`` among the active teams of the ledger's latest run
    (the snapshot of this run, taken before the legacy ETL deleted them: their ``last_run``
    is ``PRESENT``), within ``league``."""
    cur.execute(
        sql.SQL(
            "SELECT count(*) FILTER (WHERE s.key IS NULL), count(*) FROM {ledger} l "
            "LEFT JOIN (SELECT DISTINCT key FROM _bp_stage WHERE id IS NOT NULL) s ON s.key = l.key "
            "WHERE l.entity = 'teams' "
            "AND l.last_run = (SELECT max(last_run) FROM {ledger} WHERE entity = 'teams') "
            "AND coalesce((l.row->>%(active)s)::boolean, true) "
            "AND (%(league)s::text IS NULL OR l.key[1] = upper(%(league)s::text))"
        ).format(ledger=state(config, "ledger")),
        {"active": config.team_active, "league": league},
    )
    return cur.fetchone()


def retire_staged(cur, config: PreservationConfig, league) -> list:
    scope, params = _scope(config, league)
    cur.execute(
        sql.SQL(
            "UPDATE {tbl} t SET {active} = false WHERE t.{active} AND {scope} "
            "AND NOT EXISTS (SELECT 1 FROM _bp_stage s WHERE s.id = t.id) RETURNING t.id"
        ).format(tbl=sql.Identifier(config.schema, config.table("teams")),
                 active=sql.Identifier(config.team_active), scope=scope),
        params,
    )
    return [r[0] for r in cur.fetchall()]


def _stage_ids(cur, name: str, ids) -> None:
    """A temporary table ``name`` (``id bigint PRIMARY KEY``, dropped at commit) holding ``ids``,
    analysed: anti-joined instead of ``t.id <> ALL(huge array)``, which compares every row with
    every element."""
    _id_table(cur, name, lambda table: copy_rows(cur, table, ["id"], ((i,) for i in sorted(set(ids)))))


def _stage_query(cur, name: str, query: sql.Composable, params=()) -> None:
    """Like :func:`_stage_ids`, the ids ``query`` returns (distinct, NULLs left out)."""
    _id_table(cur, name, lambda table: cur.execute(sql.SQL(
        "INSERT INTO {} SELECT DISTINCT id FROM ({}) q WHERE id IS NOT NULL").format(table, query), params))


def _id_table(cur, name: str, fill) -> None:
    """The temporary id table ``name``, made anew, filled by ``fill(table)``, then analysed."""
    table = sql.Identifier(name)
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
    cur.execute(sql.SQL("CREATE TEMP TABLE {} (id bigint PRIMARY KEY) ON COMMIT DROP").format(table))
    fill(table)
    cur.execute(sql.SQL("ANALYZE {}").format(table))


def retire_unnamed(conn, config: PreservationConfig, catalog, league, named_ids, renamed_ids=(),
                   parent_ids: dict | None = None) -> list:
    """At the end of a run: retire the active teams (within ``league``) that the import did not
    name. Named are: the teams the import staged (``named_ids``), and the teams the run's ETL
    wrote after its team step or references from rows it wrote (a team it creates from its
    schedule, on every run). A team that gave up its name (``renamed_ids``) is not named.
    With ``parent_ids`` (``{entity: ids}``: the rows of the parents the run's ETL clears and
    imports itself that its parent steps wrote or found), a team is named only if its rows of
    those entities are among them: a row the ETL's clear would have deleted carries no team of
    the run (the ETL finds no such row and skips the team; here the guarded clear kept it, so
    the team step and the ETL's later steps found it). Returns the ids retired.

    Set-based: the named ids are staged, the teams the run's rows reference are read with one
    scan of each ETL-owned reference column, and both are anti-joined (a correlated ``EXISTS``
    per team on an unindexed column took minutes at 100,000 teams)."""
    scope, params = _scope(config, league)
    columns = {"leagues": config.team_league, "clubs": config.team_club, "series": config.team_series}
    limits = [(columns[e], sorted(ids)) for e, ids in (parent_ids or {}).items() if e in columns]
    parents_ok = sql.SQL(" AND ").join([sql.SQL("t.{} = ANY(%s)").format(sql.Identifier(c)) for c, _ids in limits]
                                       or [sql.SQL("true")])
    used = [sql.SQL("SELECT e.{c} AS id FROM {t} e WHERE e.{c} IS NOT NULL AND {ours}").format(
                t=sql.Identifier(config.schema, d.table), c=sql.Identifier(d.column), ours=written_here("e"))
            for d in catalog.dependents if d.owner == "etl" and d.entity == "teams"]
    with conn.cursor() as cur:
        _stage_ids(cur, "_bp_named", named_ids)
        _stage_query(cur, "_bp_run_refs", sql.SQL(" UNION ").join(used) if used
                     else sql.SQL("SELECT NULL::bigint AS id WHERE false"))
        cur.execute(
            sql.SQL("UPDATE {tbl} t SET {active} = false WHERE t.{active} AND {scope} "
                    "AND (NOT ({parents_ok}) OR NOT EXISTS (SELECT 1 FROM _bp_named n WHERE n.id = t.id) "
                    "AND (t.id = ANY(%s) OR NOT ({ours} OR EXISTS (SELECT 1 FROM _bp_run_refs r WHERE r.id = t.id)))) "
                    "RETURNING t.id").format(
                tbl=sql.Identifier(config.schema, config.table("teams")), active=sql.Identifier(config.team_active),
                scope=scope, ours=written_here("t"), parents_ok=parents_ok),
            [*params, *(ids for _c, ids in limits), list(renamed_ids)],
        )
        return [r[0] for r in cur.fetchall()]


#: the order rows are removed in: teams first, their parents once no team of theirs is left
REMOVAL_ORDER = ("teams", "series", "clubs", "leagues")

def _references(config: PreservationConfig, catalog, entity: str) -> list:
    """``[(schema, table, column)]`` that reference ``entity``: every dependent column the
    catalog knows (foreign keys and declared columns, user- and ETL-owned), and the parent
    columns of the other entity tables."""
    tables = {e: config.table(e) for e in REMOVAL_ORDER}
    out = {(d.schema, d.table, d.column) for d in catalog.dependents if d.entity == entity}
    for child, parent, column, *_rest in catalog.fk_edges:
        if parent == tables[entity] and child in tables.values():
            out.add((config.schema, child, column))
    if entity != "teams":
        column = {"leagues": config.team_league, "clubs": config.team_club, "series": config.team_series}[entity]
        out.add((config.schema, tables["teams"], column))
    return sorted(out)


def _unknown_keys(cur, config: PreservationConfig, entity: str, known: list) -> list:
    """Foreign keys to ``entity`` that ``known`` does not cover (another schema, several columns)."""
    return [f"{schema}.{table}.{column}" + (f" (+{width - 1} columns)" if width != 1 else "")
            for schema, table, column, width in foreign_keys_to(cur, config, entity)
            if width != 1 or (schema, table, column) not in known]


def remove_unreferenced(conn, config: PreservationConfig, catalog, league, named: dict) -> dict:
    """At the end of a run, after the restore: remove the entity rows the import no longer names
    and that nothing references any more, as the legacy ETL removes them; count the others.

    Not named are: inactive teams (within ``league``: retirement ran first), and leagues, clubs
    and series whose id is not in ``named[entity]`` (the rows the run's import steps wrote or
    found). Referenced means by any column in :func:`_references`, as it is now, so ETL rows
    the run re-imported count and those it cleared do not. A single-league run removes teams
    only (the legacy ETL keeps shared rows then). An entity with a foreign key the catalog does
    not cover is left alone. Returns ``{entity: {"removed": [ids], "kept_for_references": n}}``.

    Set-based: the candidates are staged, each reference column is scanned once for them, and
    the unreferenced ones are locked without waiting (``FOR UPDATE SKIP LOCKED``): a row a user
    holds a lock on (a foreign-key check of an insert in progress) is kept, never waited for.
    The locked rows are checked once more (a reference committed meanwhile keeps its row), then
    deleted; a user who references one of them from now on waits for the commit.
    """
    out = {}
    with conn.cursor() as cur:
        for entity in REMOVAL_ORDER:
            if entity != "teams" and (league is not None or entity not in named):
                continue
            known = _references(config, catalog, entity)
            unknown = _unknown_keys(cur, config, entity, known)
            tbl = sql.Identifier(config.schema, config.table(entity))
            if entity == "teams":
                scope, params = _scope(config, league)
                candidates = sql.SQL("SELECT t.id FROM {} t WHERE NOT t.{} AND {} AND NOT t.id = ANY(%s)").format(
                    tbl, sql.Identifier(config.team_active), scope)
                params = (*params, _sharing_a_key(conn, config))
            else:
                _stage_ids(cur, "_bp_named", named[entity])
                candidates = sql.SQL("SELECT t.id FROM {} t WHERE NOT EXISTS "
                                     "(SELECT 1 FROM _bp_named n WHERE n.id = t.id)").format(tbl)
                params = ()
            _stage_query(cur, "_bp_candidates", candidates, params)
            cur.execute("SELECT count(*) FROM _bp_candidates")
            total = cur.fetchone()[0]
            if unknown or not total:
                if unknown:
                    logger.warning("%s: not removing rows the import no longer names; foreign keys the catalog "
                                   "does not cover reference it: %s", entity, ", ".join(unknown))
                out[entity] = {"removed": [], "kept_for_references": total}
                continue
            removed = _delete(cur, config, entity, known)
            out[entity] = {"removed": removed, "kept_for_references": total - len(removed)}
    return out


def _sharing_a_key(conn, config: PreservationConfig) -> list:
    """Ids of the retired teams whose natural key only other retired rows hold too
    (``team_identity`` ``"parent_rows"`` keeps ``Division 1`` and ``S1`` of a club apart): none
    is removed, so a key that stays in the table keeps the id it had (a twin kept for its
    references, or created by this run, would otherwise hold the key under another id). A key
    an active team holds is that team's: its retired twins are removed as any other."""
    if config.team_identity != "parent_rows":
        return []
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT id FROM {} WHERE {}").format(
            sql.Identifier(config.schema, config.table("teams")), sql.Identifier(config.team_active)))
        active = {r[0] for r in cur.fetchall()}
    rows: dict = {}
    for id_, key in current_keys(conn, config)["teams"].items():
        if key is not None:
            rows.setdefault(key, []).append(id_)
    return sorted(i for ids in rows.values() if len(ids) > 1 and not active.intersection(ids) for i in ids)


def _referenced(cur, known: list, among: str) -> None:
    """``_bp_referenced``: the ids of temp table ``among`` that a column of ``known`` holds (one
    scan of each column, not a lookup per row: the columns need not be indexed)."""
    pick = sql.SQL(" UNION ").join(
        sql.SQL("SELECT r.{c} AS id FROM {t} r WHERE r.{c} IN (SELECT id FROM {among})").format(
            t=sql.Identifier(schema, table), c=sql.Identifier(column), among=sql.Identifier(among))
        for schema, table, column in known)
    _stage_query(cur, "_bp_referenced", pick)


def _delete(cur, config: PreservationConfig, entity: str, known: list) -> list:
    """Delete the unreferenced rows of ``_bp_candidates``; the ids removed.

    Lock them first without waiting (a row a user holds a key-share lock on is skipped, so
    kept), check the locked rows' references once more (a user's reference that committed
    after the first check), then delete the locked, still unreferenced rows. A foreign key
    that still fails (a reference the check could not see) makes the rows go one at a time,
    each in a savepoint; those referenced are kept.

    PostgreSQL checks every foreign key to a deleted row by a look-up per row: a referencing
    column without an index is scanned once per deleted row (165 s for 5,755 teams and 653 clubs
    at 100,000 teams). Where that is worth it, such a column gets a temporary index for the
    delete, as for renumbering (``ledger_ids.create_fk_indexes``; ``bulletproof-etl enable
    --create-indexes`` makes them permanent, so that no run needs one)."""
    tbl = sql.Identifier(config.schema, config.table(entity))
    _referenced(cur, known, "_bp_candidates")
    _stage_query(cur, "_bp_locked", sql.SQL(
        "SELECT t.id FROM {} t WHERE t.id IN (SELECT c.id FROM _bp_candidates c WHERE NOT EXISTS "
        "(SELECT 1 FROM _bp_referenced r WHERE r.id = c.id)) FOR UPDATE OF t SKIP LOCKED").format(tbl))
    _referenced(cur, known, "_bp_locked")
    cur.execute("SELECT count(*) FROM _bp_locked")
    indexes = create_fk_indexes(cur, config, entity, cur.fetchone()[0])
    removed = _delete_locked(cur, tbl, known)  # on an error the run fails: the rollback drops them
    drop_fk_indexes(cur, indexes)
    return removed


def _delete_locked(cur, tbl, known: list) -> list:
    """The delete of :func:`_delete`, once the rows are locked and their references known."""
    delete = sql.SQL("DELETE FROM {} t USING _bp_locked k WHERE t.id = k.id "
                     "AND NOT EXISTS (SELECT 1 FROM _bp_referenced r WHERE r.id = k.id) RETURNING t.id").format(tbl)
    cur.execute("SAVEPOINT bp_remove")
    try:
        cur.execute(delete)
        removed = sorted(r[0] for r in cur.fetchall())
        cur.execute("RELEASE SAVEPOINT bp_remove")
        return removed
    except psycopg2.errors.ForeignKeyViolation:
        cur.execute("ROLLBACK TO SAVEPOINT bp_remove")
        cur.execute("RELEASE SAVEPOINT bp_remove")
    cur.execute("SELECT k.id FROM _bp_locked k WHERE NOT EXISTS (SELECT 1 FROM _bp_referenced r WHERE r.id = k.id) "
                "ORDER BY k.id")
    removed, raced = [], 0
    used = sql.SQL(" OR ").join(sql.SQL("EXISTS (SELECT 1 FROM {} r WHERE r.{} = t.id)").format(
        sql.Identifier(schema, table), sql.Identifier(column)) for schema, table, column in known)
    one = sql.SQL("DELETE FROM {} t WHERE t.id = %s AND NOT ({})").format(tbl, used)
    for (id_,) in cur.fetchall():
        cur.execute("SAVEPOINT bp_remove")
        try:
            cur.execute(one, (id_,))
        except psycopg2.errors.ForeignKeyViolation:
            cur.execute("ROLLBACK TO SAVEPOINT bp_remove")
            raced += 1
        else:
            if cur.rowcount:
                removed.append(id_)
            else:
                raced += 1
        cur.execute("RELEASE SAVEPOINT bp_remove")
    logger.warning("%d row(s) were referenced while the run removed them: kept", raced)
    return removed
