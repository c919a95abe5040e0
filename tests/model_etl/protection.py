"""How the tests protect ModelETL: the library's configuration and hooks for the real app
(``bulletproof_etl.integration.rally_app``), no change to the ETL."""

from __future__ import annotations

from bulletproof_etl.integration import create_bulletproof_etl_wrapper
from bulletproof_etl.integration.rally_app import RALLY_APP_CONFIG, RALLY_APP_HOOKS

from .etl import ModelETL

__all__ = ["RALLY_APP_CONFIG", "RALLY_APP_HOOKS", "ProtectedModelETL"]

#: ModelETL protected by the library (a subclass; ModelETL itself stays unpatched).
ProtectedModelETL = create_bulletproof_etl_wrapper(ModelETL, RALLY_APP_CONFIG, hooks=RALLY_APP_HOOKS)
