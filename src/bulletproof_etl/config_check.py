"""The configuration checked against the database, once, at the start of every run.

Every table and column the configuration names must exist: the four entity tables and
their columns, the declared dependents, the user rows kept in ETL-owned tables, the text
hints and the users' team column. Optional columns may be None in the configuration
(``league_url``, ``series_display``, ``team_alias``, ``team_display``, ``team_updated_at``,
``user_team_column``, a text hint's ``author_column``); then nothing reads or writes them.
A name that does not exist is one :class:`~.errors.ConfigMismatch` naming every such name
and the configuration field that holds it, before anything is written.
"""

from __future__ import annotations

from .catalog import columns_of
from .config import PreservationConfig
from .errors import ConfigMismatch

TEAM_IDENTITIES = ("natural_key", "parent_rows")
#: entity column fields of the configuration that may be None
OPTIONAL_FIELDS = ("league_url", "series_display", "team_alias", "team_display", "team_updated_at",
                   "user_team_column")
_ENTITY_COLUMNS = (
    ("leagues", ("league_code", "league_name", "league_url")),
    ("clubs", ("club_name",)),
    ("series", ("series_name", "series_display")),
    ("teams", ("team_club", "team_series", "team_league", "team_name", "team_alias", "team_display",
               "team_active", "team_updated_at")),
)


def required_names(config: PreservationConfig) -> list:
    """``[(table, column or None, configuration field)]`` the configuration relies on."""
    if config.team_identity not in TEAM_IDENTITIES:
        raise ConfigMismatch(f"team_identity must be one of {', '.join(TEAM_IDENTITIES)}, not "
                             f"{config.team_identity!r}", stage="start", missing=["team_identity"])
    out = []
    for entity, fields in _ENTITY_COLUMNS:
        table = config.table(entity)
        out.append((table, None, f"tables[{entity!r}]"))
        for name in fields:
            column = getattr(config, name)
            if column is None and name not in OPTIONAL_FIELDS:
                raise ConfigMismatch(f"{name} may not be None", stage="start", missing=[name])
            if column is not None:
                out.append((table, column, name))
    for i, dep in enumerate(config.declared):
        out.append((dep.table, dep.column, f"declared[{i}]"))
    for table, (column, _pattern) in config.user_rows_in_etl_tables.items():
        out.append((table, column, f"user_rows_in_etl_tables[{table!r}]"))
    for i, hint in enumerate(config.text_hints):
        out.append((hint.table, hint.text_column, f"text_hints[{i}].text_column"))
        if hint.author_column:
            out.append((hint.table, hint.author_column, f"text_hints[{i}].author_column"))
    if config.user_team_column:
        out.append((config.user_table, config.user_team_column, "user_team_column"))
    return out


def check_config(conn, config: PreservationConfig) -> None:
    """Raise :class:`ConfigMismatch` naming every table or column the database lacks."""
    with conn.cursor() as cur:
        columns: dict = {}
        for table, column in columns_of(cur, config.schema):
            columns.setdefault(table, set()).add(column)
    missing = []
    for table, column, field in required_names(config):
        if table not in columns:
            missing.append(f"table {config.schema}.{table} ({field})")
        elif column is not None and column not in columns[table]:
            missing.append(f"column {table}.{column} ({field})")
    missing = list(dict.fromkeys(missing))
    if missing:
        raise ConfigMismatch(
            f"the configuration names {len(missing)} table(s) or column(s) that schema {config.schema!r} does "
            f"not have: {'; '.join(missing)}. Name the right ones in PreservationConfig (optional columns "
            f"may be None: {', '.join(OPTIONAL_FIELDS)}); nothing was written",
            stage="start", missing=missing)
