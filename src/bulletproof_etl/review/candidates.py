"""Ranked candidates for a quarantined reference, each with the evidence that names it.

The restore refuses to guess: a row is quarantined because no strategy named exactly one
entity. An operator can: this module lists every entity some evidence points at, ranked,
and says which evidence. Scores are a ranking, not a probability:

- 100 the ledger knows the stale id's natural key and this entity holds that key now;
- 80 same league and canonical series as the old team, and its club matches loosely;
- 70 same league and series, and the old team name or alias matches;
- 60 the row's text names this team's series and its author plays for this team;
- 40 same league and series as the old team (another club: a rename, perhaps);
- 25 a team of the row's author.

Only active entities are candidates (a retired team or a placeholder is never one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg2 import sql

from ..config import PreservationConfig, canonical_name
from ..restore.strategies import loose_club, series_references
from ..state import state


@dataclass
class Candidate:
    id: int
    label: str
    key: list | None
    score: int
    evidence: list = field(default_factory=list)
    version: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Context:
    """What every lookup of one queue needs, read once: current keys, teams, labels."""

    def __init__(self, cur, config: PreservationConfig, keys: dict) -> None:
        self.config = config
        self.keys = keys
        cur.execute(sql.SQL(
            "SELECT t.id, t.{name}, t.{alias}, t.{active}, l.{code}, c.{club}, s.{series}, "
            "left(md5(to_jsonb(t)::text), 12) FROM {teams} t LEFT JOIN {leagues} l ON l.id = t.{tl} "
            "LEFT JOIN {clubs} c ON c.id = t.{tc} LEFT JOIN {series_t} s ON s.id = t.{ts}").format(
            name=sql.Identifier(config.team_name), alias=sql.Identifier(config.team_alias),
            active=sql.Identifier(config.team_active), code=sql.Identifier(config.league_code),
            club=sql.Identifier(config.club_name), series=sql.Identifier(config.series_name),
            teams=sql.Identifier(config.schema, config.table("teams")),
            leagues=sql.Identifier(config.schema, config.table("leagues")),
            clubs=sql.Identifier(config.schema, config.table("clubs")),
            series_t=sql.Identifier(config.schema, config.table("series")),
            tl=sql.Identifier(config.team_league), tc=sql.Identifier(config.team_club),
            ts=sql.Identifier(config.team_series)))
        self.teams = {}
        for tid, name, alias, active, code, club, series, version in cur.fetchall():
            self.teams[tid] = {"id": tid, "name": name, "alias": alias, "active": active, "version": version,
                               "label": f"{name} ({code}, {club}, {series})", "key": keys["teams"].get(tid)}

    def team_label(self, team_id) -> str:
        team = self.teams.get(team_id)
        return team["label"] if team else f"team {team_id} (no such team)"


def _ledger(cur, config, entity: str, entity_id: int):
    cur.execute(sql.SQL("SELECT key, row FROM {} WHERE entity = %s AND id = %s").format(
        state(config, "ledger")), (entity, entity_id))
    found = cur.fetchone()
    return (tuple(found[0]) if found and found[0] else None), (found[1] if found else None)


def _author_teams(cur, config, author_id: int) -> set:
    """The author's own team column, plus the teams of their players (when the tables exist)."""
    out = set()
    cur.execute(sql.SQL("SELECT {} FROM {} WHERE id = %s").format(
        sql.Identifier(config.user_team_column), sql.Identifier(config.schema, config.user_table)), (author_id,))
    out.update(r[0] for r in cur.fetchall() if r[0] is not None)
    cur.execute("SELECT to_regclass(%s), to_regclass(%s)",
                (f'"{config.schema}"."user_player_associations"', f'"{config.schema}"."players"'))
    if all(cur.fetchone()):
        cur.execute(sql.SQL("SELECT p.team_id FROM {} u JOIN {} p ON p.tenniscores_player_id = "
                            "u.tenniscores_player_id WHERE u.user_id = %s AND p.team_id IS NOT NULL").format(
            sql.Identifier(config.schema, "user_player_associations"), sql.Identifier(config.schema, "players")),
            (author_id,))
        out.update(r[0] for r in cur.fetchall())
    return out


def team_candidates(cur, ctx: Context, stale_id, row: dict | None, table: str) -> list:
    """Ranked active teams for a row of ``table`` whose team reference ``stale_id`` was unmapped."""
    config = ctx.config
    found: dict = {}

    def add(team_id, score, why):
        team = ctx.teams.get(team_id)
        if not team or not team["active"]:
            return
        cand = found.setdefault(team_id, Candidate(team_id, team["label"], list(team["key"] or []) or None, 0,
                                                   version=team["version"]))
        cand.score = max(cand.score, score)
        cand.evidence.append(why)

    key, old = _ledger(cur, config, "teams", stale_id) if stale_id is not None else (None, None)
    if key:
        for tid, team in ctx.teams.items():
            tkey = team["key"]
            if not tkey or tkey[0] != key[0] or tkey[2] != key[2]:
                continue
            if tkey == key:
                add(tid, 100, f"the ledger knows team {stale_id} as {'/'.join(key)}, the key this team holds now")
            elif loose_club(tkey[1]) == loose_club(key[1]):
                add(tid, 80, f"same league and series; club '{tkey[1]}' matches the old club '{key[1]}' loosely")
            else:
                names = {canonical_name(v) for v in ((old or {}).get(config.team_name),
                                                     (old or {}).get(config.team_alias)) if v}
                if names & {canonical_name(v) for v in (team["name"], team["alias"]) if v}:
                    add(tid, 70, "same league and series; the old team name or alias matches")
                else:
                    add(tid, 40, f"same league ({key[0]}) and series ({key[2]}) as the old team")
    for hint in config.text_hints:
        if hint.table != table or not row or not hint.author_column or row.get(hint.author_column) is None:
            continue
        mine = _author_teams(cur, config, int(row[hint.author_column]))
        refs = series_references(row.get(hint.text_column), config)
        for tid in mine:
            tkey = ctx.teams.get(tid, {}).get("key")
            if refs and tkey and tkey[2] in refs:
                add(tid, 60, f"the text names series {tkey[2]} and its author plays for this team")
            else:
                add(tid, 25, "a team of the row's author")
    return sorted(found.values(), key=lambda c: (-c.score, c.id))


def entity_candidates(cur, config: PreservationConfig, entity: str, stale_id, keys: dict) -> list:
    """Leagues, clubs and series: the entity holding the ledger key of the stale id now."""
    key, _row = _ledger(cur, config, entity, stale_id) if stale_id is not None else (None, None)
    if not key:
        return []
    out = []
    for eid, ekey in keys.get(entity, {}).items():
        if ekey == key:
            cur.execute(sql.SQL("SELECT to_jsonb(e), left(md5(to_jsonb(e)::text), 12) FROM {} e WHERE id = %s").format(
                sql.Identifier(config.schema, config.table(entity))), (eid,))
            row, version = cur.fetchone()
            label = str(row.get(config.series_name if entity == "series" else "name", eid))
            out.append(Candidate(eid, label, list(key), 100,
                                 [f"the ledger knows {entity} {stale_id} as {'/'.join(key)}, held by this one now"],
                                 version))
    return out
