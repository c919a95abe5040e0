"""The compiled character classes of input validation equal the per-character tests they
replaced, on every code point (no database needed)."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from bulletproof_etl.errors import InvalidInput
from bulletproof_etl.identity import input_checks, validate

ALL_CODE_POINTS = range(sys.maxunicode + 1)


def _old_check_text(value, *, record, field, required, source=None):
    """check_text as it was: a Python test per character."""
    if value is None:
        if required:
            raise InvalidInput("missing (NULL)", record=record, field=field, source=source)
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"must be a string, got {type(value).__name__}", record=record, field=field,
                           source=source)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput("not valid UTF-8 text", record=record, field=field, source=source) from exc
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise InvalidInput("contains control characters", record=record, field=field, source=source)
    stripped = " ".join(value.split())
    if required and not stripped:
        raise InvalidInput("empty", record=record, field=field, source=source)
    if len(stripped) > validate.MAX_NAME_LENGTH:
        raise InvalidInput(f"too long ({len(stripped)} characters, at most {validate.MAX_NAME_LENGTH})",
                           record=record, field=field, source=source)
    return stripped or None


def _outcome(check, value):
    try:
        return "ok", check(value, record=3, field="club_name", required=True, source="t")
    except InvalidInput as exc:
        return "error", str(exc), type(exc.__cause__)


def test_suspect_class_is_exactly_control_characters_and_surrogates_on_every_code_point():
    wrong = []
    for cp in ALL_CODE_POINTS:
        ch = chr(cp)
        try:
            ch.encode("utf-8")
            unencodable = False
        except UnicodeEncodeError:
            unencodable = True
        expected = unencodable or unicodedata.category(ch) == "Cc"
        if (validate._SUSPECT.search(ch) is not None) != expected:
            wrong.append(cp)
    assert wrong == []


def test_invisible_class_is_exactly_the_invisible_set_on_every_code_point():
    wrong = [cp for cp in ALL_CODE_POINTS
             if (input_checks._INVISIBLE.search(chr(cp)) is not None) != (chr(cp) in input_checks.INVISIBLE)]
    assert wrong == []


def test_check_text_gives_the_old_result_for_every_code_point_inside_a_name():
    wrong = []
    for cp in ALL_CODE_POINTS:
        value = f"Lake{chr(cp)}view"
        if _outcome(validate.check_text, value) != _outcome(_old_check_text, value):
            wrong.append(cp)
    assert wrong == []


@pytest.mark.parametrize("value", [
    "a\ud800\x01", "a\x01\ud800", "\x7f", "\x9f", "\xa0", "   ", "", "x" * 256, " x " * 100,
    "Lake\u2028view", "\x85", "tab\there",
])
def test_check_text_gives_the_old_result_for_mixed_values(value):
    assert _outcome(validate.check_text, value) == _outcome(_old_check_text, value)


def _record(**fields):
    base = {"index": 0, "league_code": "APTA_CHICAGO", "club_name": "Lakeview", "series_name": "Chicago 22",
            "team_name": "Lakeview - 22", "team_alias": None, "display_name": None}
    base.update(fields)
    return validate.TeamRecord(**base)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("team_name", "Lake\u200bview - 22", "U+200B"),
    ("club_name", "Lake\u202eview", "U+202E"),
    ("display_name", "x\ufeff\u2066", "U+FEFF"),  # the first one in the value
])
def test_invisible_error_names_the_first_invisible_character_and_its_field(field, value, message):
    with pytest.raises(InvalidInput) as err:
        input_checks.check_teams([_record(**{field: value})])
    assert message in str(err.value)
    assert err.value.field == field


def _old_validate_teams(teams_data, *, known_leagues=None, source="teams_data"):
    """validate_teams as it was: every field through the old check_text, in order."""
    out = []
    for index, record in enumerate(teams_data):
        if not isinstance(record, dict):
            raise InvalidInput(f"must be an object, got {type(record).__name__}", record=index, source=source)
        values = {f: _old_check_text(record.get(f), record=index, field=f, required=True, source=source)
                  for f in validate.TEAM_REQUIRED}
        for f in validate.TEAM_OPTIONAL:
            values[f] = _old_check_text(record.get(f), record=index, field=f, required=False, source=source)
        code = values["league_id"].upper()
        if known_leagues is not None and code not in known_leagues:
            raise InvalidInput(
                f"unknown league code {values['league_id']!r} (known: {', '.join(sorted(known_leagues))})",
                record=index, field="league_id", source=source)
        out.append(validate.TeamRecord(index, code, values["club_name"], values["series_name"],
                                       values["team_name"], values["team_alias"], values["display_name"]))
    return input_checks.check_teams(out, source=source)


def _validated(fn, records):
    try:
        return "ok", fn(records, known_leagues={"APTA_CHICAGO", "NSTF"})
    except InvalidInput as exc:
        return "error", str(exc), exc.record, exc.field, type(exc.__cause__)


_GOOD = {"league_id": "apta_chicago", "club_name": " Lakeview  Club ", "series_name": "Chicago 22",
         "team_name": "Lakeview Club - 22", "team_alias": "", "display_name": None}
_VALUES = [None, 5, b"x", "", "   ", "a\x01", "a\ud800", "x" * 256, " " + "x" * 255 + " ", "a\u200bb",
           "Oakridge - 14", "NSTF", "nowhere", "ok  value"]


def test_validate_teams_gives_the_old_result_for_every_field_and_value_pair():
    fields = validate.TEAM_REQUIRED + validate.TEAM_OPTIONAL
    cases = 0
    for i, first in enumerate(fields):
        for second in fields[i:]:
            for a in _VALUES:
                for b in _VALUES:
                    records = [dict(_GOOD), {**_GOOD, first: a, second: b}]
                    assert _validated(validate.validate_teams, records) == _validated(_old_validate_teams, records), \
                        (first, a, second, b)
                    cases += 1
    assert cases == 21 * len(_VALUES) ** 2


@pytest.mark.parametrize("bad", [
    [{"team_name": "Lake\u200bview - 22"}, {"club_name": "a\x01"}],  # a field error after an invisible one
    [{"club_name": "a\x01"}, {"team_name": "Lake\u200bview - 22"}],
    [{"team_name": "Lakeview Club - 14"}, {"display_name": "x\u202e"}],  # a series finding, then invisible
    [{"display_name": "x\u202e"}, {"team_name": "Lakeview Club - 14"}],
    [{"team_alias": "\u2066a", "series_name": "Chicago\x7f 22"}, {}],  # both in one record
    [{}, {"team_name": 5, "display_name": "\ufeff"}],
    [{}, {}, {"league_id": "nowhere"}, {"club_name": "\u200c"}],
])
def test_validate_teams_gives_the_old_result_across_records(bad):
    """validate_teams searches invisible characters with the field checks and hands
    check_teams only the records that have one: the first error is still the old one."""
    records = [{**_GOOD, **fields} for fields in bad]
    assert _validated(validate.validate_teams, records) == _validated(_old_validate_teams, records)
