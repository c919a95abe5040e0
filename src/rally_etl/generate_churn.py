"""Season 2 of the generator: the churn applied to season 1, and its exact summary.

Split out of :mod:`rally_etl.generate`: :class:`ChurnSpec` (the shares of each kind of
churn), :class:`ChurnSummary` (what season 2 changed, counted exactly) and
:func:`apply_churn`, which removes, adds and renames teams and decides how season 2 writes
their names.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, fields, replace

from .generate_teams import _SERIES_SPELLINGS, Look, Team

_RENAME_SUFFIXES = (" CC", " Club", " Tennis Club", " RC")
MESSY_KINDS = ("double_space", "trailing_space", "case")  # case: "Park RIdge CC", as scraped


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
