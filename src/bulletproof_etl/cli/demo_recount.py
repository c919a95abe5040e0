"""The demo's second opinion: user rows and references of the reference schema, recounted.

Plain SQL and ``rally_etl.names``; nothing here uses the library's catalog, ledger or
reports, so the demo's table cannot merely repeat what the library believes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg2
from psycopg2 import sql

# (table, primary key column, reference column, entity table)
USER_REFS = (
    ("users", "id", "team_id", "teams"), ("users", "id", "league_context", "leagues"),
    ("polls", "id", "team_id", "teams"), ("captain_messages", "id", "team_id", "teams"),
    ("practice_times", "id", "team_id", "teams"), ("practice_times", "id", "league_id", "leagues"),
    ("saved_lineups", "id", "team_id", "teams"), ("lineup_escrow", "id", "initiator_team_id", "teams"),
    ("lineup_escrow", "id", "recipient_team_id", "teams"), ("user_contexts", "user_id", "league_id", "leagues"),
    ("user_contexts", "user_id", "team_id", "teams"), ("user_contexts", "user_id", "active_team_id", "teams"),
    ("activity_log", "id", "team_id", "teams"), ("videos", "id", "team_id", "teams"),
    ("player_availability", "id", "series_id", "series"),
)
USER_TABLES = ("users", "user_player_associations", "polls", "poll_choices", "poll_responses",
               "captain_messages", "practice_times", "saved_lineups", "lineup_escrow", "user_contexts",
               "activity_log", "videos", "player_availability")
PRIMARY_KEYS = {"user_contexts": ("user_id",), "user_player_associations": ("user_id", "tenniscores_player_id")}
PRACTICE = "schedule (practice rows)"
_PRACTICE_WHERE = sql.SQL("home_team ILIKE {}").format(sql.Literal("%practice%"))


@dataclass
class State:
    teams: dict = field(default_factory=dict)  # id -> (key, active)
    refs: dict = field(default_factory=dict)  # (table, pk, column) -> key / None / "ORPHAN"
    rows: dict = field(default_factory=dict)  # table -> set of primary keys


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def _keys(cur) -> dict:
    from rally_etl.names import canonical_series

    cur.execute("SELECT t.id, l.league_id, c.name, s.name, t.is_active FROM teams t "
                "JOIN leagues l ON l.id = t.league_id JOIN clubs c ON c.id = t.club_id "
                "JOIN series s ON s.id = t.series_id")
    teams = {i: ((code.upper(), _fold(club), canonical_series(code, name).casefold()), active)
             for i, code, club, name, active in cur.fetchall()}
    cur.execute("SELECT id, upper(league_id) FROM leagues")
    leagues = {i: (c,) for i, c in cur.fetchall()}
    cur.execute("SELECT id, name FROM series")
    series = {i: (_fold(n),) for i, n in cur.fetchall()}
    return {"teams": {i: k for i, (k, _a) in teams.items()}, "leagues": leagues, "series": series,
            "_teams": teams}


def state(dsn: str) -> State:
    """Every user row and every user reference (as a natural key) in the database at ``dsn``."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            keys = _keys(cur)
            out = State(teams=keys["_teams"])
            for table, pk, column, entity in USER_REFS:
                cur.execute(sql.SQL("SELECT {}, {} FROM {}").format(
                    sql.Identifier(pk), sql.Identifier(column), sql.Identifier(table)))
                for pk_value, ref in cur.fetchall():
                    out.refs[(table, pk_value, column)] = None if ref is None else keys[entity].get(ref, "ORPHAN")
            for table in USER_TABLES:
                pk = PRIMARY_KEYS.get(table, ("id",))
                cur.execute(sql.SQL("SELECT {} FROM {}").format(
                    sql.SQL(", ").join(sql.Identifier(c) for c in pk), sql.Identifier(table)))
                out.rows[table] = set(cur.fetchall())
            cur.execute(sql.SQL("SELECT id, home_team_id FROM schedule WHERE {}").format(_PRACTICE_WHERE))
            practice = cur.fetchall()
            out.rows[PRACTICE] = {(i,) for i, _ in practice}
            for pk_value, ref in practice:
                out.refs[(PRACTICE, pk_value, "home_team_id")] = (None if ref is None
                                                                  else keys["teams"].get(ref, "ORPHAN"))
    finally:
        conn.close()
    return out


def sample_renames() -> dict:
    """Club renames of the sample's season 2 (folded old name -> folded new name), from the generator."""
    from rally_etl.generate import generate_season_with_summary
    from rally_etl.sample import SAMPLE_CHURN, SAMPLE_SEED, SAMPLE_TEAMS

    _data, summary = generate_season_with_summary(SAMPLE_TEAMS, SAMPLE_SEED, season=2, churn=SAMPLE_CHURN)
    return {_fold(old): _fold(new) for old, new in summary.club_renames.items()}


def compare(side, before: State, after: State, renames: dict) -> None:
    """Fill ``side`` (a DemoSide) with recounted orphans, losses, wrong teams and kept ids."""
    active_keys = {key for key, active in after.teams.values() if active}

    def expected(key):
        """A team of a renamed club continues under the new name; a removed one keeps its key."""
        if isinstance(key, tuple) and len(key) == 3:
            renamed = (key[0], renames.get(key[1], key[1]), key[2])
            return renamed if renamed in active_keys else key
        return key

    for (table, _pk, _col), value in after.refs.items():
        if value == "ORPHAN":
            side.orphans[table] = side.orphans.get(table, 0) + 1
    for table, pks in before.rows.items():
        gone = len(pks - after.rows.get(table, set()))
        if gone:
            side.lost[table] = gone
    for ref, old in before.refs.items():
        if ref not in after.refs or old is None or old == "ORPHAN":
            continue
        new = after.refs[ref]
        if new is None:
            side.nulled += 1
        elif new != "ORPHAN" and new != expected(old):
            side.wrong_team += 1
        elif new == expected(old) != old:
            side.followed_rename += 1
    active_after = {}
    for i, (key, active) in after.teams.items():
        if active:
            active_after.setdefault(key, set()).add(i)
    for i, (key, _active) in before.teams.items():
        if key in active_after:
            side.keys_surviving += 1
            side.ids_preserved += i in active_after[key]


def quarantined(dsn: str) -> int:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('bulletproof.quarantine')")
            if cur.fetchone()[0] is None:
                return 0
            cur.execute("SELECT count(*) FROM bulletproof.quarantine")
            return cur.fetchone()[0]
    finally:
        conn.close()
