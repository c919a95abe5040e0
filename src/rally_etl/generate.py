"""A deterministic generator of the league input files (see SCHEMA.md).

Season 1 is a clean scrape of three leagues. Season 2 ("next season") of the same seed keeps the
league set and applies controlled churn: series spelled differently, clubs renamed, teams removed
and added, duplicated records and messy whitespace/case in team names. Every churn is counted in a
:class:`ChurnSummary`, so tests can assert exact expectations.

    python -m rally_etl.generate --teams 1000 --seed 7 --out generated/s1
    python -m rally_etl.generate --teams 1000 --seed 7 --season 2 --churn 0.1 --out generated/s2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import random
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

logger = logging.getLogger(__name__)

LEAGUES = ("APTA_CHICAGO", "NSTF", "CNSWPL")
LEAGUE_SHARES = (0.60, 0.15, 0.25)
FILES = ("players", "series_stats", "schedules", "match_history")
TEAMS_PER_SERIES = 10
PLAYERS_PER_TEAM = 3
MIN_TEAMS = 6
_CHUNK = 20_000

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
_RENAME_SUFFIXES = (" CC", " Club", " Tennis Club", " RC")
MESSY_KINDS = ("double_space", "trailing_space", "case")  # case: "Park RIdge CC", as scraped


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


@dataclass(frozen=True)
class ChurnSpec:
    """Shares of season-2 churn: of series (respell), of clubs (rename), of teams (remove, add,
    messy) and of records in players, series_stats and schedules (duplicate)."""

    respell: float = 0.0
    rename: float = 0.0
    remove: float = 0.0
    add: float = 0.0
    duplicate: float = 0.0
    messy: float = 0.0

    def __post_init__(self) -> None:
        for kind in self.kinds():
            if not 0.0 <= getattr(self, kind) <= 1.0:
                raise ValueError(f"churn share {kind!r} must be within [0, 1]")

    @classmethod
    def from_fraction(cls, share: float) -> ChurnSpec:
        """All of ``share`` for series spellings, half of it for every other kind."""
        half = share / 2
        return cls(respell=share, rename=half, remove=half, add=half, duplicate=half, messy=half)

    @staticmethod
    def kinds() -> tuple[str, ...]:
        return tuple(f.name for f in fields(ChurnSpec))

    def any(self) -> bool:
        return any(getattr(self, kind) for kind in self.kinds())

    def with_overrides(self, values: dict[str, float | None]) -> ChurnSpec:
        return replace(self, **{k: v for k, v in values.items() if v is not None})


@dataclass
class ChurnSummary:
    """Exactly what season 2 changed against season 1 of the same seed (teams counted by key)."""

    seed: int
    season: int
    teams_before: int
    teams_after: int = 0
    teams_removed: int = 0
    teams_added: int = 0
    clubs_renamed: int = 0
    teams_of_renamed_clubs: int = 0
    series_respelled: int = 0
    teams_in_respelled_series: int = 0
    team_names_shortened: int = 0
    teams_messy: dict[str, int] = field(default_factory=dict)
    # Season-1 teams still there whose natural key (league, club, canonical series) changed:
    # a renamed club, or a club written with another case. Neither whitespace nor series
    # spelling changes a key. teams_kept = teams_before - teams_removed - teams_key_changed.
    teams_key_changed: int = 0
    teams_kept: int = 0
    duplicate_records: dict[str, int] = field(default_factory=dict)
    club_renames: dict[str, str] = field(default_factory=dict)
    series_respellings: list[list[str]] = field(default_factory=list)  # [league, old, new]

    @classmethod
    def unchanged(cls, seed: int, n_teams: int) -> ChurnSummary:
        return cls(
            seed=seed, season=1, teams_before=n_teams, teams_after=n_teams, teams_kept=n_teams
        )

    def to_dict(self) -> dict:
        return asdict(self)


def apply_churn(
    teams: list[Team],
    pools: dict[str, list[str]],
    names: list[str],
    spec: ChurnSpec,
    rng: random.Random,
    seed: int,
) -> tuple[list[Team], Look, ChurnSummary]:
    """Season 2 from season 1: the teams (grouped by series), how they are written, the summary."""
    look = Look()
    removed = set(rng.sample(range(len(teams)), round(spec.remove * len(teams))))
    survivors = [t for i, t in enumerate(teams) if i not in removed]
    used = sorted({t.club for t in survivors})
    for old in rng.sample(used, round(spec.rename * len(used))):
        look.renames[old] = old + rng.choice(_RENAME_SUFFIXES)
    series_keys = list(dict.fromkeys((t.league, t.label) for t in teams))
    for key in rng.sample(series_keys, round(spec.respell * len(series_keys))):
        look.spelling[key] = rng.randrange(1, len(_SERIES_SPELLINGS[key[0]]))
        if key[0] == "APTA_CHICAGO" and rng.random() < 0.5:
            look.short_names.add(key)
    # Disjoint from the renames, so that each changed key has exactly one cause.
    plain_clubs = [t for t in survivors if t.club not in look.renames]
    for i, team in enumerate(
        rng.sample(plain_clubs, min(len(plain_clubs), round(spec.messy * len(survivors))))
    ):
        look.messy[team.tno] = MESSY_KINDS[i % len(MESSY_KINDS)]
    taken: dict[tuple[str, str], set[str]] = {}
    for team in teams:  # removed teams too: an added team is never a removed one come back
        taken.setdefault((team.league, team.label), set()).add(team.club)
    for key in series_keys:  # and never of a renamed club: renames concern season-1 teams
        taken[key].update(look.renames)
    added: list[Team] = []
    for _ in range(round(spec.add * len(teams))):
        key = rng.choice(series_keys)
        club, tries = rng.choice(pools[key[0]]), 0
        while club in taken[key]:
            club = rng.choice(pools[key[0]]) if tries < 20 else names[tries - 20]
            tries += 1
        taken[key].add(club)
        added.append(Team(len(teams) + len(added), key[0], key[1], club))
    order = {key: i for i, key in enumerate(series_keys)}
    final = sorted(survivors + added, key=lambda t: order[(t.league, t.label)])
    plain = Look()
    messy = {kind: list(look.messy.values()).count(kind) for kind in MESSY_KINDS}
    changed = sum(t.club in look.renames for t in survivors) + messy["case"]
    summary = ChurnSummary(
        seed=seed,
        season=2,
        teams_before=len(teams),
        teams_after=len(final),
        teams_removed=len(removed),
        teams_added=len(added),
        clubs_renamed=len(look.renames),
        teams_of_renamed_clubs=sum(t.club in look.renames for t in final),
        series_respelled=len(look.spelling),
        teams_in_respelled_series=sum((t.league, t.label) in look.spelling for t in final),
        team_names_shortened=sum((t.league, t.label) in look.short_names for t in final),
        teams_messy=messy,
        teams_key_changed=changed,
        teams_kept=len(survivors) - changed,
        club_renames=dict(sorted(look.renames.items())),
        series_respellings=[
            [k[0], plain.series_name(*k), look.series_name(*k)]
            for k in series_keys
            if k in look.spelling
        ],
    )
    return final, look, summary


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


def generate_season_with_summary(
    n_teams: int, seed: int, season: int = 1, churn: float | ChurnSpec = 0.0
) -> tuple[dict[str, list], ChurnSummary]:
    """The four files of a season and the exact summary of what churned since season 1."""
    if season not in (1, 2):
        raise ValueError(f"season must be 1 or 2, got {season}")
    spec = churn if isinstance(churn, ChurnSpec) else ChurnSpec.from_fraction(churn)
    if season == 1 and spec.any():
        raise ValueError("churn applies to season 2 only")
    teams, pools = base_teams(n_teams, seed)
    if season == 1:
        return render(teams, seed, 1, Look()), ChurnSummary.unchanged(seed, len(teams))
    rng = random.Random(seed * 1_000_003 + 2)
    final, look, summary = apply_churn(teams, pools, club_names(), spec, rng, seed)
    data = render(final, seed, 2, look)
    for name in ("players", "series_stats", "schedules"):
        records = data[name]
        chosen = set(rng.sample(range(len(records)), round(spec.duplicate * len(records))))
        data[name] = [r for i, rec in enumerate(records) for r in (rec, rec)[: 1 + (i in chosen)]]
        summary.duplicate_records[name] = len(chosen)
    return data, summary


def generate_season(
    n_teams: int, seed: int, season: int = 1, churn: float | ChurnSpec = 0.0
) -> dict[str, list]:
    """The four files of a season: {"players": [...], "series_stats": [...], ...}."""
    return generate_season_with_summary(n_teams, seed, season, churn)[0]


def write_season(data: dict[str, list], out_dir: str | Path) -> Path:
    """Write ``<name>.json`` for each of the four files; returns the directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    encoder = json.JSONEncoder(ensure_ascii=False)  # the C encoder, one chunk at a time
    for name in FILES:
        records = data[name]
        with open(out / f"{name}.json", "w", encoding="utf-8") as fp:
            fp.write("[")
            for start in range(0, len(records), _CHUNK):
                if start:
                    fp.write(", ")
                fp.write(encoder.encode(records[start : start + _CHUNK])[1:-1])
            fp.write("]\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rally_etl.generate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--teams", type=int, required=True, help="number of distinct teams")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, required=True, help="directory for the four files")
    parser.add_argument(
        "--season",
        type=int,
        choices=(1, 2),
        default=None,
        help="1 (clean) or 2 (next season, with churn); --churn implies 2",
    )
    parser.add_argument(
        "--churn", type=float, default=None, help="share of churn in season 2 (default 0.1)"
    )
    for kind in ChurnSpec.kinds():
        parser.add_argument(
            f"--{kind}",
            type=float,
            default=None,
            help=f"share for '{kind}' churn (overrides the --churn default)",
        )
    args = parser.parse_args(argv)
    season = args.season or (2 if args.churn is not None else 1)
    spec = (
        ChurnSpec.from_fraction(0.1 if args.churn is None else args.churn)
        if season == 2
        else ChurnSpec()
    )
    spec = spec.with_overrides({k: getattr(args, k) for k in ChurnSpec.kinds()})
    started = time.perf_counter()
    try:
        data, summary = generate_season_with_summary(args.teams, args.seed, season, spec)
    except ValueError as exc:
        parser.error(str(exc))
    write_season(data, args.out)
    elapsed = time.perf_counter() - started
    json.dump(summary.to_dict(), sys.stdout, indent=2)
    print(f"\nwrote {args.out} in {elapsed:.2f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
