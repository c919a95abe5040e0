"""What a user sees of the reference data, read by content (never by id), for the differential
test of the legacy ETL against the protected one (tests/test_same_picture.py).

Written with the tests' own SQL: no code of the library computes what is compared here.
"""

from __future__ import annotations

from collections import Counter

from support import USER_REFS

ENTITIES = ("leagues", "clubs", "series", "teams")

_TEAMS = """
SELECT l.league_id, c.name, s.name, t.team_name, t.team_alias, t.display_name
FROM teams t JOIN leagues l ON l.id = t.league_id JOIN clubs c ON c.id = t.club_id
JOIN series s ON s.id = t.series_id WHERE t.is_active
"""
_USED = {
    "leagues": "SELECT league_id, league_name, league_url FROM leagues WHERE id IN "
               "(SELECT league_id FROM teams WHERE is_active)",
    "clubs": "SELECT name FROM clubs WHERE id IN (SELECT club_id FROM teams WHERE is_active)",
    "series": "SELECT name, display_name FROM series WHERE id IN (SELECT series_id FROM teams WHERE is_active)",
}


def picture(conn) -> dict:
    """Every active team with its league code, club name, series name, team name, alias and
    display name (a multiset: two equal teams count twice); every league, club and series an
    active team uses, with its shown columns."""
    out = {}
    with conn.cursor() as cur:
        cur.execute(_TEAMS)
        out["teams"] = Counter(cur.fetchall())
        for entity, query in _USED.items():
            cur.execute(query)
            out[entity] = Counter(cur.fetchall())
    conn.rollback()
    return out


def difference(legacy: dict, protected: dict, limit: int = 10) -> dict:
    """What one picture has and the other has not, per part (empty when equal)."""
    out = {}
    for part in legacy:
        only_legacy = sorted(map(repr, (legacy[part] - protected[part]).elements()))
        only_protected = sorted(map(repr, (protected[part] - legacy[part]).elements()))
        if only_legacy or only_protected:
            out[part] = {"legacy only": only_legacy[:limit], "protected only": only_protected[:limit],
                         "counts": (len(only_legacy), len(only_protected))}
    return out


def user_referenced(conn) -> dict:
    """``{entity: set of ids}`` that a user row references (the tests' own list of user
    columns, with the practice rows of schedule)."""
    out: dict = {e: set() for e in ENTITIES}
    with conn.cursor() as cur:
        for table, _pk, column, entity in USER_REFS:
            cur.execute(f"SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL")  # noqa: S608
            out[entity].update(r[0] for r in cur.fetchall())
        cur.execute("SELECT home_team_id, away_team_id, league_id FROM schedule WHERE home_team ILIKE '%practice%'")
        for home, away, league in cur.fetchall():
            out["teams"].update(i for i in (home, away) if i is not None)
            if league is not None:
                out["leagues"].add(league)
    conn.rollback()
    return out


def rows_without_a_user(conn) -> dict:
    """Entity rows no user needs, per entity: a league, club or series that no team (active or
    not) and no user row references; a team that is not active (the import does not name it)
    and that no user row references."""
    users = user_referenced(conn)
    out = {}
    with conn.cursor() as cur:
        for entity, column in (("leagues", "league_id"), ("clubs", "club_id"), ("series", "series_id")):
            cur.execute(f"SELECT id FROM {entity} e WHERE NOT EXISTS "  # noqa: S608
                        f"(SELECT 1 FROM teams t WHERE t.{column} = e.id)")
            out[entity] = len({r[0] for r in cur.fetchall()} - users[entity])
        cur.execute("SELECT id FROM teams WHERE NOT is_active")
        out["teams"] = len({r[0] for r in cur.fetchall()} - users["teams"])
    conn.rollback()
    return out


def entity_counts(conn) -> dict:
    with conn.cursor() as cur:
        out = {}
        for entity in ENTITIES:
            cur.execute(f"SELECT count(*) FROM {entity}")  # noqa: S608
            out[entity] = cur.fetchone()[0]
    conn.rollback()
    return out


def one_club_per_name(legacy: dict) -> dict:
    """The picture the legacy one becomes with one club row per case-folded name, spelled as
    most of its active teams spell it (the protected import's rule, docs/operations.md): the
    legacy ETL shows ``LifeSport-Lshire`` and ``Lifesport-Lshire`` as two clubs when the teams
    of one import spell the club both ways. Among equally many teams the spelling with fewer
    capitals wins; a tie beyond that is refused (the rule takes the file's first spelling then,
    which the picture does not know)."""
    spellings: dict = {}
    for (_league, club, *_rest), n in legacy["teams"].items():
        counts = spellings.setdefault(club.casefold(), Counter())
        counts[club] += n
    chosen = {}
    for folded, counts in spellings.items():
        ranked = sorted(counts, key=lambda name, c=counts: (-c[name], sum(ch.isupper() for ch in name)))
        rank = [(counts[name], sum(ch.isupper() for ch in name)) for name in ranked]
        assert len(rank) < 2 or rank[0] != rank[1], f"a tie between spellings of {folded!r}: {counts}"
        chosen[folded] = ranked[0]
    out = dict(legacy)
    out["teams"] = Counter()
    for (league, club, *rest), n in legacy["teams"].items():
        out["teams"][(league, chosen[club.casefold()], *rest)] += n
    out["clubs"] = Counter({(name,): 1 for name in chosen.values()})
    return out


def spelled_apart(legacy: dict) -> int:
    """How many active teams the legacy ETL shows on a club spelled otherwise than most teams
    of that club (case-folded name) spell it."""
    changed = one_club_per_name(legacy)["teams"]
    return sum((legacy["teams"] - changed).values())
