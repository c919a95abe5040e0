"""The existing league ETL that bulletproof-etl protects (faithful to the real one)."""

from __future__ import annotations

from importlib import resources

SCHEMA_SQL = "schema.sql"


def schema_sql() -> str:
    """The reference schema as one SQL script."""
    return resources.files(__name__).joinpath(SCHEMA_SQL).read_text(encoding="utf-8")


def install_schema(conn) -> None:
    """Create every table of the reference schema (idempotent); commits."""
    with conn.cursor() as cur:
        cur.execute(schema_sql())
    conn.commit()


def __getattr__(name: str):
    # Lazy, so that importing rally_etl for its schema never imports the library (no cycles).
    if name == "ComprehensiveETL":
        from .etl import ComprehensiveETL

        return ComprehensiveETL
    if name == "InputError":
        from .loader import InputError

        return InputError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ComprehensiveETL", "InputError", "install_schema", "schema_sql"]
