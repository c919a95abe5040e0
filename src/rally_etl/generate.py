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
import json
import logging
import random
import sys
import time
from pathlib import Path

from .generate_churn import _RENAME_SUFFIXES as _RENAME_SUFFIXES
from .generate_churn import MESSY_KINDS as MESSY_KINDS
from .generate_churn import ChurnSpec, ChurnSummary, apply_churn
from .generate_render import _B36 as _B36
from .generate_render import _SCORES as _SCORES
from .generate_render import _TIMES as _TIMES
from .generate_render import FILES, render
from .generate_render import FIRST_NAMES as FIRST_NAMES
from .generate_render import LAST_NAMES as LAST_NAMES
from .generate_render import PLAYERS_PER_TEAM as PLAYERS_PER_TEAM
from .generate_render import _date_text as _date_text
from .generate_render import _player as _player
from .generate_render import player_id as player_id
from .generate_teams import _FIRST as _FIRST
from .generate_teams import _SECOND as _SECOND
from .generate_teams import _SERIES_SPELLINGS as _SERIES_SPELLINGS
from .generate_teams import _THIRD as _THIRD
from .generate_teams import LEAGUE_SHARES as LEAGUE_SHARES
from .generate_teams import LEAGUES as LEAGUES
from .generate_teams import MIN_TEAMS as MIN_TEAMS
from .generate_teams import TEAMS_PER_SERIES as TEAMS_PER_SERIES
from .generate_teams import Look, base_teams, club_names
from .generate_teams import Team as Team
from .generate_teams import _labels as _labels
from .generate_teams import _split as _split

# The ``name as name`` imports keep importable from here what was defined here before the
# generator was split into generate_teams, generate_churn and generate_render.

logger = logging.getLogger(__name__)

_CHUNK = 20_000


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
