"""Realistic user-owned data for the teams already in the database.

What the app's users create between two imports: accounts with a team context, links to their
player records, polls with choices and responses, captain messages, practice times (and the
practice rows the app writes into ``schedule``), saved lineups, lineup escrow, contexts, activity,
videos and availability. All of it points at teams (or series) by integer id, which is exactly
what the legacy ETL breaks.

Everything is inserted set-based: one ``execute_values`` into a temporary table of "units", then
one ``INSERT ... SELECT`` per table. A unit is one user of one team; ``per_team`` units per team
(rounded over all teams) are spread over the teams in a seeded order. Per unit: one row each in
users, user_player_associations, polls, poll_responses, captain_messages, practice_times,
saved_lineups, user_contexts, activity_log, player_availability and ``schedule`` (a practice row);
two poll_choices; lineup_escrow for even units and videos for odd units. Half the poll questions
and half the captain messages name their series ("Chicago 22 practice on Tuesday?").
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Iterable

from psycopg2 import sql
from psycopg2.extras import execute_values

from rally_etl.generate import FIRST_NAMES, LAST_NAMES

logger = logging.getLogger(__name__)

TABLES = (
    "users",
    "user_player_associations",
    "polls",
    "poll_choices",
    "poll_responses",
    "captain_messages",
    "practice_times",
    "schedule_practice",
    "saved_lineups",
    "lineup_escrow",
    "user_contexts",
    "activity_log",
    "videos",
    "player_availability",
)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_FIRST_MONDAY = dt.date(2025, 10, 13)
_UNITS = sql.Identifier("rally_activity_units")

_TEAMS = """
SELECT t.id, t.league_id, t.series_id, t.team_name, c.name, s.name,
       (SELECT count(*) FROM practice_times p WHERE p.team_id = t.id)
FROM teams t
JOIN clubs c ON c.id = t.club_id
JOIN series s ON s.id = t.series_id
JOIN leagues l ON l.id = t.league_id
WHERE %(all)s OR l.league_id = ANY(%(leagues)s)
ORDER BY t.id
"""

_CREATE_UNITS = """
CREATE TEMPORARY TABLE {} (
    unit integer PRIMARY KEY, rnd integer NOT NULL, team_id integer NOT NULL,
    league_id integer NOT NULL, series_id integer NOT NULL, team_name text NOT NULL,
    club_name text NOT NULL, series_name text NOT NULL, recipient_id integer,
    email text NOT NULL, first_name text NOT NULL, last_name text NOT NULL,
    day text NOT NULL, start_time time NOT NULL, on_date date NOT NULL,
    user_id integer, poll_id integer
)
"""

# (table reported, statement). {u} is the units table. Order matters: users first, then the
# columns that need the new user and poll ids.
_STEPS: tuple[tuple[str | None, str], ...] = (
    (
        "users",
        """
        INSERT INTO users (email, first_name, last_name, league_context, team_id)
        SELECT email, first_name, last_name, league_id, team_id FROM {u} ORDER BY unit""",
    ),
    (None, "UPDATE {u} a SET user_id = x.id FROM users x WHERE x.email = a.email"),
    (
        "user_player_associations",
        """
        INSERT INTO user_player_associations (user_id, tenniscores_player_id)
        SELECT a.user_id, COALESCE(
            (SELECT p.tenniscores_player_id FROM players p WHERE p.team_id = a.team_id
             ORDER BY p.id LIMIT 1 OFFSET a.rnd),
            'unlinked-' || a.user_id)
        FROM {u} a ORDER BY a.unit""",
    ),
    (
        "polls",
        """
        INSERT INTO polls (team_id, created_by, question)
        SELECT team_id, user_id, CASE WHEN unit % 2 = 0
            THEN series_name || ' practice on ' || day || '?'
            ELSE 'Who can play on ' || day || '?' END
        FROM {u} ORDER BY unit""",
    ),
    (None, "UPDATE {u} a SET poll_id = x.id FROM polls x WHERE x.created_by = a.user_id"),
    (
        "poll_choices",
        """
        INSERT INTO poll_choices (poll_id, choice_text)
        SELECT a.poll_id, c.choice FROM {u} a
        CROSS JOIN (VALUES (1, 'Yes'), (2, 'No')) AS c (n, choice) ORDER BY a.unit, c.n""",
    ),
    (
        "poll_responses",
        """
        INSERT INTO poll_responses (poll_id, choice_id, player_id)
        SELECT a.poll_id, c.first_choice, a.user_id
        FROM {u} a LEFT JOIN (SELECT poll_id, min(id) AS first_choice FROM poll_choices
                              GROUP BY poll_id) c ON c.poll_id = a.poll_id
        ORDER BY a.unit""",
    ),
    (
        "captain_messages",
        """
        INSERT INTO captain_messages (team_id, captain_user_id, message)
        SELECT team_id, user_id, CASE WHEN unit % 2 = 1
            THEN series_name || ': the lineup for ' || day || ' is posted'
            ELSE 'Match moved to ' || day || ', please confirm' END
        FROM {u} ORDER BY unit""",
    ),
    (
        "practice_times",
        """
        INSERT INTO practice_times (team_id, league_id, day_of_week, start_time, end_time, location)
        SELECT team_id, league_id, day, start_time, start_time + interval '90 minutes', club_name
        FROM {u} ORDER BY unit""",
    ),
    (
        "schedule_practice",
        """
        INSERT INTO schedule (league_id, match_date, match_time, home_team, away_team,
                              home_team_id, away_team_id, location)
        SELECT league_id, on_date, start_time, team_name || ' Practice', NULL, team_id, NULL,
               club_name
        FROM {u} ORDER BY unit""",
    ),
    (
        "saved_lineups",
        """
        INSERT INTO saved_lineups (user_id, team_id, lineup_name, lineup_data)
        SELECT user_id, team_id, 'Lineup for ' || day,
               jsonb_build_object('unit', unit, 'courts', jsonb_build_array('1', '2', '3'))
        FROM {u} ORDER BY unit""",
    ),
    (
        "lineup_escrow",
        """
        INSERT INTO lineup_escrow (initiator_team_id, recipient_team_id, initiator_user_id, status)
        SELECT team_id, recipient_id, user_id, 'pending' FROM {u} WHERE unit % 2 = 0
        ORDER BY unit""",
    ),
    (
        "user_contexts",
        """
        INSERT INTO user_contexts (user_id, league_id, team_id, active_team_id)
        SELECT user_id, league_id, team_id, team_id FROM {u} ORDER BY unit""",
    ),
    (
        "activity_log",
        """
        INSERT INTO activity_log (user_id, team_id, action_type, details)
        SELECT user_id, team_id, 'team_switch', jsonb_build_object('team_name', team_name)
        FROM {u} ORDER BY unit""",
    ),
    (
        "videos",
        """
        INSERT INTO videos (team_id, title, url)
        SELECT team_id, 'Drills for ' || team_name, 'https://videos.example.org/' || unit
        FROM {u} WHERE unit % 2 = 1 ORDER BY unit""",
    ),
    (
        "player_availability",
        """
        INSERT INTO player_availability (user_id, player_name, series_id, match_date,
                                         availability_status)
        SELECT user_id, first_name || ' ' || last_name, series_id, on_date, 1 + unit % 3
        FROM {u} ORDER BY unit""",
    ),
)


def expected_counts(units: int) -> dict[str, int]:
    """The exact rows :func:`create_user_activity` inserts per table for ``units`` units."""
    counts = dict.fromkeys(TABLES, units)
    counts.update(poll_choices=2 * units, lineup_escrow=(units + 1) // 2, videos=units // 2)
    return counts


def unit_count(n_teams: int, per_team: float) -> int:
    """How many units (users) ``per_team`` means for ``n_teams`` teams."""
    return round(per_team * n_teams)


def _units(teams: list[tuple], seed: int, per_team: float, first_user: int) -> list[tuple]:
    rng = random.Random(seed)
    order = list(range(len(teams)))
    rng.shuffle(order)
    # The next team of the same league and series (by id, cyclic), for lineup escrow.
    by_series: dict[tuple[int, int], list[int]] = {}
    for team in teams:
        by_series.setdefault((team[1], team[2]), []).append(team[0])
    recipient: dict[int, int | None] = {}
    for ids in by_series.values():
        for i, team_id in enumerate(ids):
            recipient[team_id] = ids[(i + 1) % len(ids)] if len(ids) > 1 else None
    rows = []
    for unit in range(unit_count(len(teams), per_team)):
        rnd, pos = divmod(unit, len(teams))
        team_id, league_id, series_id, team_name, club, series, earlier = teams[order[pos]]
        rnd += earlier  # rounds of earlier calls: practice times stay unique across calls
        # (day, start) distinct for the first 35 rounds of one team: practice times stay unique
        day_no = (team_id + rnd) % 7
        start = dt.time(17 + (rnd // 7) % 5, 30 * (team_id % 2))
        rows.append(
            (
                unit,
                rnd,
                team_id,
                league_id,
                series_id,
                team_name,
                club,
                series,
                recipient[team_id],
                f"user{first_user + unit}.s{seed}@rally.example",
                rng.choice(FIRST_NAMES),
                rng.choice(LAST_NAMES),
                DAYS[day_no],
                start,
                _FIRST_MONDAY + dt.timedelta(days=day_no + 7 * rnd),
            )
        )
    return rows


def create_user_activity(
    conn, *, seed: int = 0, per_team: float = 1.0, leagues: Iterable[str] | None = None
) -> dict[str, int]:
    """Insert user-owned rows for the teams in the database; commits; returns rows per table.

    ``leagues`` limits the teams to these league codes. The result has one entry per user
    table plus ``schedule_practice`` (practice rows in ``schedule``), each the exact number of
    rows inserted. Deterministic for a seed and a database state.
    """
    if per_team < 0:
        raise ValueError(f"per_team must not be negative, got {per_team}")
    codes = sorted(leagues) if leagues is not None else []
    counts = dict.fromkeys(TABLES, 0)
    with conn.cursor() as cur:
        cur.execute(_TEAMS, {"all": leagues is None, "leagues": codes})
        teams = cur.fetchall()
        if not teams:
            logger.info("no teams%s: no user activity created", f" in {codes}" if codes else "")
            return counts
        cur.execute("SELECT COALESCE(max(id), 0) + 1 FROM users")
        units = _units(teams, seed, per_team, cur.fetchone()[0])
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_UNITS))
        cur.execute(sql.SQL(_CREATE_UNITS).format(_UNITS))
        execute_values(
            cur, sql.SQL("INSERT INTO {} VALUES %s").format(_UNITS), units, page_size=5000
        )
        for table, statement in _STEPS:
            cur.execute(sql.SQL(statement).format(u=_UNITS))
            if table is not None:
                counts[table] = cur.rowcount
        cur.execute(sql.SQL("DROP TABLE {}").format(_UNITS))
    conn.commit()
    logger.info("user activity for %d teams (%d units): %s", len(teams), len(units), counts)
    return counts


__all__ = ["DAYS", "TABLES", "create_user_activity", "expected_counts", "unit_count"]
