"""The team upsert: parents first, then teams by natural key, then retirement.

A team absent from a full import is retired (``is_active = false``): users' rows may still
point at it (a protected ETL run removes it at its end if nothing does: ``retirement``). The
rows a team uses take the spelling of the import, as the ETL writes them.
"""

from __future__ import annotations

import logging
import operator
from collections import Counter

from psycopg2 import sql

from ..catalog import current_keys
from ..config import PreservationConfig
from ..state import ensure_state_schema, state
from .ledger_ids import RekeyResult, rekey_entity
from .retirement import check_retirement, retire_staged
from .team_identity import existing_parents, free_names, respell_parents, unique_names, variant
from .upsert import (
    UpsertResult,
    Write,
    _ids_by_key,
    _stage,
    keep_sequence_ahead,
    resolve_ids,
    upsert_entities,
    write_staged,
)
from .validate import TeamRecord

logger = logging.getLogger(__name__)

PARENTS = ("leagues", "clubs", "series")
#: teams inserted by one upsert (and at least a tenth of it) after which the table is analysed
ANALYZE_AFTER = 1000
_TEAM_STAGE_COLS = ("club_id", "series_id", "league_id", "team_name", "team_alias", "display_name")


class _Keys:
    """Keys of the incoming records, each league, club and series name canonicalised once
    (a team's key is put together from its parts unless the configuration makes keys itself)."""

    def __init__(self, config: PreservationConfig) -> None:
        self.config = config
        self.memo: dict = {e: {} for e in PARENTS}  # entity -> {name: key}
        self.canon: dict = {}  # (league code, series name) -> canonical series
        self.compose = (type(config).team_key is PreservationConfig.team_key
                        and type(config).entity_key is PreservationConfig.entity_key)

    def entity(self, entity: str, name: str) -> tuple:
        memo = self.memo[entity]
        found = memo.get(name)
        if found is None:
            found = memo[name] = self.config.entity_key(entity, name)
        return found

    def team_of(self, league_key: tuple, club_key: tuple, league_code: str, club_name: str,
                series_name: str) -> tuple:
        """The team key, given the keys of its league and club (already looked up)."""
        if not self.compose:
            return self.config.team_key(league_code, club_name, series_name)
        code = league_key[0]
        canon = self.canon.get((code, series_name))
        if canon is None:
            canon = self.canon[(code, series_name)] = self.config.series_canonicaliser(code, series_name)
        return (code, club_key[0], canon)


def _wanted(config: PreservationConfig, records: list, keys: _Keys | None = None) -> dict:
    """``{entity: {key: record}}`` of the parents the teams name, each spelled as most of its
    teams spell it (among equals the one with fewer capitals, then the first): one row per key.

    ``keys``: the :class:`_Keys` to fill (the team rows use the same names' keys again)."""
    keys = keys or _Keys(config)
    out: dict = {e: {} for e in PARENTS}
    for entity, attr, column in (("leagues", "league_code", config.league_code),
                                 ("clubs", "club_name", config.club_name),
                                 ("series", "series_name", config.series_name)):
        spellings: dict = {}  # key -> {spelling: teams}, in the order first seen
        key_of = keys.entity
        # each name counted in one C pass (first seen first), then keyed once
        for name, count in Counter(map(operator.attrgetter(attr), records)).items():
            spellings.setdefault(key_of(entity, name), {})[name] = count
        out[entity] = {key: {column: max(counts, key=lambda n, c=counts: (c[n], -sum(map(str.isupper, n))))}
                       for key, counts in spellings.items()}
    return out


def ensure_parents(conn, config: PreservationConfig, records: list, current: dict, create=PARENTS,
                   keys: _Keys | None = None, rekey: bool = True) -> dict:
    """Give re-inserted parents their ledger ids back, then create the missing ones.

    ``current`` (``{entity: {id: key}}``) is updated in place. Returns one
    :class:`UpsertResult` per parent entity, counting the distinct parents the teams name.
    ``keys``: a :class:`_Keys` to fill with the keys of the names the records use.
    """
    results = {}
    wanted = _wanted(config, records, keys)
    for entity in PARENTS:
        rekeyed = (rekey_entity(conn, config, entity, current[entity], ledger_known=True) if rekey
                   else RekeyResult(entity))
        known = {k for k in current[entity].values() if k is not None}
        missing = [rec for key, rec in wanted[entity].items() if key not in known] if entity in create else []
        result = (upsert_entities(conn, config, entity, missing, current[entity]) if missing
                  else UpsertResult(entity))
        for key, id_ in result.ids.items():
            current[entity][id_] = key
        # the parents that already had a row: unchanged, and preserved if the ledger knew the id
        present = {key: id_ for key, id_ in _ids_by_key(current[entity]).items()
                   if key in wanted[entity] and key not in result.ids}
        result.read = len(wanted[entity])
        result.unchanged += len(present)
        # the rows the teams use take the teams' spelling of their key, as the ETL writes it
        result.ids.update(respell_parents(conn, config, entity, wanted[entity], current[entity], result))
        result.preserved += _ledger_known(conn, config, entity, present)
        result.rekeyed, result.blocked = rekeyed.rekeyed, len(rekeyed.blocked)
        results[entity] = result
    return results


def _ledger_known(conn, config: PreservationConfig, entity: str, ids_by_key: dict) -> int:
    """How many of ``{key: id}`` the ledger knew under exactly that key."""
    if not ids_by_key:
        return 0
    with conn.cursor() as cur:
        # the ids as one array literal: psycopg2 would send ARRAY[1, 2, ...], thousands of
        # expressions for the server to parse (twice the time of the query at 2,000 clubs)
        cur.execute(sql.SQL("SELECT id, key FROM {} WHERE entity = %s AND id = ANY(%s::bigint[])").format(
            state(config, "ledger")), (entity, "{" + ",".join(map(str, ids_by_key.values())) + "}"))
        found = {i: tuple(k) for i, k in cur.fetchall() if k is not None}
    return sum(1 for key, id_ in ids_by_key.items() if found.get(id_) == tuple(key))


def team_rows(records: list, config: PreservationConfig, parents: dict, current: dict,
              result: UpsertResult, existing_parents: dict | None = None, unique_names: bool = False,
              spelled: dict | None = None, keys: _Keys | None = None) -> list:
    """Staging rows for teams; resolves parent ids.

    Two records are one team when they have the same natural key (``config.team_identity``
    ``"natural_key"``) or name the same league, club and series rows (``"parent_rows"``, the
    ETL's own identity): the first record wins, the others are reported as duplicates. With
    ``"parent_rows"``, a team whose rows an existing team has keeps that team's id; otherwise
    its natural key finds the id (a respelled series). Teams that share a natural key but not
    their series row (``Division 10`` and ``S10``) stay apart, as the ETL keeps them: the one
    on the key's existing row (else the first) holds the key, the others a variant key
    (``10 [s10]``); and where the table has a unique team name per league (``unique_names``),
    a later team repeating a name in its league is named ``name (series)``, as the ETL names it.
    ``keys``: the :class:`_Keys` the parents were found with (their names' keys are not made again).
    """
    apart = config.team_identity == "parent_rows"
    by_key = _ids_by_key(current)
    existing_parents = existing_parents or {}
    exact_ids = {parents_: id_ for id_, parents_ in existing_parents.items()}
    keys = keys or _Keys(config)
    entity = keys.entity
    league_keys, club_keys, series_keys = keys.memo["leagues"], keys.memo["clubs"], keys.memo["series"]
    leagues, clubs, series = parents["leagues"], parents["clubs"], parents["series"]
    spelled = {e: (spelled or {}).get(e, {}) for e in PARENTS}  # a key several rows hold: the exact one
    spelled_league, spelled_club, spelled_series = spelled["leagues"], spelled["clubs"], spelled["series"]
    compose, canon, canonicalise = keys.compose, keys.canon, config.series_canonicaliser
    seen: dict = {}  # (league id, club id, series id) -> record index
    found: list = []  # [record, key, (league id, club id, series id)]
    # per record only look-ups: what _Keys.entity and _Keys.team_of do, written out
    for rec in records:
        if not isinstance(rec, TeamRecord):
            raise TypeError("upsert_teams takes records from validate_teams()")
        code, club_name, series_name = rec.league_code, rec.club_name, rec.series_name
        league_key = league_keys.get(code)
        if league_key is None:
            league_key = entity("leagues", code)
        club_key = club_keys.get(club_name)
        if club_key is None:
            club_key = entity("clubs", club_name)
        series_key = series_keys.get(series_name)
        if series_key is None:
            series_key = entity("series", series_name)
        if not (league_key in leagues and club_key in clubs and series_key in series):
            # the ETL imports its parents itself and skips such a team too
            absent = [f"{what} {name!r}" for what, name, ok in (
                ("league", code, league_key in leagues), ("club", club_name, club_key in clubs),
                ("series", series_name, series_key in series)) if not ok]
            result.skipped.append({"record": rec.index, "team": rec.team_name, "missing": ", ".join(absent)})
            continue
        if compose:
            league_code = league_key[0]
            canonical = canon.get((league_code, series_name))
            if canonical is None:
                canonical = canon[(league_code, series_name)] = canonicalise(league_code, series_name)
            key = (league_code, club_key[0], canonical)
        else:
            key = config.team_key(code, club_name, series_name)
        exact = (spelled_league.get(code, leagues[league_key]),
                 spelled_club.get(club_name, clubs[club_key]),
                 spelled_series.get(series_name, series[series_key]))
        identity = exact if apart else key
        if identity in seen:
            result.duplicates.append({"record": rec.index, "key": list(key), "winner": seen[identity]})
            continue
        seen[identity] = rec.index
        found.append((rec, key, exact))
    holder: dict = {}  # natural key -> the record holding it
    for rec, key, exact in found:
        if key not in holder or (exact_ids.get(exact) is not None and exact_ids.get(exact) == by_key.get(key)):
            holder[key] = rec.index
    claimed = {exact_ids[exact] for _r, _k, exact in found if exact in exact_ids}
    # existing ids of each natural key, lowest first (the one the key resolves to); teams kept
    # apart may take any of them that no exact match took
    ids_of: dict = {}
    if apart:
        for id_ in sorted(current):
            if current[id_] is not None:
                ids_of.setdefault(current[id_], []).append(id_)
    rows: list = []
    append = rows.append
    names: dict = {}  # (league id, team name) -> taken
    for rec, key, exact in found:
        existing = exact_ids.get(exact)
        natural = key
        if holder[key] != rec.index:
            key = variant(key, config, rec.series_name)
        if existing is None and not apart:  # the key's row, unless taken
            existing = by_key.get(natural)
            if existing in claimed:
                existing = None
            claimed.add(existing)
        elif existing is None:  # the key's row, else another existing row of the key nobody took
            for existing in ids_of.get(natural, ()):
                if existing not in claimed:
                    break
            else:
                existing = None
            claimed.add(existing)
        league_id, club_id, series_id = exact
        name = rec.team_name
        if apart and unique_names:
            if (league_id, name) in names:
                name = f"{rec.team_name} ({rec.series_name})"
            names[(league_id, name)] = True
        append([rec.index, list(key), existing, existing is not None, club_id, series_id, league_id,
                name, rec.team_alias, rec.display_name])
    return rows


def team_write(config: PreservationConfig) -> Write:
    """Teams: everything from the record, as the legacy ETL writes it: parents, name, alias
    (none when the record has none) and display name (the record's, else the team name)."""
    values = (
        sql.SQL("s.c0::int"), sql.SQL("s.c1::int"), sql.SQL("s.c2::int"), sql.SQL("s.c3"),
        sql.SQL("s.c4"), sql.SQL("coalesce(s.c5, s.c3)"), sql.SQL("true"),
    )
    columns = (config.team_club, config.team_series, config.team_league, config.team_name,
               config.team_alias, config.team_display, config.team_active)
    touch = ((config.team_updated_at, sql.SQL("now()")),) if config.team_updated_at else ()
    return Write(sql.Identifier(config.schema, config.table("teams")), columns, values, touch)


def upsert_teams(conn, config: PreservationConfig, records: list, *, league: str | None = None,
                 force: bool = False, current: dict | None = None, create_parents=PARENTS,
                 retire: bool = True, rekey: bool = True) -> tuple:
    """Upsert validated :class:`TeamRecord` items; returns (UpsertResult, parent results).

    Order: parents re-keyed and completed, teams re-keyed, then the staged team upsert,
    then retirement of the active teams the import no longer names (within ``league``).

    ``retire=False`` leaves the retirement to :func:`retire_unnamed`, at the end of a run whose
    ETL may still create teams of its own after this step. ``rekey=False`` skips re-keying
    (:mod:`.ledger_ids`), for a caller who knows no row was deleted and re-inserted since the
    last run re-keyed (the capture path: any delete is recorded, snapshot/capture.py).

    ``create_parents``: the parent entities the upsert creates when a team names one that does
    not exist; a team naming a missing parent of another entity is skipped (``skipped``), as
    an ETL that imports that parent itself skips it.

    ``current``: the keys now (:func:`current_keys`) if the caller has them; pass a dict
    (``{}`` too) to get back, in it, the keys the upsert leaves, without reading them again.
    """
    ensure_state_schema(conn, config)
    if not current:
        fresh = current_keys(conn, config)
        if current is None:
            current = fresh
        else:
            current.update(fresh)
    keys = _Keys(config)  # each league, club and series name keyed once, for parents and teams
    parent_results = ensure_parents(conn, config, records, current, create_parents, keys, rekey)
    if (any(k is None for k in current["teams"].values())
            and any(r.rekeyed or r.ids for r in parent_results.values())):
        # a team whose parent was missing may have one now (a re-keyed or re-inserted parent
        # took the id it points at); keys of the others cannot change: parents keep their names
        current["teams"] = current_keys(conn, config)["teams"]
    rekeyed = rekey_entity(conn, config, "teams", current["teams"], ledger_known=True) if rekey else RekeyResult("teams")
    parents = {e: {**_ids_by_key(current[e]), **parent_results[e].ids} for e in PARENTS}
    result = UpsertResult("teams", read=len(records))
    result.rekeyed, result.blocked = rekeyed.rekeyed, len(rekeyed.blocked)
    with conn.cursor() as cur:
        apart = config.team_identity == "parent_rows"
        existing = existing_parents(cur, config) if apart else {}
        names_unique = apart and unique_names(cur, config)
        rows = team_rows(records, config, parents, current["teams"], result, existing, names_unique,
                         {e: r.spelled for e, r in parent_results.items()}, keys)
        _stage(cur, _TEAM_STAGE_COLS, rows)
        resolve_ids(cur, config, "teams", missing=any(row[2] is None for row in rows))
        if names_unique:
            result.renamed_ids = free_names(cur, config)
        check_retirement(cur, config, league, force, len(rows))
        write_staged(cur, team_write(config), result, config)
        inserted = result.created + result.preserved_from_ledger
        if inserted >= ANALYZE_AFTER and inserted * 10 >= len(rows):
            # many rows inserted (a refill after a clear): plan the retirement on the real count
            cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(config.schema, config.table("teams"))))
        # every staged team now has its key under its id (a row found by key, updated to the
        # same parents' keys, or inserted); teams not staged keep theirs: retiring changes no key
        for key, id_ in result.ids.items():
            current["teams"][id_] = key
        if retire:
            result.retired_ids = retire_staged(cur, config, league)
            result.retired = len(result.retired_ids)
        keep_sequence_ahead(cur, config, "teams", ledger=True)
    if result.duplicates:
        logger.warning("%d duplicate team records ignored (the first record of each key wins)",
                       len(result.duplicates))
    return result, parent_results
