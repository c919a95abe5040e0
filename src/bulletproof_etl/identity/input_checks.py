"""Checks on validated team records that a single field cannot see.

:func:`bulletproof_etl.validate.validate_teams` checks each field alone (present, a string,
valid UTF-8, no control characters, not too long). This module adds what needs more than
one field, or a closer look at the characters, and raises :class:`InvalidInput` naming the
record and the field, before any SQL runs:

- invisible formatting characters (bidirectional overrides, zero-width spaces, a byte
  order mark): they make two names that look the same differ, so a duplicate would go
  unnoticed and a name could be spoofed;
- a team name whose series designation contradicts the record's series ("Lakeview - 14"
  in series "Chicago 22"). Only a clear designation is compared: a number after the club
  name ("Lakeview - 22", "Lakeview 22", "Lakeview S2B", "Lakeview 1a") or after a final
  dash. A name that says nothing about its series ("Middlefork", "Glen View A") passes.
"""

from __future__ import annotations

import functools
import re

from ..config import canonical_name, canonical_series
from ..errors import InvalidInput

#: Characters that render as nothing yet make strings differ.
INVISIBLE = frozenset(
    "\u200b\u200c\u200e\u200f\u2060\ufeff"  # zero-width space/non-joiner, LRM, RLM, word joiner, BOM
    "\u202a\u202b\u202c\u202d\u202e"  # bidirectional embeddings and overrides
    "\u2066\u2067\u2068\u2069"  # bidirectional isolates
)
# the same set as one compiled class: one C-level search per value, not a test per character
_INVISIBLE = re.compile("[" + "".join(sorted(INVISIBLE)) + "]")
TEXT_FIELDS = ("league_code", "club_name", "series_name", "team_name", "team_alias", "display_name")
# the record's field names as the caller wrote them (TeamRecord renames league_id)
_FIELD_NAME = {"league_code": "league_id"}

# what may follow the club name: "- 22", "22", "S2B", "S1 T2", "1a", "11 SW", "Series 3"
_AFTER_CLUB = re.compile(
    r"^(?:-\s*)?(?:(?:series|division|div\.?|chicago)\s+|s(?=\d))?"
    r"(?P<num>\d+)\s*(?P<letters>sw|[a-z]{1,2})?(?:\s+t\d+)?$",
    re.IGNORECASE,
)
# a final " - 22" or " - 11 SW" whatever precedes it
_DASH_NUMBER = re.compile(r"\s-\s*(?P<num>\d+)\s*(?P<letters>sw)?$", re.IGNORECASE)
_LEADING_ZEROS = re.compile(r"^0+(?=\d)")


def _compact(designation: str) -> str:
    """Make "11 SW" and "11sw" compare equal, and "03" and "3" too."""
    return _LEADING_ZEROS.sub("", designation.replace(" ", "").casefold())


def _designations(record, club: str, after: dict | None = None) -> tuple | None:
    """The series the team name claims (spellings to accept), or None when it claims none.

    ``club`` is ``canonical_name(record.club_name)``; ``after`` keeps, across the records of
    one call, what each text after a club name claims (a few hundred texts recur: "- 22")."""
    name = canonical_name(record.team_name)
    claimed = None
    if name.startswith(club) and name != club:
        rest = name[len(club) :].strip()
        if after is None:
            claimed = _claim(_AFTER_CLUB.match(rest))
        else:
            claimed = after.get(rest, after)
            if claimed is after:
                claimed = after[rest] = _claim(_AFTER_CLUB.match(rest))
    if claimed is None:
        claimed = _claim(_DASH_NUMBER.search(name))
    return claimed


def _claim(match) -> tuple | None:
    return None if match is None else _claimed(match["num"], match["letters"] or "")


@functools.lru_cache(maxsize=4096)
def _claimed(number: str, letters: str) -> tuple:
    # "1a" may be a sub-team of series 1 or series "1a" itself: either agrees
    # (cached: a few hundred designations recur over every record)
    return (_compact(number + letters), _compact(number))


def _check_series(record, source: str, memo: dict, warnings: list | None = None,
                  after: dict | None = None) -> None:
    """``memo`` keeps each club's and series' canonical form across the records of one call
    (``after``: see :func:`_designations`)."""
    club = memo.get(record.club_name)
    if club is None:
        club = memo[record.club_name] = canonical_name(record.club_name)
    claimed = _designations(record, club, after)
    if claimed is None:
        return
    series = memo.get((record.league_code, record.series_name))
    if series is None:
        series = memo[(record.league_code, record.series_name)] = _compact(
            canonical_series(record.league_code, record.series_name))
    if series not in claimed:
        finding = InvalidInput(
            f"team name {record.team_name!r} names series {claimed[0]!r}, but the record's series is "
            f"{record.series_name!r}",
            record=record.index,
            field="team_name",
            source=source,
        )
        if warnings is None:
            raise finding
        warnings.append(f"{finding.message} (imported as the ETL gives it)")


def _check_invisible(record, source: str) -> None:
    values = [getattr(record, attr) for attr in TEXT_FIELDS]
    if _INVISIBLE.search("".join([v for v in values if v is not None])) is None:
        return  # the usual case: one search over the whole record
    for attr in TEXT_FIELDS:
        value = getattr(record, attr)
        if value is None:
            continue
        found = _INVISIBLE.search(value)
        if found is not None:
            raise InvalidInput(
                f"contains the invisible formatting character U+{ord(found.group()):04X}",
                record=record.index,
                field=_FIELD_NAME.get(attr, attr),
                source=source,
            )


def check_teams(records: list, *, source: str = "teams_data", warnings: list | None = None,
                invisible=None) -> list:
    """Raise :class:`InvalidInput` for the first record that fails a check; else return ``records``.

    With a ``warnings`` list (``strict=False``), a team name that names another series than its
    record is not malformed data but a finding on one record: it is appended there, naming the
    record and the field, and the record is imported as given. Malformed values always raise.

    ``invisible``: the indexes of the only records that may hold an invisible character, when
    the caller knows them (:func:`.validate.validate_teams` searched every value already); the
    others are not searched again. None: search every record."""
    memo: dict = {}
    after: dict = {}
    for record in records:
        if invisible is None or record.index in invisible:
            _check_invisible(record, source)
        _check_series(record, source, memo, warnings, after)
    return records
