"""Rendering a season: the four input files as one scrape writes the generator's teams.

Split out of :mod:`rally_etl.generate`: the file names, player names, match times and
scores, :func:`player_id` and :func:`render`, which writes the players, series_stats,
schedules and match_history records of the teams as a :class:`Look` names them.
"""

from __future__ import annotations

import datetime as dt
import random

from .generate_teams import Look, Team

FILES = ("players", "series_stats", "schedules", "match_history")
PLAYERS_PER_TEAM = 3

FIRST_NAMES = (
    "Dana Alex Jordan Casey Morgan Taylor Riley Jamie Avery Quinn Peyton Reese Drew Blake "
    "Cameron Hayden Kendall Logan Parker Rowan"
).split()
LAST_NAMES = (
    "Ruiz Smith Nguyen Kowalski Okafor Larsen Moreau Schmidt Tanaka Rossi Murphy Novak Silva "
    "Cohen Patel Berg Walsh Klein Duarte Hale"
).split()
_TIMES = ("06:30 pm", "07:00 pm", "07:30 pm")
_SCORES = ("6-2, 6-4", "6-3, 3-6, 10-7", "7-5, 6-4", "4-6, 6-1, 6-3", "6-1, 6-0", "7-6, 6-7, 10-8")
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def player_id(seed: int, tno: int, k: int) -> str:
    """A stable, unique id for player k of team number tno (a bijection of tno and k)."""
    value = ((tno * PLAYERS_PER_TEAM + k) * 0x9E3779B1 + seed * 0x632BE5AB) % (1 << 41)
    out = []
    for _ in range(8):
        value, digit = divmod(value, 36)
        out.append(_B36[digit])
    return "nndz-" + "".join(out)


def render(teams: list[Team], seed: int, season: int, look: Look) -> dict[str, list]:
    """The four files for these teams (grouped by series, in order) as one season wrote them."""
    rng = random.Random(seed * 7919 + season)
    out: dict[str, list] = {name: [] for name in FILES}
    players, stats, schedules, matches = (out[name] for name in FILES)
    dates = [_date_text(season, week) for week in range(2)]
    groups: dict[tuple[str, str], list[Team]] = {}
    for team in teams:
        groups.setdefault((team.league, team.label), []).append(team)
    for (league, label), group in groups.items():
        series = look.series_name(league, label)
        names = [look.team_name(t) for t in group]
        # Schedules append the series to NSTF and CNSWPL names, always as a word and a label.
        suffix = series if series.startswith(("Series ", "Division ")) else f"Series {label}"
        sched_names = names if league == "APTA_CHICAGO" else [f"{n} - {suffix}" for n in names]
        ids = [[player_id(seed, t.tno, k) for k in range(PLAYERS_PER_TEAM)] for t in group]
        for t, name, pids in zip(group, names, ids, strict=True):
            club = look.club(t)
            for k, pid in enumerate(pids):
                players.append(_player(league, series, name, club, pid, k, rng))
            won, lost = rng.randint(0, 8), rng.randint(0, 8)
            pct = f"{100 * won / (won + lost):.1f}%" if won + lost else "0.0%"
            stats.append(
                {
                    "series": series,
                    "team": name,
                    "league_id": league,
                    "points": 3 * won + rng.randint(0, 9),
                    "matches": {"won": won, "lost": lost, "tied": 0, "percentage": pct},
                }
            )
        n = len(group)
        for i, t in enumerate(group):
            for week in range(min(2, n - 1)):  # a couple of home matches against the next teams
                away = (i + week + 1) % n
                schedules.append(
                    {
                        "date": dates[week][0],
                        "time": _TIMES[(i + week) % 3],
                        "home_team": sched_names[i],
                        "away_team": sched_names[away],
                        "location": look.club(t),
                        "series": series,
                        "League": league,
                    }
                )
            if n > 1:
                away = (i + 1) % n
                matches.append(
                    {
                        "league_id": league,
                        "Date": dates[0][1],
                        "Home Team": names[i],
                        "Away Team": names[away],
                        "Home Player 1 ID": ids[i][0],
                        "Home Player 2 ID": ids[i][1],
                        "Away Player 1 ID": ids[away][0],
                        "Away Player 2 ID": ids[away][1],
                        "Scores": rng.choice(_SCORES),
                        "Winner": rng.choice(("home", "away")),
                    }
                )
    return out


def _date_text(season: int, week: int) -> tuple[str, str]:
    day = dt.date(2024 + season, 10, 14) + dt.timedelta(days=7 * week)
    return day.strftime("%m/%d/%Y"), day.strftime("%d-%b-%y")


def _player(
    league: str, series: str, team: str, club: str, pid: str, k: int, rng: random.Random
) -> dict:
    wins, losses = rng.randint(0, 9), rng.randint(0, 9)
    code = int(pid[5:], 36)
    return {
        "League": league,
        "Series": series,
        "Series Mapping ID": team,
        "Club": club,
        "Location ID": club.upper().replace(" ", "_"),
        "Player ID": pid,
        "First Name": FIRST_NAMES[code % 20],
        "Last Name": LAST_NAMES[(code // 20) % 20],
        "PTI": f"{rng.uniform(20, 60):.1f}",
        "Wins": str(wins),
        "Losses": str(losses),
        "Win %": f"{100 * wins / (wins + losses):.1f}%" if wins + losses else "0.0%",
        "Captain": "C" if k == 0 else "",
    }
