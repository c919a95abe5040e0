"""Alerts: decide whether something needs a person, post it, and record every delivery.

An alert is due on CRITICAL, on WARNING, on a failed run, or when the last successful import
is older than ``stale_hours`` (or there never was one). The message is JSON with a
Slack-compatible ``text`` plus the facts it was made from. A delivery that fails (refused,
unreachable, a non-2xx answer) is logged and recorded in ``alert_deliveries`` like one that
worked, so the dashboard shows a silent alert channel; a record that cannot be written is
logged, never raised over the original outcome.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

import psycopg2
from psycopg2 import sql

from ..config import PreservationConfig
from ..state import ensure_state_schema, relname, state
from .runs import age_hours, last_success

logger = logging.getLogger(__name__)

DEFAULT_STALE_HOURS = 26.0
TIMEOUT = 10.0


@dataclass
class Alert:
    """What is wrong, in words and as data. ``reasons`` empty: nothing to say."""

    source: str  # "run" or "health"
    status: str | None = None  # PERFECT, WARNING, CRITICAL, or None when unknown
    failed: bool = False
    error: str | None = None
    run_id: int | None = None
    last_success: str | None = None
    last_success_age_hours: float | None = None
    reasons: list = field(default_factory=list)
    issues: list = field(default_factory=list)

    @property
    def due(self) -> bool:
        return bool(self.reasons)

    def text(self) -> str:
        head = f"bulletproof-etl {self.source}: " + "; ".join(self.reasons)
        lines = [head] + [f"- {issue}" for issue in self.issues[:10]]
        if self.error:
            lines.append(f"error: {self.error}")
        return "\n".join(lines)

    def message(self) -> dict:
        out = dict(self.__dict__)
        out["text"] = self.text()
        return out


def decide(source: str, *, status: str | None, failed: bool = False, error: str | None = None,
           issues=(), run_id=None, last_ok=None, stale_hours: float = DEFAULT_STALE_HOURS) -> Alert:
    alert = Alert(source, status, failed, error, run_id, last_ok.isoformat(timespec="seconds") if last_ok else None,
                  age_hours(last_ok), issues=list(issues))
    if failed:
        alert.reasons.append(f"the {source} FAILED" + (f" (run {run_id})" if run_id else "")
                             + ": nothing was committed" * (source == "run"))
    if status in ("CRITICAL", "WARNING"):
        alert.reasons.append(f"health is {status}")
    if last_ok is None:
        alert.reasons.append("no import has ever succeeded")
    elif alert.last_success_age_hours > stale_hours:
        alert.reasons.append(f"the last successful import finished {alert.last_success_age_hours:.1f} h ago "
                             f"(threshold {stale_hours:g} h)")
    return alert


def redact(url: str) -> str:
    """Scheme and host only: a webhook's path is its secret."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/..." if parts.path not in ("", "/") else f"{parts.scheme}://{parts.netloc}"


@dataclass
class Delivery:
    target: str
    ok: bool
    error: str | None = None
    recorded: bool = False

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def post(url: str, message: dict, *, timeout: float = TIMEOUT) -> Delivery:
    """POST ``message`` as JSON; any answer but 2xx, or none, is a failed delivery."""
    target = redact(url)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        return Delivery(target, False, f"not an http(s) URL: {target}")
    request = urllib.request.Request(url, data=json.dumps(message, default=str).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 (scheme checked above)
            if 200 <= answer.status < 300:
                return Delivery(target, True)
            return Delivery(target, False, f"HTTP {answer.status}")
    except urllib.error.HTTPError as exc:
        return Delivery(target, False, f"HTTP {exc.code} {exc.reason}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return Delivery(target, False, str(getattr(exc, "reason", exc)))


def record_delivery(conn, config: PreservationConfig, delivery: Delivery, message: dict) -> None:
    try:
        ensure_state_schema(conn, config)
        with conn.cursor() as cur:
            cur.execute(sql.SQL("INSERT INTO {} (target, ok, error, message) VALUES (%s, %s, %s, %s)").format(
                state(config, "alert_deliveries")),
                (delivery.target, delivery.ok, delivery.error, json.dumps(message, default=str)))
        conn.commit()
        delivery.recorded = True
    except psycopg2.Error as exc:
        conn.rollback()
        logger.error("could not record the alert delivery to %s: %s", delivery.target, exc)


def send(conn, config: PreservationConfig, url: str, alert: Alert) -> Delivery:
    """Post the alert and record the delivery (``conn`` may be None: then only logged)."""
    message = alert.message()
    delivery = post(url, message)
    if delivery.ok:
        logger.info("alert delivered to %s", delivery.target)
    else:
        logger.error("alert delivery to %s FAILED: %s", delivery.target, delivery.error)
    if conn is not None:
        record_delivery(conn, config, delivery, message)
    return delivery


def deliveries(conn, config: PreservationConfig, *, limit: int = 20) -> list:
    """The newest deliveries, newest first (dicts)."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (relname(config.state_schema, "alert_deliveries"),))
        if cur.fetchone()[0] is None:
            conn.rollback()
            return []
        cur.execute(sql.SQL("SELECT id, at, target, ok, error, message->>'text' FROM {} ORDER BY id DESC LIMIT %s")
                    .format(state(config, "alert_deliveries")), (limit,))
        out = [{"id": i, "at": at.isoformat(timespec="seconds"), "target": t, "ok": ok, "error": e, "text": text}
               for i, at, t, ok, e, text in cur.fetchall()]
    conn.rollback()
    return out


def last_success_metric(conn, config: PreservationConfig) -> str:
    """Prometheus lines: the last successful import as a Unix timestamp (0: never)."""
    when = last_success(conn, config)
    value = int(when.timestamp()) if when else 0
    return ("# HELP bulletproof_last_success_timestamp_seconds When the last successful protected import "
            "finished (0: never)\n# TYPE bulletproof_last_success_timestamp_seconds gauge\n"
            f"bulletproof_last_success_timestamp_seconds {value}\n")
