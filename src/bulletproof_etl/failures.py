"""Turning a failure of a protected run into one clear error: what failed, where, what is kept.

Used by :class:`~bulletproof_etl.preservation.BulletproofTeamPreservation` when its block
ends with an exception, after everything was rolled back:

- a driver error becomes :class:`StageFailed` naming the stage (or the caller's code after
  a stage) and the root cause: a connection killed mid-statement often surfaces as "cursor
  already closed", whose context holds the real reason;
- a refused privilege becomes :class:`MissingPrivilege` naming the privilege and the object,
  found by asking the server which privileges the role lacks there;
- any other exception keeps its type (a caller's ``except`` clauses still work) and gets a
  note naming the stage.
"""

from __future__ import annotations

import logging
import re

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from .errors import BulletproofError, MissingPrivilege, StageFailed

logger = logging.getLogger(__name__)

STAGE_METHODS = ("validate_constraints", "backup_user_data", "preserve_teams_during_import",
                 "restore_user_data", "validate_health")

_DENIED = re.compile(r"permission denied for (?P<kind>database|schema|table|sequence|view|relation) "
                     r"(?P<name>.+)$")
_TEMP = re.compile(r"permission denied to create temporary tables in database \"?(?P<name>[^\"]+)\"?")
_OWNER = re.compile(r"must be owner of (?P<kind>\w+(?: \w+)?) (?P<name>.+)$")
_CHECKS = {
    "database": ("has_database_privilege", ("CREATE", "TEMPORARY", "CONNECT")),
    "schema": ("has_schema_privilege", ("USAGE", "CREATE")),
    "table": ("has_table_privilege", ("SELECT", "INSERT", "UPDATE", "DELETE")),  # what a run uses
    "sequence": ("has_sequence_privilege", ("USAGE", "SELECT", "UPDATE")),
}


def must_abort(exc: BaseException) -> bool:
    """True for errors no fallback can work around: end the run instead of retrying row by row.

    A timeout, a cancel, a lock not granted, a deadlock, a full disk, a lost connection or a
    refused privilege fails again for every row (and a fallback would turn a fault into
    quarantined rows or a slow crawl); a constraint or a bad value may affect one row only.
    """
    return isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError,
                            psycopg2.errors.InsufficientPrivilege))


def root_cause(exc: BaseException) -> BaseException:
    """The most telling error in the chain ("cursor already closed" hides the real one)."""
    seen = exc
    while isinstance(seen, psycopg2.InterfaceError) and isinstance(seen.__context__, psycopg2.Error):
        seen = seen.__context__
    return seen


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def raised_in_stage(tb, cls) -> bool:
    """True when the traceback passes through one of ``cls``'s stage methods."""
    codes = {getattr(cls, name).__code__ for name in STAGE_METHODS if hasattr(getattr(cls, name), "__code__")}
    while tb is not None:
        if tb.tb_frame.f_code in codes:
            return True
        tb = tb.tb_next
    return False


def where(stage: str, in_stage: bool) -> str:
    return stage if in_stage else f"the caller's code after stage {stage!r}"


def translate(exc: BaseException, *, stage: str, in_stage: bool, run_id, conn=None,
              schemas=("public",)) -> BulletproofError | None:
    """The error to raise instead of ``exc`` (None: re-raise ``exc`` itself).

    Call after the rollback: ``conn`` (if still open) is used to ask which privilege is missing.
    """
    if isinstance(exc, BulletproofError) or not isinstance(exc, Exception):
        return None
    place = where(stage, in_stage)
    kept = f"; the snapshot of run {run_id} is kept for repair" if run_id is not None else ""
    cause = root_cause(exc)
    if isinstance(cause, psycopg2.errors.InsufficientPrivilege):
        return missing_privilege(cause, stage=stage, place=place, run_id=run_id, conn=conn, schemas=schemas)
    if isinstance(cause, psycopg2.Error):
        return StageFailed(f"{place} failed and everything was rolled back: {first_line(cause)}{kept}",
                           stage=stage, run_id=run_id)
    if hasattr(exc, "add_note"):  # Python 3.11+
        exc.add_note(f"bulletproof-etl: {place} failed and everything was rolled back{kept}")
    return None


def missing_privilege(exc, *, stage: str, place: str, run_id, conn=None, schemas=("public",)) -> MissingPrivilege:
    """A :class:`MissingPrivilege` naming the privilege and the object the server refused."""
    text = first_line(exc)
    privilege, kind, name = None, None, None
    match = _TEMP.search(text)
    if match:
        privilege, kind, name = "TEMPORARY", "database", match["name"]
    elif (match := _OWNER.search(text)) is not None:
        privilege, kind, name = "OWNERSHIP", match["kind"], match["name"]
    elif (match := _DENIED.search(text)) is not None:
        kind = "table" if match["kind"] in ("view", "relation") else match["kind"]
        name = match["name"].strip().strip('"')
        lacking = _lacking(conn, kind, name, schemas)
        privilege = ", ".join(lacking) if lacking else None
    target = f"{kind} {name}" if kind else "an object"
    role = _role(conn)
    message = (f"{place} failed: the role {role or '(unknown)'} lacks {privilege or 'a privilege'} on {target} "
               f"(the server said: {text}); everything was rolled back")
    if privilege and privilege != "OWNERSHIP" and role and kind:
        message += f"; an owner or a superuser can grant it: GRANT {privilege} ON {kind.upper()} {name} TO {role}"
    elif privilege == "OWNERSHIP":
        message += f"; run the import as the owner of {target}"
    return MissingPrivilege(message, stage=stage, privilege=privilege, target=target, run_id=run_id)


def _usable(conn) -> bool:
    if conn is None or conn.closed:
        return False
    return conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_INERROR


def _role(conn) -> str | None:
    if not _usable(conn):
        return None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_user")
            return cur.fetchone()[0]
    except psycopg2.Error:
        return None


def _lacking(conn, kind: str, name: str, schemas) -> list:
    """Which privileges of ``kind`` the current role lacks on ``name`` (empty when unknown)."""
    if not _usable(conn) or kind not in _CHECKS:
        return []
    function, privileges = _CHECKS[kind]
    try:
        with conn.cursor() as cur:
            oid_text = name
            if kind in ("table", "sequence"):
                oid_text = _resolve(cur, name, schemas)
                if oid_text is None:
                    return []
            missing = []
            for privilege in privileges:
                cur.execute(sql.SQL("SELECT {}(%s, %s)").format(sql.Identifier(function)),
                            (oid_text, privilege))
                if not cur.fetchone()[0]:
                    missing.append(privilege)
            return missing
    except psycopg2.Error as err:
        logger.debug("could not tell which privilege is missing on %s %s: %s", kind, name, err)
        return []


def _resolve(cur, name: str, schemas) -> str | None:
    """``schema.name`` as the server's regclass text, searching the configured schemas."""
    for schema in schemas:
        cur.execute("SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))::text", (schema, name))
        found = cur.fetchone()[0]
        if found:
            return found
    cur.execute("SELECT to_regclass(%s)::text", (name,))
    return cur.fetchone()[0]
