"""One root exception, :class:`BulletproofError`; subclasses carry what a caller needs."""

from __future__ import annotations

from typing import Any


class BulletproofError(Exception):
    """Root of every error the library raises on purpose.

    ``stage`` names the pipeline stage that failed (``snapshot``, ``staging``, ``upsert``,
    ``restore``, ``health``, ``commit`` ...) when it is known.
    """

    def __init__(self, message: str, *, stage: str | None = None, **payload: Any) -> None:
        super().__init__(message)
        self.message = message
        self.stage = stage
        self.payload = payload
        for key, value in payload.items():
            setattr(self, key, value)

    def __str__(self) -> str:
        if self.stage:
            return f"[{self.stage}] {self.message}"
        return self.message


class ConnectionFailed(BulletproofError):
    """The server could not be reached or refused us. ``dsn`` is given without password."""


class InvalidInput(BulletproofError):
    """An input record is unusable. ``record`` is its index, ``field`` the offending field."""

    def __init__(self, message: str, *, record: Any = None, field: str | None = None,
                 source: str | None = None, stage: str | None = "validate") -> None:
        where = []
        if source:
            where.append(source)
        if record is not None:
            where.append(f"record {record}")
        if field:
            where.append(f"field {field!r}")
        full = f"{', '.join(where)}: {message}" if where else message
        super().__init__(full, stage=stage, record=record, field=field, source=source)


class ImportRefused(BulletproofError):
    """The import would retire too many teams (or all of them); ``retiring`` and ``total`` say how many."""


class ConcurrentRun(BulletproofError):
    """Another protected import holds the advisory lock."""


class StageFailed(BulletproofError):
    """A stage failed; the transaction was rolled back. ``run_id`` names the durable snapshot."""


class HealthCheckFailed(BulletproofError):
    """Health came out CRITICAL before commit; everything was rolled back. ``report`` is the HealthReport."""


class ConstraintProblem(BulletproofError):
    """A constraint problem that cannot be repaired without losing data."""


class MissingPrivilege(BulletproofError):
    """The role lacks a privilege the library needs. ``privilege`` and ``target`` say which."""


class SnapshotNotFound(BulletproofError):
    """``repair --from-snapshot RUN`` named a run without a snapshot."""


class ConfigMismatch(BulletproofError):
    """The configuration names tables or columns the database does not have; ``missing`` lists them."""
