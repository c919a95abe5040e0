"""The ETL's own connection: opened through its method or factory, given back when the run ends.

An ETL hands out its connection in one of three ways, all taken as they are:

- a method (or module-level factory) that returns a psycopg2 connection;
- a method that returns a context manager yielding one (``@contextmanager``, the real
  rally ETL's ``get_managed_db_connection``): the library enters it once, hands the ETL the
  run's proxy for every ``with`` block, and leaves it when the run has committed or rolled
  back;
- a module-level factory named by its dotted path (``EtlHooks(get_connection=
  "database_config.get_db")``), patched where the ETL's module looks it up.
"""

from __future__ import annotations

import contextvars
import importlib
import logging

import psycopg2.extensions

from ..errors import BulletproofError
from .deferred_commits import real_connection

logger = logging.getLogger(__name__)

#: the protected run of the current thread or task, for module-level factories (no ``self``)
ACTIVE_RUN: contextvars.ContextVar = contextvars.ContextVar("bulletproof_active_run", default=None)


def is_connection(value) -> bool:
    return isinstance(real_connection(value), psycopg2.extensions.connection)


class EtlConnection:
    """The real connection of one protected run and how it was obtained."""

    def __init__(self, opened) -> None:
        self.cm = None
        if is_connection(opened):
            self.real = real_connection(opened)
            return
        if hasattr(opened, "__enter__") and hasattr(opened, "__exit__"):
            self.cm = opened
            entered = opened.__enter__()
            if not is_connection(entered):
                self.release()
                raise BulletproofError(
                    f"the ETL's connection context manager yielded {type(entered).__name__}, not a psycopg2 "
                    "connection", stage="connect")
            self.real = real_connection(entered)
            return
        raise BulletproofError(
            f"the ETL's connection hook returned {type(opened).__name__}: neither a psycopg2 connection nor a "
            "context manager yielding one; name the right method with EtlHooks(get_connection=...)",
            stage="connect")

    def release(self) -> None:
        """Leave the ETL's context manager (if any) and close the connection; never raises."""
        cm, self.cm = self.cm, None
        if cm is not None:
            try:
                cm.__exit__(None, None, None)
            except Exception as exc:  # the run's outcome is already decided: say so, go on
                logger.warning("leaving the ETL's connection context manager failed: %s", exc)
        real = getattr(self, "real", None)
        if real is not None and not real.closed:
            real.close()


def factory_targets(etl_class: type, name: str) -> list:
    """``[(module, attribute)]`` to patch for a module-level connection factory, or [] for a method.

    ``name`` is a dotted path (``"database_config.get_db"`` or ``"database_config:get_db"``), or
    a plain name that is not an attribute of the class but a global of its module. Where the
    ETL's module imported the factory by name, that binding is patched too.
    """
    if ":" in name or "." in name:
        module_name, _sep, attr = name.replace(":", ".").rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise BulletproofError(f"cannot import {module_name!r} for get_connection={name!r}: {exc}",
                                   stage="patch") from exc
        if not callable(getattr(module, attr, None)):
            raise BulletproofError(f"{module_name}.{attr} is not a function (get_connection={name!r})", stage="patch")
        targets = [(module, attr)]
        original = getattr(module, attr)
        home = importlib.import_module(etl_class.__module__)
        targets += [(home, n) for n, v in vars(home).items() if v is original and (home, n) not in targets]
        return targets
    if callable(getattr(etl_class, name, None)):
        return []
    home = importlib.import_module(etl_class.__module__)
    if callable(getattr(home, name, None)):
        return [(home, name)]
    return []
