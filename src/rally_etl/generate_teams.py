"""The generator's season-1 teams and how a scrape writes their names.

Split out of :mod:`rally_etl.generate`: the league shares and the parts of club names, the
:class:`Team` record, :class:`Look` (series spellings, renamed clubs, short and messy team
names) and :func:`base_teams`, which draws season 1's teams and each league's club pool.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

LEAGUES = ("APTA_CHICAGO", "NSTF", "CNSWPL")
LEAGUE_SHARES = (0.60, 0.15, 0.25)
TEAMS_PER_SERIES = 10
MIN_TEAMS = 6

_FIRST = (
    "Lake Glen Oak Maple Cedar Birch Willow River Pine Elm Ash Fox Deer Hawk Eagle Stone "
    "Spring Sun North South East West Green Silver Gold Red Blue Prairie Meadow Hill Forest "
    "Bay Rock Iron Elk Wolf Bear Crystal Shadow Harbor Highland Clear Fair Bridge Mill Cherry "
    "Hazel Briar Swan Heron"
).split()
_SECOND = (
    "view wood brook field ridge dale crest ford haven mont side wick ton land moor gate port "
    "shire vale bury worth stead more hurst ley mere wyn croft ham well"
).split()
_THIRD = ("",) + tuple(
    " " + w
    for w in "Park Hills Green Valley Heights Woods Point Landing Commons Village Shores".split()
)


@dataclass(slots=True)
class Team:
    tno: int  # stable team number: its players' ids derive from it
    league: str
    label: str  # the series number or letter: "22", "2B", "1"
    club: str  # the season-1 club name


_SERIES_SPELLINGS = {
    "APTA_CHICAGO": ("Chicago {}", "Series {}", "Division {}"),
    "NSTF": ("Series {}", "S{}"),
    "CNSWPL": ("Series {}", "Division {}"),
}


@dataclass
class Look:
    """How one scrape writes names: series spellings, renamed clubs, short and messy team names."""

    spelling: dict[tuple[str, str], int] = field(default_factory=dict)
    short_names: set[tuple[str, str]] = field(default_factory=set)  # APTA "Club 22"
    renames: dict[str, str] = field(default_factory=dict)
    messy: dict[int, str] = field(default_factory=dict)  # team number -> messy kind

    def series_name(self, league: str, label: str) -> str:
        return _SERIES_SPELLINGS[league][self.spelling.get((league, label), 0)].format(label)

    def club(self, team: Team) -> str:
        return self.renames.get(team.club, team.club)

    def team_name(self, team: Team) -> str:
        club = self.club(team)
        if team.league == "NSTF":
            name = f"{club} S{team.label}"
        elif team.league == "CNSWPL" or (team.league, team.label) in self.short_names:
            name = f"{club} {team.label}"
        else:
            name = f"{club} - {team.label}"
        kind = self.messy.get(team.tno)
        if kind == "double_space":
            return name.replace(" ", "  ", 1)
        if kind == "trailing_space":
            return name + " "
        return name[0] + name[1].upper() + name[2:] if kind == "case" else name


def club_names() -> list[str]:
    """Every generated club name, in a fixed order (plain names first); no digits, all unique."""
    seen: dict[str, None] = {}
    for third in _THIRD:
        for a in _FIRST:
            for b in _SECOND:
                seen.setdefault(a + b + third, None)
    return list(seen)


def _split(n_teams: int) -> list[int]:
    counts = [round(n_teams * share) for share in LEAGUE_SHARES[:-1]]
    return counts + [n_teams - sum(counts)]


def _labels(league: str, count: int) -> list[str]:
    if league != "NSTF":
        return [str(i + 1) for i in range(count)]
    labels: list[str] = []
    n = 1
    while len(labels) < count:  # NSTF has "1", "2A", "2B", "3", "4A", "4B", ...
        labels.extend([f"{n}A", f"{n}B"] if n % 2 == 0 else [str(n)])
        n += 1
    return labels[:count]


def base_teams(n_teams: int, seed: int) -> tuple[list[Team], dict[str, list[str]]]:
    """Season 1: the teams, grouped by series, and each league's club pool."""
    if n_teams < MIN_TEAMS:
        raise ValueError(f"n_teams must be at least {MIN_TEAMS} (two per league), got {n_teams}")
    rng = random.Random(seed)
    names = club_names()
    teams: list[Team] = []
    pools: dict[str, list[str]] = {}
    for league, n_league in zip(LEAGUES, _split(n_teams), strict=True):
        n_series = max(1, round(n_league / TEAMS_PER_SERIES))
        size = min(len(names), max(2 * TEAMS_PER_SERIES, n_league // 4))
        pools[league] = pool = rng.sample(names[: max(1500, 2 * size)], size)
        for i, label in enumerate(_labels(league, n_series)):
            in_series = n_league // n_series + (1 if i < n_league % n_series else 0)
            for club in rng.sample(
                pool, in_series
            ):  # distinct clubs: (league, club, series) unique
                teams.append(Team(len(teams), league, label, club))
    return teams, pools
