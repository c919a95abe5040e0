"""Unusable input: the error names file, record and field, and the database is untouched.

Loading happens before the clear, so a bad file must leave a previous import exactly in
place: same counts, same team ids.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from rally_etl import ComprehensiveETL, InputError
from rally_etl.etl import TARGET_TABLES
from rally_etl.loader import load_json_files


def good_files() -> dict[str, list]:
    return {
        "players": [
            {
                "League": "NSTF",
                "Series": "Series 2B",
                "Series Mapping ID": "Oakridge S2B",
                "Club": "Oakridge",
                "Player ID": "n1",
                "First Name": "A",
                "Last Name": "B",
                "PTI": "N/A",
                "Wins": "1",
                "Losses": "2",
                "Captain": "",
            },
            {
                "League": "NSTF",
                "Series": "Series 1",
                "Series Mapping ID": "Wilmette S1 T2",
                "Club": "Wilmette",
                "Player ID": "n2",
                "First Name": "C",
                "Last Name": "D",
                "PTI": 33.5,
                "Wins": 4,
                "Losses": 0,
                "Captain": "C",
            },
        ],
        "series_stats": [
            {
                "series": "Series 2B",
                "team": "Oakridge S2B",
                "league_id": "NSTF",
                "points": 3,
                "matches": {"won": 1, "lost": 0, "tied": 0},
            },
            {
                "series": "Series 1",
                "team": "Wilmette S1 T2",
                "league_id": "NSTF",
                "points": 1,
                "matches": {"won": 0, "lost": 1, "tied": 0},
            },
        ],
        "schedules": [
            {
                "date": "10/14/2025",
                "time": "07:00 pm",
                "home_team": "Oakridge S2B - Series 2B",
                "away_team": "Wilmette S1 T2 - Series 1",
                "location": "x",
                "series": "Series 2B",
                "League": "NSTF",
            },
        ],
        "match_history": [],
    }


def write(directory: Path, files: dict[str, object], raw: dict[str, bytes] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in files.items():
        (directory / f"{name}.json").write_text(json.dumps(rows), encoding="utf-8")
    for filename, data in (raw or {}).items():
        (directory / filename).write_bytes(data)
    return directory


def snapshot(conn) -> dict:
    with conn.cursor() as cur:
        out = {}
        for table in TARGET_TABLES:
            cur.execute(f"SELECT count(*) FROM {table}")
            out[table] = cur.fetchone()[0]
        cur.execute("SELECT id, team_name FROM teams ORDER BY id")
        out["team_rows"] = cur.fetchall()
    conn.rollback()
    return out


def _without(kind: str, index: int, field: str):
    def mutate(files):
        del files[kind][index][field]

    return mutate


def _set(kind: str, index: int, field: str, value):
    def mutate(files):
        files[kind][index][field] = value

    return mutate


# (case id, mutation of the good files, file, record, field, words in the message)
RECORD_CASES = [
    ("player-without-club", _without("players", 1, "Club"), "players.json", 1, "Club", "missing"),
    (
        "player-without-series",
        _without("players", 0, "Series"),
        "players.json",
        0,
        "Series",
        "missing",
    ),
    (
        "player-without-league",
        _without("players", 1, "League"),
        "players.json",
        1,
        "League",
        "missing",
    ),
    (
        "player-without-id",
        _without("players", 0, "Player ID"),
        "players.json",
        0,
        "Player ID",
        "missing",
    ),
    (
        "stats-without-team",
        _without("series_stats", 1, "team"),
        "series_stats.json",
        1,
        "team",
        "missing",
    ),
    (
        "stats-without-league",
        _without("series_stats", 0, "league_id"),
        "series_stats.json",
        0,
        "league_id",
        "missing",
    ),
    (
        "stats-without-series",
        _without("series_stats", 1, "series"),
        "series_stats.json",
        1,
        "series",
        "missing",
    ),
    (
        "schedule-without-home",
        _without("schedules", 0, "home_team"),
        "schedules.json",
        0,
        "home_team",
        "missing",
    ),
    (
        "team-not-a-string",
        _set("series_stats", 1, "team", 17),
        "series_stats.json",
        1,
        "team",
        "expected a string, found int",
    ),
    (
        "club-is-a-list",
        _set("players", 0, "Club", ["Oakridge"]),
        "players.json",
        0,
        "Club",
        "expected a string, found list",
    ),
    (
        "first-name-not-a-string",
        _set("players", 1, "First Name", 5),
        "players.json",
        1,
        "First Name",
        "expected a string",
    ),
    ("blank-league", _set("players", 1, "League", "  "), "players.json", 1, "League", "empty"),
    (
        "pti-is-an-object",
        _set("players", 0, "PTI", {"v": 1}),
        "players.json",
        0,
        "PTI",
        "expected a number",
    ),
]


@pytest.fixture
def loaded(db_dsn, conn, tmp_path):
    """A database holding a good import; returns its snapshot."""
    etl = ComprehensiveETL(write(tmp_path / "good", good_files()), db_dsn)
    assert etl.run() is True, etl.last_error
    before = snapshot(conn)
    assert before["teams"] == 2 and before["players"] == 2 and before["schedule"] == 1
    return before


def assert_run_fails_and_changes_nothing(db_dsn, conn, directory, before) -> InputError:
    etl = ComprehensiveETL(directory, db_dsn)
    assert etl.run() is False
    assert isinstance(etl.last_error, InputError)
    assert snapshot(conn) == before
    return etl.last_error


@pytest.mark.parametrize(
    "mutate, file, record, field, words",
    [c[1:] for c in RECORD_CASES],
    ids=[c[0] for c in RECORD_CASES],
)
def test_bad_record_names_file_record_and_field_and_changes_nothing(
    db_dsn, conn, tmp_path, loaded, mutate, file, record, field, words
):
    files = good_files()
    mutate(files)
    directory = write(tmp_path / "bad", files)
    with pytest.raises(InputError) as caught:
        load_json_files(directory)
    err = caught.value
    assert (err.file, err.record, err.field) == (file, record, field)
    assert str(err).startswith(f"{file}, record {record}, field {field!r}: ")
    assert words in str(err)
    assert_run_fails_and_changes_nothing(db_dsn, conn, directory, loaded)


def test_record_that_is_not_an_object(db_dsn, conn, tmp_path, loaded):
    files = good_files()
    files["schedules"].append(["not", "an", "object"])
    directory = write(tmp_path / "bad", files)
    err = assert_run_fails_and_changes_nothing(db_dsn, conn, directory, loaded)
    assert (err.file, err.record, err.field) == ("schedules.json", 1, None)
    assert str(err) == "schedules.json, record 1: expected an object, found list"


@pytest.mark.parametrize("missing", ["players", "series_stats", "schedules"])
def test_missing_file_is_named(db_dsn, conn, tmp_path, loaded, missing):
    files = good_files()
    del files[missing]
    directory = write(tmp_path / "bad", files)
    err = assert_run_fails_and_changes_nothing(db_dsn, conn, directory, loaded)
    assert err.file == f"{missing}.json" and err.record is None
    assert str(err).startswith(f"{missing}.json: not found")


def test_missing_match_history_is_empty(tmp_path):
    files = good_files()
    del files["match_history"]
    assert load_json_files(write(tmp_path / "d", files))["match_history"] == []


def test_invalid_json_names_file_and_position(db_dsn, conn, tmp_path, loaded):
    files = good_files()
    del files["series_stats"]
    directory = write(tmp_path / "bad", files, {"series_stats.json": b'[\n {"series": "S1",,}\n]'})
    err = assert_run_fails_and_changes_nothing(db_dsn, conn, directory, loaded)
    assert err.file == "series_stats.json"
    assert "invalid JSON at line 2 column 18 (char 19)" in str(err)


def test_truncated_file_names_file_and_position(db_dsn, conn, tmp_path, loaded):
    files = good_files()
    text = json.dumps(files.pop("players")).encode()
    directory = write(tmp_path / "bad", files, {"players.json": text[: len(text) // 2]})
    err = assert_run_fails_and_changes_nothing(db_dsn, conn, directory, loaded)
    assert err.file == "players.json"
    cut = len(text) // 2  # the error is at the very end of what is left
    assert f"invalid JSON at line 1 column {cut + 1} (char {cut})" in str(err)


def test_truncated_gzip_file_is_named(db_dsn, conn, tmp_path, loaded):
    files = good_files()
    packed = gzip.compress(json.dumps(files.pop("schedules")).encode())
    directory = write(tmp_path / "bad", files, {"schedules.json.gz": packed[: len(packed) - 12]})
    err = assert_run_fails_and_changes_nothing(db_dsn, conn, directory, loaded)
    assert err.file == "schedules.json.gz" and "cannot be read" in str(err)


def test_gzipped_files_are_read(tmp_path):
    files = good_files()
    packed = {f"{k}.json.gz": gzip.compress(json.dumps(v).encode()) for k, v in files.items()}
    data = load_json_files(write(tmp_path / "gz", {}, packed))
    assert {k: len(v) for k, v in data.items()} == {
        "players": 2,
        "series_stats": 2,
        "schedules": 1,
        "match_history": 0,
    }


@pytest.mark.parametrize("content", [{"players": []}, "players", 42, None])
def test_file_that_is_not_an_array(db_dsn, conn, tmp_path, loaded, content):
    files = good_files()
    files["players"] = content
    directory = write(tmp_path / "bad", files)
    err = assert_run_fails_and_changes_nothing(db_dsn, conn, directory, loaded)
    assert err.file == "players.json" and err.record is None
    assert "expected a JSON array" in str(err)


def test_players_of_both_real_shapes_are_valid(tmp_path):
    files = good_files()
    files["players"][1].pop("Series Mapping ID")
    files["players"][1].update({"Team": "Wilmette S1 T2", "Source URL": "https://x"})
    assert len(load_json_files(write(tmp_path / "d", files))["players"]) == 2
