"""Reading and validating the scraped JSON files of a data directory.

Every file is a JSON array of objects, as ``name.json`` or gzipped as ``name.json.gz``
(the real scrapes are kept gzipped). Validation happens here, before the ETL touches the
database, so a bad file can never cost a table: the error names the file, the record
index and the field.
"""

from __future__ import annotations

import gzip
import json
import logging
import zlib
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: The input files, in the order they are read; match_history may be absent (empty).
FILES = ("players", "series_stats", "schedules", "match_history")
OPTIONAL_FILES = frozenset({"match_history"})

#: Fields a record cannot do without: present, a string, not blank.
REQUIRED: dict[str, tuple[str, ...]] = {
    "players": ("League", "Club", "Series", "Player ID"),
    "series_stats": ("league_id", "series", "team"),
    "schedules": ("League", "home_team", "away_team"),
    "match_history": ("league_id", "Home Team", "Away Team"),
}

#: Fields that may be absent or null, but are a string when present.
OPTIONAL_STRINGS: dict[str, tuple[str, ...]] = {
    "players": ("First Name", "Last Name", "Series Mapping ID", "Team", "Location ID"),
    "series_stats": (),
    "schedules": ("date", "time", "location", "series"),
    "match_history": (
        "Date",
        "Home Player 1 ID",
        "Home Player 2 ID",
        "Away Player 1 ID",
        "Away Player 2 ID",
        "Winner",
    ),
}

#: Fields that may be a number or a numeric string (or "N/A", or absent).
NUMBERISH: dict[str, tuple[str, ...]] = {
    "players": ("PTI", "Wins", "Losses"),
    "series_stats": ("points",),
    "schedules": (),
    "match_history": (),
}


class InputError(ValueError):
    """An input file or record is unusable.

    ``file`` is the file name, ``record`` the index of the record in its array (None for a
    whole-file problem), ``field`` the offending field (None when it is not one field).
    """

    def __init__(
        self, file: str, message: str, *, record: int | None = None, field: str | None = None
    ) -> None:
        self.file = file
        self.record = record
        self.field = field
        self.reason = message
        where = file
        if record is not None:
            where += f", record {record}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {message}")


def find_file(data_dir: Path, name: str) -> Path | None:
    """``name.json`` in ``data_dir``, else ``name.json.gz``, else None."""
    for candidate in (data_dir / f"{name}.json", data_dir / f"{name}.json.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_text(path: Path) -> str:
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
    else:
        raw = path.read_bytes()
    return raw.decode("utf-8")


def read_array(path: Path) -> list[Any]:
    """The JSON array in ``path``; InputError naming the file (and position) otherwise."""
    name = path.name
    try:
        text = _read_text(path)
    except (OSError, EOFError, zlib.error) as exc:  # gzip raises all three for a cut file
        raise InputError(name, f"cannot be read: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(name, f"not UTF-8 at byte {exc.start}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            name,
            f"invalid JSON at line {exc.lineno} column {exc.colno} (char {exc.pos}): {exc.msg}",
        ) from exc
    if not isinstance(data, list):
        raise InputError(name, f"expected a JSON array, found {type(data).__name__}")
    return data


def _is_numberish(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return value is None
    return isinstance(value, (int, float, str))


def validate_records(kind: str, file: str, records: list[Any]) -> None:
    """Raise InputError for the first record that is not an object or lacks a needed field."""
    required = REQUIRED[kind]
    optional = OPTIONAL_STRINGS[kind]
    numberish = NUMBERISH[kind]
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise InputError(
                file, f"expected an object, found {type(record).__name__}", record=index
            )
        for field in required:
            value = record.get(field)
            if value is None:
                raise InputError(file, "missing", record=index, field=field)
            if not isinstance(value, str):
                raise InputError(
                    file,
                    f"expected a string, found {type(value).__name__}",
                    record=index,
                    field=field,
                )
            if not value.strip():
                raise InputError(file, "empty", record=index, field=field)
        for field in optional:
            value = record.get(field)
            if value is not None and not isinstance(value, str):
                raise InputError(
                    file,
                    f"expected a string, found {type(value).__name__}",
                    record=index,
                    field=field,
                )
        for field in numberish:
            if not _is_numberish(record.get(field)):
                value = record.get(field)
                raise InputError(
                    file,
                    f"expected a number, found {type(value).__name__}",
                    record=index,
                    field=field,
                )
        if kind == "series_stats" and record.get("matches") is not None:
            if not isinstance(record["matches"], dict):
                raise InputError(file, "expected an object", record=index, field="matches")


def load_json_files(data_dir: str | Path) -> dict[str, list[dict[str, Any]]]:
    """All four input files of ``data_dir``, validated; keys are the names in :data:`FILES`."""
    directory = Path(data_dir)
    data: dict[str, list[dict[str, Any]]] = {}
    for kind in FILES:
        path = find_file(directory, kind)
        if path is None:
            if kind in OPTIONAL_FILES:
                logger.info("%s.json not found in %s: treated as empty", kind, directory)
                data[kind] = []
                continue
            raise InputError(f"{kind}.json", f"not found in {directory} (nor {kind}.json.gz)")
        records = read_array(path)
        validate_records(kind, path.name, records)
        logger.info("loaded %d records from %s", len(records), path.name)
        data[kind] = records
    return data


def parse_int(value: Any) -> int:
    """An integer from a number or numeric string; 0 for blank or unparseable, as the original."""
    if isinstance(value, bool) or value is None:
        return 0
    try:
        return int(float(value)) if isinstance(value, (int, float)) else int(str(value).strip())
    except ValueError:
        return 0


def parse_pti(value: Any) -> float | None:
    """A PTI rating; None for "N/A", blank or unparseable."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


_DATE_FORMATS = ("%m/%d/%Y", "%Y-%m-%d", "%d-%b-%y")


def parse_date(value: str | None) -> date | None:
    """A match date in any of the scrapers' formats; None when it is none of them."""
    text = (value or "").strip()
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def parse_time(value: str | None) -> time | None:
    """A match time such as "06:30 pm" or "18:30"; None when blank or unparseable."""
    text = (value or "").strip()
    for fmt in ("%I:%M %p", "%H:%M", "%H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).time()
        except ValueError:
            continue
    return None


__all__ = [
    "FILES",
    "InputError",
    "find_file",
    "load_json_files",
    "parse_date",
    "parse_int",
    "parse_pti",
    "parse_time",
    "read_array",
    "validate_records",
]
