"""Checking input records before any SQL runs: a bad record names itself and its field."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidInput
from . import input_checks

MAX_NAME_LENGTH = 255  # the varchar(255) of the reference schema

TEAM_REQUIRED = ("league_id", "club_name", "series_name", "team_name")
TEAM_OPTIONAL = ("team_alias", "display_name")

# One compiled character class instead of a Python test per character (5 to 6 s for 100,000
# records): the control characters (Unicode category Cc) are exactly U+0000-U+001F and
# U+007F-U+009F, and lone surrogates are the only characters UTF-8 cannot encode.
# tests/test_validate_regex.py proves both over every code point.
_CONTROL = "\x00-\x1f\x7f-\x9f"
_SURROGATE = "\ud800-\udfff"
_SUSPECT = re.compile(f"[{_CONTROL}{_SURROGATE}]")
_FIELDS = TEAM_REQUIRED + TEAM_OPTIONAL
_REQUIRED = len(TEAM_REQUIRED)


@dataclass(frozen=True)
class TeamRecord:
    """One validated incoming team, with its position in the input."""

    index: int
    league_code: str
    club_name: str
    series_name: str
    team_name: str
    team_alias: str | None
    display_name: str | None


def check_text(value, *, record, field, required: bool, source: str | None = None) -> str | None:
    """A clean string, or an :class:`InvalidInput` naming the record and the field."""
    if value is None:
        if required:
            raise InvalidInput("missing (NULL)", record=record, field=field, source=source)
        return None
    if not isinstance(value, str):
        raise InvalidInput(
            f"must be a string, got {type(value).__name__}", record=record, field=field, source=source
        )
    if _SUSPECT.search(value) is not None:  # rare: say which, UTF-8 first as before
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInput("not valid UTF-8 text", record=record, field=field, source=source) from exc
        raise InvalidInput("contains control characters", record=record, field=field, source=source)
    stripped = " ".join(value.split())
    if required and not stripped:
        raise InvalidInput("empty", record=record, field=field, source=source)
    if len(stripped) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"too long ({len(stripped)} characters, at most {MAX_NAME_LENGTH})",
            record=record, field=field, source=source,
        )
    return stripped or None


# a value with a suspect character, or with an invisible one that input_checks names
_SUSPECT_OR_INVISIBLE = re.compile(f"[{_CONTROL}{_SURROGATE}{''.join(sorted(input_checks.INVISIBLE))}]")


def _clean_fast(values: list, text: str) -> list | None:
    """The six cleaned values of a good record (``values`` as given, in :data:`_FIELDS` order,
    ``text`` all of them joined) in a few C calls, or None when some value needs the
    field-by-field check (which then raises with the exact field and message)."""
    if None in values[:_REQUIRED]:
        return None
    cleaned = [None if v is None else " ".join(v.split()) for v in values]
    if not (cleaned[0] and cleaned[1] and cleaned[2] and cleaned[3]):
        return None
    # cleaning never lengthens a value: a short record needs no value measured
    if len(text) > MAX_NAME_LENGTH and max(map(len, [v for v in cleaned if v is not None])) > MAX_NAME_LENGTH:
        return None
    if not cleaned[4]:
        cleaned[4] = None
    if not cleaned[5]:
        cleaned[5] = None
    return cleaned


def validate_teams(teams_data, *, known_leagues=None, source: str = "teams_data",
                   warnings: list | None = None) -> list:
    """Validate every record; raise on the first bad one, before anything is written.

    ``warnings``: a list to collect findings that are not malformed data (see
    :func:`.input_checks.check_teams`) instead of raising on them."""
    if teams_data is None or isinstance(teams_data, (str, bytes, dict)):
        raise InvalidInput("teams_data must be a list of records", source=source)
    out = []
    append = out.append
    search = _SUSPECT_OR_INVISIBLE.search
    # records whose text has an invisible character (checked by input_checks, after every
    # record's fields): the others have none, cleaned or not (cleaning only folds whitespace)
    invisible = set()
    for index, record in enumerate(teams_data):
        if not isinstance(record, dict):
            raise InvalidInput(
                f"must be an object, got {type(record).__name__}", record=index, source=source
            )
        values = list(map(record.get, _FIELDS))
        cleaned = None
        try:  # one search over the whole record: a value that is not a string raises here
            text = "".join([v for v in values if v is not None])
        except TypeError:
            text = None
        if text is not None:
            if search(text) is None:
                cleaned = _clean_fast(values, text)
            elif _SUSPECT.search(text) is None:
                invisible.add(index)
                cleaned = _clean_fast(values, text)
        if cleaned is None:  # something is wrong: find the first field and say what
            invisible.add(index)
            cleaned = [check_text(v, record=index, field=f, required=i < _REQUIRED, source=source)
                       for i, (f, v) in enumerate(zip(_FIELDS, values, strict=True))]
        league, club, series, name, alias, display = cleaned
        code = league.upper()
        if known_leagues is not None and code not in known_leagues:
            raise InvalidInput(
                f"unknown league code {league!r} (known: {', '.join(sorted(known_leagues))})",
                record=index, field="league_id", source=source,
            )
        append(TeamRecord(index, code, club, series, name, alias, display))
    return input_checks.check_teams(out, source=source, warnings=warnings, invisible=invisible)
