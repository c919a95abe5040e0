"""How the tests protect ModelETL: configuration and hooks only, no change to the ETL.

``bulletproof_etl.integration.rally_app`` (the configuration for the real app's schema and
class) is used when it exists; until then, the equivalent written here.
"""

from __future__ import annotations

import importlib
import importlib.util

from bulletproof_etl import Dependent, PreservationConfig
from bulletproof_etl.integration import EtlHooks, create_bulletproof_etl_wrapper

from .etl import ModelETL

if importlib.util.find_spec("bulletproof_etl.integration.rally_app") is not None:
    # the library's own configuration for the real app (an error inside it is not hidden)
    _app = importlib.import_module("bulletproof_etl.integration.rally_app")
    RALLY_APP_CONFIG, RALLY_APP_HOOKS = _app.RALLY_APP_CONFIG, _app.RALLY_APP_HOOKS
    SOURCE = "bulletproof_etl.integration.rally_app"
else:
    RALLY_APP_CONFIG = PreservationConfig().replace(
        # references without a foreign key, as the app's schema has them (no users.team_id)
        declared=(
            Dependent("users", "league_context", "leagues"),
            Dependent("polls", "team_id", "teams"),
            Dependent("player_availability", "series_id", "series", nullable=False),
        ),
        etl_tables=frozenset({"club_leagues", "series_leagues", "players", "series_stats", "schedule"}),
        user_rows_in_etl_tables={"schedule": ("home_team", "%practice%")},
        user_table="users",
        user_team_column=None,
        snapshot_rows="all",  # the ETL's own fixers delete from user tables
    )
    RALLY_APP_HOOKS = EtlHooks(get_connection="get_managed_db_connection", league_attribute=None)
    SOURCE = "tests/model_etl/protection.py"

#: ModelETL protected by the library (a subclass; ModelETL itself stays unpatched).
ProtectedModelETL = create_bulletproof_etl_wrapper(ModelETL, RALLY_APP_CONFIG, hooks=RALLY_APP_HOOKS)
