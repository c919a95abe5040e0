"""User data on the modelled schema, written by hand (not by rally_etl's generators), and the
tests' own reading of what each user reference means.

For every chosen team: a captain (a user associated with a player of the team, with the team's
league as ``league_context`` and its club and series), a poll naming the team with two choices,
a captain message, two practice rows in ``schedule``, one availability row (the team's series)
and one activity_log row (the team).

Natural keys are computed here, independently of the library: a league by its code, a club and
a series by their names (whitespace collapsed, case folded), a team by (league code, club name,
canonical series) with rally_etl's series canonicaliser, as the tests of the reference ETL do.
The team name and the series spelling are not part of a team's key: the ETL itself renames
teams ("name (series)") and the scrapes respell series ("Chicago 10" / "Division 10").
"""

from __future__ import annotations

from psycopg2 import sql

from rally_etl.names import canonical_series

#: (table, primary key, reference column, entity table, row filter) of every user reference.
USER_REFS = (
    ("users", "id", "league_context", "leagues", None),
    ("users", "id", "league_id", "leagues", None),
    ("users", "id", "club_id", "clubs", None),
    ("users", "id", "series_id", "series", None),
    ("polls", "id", "team_id", "teams", None),
    ("captain_messages", "id", "team_id", "teams", None),
    ("schedule", "id", "home_team_id", "teams", "home_team ILIKE '%practice%'"),
    ("schedule", "id", "league_id", "leagues", "home_team ILIKE '%practice%'"),
    ("player_availability", "id", "series_id", "series", None),
    ("activity_log", "id", "team_id", "teams", None),
)
#: user tables and the columns of each that are references (G2 compares the rest).
USER_TABLES = {
    "users": ("league_context", "league_id", "club_id", "series_id"),
    "user_player_associations": (),
    "polls": ("team_id",),
    "poll_choices": (),
    "poll_responses": (),
    "captain_messages": ("team_id",),
    "player_availability": ("series_id",),
    "activity_log": ("team_id",),
    "schedule": ("home_team_id", "away_team_id", "league_id"),  # its practice rows only
}
PRACTICE = "home_team ILIKE '%practice%'"


def _fold(name: str) -> str:
    return " ".join(name.split()).casefold()


def team_info(conn, team_ids) -> list[dict]:
    with conn.cursor() as cur:
        cur.execute("""SELECT t.id, t.team_name, t.club_id, t.series_id, t.league_id, l.league_id, c.name, s.name,
                (SELECT p.tenniscores_player_id FROM players p WHERE p.team_id = t.id
                 ORDER BY p.tenniscores_player_id LIMIT 1)
            FROM teams t JOIN leagues l ON l.id = t.league_id JOIN clubs c ON c.id = t.club_id
            JOIN series s ON s.id = t.series_id WHERE t.id = ANY(%s) ORDER BY t.id""", (list(team_ids),))
        names = ("id", "team_name", "club_id", "series_id", "league_id", "league", "club", "series", "player")
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def team_ids_by_name(conn, names) -> list[int]:
    """Ids of the teams named ``(league code, team name)``; each must exist once."""
    out = []
    with conn.cursor() as cur:
        for league, name in names:
            cur.execute("SELECT t.id FROM teams t JOIN leagues l ON l.id = t.league_id "
                        "WHERE l.league_id = %s AND t.team_name = %s", (league, name))
            rows = cur.fetchall()
            assert len(rows) == 1, f"team {name!r} of {league}: {rows}"
            out.append(rows[0][0])
    conn.rollback()
    return out


def create_user_data(conn, team_ids) -> dict:
    """The user data of every team in ``team_ids``; commits. Returns rows written per table."""
    teams = team_info(conn, team_ids)
    assert len(teams) == len(set(team_ids)), "a chosen team does not exist"
    counts = dict.fromkeys(("users", "user_player_associations", "polls", "poll_choices", "captain_messages",
                            "schedule(practice)", "player_availability", "activity_log"), 0)
    with conn.cursor() as cur:
        for n, t in enumerate(teams):
            assert t["player"], f"team {t['team_name']} has no player to associate the captain with"
            cur.execute("""INSERT INTO users (email, password_hash, first_name, last_name, tenniscores_player_id,
                    league_context, league_id, club_id, series_id)
                VALUES (%s, 'x', 'Captain', %s, %s, %s, %s, %s, %s) RETURNING id""",
                        (f"captain{n}.{t['id']}@model.test", t["team_name"], t["player"], t["league_id"],
                         t["league_id"], t["club_id"], t["series_id"]))
            user = cur.fetchone()[0]
            cur.execute("INSERT INTO user_player_associations (user_id, tenniscores_player_id, is_primary) "
                        "VALUES (%s, %s, true)", (user, t["player"]))
            cur.execute("INSERT INTO polls (team_id, created_by, question) VALUES (%s, %s, %s) RETURNING id",
                        (t["id"], user, f"Who can play for {t['team_name']} ({t['series']}) on Saturday?"))
            poll = cur.fetchone()[0]
            cur.executemany("INSERT INTO poll_choices (poll_id, choice_text) VALUES (%s, %s)",
                            [(poll, "Yes"), (poll, "No")])
            cur.execute("INSERT INTO captain_messages (team_id, captain_user_id, message) VALUES (%s, %s, %s)",
                        (t["id"], user, f"{t['team_name']}: bring new balls on Saturday"))
            practice = f"{t['club']} Practice - {t['series']}"
            for day in (3, 10):
                cur.execute("""INSERT INTO schedule (match_date, match_time, home_team, away_team, location,
                        league_id, home_team_id) VALUES (%s, '18:00', %s, %s, %s, %s, %s)""",
                            (f"2025-11-{day:02d}", practice, practice, t["club"], t["league_id"], t["id"]))
            cur.execute("""INSERT INTO player_availability (player_name, availability_status, series_id, match_date,
                    user_id) VALUES (%s, 1, %s, '2025-11-08 00:00:00+00', %s)""",
                        (f"Captain {t['team_name']}", t["series_id"], user))
            cur.execute("""INSERT INTO activity_log (team_id, user_id, action_type, action_description, "timestamp")
                VALUES (%s, %s, 'poll_created', %s, '2025-11-01 12:00:00+00')""",
                        (t["id"], user, f"poll created for {t['team_name']}"))
            for table, k in (("users", 1), ("user_player_associations", 1), ("polls", 1), ("poll_choices", 2),
                             ("captain_messages", 1), ("schedule(practice)", 2), ("player_availability", 1),
                             ("activity_log", 1)):
                counts[table] += k
    conn.commit()
    return counts


def entity_keys(conn) -> dict:
    """``{entity table: {id: natural key}}`` for every league, club, series and team row."""
    out = {}
    with conn.cursor() as cur:
        cur.execute("SELECT id, upper(league_id) FROM leagues")
        out["leagues"] = {i: (code,) for i, code in cur.fetchall()}
        cur.execute("SELECT id, name FROM clubs")
        out["clubs"] = {i: (_fold(n),) for i, n in cur.fetchall()}
        cur.execute("SELECT id, name FROM series")
        out["series"] = {i: (_fold(n),) for i, n in cur.fetchall()}
        cur.execute("""SELECT t.id, l.league_id, c.name, s.name FROM teams t JOIN leagues l ON l.id = t.league_id
            JOIN clubs c ON c.id = t.club_id JOIN series s ON s.id = t.series_id""")
        out["teams"] = {i: (code.upper(), _fold(club), canonical_series(code, series).casefold())
                        for i, code, club, series in cur.fetchall()}
    conn.rollback()
    return out


def reference_keys(conn) -> dict:
    """``{(table, pk, column): natural key of what it points at, None (NULL) or "ORPHAN"}``."""
    keys = entity_keys(conn)
    out = {}
    with conn.cursor() as cur:
        for table, pk, column, entity, where in USER_REFS:
            query = sql.SQL("SELECT {}, {} FROM {} WHERE " + (where or "true")).format(
                sql.Identifier(pk), sql.Identifier(column), sql.Identifier(table))
            cur.execute(query)
            for pk_value, ref in cur.fetchall():
                out[(table, pk_value, column)] = None if ref is None else keys[entity].get(ref, "ORPHAN")
    conn.rollback()
    return out


def user_rows(conn) -> dict:
    """``{table: {pk: row without its reference columns}}`` (practice rows for ``schedule``)."""
    out = {}
    with conn.cursor() as cur:
        for table, refs in USER_TABLES.items():
            cur.execute(sql.SQL("SELECT * FROM {} WHERE " + (PRACTICE if table == "schedule" else "true")).format(
                sql.Identifier(table)))
            columns = [d[0] for d in cur.description]
            rows = {}
            for row in cur.fetchall():
                record = dict(zip(columns, row, strict=True))
                pk = (record["user_id"], record["tenniscores_player_id"]) if "id" not in record else record["id"]
                rows[pk] = {c: v for c, v in record.items() if c not in refs}
            out[table] = rows
    conn.rollback()
    return out


def user_row_counts(conn) -> dict:
    return {table: len(rows) for table, rows in user_rows(conn).items()}
