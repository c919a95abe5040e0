"""bulletproof-etl: re-run a reference-data ETL without losing what users built on it."""

from .config import DEFAULT_CONFIG, Dependent, PreservationConfig, TextHint
from .errors import (
    BulletproofError,
    ConcurrentRun,
    ConnectionFailed,
    ConstraintProblem,
    HealthCheckFailed,
    ImportRefused,
    InvalidInput,
    MissingPrivilege,
    SnapshotNotFound,
    StageFailed,
)
from .health import HealthReport, HealthStatus
from .preservation import BulletproofTeamPreservation, RunReport
from .version import __version__

__all__ = [
    "BulletproofError",
    "BulletproofTeamPreservation",
    "ConcurrentRun",
    "ConnectionFailed",
    "ConstraintProblem",
    "DEFAULT_CONFIG",
    "Dependent",
    "HealthCheckFailed",
    "HealthReport",
    "HealthStatus",
    "ImportRefused",
    "InvalidInput",
    "MissingPrivilege",
    "PreservationConfig",
    "RunReport",
    "SnapshotNotFound",
    "StageFailed",
    "TextHint",
    "__version__",
]
