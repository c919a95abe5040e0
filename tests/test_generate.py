"""The data generator: deterministic, the formats of SCHEMA.md, churn exactly as summarised."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter

import pytest

from rally_etl import names
from rally_etl.generate import (
    FILES,
    ChurnSpec,
    generate_season,
    generate_season_with_summary,
    main,
    write_season,
)
from rally_etl.sample import SAMPLE_TEAMS, sample_data_dir

CLUB = r"[A-Z][a-z]+(?: [A-Z][a-z]+)?"
TEAM_FORMATS = {  # league -> (team name, series name, schedule team text); clean season 1
    "APTA_CHICAGO": (rf"^{CLUB} - (\d+)$", r"^Chicago (\d+)$", rf"^{CLUB} - \d+$"),
    "NSTF": (rf"^{CLUB} S(\d+[AB]?)$", r"^Series (\d+[AB]?)$", rf"^{CLUB} S\w+ - Series \w+$"),
    "CNSWPL": (rf"^{CLUB} (\d+)$", r"^Series (\d+)$", rf"^{CLUB} \d+ - Series \d+$"),
}
PLAYER_FIELDS = [
    "League", "Series", "Series Mapping ID", "Club", "Location ID", "Player ID", "First Name",
    "Last Name", "PTI", "Wins", "Losses", "Win %", "Captain",
]  # fmt: skip


def _keys(data: dict, lower: bool = False, renames: dict | None = None) -> set[tuple]:
    """Natural keys of the teams in series_stats (optionally a club renamed / case-folded)."""
    keys = set()
    for r in data["series_stats"]:
        league, club, series = names.team_key(r["league_id"], r["team"], r["series"])
        club = (renames or {}).get(club, club)
        keys.add((league, club.lower() if lower else club, series))
    return keys


def test_same_seed_writes_identical_bytes_and_another_seed_does_not(tmp_path):
    for name, (teams, seed, season, churn) in {
        "a": (500, 7, 2, 0.2), "b": (500, 7, 2, 0.2), "c": (500, 8, 2, 0.2),
    }.items():  # fmt: skip
        write_season(generate_season(teams, seed, season, churn), tmp_path / name)
    for file in FILES:
        a, b, c = ((tmp_path / d / f"{file}.json").read_bytes() for d in "abc")
        assert a == b
        assert a != c


def test_1000_teams_are_1000_distinct_teams_in_series_stats():
    data = generate_season(1000, 3)
    stats = data["series_stats"]
    assert len(stats) == 1000
    assert len({(r["league_id"], r["team"]) for r in stats}) == 1000
    assert len(_keys(data)) == 1000  # distinct (league, club, canonical series) as well
    assert Counter(r["league_id"] for r in stats) == {
        "APTA_CHICAGO": 600,
        "NSTF": 150,
        "CNSWPL": 250,
    }
    # a couple of schedule rows and one match per team, three players per team
    assert len(data["schedules"]) == 2000
    assert len(data["match_history"]) == 1000
    assert len(data["players"]) == 3000
    assert len({r["Player ID"] for r in data["players"]}) == 3000


def test_names_follow_the_formats_of_each_league():
    data = generate_season(300, 5)
    for r in data["series_stats"]:
        team_re, series_re, _ = TEAM_FORMATS[r["league_id"]]
        team, series = re.match(team_re, r["team"]), re.match(series_re, r["series"])
        assert team and series and team.group(1) == series.group(1), r
        assert set(r["matches"]) == {"won", "lost", "tied", "percentage"}
    teams = {(r["league_id"], r["team"]) for r in data["series_stats"]}
    for r in data["schedules"]:
        assert re.match(TEAM_FORMATS[r["League"]][2], r["home_team"]), r
        assert re.match(r"^\d\d/\d\d/\d{4}$", r["date"]) and re.match(
            r"^\d\d:\d\d [ap]m$", r["time"]
        )
        assert set(r) == {"date", "time", "home_team", "away_team", "location", "series", "League"}
    for r in data["players"]:
        assert list(r) == PLAYER_FIELDS
        assert (r["League"], r["Series Mapping ID"]) in teams
        assert r["Series Mapping ID"].startswith(r["Club"] + " ")
        assert r["Location ID"] == r["Club"].upper().replace(" ", "_")
    for r in data["match_history"]:
        assert re.match(r"^\d\d-[A-Z][a-z]{2}-\d\d$", r["Date"])
        assert (r["league_id"], r["Home Team"]) in teams and r["Winner"] in ("home", "away")


def test_season_2_churn_counts_match_the_summary_exactly():
    spec = ChurnSpec(respell=0.3, rename=0.05, remove=0.06, add=0.04, duplicate=0.05, messy=0.09)
    first = generate_season(1000, 11)
    second, summary = generate_season_with_summary(1000, 11, season=2, churn=spec)
    s = summary.to_dict()
    assert s["teams_before"] == 1000 and s["teams_removed"] == 60 and s["teams_added"] == 40
    assert s["teams_after"] == 980 == len(_keys(second))
    # messy: round(0.09 * 940 survivors) = 85 teams, the three kinds in turn
    assert s["teams_messy"] == {"double_space": 29, "trailing_space": 28, "case": 28}

    # Removed and added teams, independent of renames and case: exactly the summary's counts.
    before = _keys(first, lower=True, renames=s["club_renames"])
    after = _keys(second, lower=True)
    assert len(before - after) == s["teams_removed"]
    assert len(after - before) == s["teams_added"]
    # Natural keys as they are: renamed clubs and the case-messy club names are other keys.
    kept = _keys(first) & _keys(second)
    assert len(kept) == s["teams_kept"] == 1000 - 60 - s["teams_key_changed"]
    assert s["teams_key_changed"] == s["teams_of_renamed_clubs"] + 28

    # Spellings: every respelled series is written its new way, and only those.
    old = {(r["league_id"], r["series"]) for r in first["series_stats"]}
    new = {(r["league_id"], r["series"]) for r in second["series_stats"]}
    # 100 series (60 APTA, 15 NSTF, 25 CNSWPL, ten teams each): 30 respelled
    assert len(new - old) == s["series_respelled"] == len(s["series_respellings"]) == 30
    respelled = {(lg, n) for lg, _, n in s["series_respellings"]}
    assert new - old == respelled
    in_respelled = {(r["league_id"], r["team"]) for r in second["series_stats"]
                    if (r["league_id"], r["series"]) in respelled}  # fmt: skip
    assert len(in_respelled) == s["teams_in_respelled_series"]
    short = [t for lg, t in in_respelled if lg == "APTA_CHICAGO" and " - " not in t]
    assert len(short) == s["team_names_shortened"]

    # Duplicated records are exact copies; counted per file.
    for file, count in s["duplicate_records"].items():
        records = [json.dumps(r, sort_keys=True) for r in second[file]]
        assert len(records) - len(set(records)) == count
    assert s["duplicate_records"] == {
        "players": round(0.05 * 980 * 3), "series_stats": 49, "schedules": round(0.05 * 1960),
    }  # fmt: skip
    # Renamed clubs appear only under their new names.
    clubs = {r["Club"] for r in second["players"]}
    assert set(s["club_renames"]).isdisjoint(clubs) and set(s["club_renames"].values()) <= clubs


def test_season_1_refuses_churn():
    with pytest.raises(ValueError, match="season 2"):
        generate_season(100, 1, season=1, churn=0.1)


def test_cli_writes_the_four_files_and_prints_the_summary(tmp_path, capsys):
    assert main(["--teams", "60", "--seed", "4", "--churn", "0.2", "--out", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["season"] == 2 and summary["teams_removed"] == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{f}.json" for f in FILES)
    stats = json.loads((tmp_path / "series_stats.json").read_text())
    assert len({(r["league_id"], r["team"]) for r in stats}) == summary["teams_after"]


def test_cli_runs_as_a_module(tmp_path):
    out = tmp_path / "s1"
    cmd = [sys.executable, "-m", "rally_etl.generate", "--teams", "30", "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert json.loads(result.stdout)["teams_after"] == 30
    assert len(json.loads((out / "players.json").read_text())) == 90


def test_sample_is_generated_once_into_the_cache_and_stays_small(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = sample_data_dir(1)
    assert first == tmp_path / "bulletproof-etl" / "sample-v1" / "season1"
    mtimes = {p.name: p.stat().st_mtime_ns for p in first.iterdir()}
    assert sorted(mtimes) == sorted(f"{f}.json" for f in FILES)
    assert sample_data_dir(1) == first
    assert {p.name: p.stat().st_mtime_ns for p in first.iterdir()} == mtimes  # not rewritten
    second = sample_data_dir(2)
    for season_dir in (first, second):
        assert sum(p.stat().st_size for p in season_dir.iterdir()) < 1_000_000
    stats = json.loads((first / "series_stats.json").read_text())
    assert len(stats) == SAMPLE_TEAMS
    assert {r["league_id"] for r in stats} == {"APTA_CHICAGO", "NSTF", "CNSWPL"}
    assert (second / "series_stats.json").read_bytes() != (first / "series_stats.json").read_bytes()
    assert [p.name for p in first.parent.iterdir() if p.name.startswith(".")] == []
