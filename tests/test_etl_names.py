"""Name parsing of the legacy ETL: canonical series and the club inside a team name."""

from __future__ import annotations

import pytest

from rally_etl.names import ParsedTeam, canonical_series, parse_team_name, team_key

APTA, NSTF, CNSWPL = "APTA_CHICAGO", "NSTF", "CNSWPL"


@pytest.mark.parametrize(
    "league, spellings, expected",
    [
        (
            APTA,
            ["Chicago 22", "Series 22", "Division 22", "S22", "  chicago   22 ", "Series 022"],
            "22",
        ),
        (APTA, ["Chicago 11 SW", "Series 11 SW", "Series 11SW", "chicago 11 sw"], "11 SW"),
        (NSTF, ["Series 2B", "S2B", "series 2b", "Series 2 B"], "2B"),
        (CNSWPL, ["Division 1", "Series 1", "S1", "DIVISION  1"], "1"),
        (CNSWPL, ["Series A", "series a", "Division A"], "A"),
        (CNSWPL, ["Series SN", "Series  sn"], "SN"),
        (APTA, ["Series Legends", "Legends", "series legends"], "LEGENDS"),
        (CNSWPL, ["Series eries 16", "Series 16"], "16"),
    ],
)
def test_canonical_series_is_one_value_for_every_spelling(league, spellings, expected):
    assert {canonical_series(league, s) for s in spellings} == {expected}


def test_canonical_series_keeps_distinct_series_distinct():
    values = [
        "Series 1",
        "Series 11",
        "Series 11 SW",
        "Series 2A",
        "Series 2B",
        "Series A",
        "Series SN",
    ]
    assert len({canonical_series(NSTF, v) for v in values}) == len(values)


@pytest.mark.parametrize(
    "league, team, series, club, suffix",
    [
        # APTA: "Club - N", the real 2025-08-27 "Club N", south-west series, dashes in clubs
        (APTA, "Lakeview - 22", "Chicago 22", "Lakeview", "22"),
        (APTA, "Glenbrook RC - 1", "Chicago 1", "Glenbrook RC", "1"),
        (APTA, "Glenbrook RC 1", "Series 1", "Glenbrook RC", "1"),
        (APTA, "Hinsdale GC - 11 SW", "Chicago 11 SW", "Hinsdale GC", "11 SW"),
        (APTA, "Glen Ellyn 9 SW", "Series 9 SW", "Glen Ellyn", "9 SW"),
        (APTA, "Midtown - Chicago - 10", "Chicago 10", "Midtown - Chicago", "10"),
        (APTA, "Midtown - Chicago 14", "Series 14", "Midtown - Chicago", "14"),
        (APTA, "Wilmette PD I - 21", "Chicago 21", "Wilmette PD I", "21"),
        (APTA, "Legends - Legends", "Series Legends", "Legends", "Legends"),
        (APTA, "Legends", "Series Legends", "Legends", None),
        # NSTF
        (NSTF, "Oakridge S2B", "Series 2B", "Oakridge", "2B"),
        (NSTF, "Wilmette S1 T2", "Series 1", "Wilmette T2", "1"),
        (NSTF, "Lake Forest  S1", "Series 1", "Lake Forest", "1"),
        (NSTF, "Wilmette Sunday A", "Series A", "Wilmette", "A"),
        (NSTF, "Middlefork", "Series A", "Middlefork", None),
        # CNSWPL
        (CNSWPL, "Birchwood 1", "Series 1", "Birchwood", "1"),
        (CNSWPL, "Hinsdale PC 1a", "Series 1", "Hinsdale PC a", "1"),
        (CNSWPL, "Prairie Club 2a", "Division 2", "Prairie Club a", "2"),
        (CNSWPL, "Tennaqua A", "Series A", "Tennaqua", "A"),
        (CNSWPL, "Winnetka B(1)", "Series B", "Winnetka (1)", "B"),
        (CNSWPL, "Wilmette H (1)", "Series H", "Wilmette (1)", "H"),
        (CNSWPL, "Prarie Club SN (2)", "Series SN", "Prarie Club (2)", "SN"),
        # schedules append " - Series N"
        (CNSWPL, "Maple Grove 3 - Series 3", "Series 3", "Maple Grove", "3"),
        (NSTF, "Birchwood S1 - Series 1", "Series 1", "Birchwood", "1"),
        (NSTF, "Lake Forest  S1 - Series 1", "Series 1", "Lake Forest", "1"),
    ],
)
def test_parse_team_name_finds_club_and_suffix(league, team, series, club, suffix):
    parsed = parse_team_name(league, team, series)
    assert (parsed.club, parsed.series_suffix) == (club, suffix)


def test_parse_team_name_strips_schedule_suffix_and_collapses_whitespace():
    assert parse_team_name(CNSWPL, "Maple Grove 3 - Series 3") == ParsedTeam(
        "Maple Grove", "3", "Maple Grove 3"
    )
    assert parse_team_name(NSTF, " Lake   Forest  S1 ").team_name == "Lake Forest S1"


def test_parse_team_name_without_series_argument():
    assert parse_team_name(APTA, "Lakeview - 22") == ParsedTeam("Lakeview", "22", "Lakeview - 22")
    assert parse_team_name(NSTF, "Oakridge S2B").club == "Oakridge"
    assert parse_team_name(CNSWPL, "Hinsdale PC 1b").club == "Hinsdale PC b"


def test_parse_team_name_of_a_bye_row_has_no_club():
    # the real schedules hold " - 9 SW" as the home team of a BYE week
    assert parse_team_name(APTA, " - 9 SW", "Chicago 9 SW").club == ""


@pytest.mark.parametrize(
    "league, series, first, second",
    [
        (NSTF, "Series 1", "Wilmette S1 T1", "Wilmette S1 T2"),
        (CNSWPL, "Series 1", "Hinsdale PC 1a", "Hinsdale PC 1b"),
        (APTA, "Chicago 2", "Wilmette PD - 2", "Wilmette PD I - 2"),
        (APTA, "Chicago 13", "Wilmette PD I - 13", "Wilmette PD II - 13"),
        (CNSWPL, "Series B", "Winnetka B(1)", "Winnetka B(2)"),
        (CNSWPL, "Series 16", "Wilmette 16a", "Wilmette 16b"),
        (CNSWPL, "Series SN", "Wilmette SN (1)", "Wilmette SN (2)"),
    ],
)
def test_two_teams_of_one_club_in_one_series_get_distinct_keys(league, series, first, second):
    assert team_key(league, first, series) != team_key(league, second, series)


@pytest.mark.parametrize(
    "league, first, second",
    [
        (APTA, ("Glenbrook RC - 1", "Chicago 1"), ("Glenbrook RC 1", "Series 1")),
        (APTA, ("Hinsdale GC - 11 SW", "Chicago 11 SW"), ("Hinsdale GC - 11 SW", "Series 11 SW")),
        (APTA, ("Midtown - Chicago - 14", "Chicago 14"), ("Midtown - Chicago 14", "Series 14")),
        (APTA, ("Lakeview - 22", "Chicago 22"), ("Lakeview - 22", "S22")),
        (NSTF, ("Lake Forest  S1", "Series 1"), ("Lake Forest S1", "Series 1")),
        (NSTF, ("Birchwood S1 - Series 1", "Series 1"), ("Birchwood S1", "S1")),
        (NSTF, ("Middlefork", "Series A"), ("Middlefork", "series a")),
        (CNSWPL, ("Birchwood 1", "Division 1"), ("Birchwood 1 - Series 1", "Series 1")),
        (CNSWPL, ("Wilmette H (1)", "Series H"), ("Wilmette H(1)", "Series H")),
    ],
)
def test_one_team_written_differently_gets_one_key(league, first, second):
    assert team_key(league, *first) == team_key(league, *second)


def test_team_key_uses_the_suffix_when_no_series_is_given():
    assert team_key(APTA, "Lakeview - 22") == (APTA, "Lakeview", "22")
    assert team_key(NSTF, "Wilmette S1 T2") == (NSTF, "Wilmette T2", "1")
