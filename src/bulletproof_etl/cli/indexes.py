"""``bulletproof-etl enable --create-indexes``: the referencing columns' indexes, built once."""

from __future__ import annotations

import contextlib

from .. import db
from ..config import PreservationConfig
from ..identity.reference_indexes import create_indexes


def create_reference_indexes(dsn: str | None, config: PreservationConfig) -> str:
    """Build the missing indexes (concurrently, in autocommit); a line per index built."""
    with contextlib.closing(db.connect(db.resolve_dsn(dsn))) as conn:
        conn.autocommit = True
        made = create_indexes(conn, config)
    return f"indexes on referencing columns: {len(made)} built" + "".join(f"\n  {m.label}" for m in made)
