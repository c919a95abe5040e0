"""Reading names out of free text: teams, clubs and series a text names, word-bounded.

Pure functions, used by the restore's strategies and by the evidence votes (which also serve
``diagnose``, hence this stage). A name counts only as whole words ("Lakeview - 2" is not in
"Lakeview - 22"), case, spacing and edge punctuation aside, and a name found only inside a
longer name the same text contains does not count ("Oak" inside "Oak Park - 3").
"""

from __future__ import annotations

import re

from ..config import PreservationConfig, canonical_name

# "Series 22", "Chicago 22", "Division 22", "Div 22", "S22", "S2B", "Series 11 SW", "Series A".
# A bare number or a date ("Jan 22") is not a series reference; a letter label must be one
# upper-case letter (or "SN") so that "the series is tied" names no series "is".
_SERIES_REF = re.compile(
    r"\b(?:(?i:chicago|series|division|div)\s+(?:(?P<num>\d+[A-Za-z]?(?:\s+(?i:sw))?)|(?P<letter>SN|[A-Z]))"
    r"|(?i:s)(?P<short>\d+[A-Za-z]?))\b"
)
_EDGE = "\"'()[]{},;:!?."


def name_tokens(text: str) -> list:
    """Words of a name or text, case-folded, punctuation trimmed at word edges ("22." -> "22")."""
    out = []
    for word in canonical_name(text).split():
        trimmed = word.strip(_EDGE)
        out.append(trimmed or word)
    return out


class NameIndex(dict):
    """``{canonical name: set of ids}``; ``longest`` is the most words a name has."""

    longest = 0


def name_index(rows) -> NameIndex:
    """The index of ``(id, name, alias, ...)`` tuples; empty names are skipped."""
    index = NameIndex()
    for id_, *names in rows:
        for name in names:
            if name:
                key = " ".join(name_tokens(name))
                if not key:
                    continue
                index.setdefault(key, set()).add(id_)
                index.longest = max(index.longest, len(key.split()))
    return index


def named_ids(text: str | None, index: NameIndex) -> set:
    """Every id whose full name the text contains, word-bounded; a name inside a longer name
    found in the same text does not count."""
    if not text or not index:
        return set()
    tokens = name_tokens(text)
    longest = index.longest
    spans = []
    for start in range(len(tokens)):
        for end in range(start + 1, min(len(tokens), start + longest) + 1):
            ids = index.get(" ".join(tokens[start:end]))
            if ids:
                spans.append((start, end, ids))
    kept = [s for s in spans
            if not any(o is not s and o[0] <= s[0] and s[1] <= o[1] and o[1] - o[0] > s[1] - s[0] for o in spans)]
    return set().union(*(ids for _, _, ids in kept)) if kept else set()


def named_team(text: str | None, index: NameIndex):
    """The one id whose full name the text contains, word-bounded; None if none or several."""
    hits = named_ids(text, index)
    return next(iter(hits)) if len(hits) == 1 else None


def series_references(text: str | None, config: PreservationConfig) -> set:
    """Canonical series named in a text, word-bounded."""
    if not text:
        return set()
    found = set()
    for match in _SERIES_REF.finditer(text):
        token = match.group("num") or match.group("letter") or match.group("short")
        found.add(config.series_canonicaliser(None, "Series " + token))
    return found


def flatten(value) -> str | None:
    """A text column's value as one text: JSON (a dict or list) becomes its string values,
    joined by " | " (no name spans it), so that keys ("team_name") never read as names."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return " | ".join(filter(None, (flatten(v) for v in value.values())))
    if isinstance(value, (list, tuple)):
        return " | ".join(filter(None, (flatten(v) for v in value)))
    return None
