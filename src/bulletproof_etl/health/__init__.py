"""Health: what is wrong with the database now, read-only apart from constraint repair.

What this stage guarantees: every dependent column is checked for orphans (``check``); with a
run's snapshot, user rows are checked for being lost, NULLed or moved to a team of another
key (``against_snapshot``); the constraints the library relies on exist, and missing ones can
be added without losing a row (``constraints``); ``diagnose`` shows example rows and what
the ledger knows; ``prometheus`` renders a report for a metrics scraper. It hands a
:class:`HealthReport` (PERFECT, WARNING, CRITICAL) to the run, which commits or rolls back.
It imports the snapshot stage (to compare against it), never the restore or the integration.
"""

from .check import HealthReport, HealthStatus, check_health

__all__ = ["HealthReport", "HealthStatus", "check_health"]
