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


__all__ = ["install_schema", "schema_sql"]
