"""What each page shows, gathered from the database; shared by the dashboard and the report."""

from __future__ import annotations

import datetime as dt

from jinja2 import Environment, PackageLoader, select_autoescape

from ..catalog import read_catalog
from ..config import PreservationConfig
from ..health.check import check_health
from ..review import alerts, queue, runs
from .charts import line_chart


def environment() -> Environment:
    env = Environment(loader=PackageLoader("bulletproof_etl.web", "templates"),
                      autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    env.filters["dash"] = lambda v: "-" if v is None else v
    env.filters["pct"] = lambda v: "-" if v is None else f"{100 * v:.1f}%"
    env.filters["secs"] = lambda v: "-" if v is None else f"{v:.2f}s"
    return env


def health_report(conn, config: PreservationConfig):
    """The report ``health --json`` prints: the same check on the same catalog."""
    try:
        return check_health(conn, config, read_catalog(conn, config))
    finally:
        conn.rollback()


def banner(conn, config: PreservationConfig, stale_hours: float, health=None) -> dict:
    health = health or health_report(conn, config)
    last = runs.last_success(conn, config)
    age = runs.age_hours(last)
    stale = age is None or age > stale_hours
    level = "critical" if health.status.value == "CRITICAL" or stale else \
        "warning" if health.status.value == "WARNING" else "ok"
    return {"status": health.status.value, "issues": health.issues, "last_success": last, "age_hours": age,
            "stale": stale, "stale_hours": stale_hours, "level": level,
            "checked_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def dashboard(conn, config: PreservationConfig, stale_hours: float) -> dict:
    history = runs.history(conn, config, limit=60)
    series = runs.trends(history)
    return {
        "banner": banner(conn, config, stale_hours),
        "runs": [r.summary() for r in history],
        "charts": [line_chart(series["duration"], "Run duration (seconds)", " s"),
                   line_chart(series["quarantine"], "Quarantine entries written per run"),
                   line_chart([(i, round(100 * v, 2)) for i, v in series["preservation"]],
                              "Preservation rate (% of surviving team keys that kept their id)", " %")],
        "deliveries": alerts.deliveries(conn, config),
    }


def run_page(conn, config: PreservationConfig, run_id: int) -> dict | None:
    found = runs.detail(conn, config, run_id)
    return None if found is None else found.to_dict()


def review_page(conn, config: PreservationConfig, status: str = "open") -> dict:
    q = queue.load_queue(conn, config, status=status)
    return {"queue": q, "groups": q.groups(), "counts": q.counts(), "status": status}
