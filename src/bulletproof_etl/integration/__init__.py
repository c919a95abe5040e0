"""Integration: the protected ETL run, around an ETL the library does not own.

What this stage guarantees: an ETL patched (:func:`patch_existing_etl_class`), wrapped
(:func:`create_bulletproof_etl_wrapper`) or calling :func:`bulletproof_import_teams` runs as
one protected import: its commits are deferred to one commit (``deferred_commits``), its clear
step keeps the preserved entity rows (``clear_step``), and the stages of
:class:`~bulletproof_etl.preservation.BulletproofTeamPreservation` run around its own steps
(``protected_run``). ``repair`` brings a damaged database back (the emergency repair,
``repair --from-snapshot``). It hands its reports to the command line (:mod:`..cli`).
"""

from .patching import (
    EtlHooks,
    bulletproof_import_teams,
    create_bulletproof_etl_wrapper,
    emergency_repair_orphans,
    is_patched,
    patch_existing_etl_class,
    unpatch_etl_class,
)
from .protected_run import StageEvent

__all__ = [
    "EtlHooks",
    "StageEvent",
    "bulletproof_import_teams",
    "create_bulletproof_etl_wrapper",
    "emergency_repair_orphans",
    "is_patched",
    "patch_existing_etl_class",
    "unpatch_etl_class",
]
