"""``bulletproof-etl report --out report.html``: the dashboard's pages as one self-contained file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from ..config import PreservationConfig
from ..review import runs
from ..review.alerts import DEFAULT_STALE_HOURS
from . import pages


def render_report(conn, config: PreservationConfig, *, stale_hours: float = DEFAULT_STALE_HOURS,
                  runs_shown: int = 10) -> str:
    """The dashboard, the detail of the newest ``runs_shown`` runs and the review queue (read-only)."""
    env = pages.environment()
    data = pages.dashboard(conn, config, stale_hours)
    details = [d for r in runs.history(conn, config, limit=runs_shown)
               if (d := pages.run_page(conn, config, r.run_id)) is not None]
    review = pages.review_page(conn, config, "all")
    return env.get_template("report.html").render(
        static=True, csrf="", url=lambda kind, ident: f"#{kind}-{ident}", details=details,
        generated_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **data, **review)


def write_report(conn, config: PreservationConfig, out: Path, **options) -> int:
    """Write the report to ``out``; returns its size in bytes."""
    text = render_report(conn, config, **options)
    Path(out).write_text(text, encoding="utf-8")
    return len(text.encode())
