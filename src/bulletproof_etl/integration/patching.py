"""Patching, wrapping and the direct call: the three ways to protect an existing ETL.

Also the emergency repair's public entry point.

- :func:`patch_existing_etl_class` patches a class in place so that ``etl.run()`` is
  protected end to end (idempotent; :func:`unpatch_etl_class` undoes it).
- :func:`create_bulletproof_etl_wrapper` returns a protected subclass; the class itself is
  left untouched.
- :func:`bulletproof_import_teams` replaces ``self.import_teams(conn, teams_data)`` inside
  an ETL that is not patched: the whole preservation on the caller's connection, in a
  savepoint, returning an int like ``import_teams``.
- :func:`emergency_repair_orphans` checks health, repairs through the restore strategies
  and checks again; it never deletes.

A protected ``run()`` is one transaction: the ETL's commits are deferred, its clear step no
longer deletes leagues, clubs, series or teams (they are upserted in place and keep their
ids), user data is restored and health checked after the ETL's imports, and only then does
the connection commit. A failure anywhere, a ``False`` from the original ``run()`` or a
CRITICAL health check rolls everything back; ``run()`` then returns False and
``etl.bulletproof_report.error`` says why. Method names are configurable (:class:`EtlHooks`,
or a ``bulletproof_hooks`` attribute on the class).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from ..config import DEFAULT_CONFIG, PreservationConfig
from ..errors import BulletproofError
from ..preservation import BulletproofTeamPreservation
from .deferred_commits import real_connection
from .etl_connection import ACTIVE_RUN, factory_targets
from .protected_run import ProtectedRun
from .repair import emergency_repair

logger = logging.getLogger(__name__)

PATCH_ATTRIBUTE = "__bulletproof_patch__"
STATE_ATTRIBUTE = "_bulletproof_state"
#: Instance attributes a caller may set before ``run()``.
DRY_RUN_ATTRIBUTE = "bulletproof_dry_run"
FORCE_ATTRIBUTE = "bulletproof_force"
PROGRESS_ATTRIBUTE = "bulletproof_progress"
REPORT_ATTRIBUTE = "bulletproof_report"


@dataclass(frozen=True)
class EtlHooks:
    """The names of the ETL's methods the protection hooks into.

    ``import_leagues``/``import_clubs``/``import_series`` may be None when the ETL has no
    such step (the team upsert then creates missing parents itself). ``league_attribute``
    names the instance attribute holding a single-league code (None: always all leagues).
    ``steps`` lists further methods reported as progress; None means every method whose
    name starts with ``import_`` or ``load_``.

    ``get_connection`` names a method returning a connection or a context manager yielding
    one, or a module-level factory by dotted path (``"database_config.get_db"``).
    ``clear_mode``: ``"guard"`` runs the ETL's own clear step with the deletes of entity rows
    skipped (its backups and other side effects happen); ``"replace"`` runs the library's
    own clear of the ETL-owned tables instead.
    ``team_alias`` names the ETL's method ``(team_name, series_name) -> alias`` that its own team
    import uses for a record without an alias; the protected team step writes the same alias.
    """

    run: str = "run"
    get_connection: str = "get_connection"
    clear: str = "clear_target_tables"
    import_leagues: str | None = "import_leagues"
    import_clubs: str | None = "import_clubs"
    import_series: str | None = "import_series"
    import_teams: str = "import_teams"
    league_attribute: str | None = "league"
    steps: tuple | None = None
    clear_mode: str = "guard"
    team_alias: str | None = None

    def parents(self) -> dict:
        return {e: n for e, n in (("leagues", self.import_leagues), ("clubs", self.import_clubs),
                                  ("series", self.import_series)) if n}


class _Patch:
    """What one patched class remembers: its configuration and its original attributes."""

    def __init__(self, config: PreservationConfig, hooks: EtlHooks) -> None:
        self.config = config
        self.hooks = hooks
        self.originals: dict = {}  # name -> (had its own attribute, that attribute)
        self.module_originals: list = []  # (module, attribute, original) of patched factories


def _unwrapped(func):
    """The real original behind an already patched function (patching never stacks)."""
    while getattr(func, "__bulletproof_patched__", False):
        func = func.__bulletproof_original__
    return func


def _mark(wrapper, original):
    wrapper.__bulletproof_patched__ = True
    wrapper.__bulletproof_original__ = original
    return wrapper


def _state(etl) -> ProtectedRun | None:
    return getattr(etl, STATE_ATTRIBUTE, None)


def _make_run(patch: _Patch, original):
    @functools.wraps(original)
    def run(self, *args, **kwargs):
        if _state(self) is not None:  # a nested call (a subclass's run calling its parent's)
            return original(self, *args, **kwargs)
        state = ProtectedRun(self, patch.config, patch.hooks,
                             dry_run=bool(getattr(self, DRY_RUN_ATTRIBUTE, False)),
                             force=bool(getattr(self, FORCE_ATTRIBUTE, False)),
                             progress=getattr(self, PROGRESS_ATTRIBUTE, None))
        setattr(self, STATE_ATTRIBUTE, state)
        setattr(self, REPORT_ATTRIBUTE, state.report)
        token = ACTIVE_RUN.set(state)
        try:
            try:
                result = original(self, *args, **kwargs)
            except BaseException as exc:
                state.abort(exc)
                raise
            return state.finish(result)
        finally:
            ACTIVE_RUN.reset(token)
            if state.report.outcome == "running":  # never left running: say that it did not commit
                state.report.outcome = "rolled_back" if state.p is not None else "failed"
                state.report.error = state.report.error or (state.errors[0] if state.errors else
                                                            "the protected run ended without committing")
                state.release()
            setattr(self, REPORT_ATTRIBUTE, state.report)
            setattr(self, STATE_ATTRIBUTE, None)
    return _mark(run, original)


def _make_get_connection(original):
    @functools.wraps(original)
    def get_connection(self, *args, **kwargs):
        state = _state(self)
        if state is None:
            return original(self, *args, **kwargs)
        return state.connection(lambda: original(self, *args, **kwargs))
    return _mark(get_connection, original)


def _make_factory(original):
    """A module-level connection factory: inside a protected run it opens the run's connection."""
    @functools.wraps(original)
    def factory(*args, **kwargs):
        state = ACTIVE_RUN.get()
        if state is None:
            return original(*args, **kwargs)
        return state.connection(lambda: original(*args, **kwargs))
    return _mark(factory, original)


def _make_clear(original):
    @functools.wraps(original)
    def clear(self, conn, *args, **kwargs):
        state = _state(self)
        if state is None:
            return original(self, conn, *args, **kwargs)
        return state.clear(lambda: original(self, conn, *args, **kwargs))
    return _mark(clear, original)


def _make_parent(entity: str, original):
    @functools.wraps(original)
    def import_parent(self, conn, records, *args, **kwargs):
        state = _state(self)
        if state is None:
            return original(self, conn, records, *args, **kwargs)
        return state.upsert_parent(entity, records)
    return _mark(import_parent, original)


def _make_import_teams(original):
    @functools.wraps(original)
    def import_teams(self, conn, teams_data, *args, **kwargs):
        return bulletproof_import_teams(self, conn, teams_data)
    return _mark(import_teams, original)


def _make_step(name: str, original):
    @functools.wraps(original)
    def step(self, *args, **kwargs):
        state = _state(self)
        if state is None:
            return original(self, *args, **kwargs)
        return state.etl_step(name, lambda: original(self, *args, **kwargs))
    return _mark(step, original)


def _step_names(etl_class, hooks: EtlHooks, taken: set) -> list:
    if hooks.steps is not None:
        return [n for n in hooks.steps if n not in taken]
    return sorted(n for n in dir(etl_class)
                  if (n.startswith("import_") or n.startswith("load_")) and n not in taken
                  and callable(getattr(etl_class, n, None)))


def patch_existing_etl_class(etl_class: type, config: PreservationConfig | None = None, *,
                             hooks: EtlHooks | None = None) -> type:
    """Protect ``etl_class.run()`` in place; idempotent (a second call only updates the config).

    ``config`` and ``hooks`` default to the class's ``bulletproof_config`` and
    ``bulletproof_hooks`` attributes, then to the reference schema and method names.
    """
    existing = etl_class.__dict__.get(PATCH_ATTRIBUTE)
    if existing is not None:
        if config is not None:
            existing.config = config
        return etl_class
    hooks = hooks or getattr(etl_class, "bulletproof_hooks", None) or EtlHooks()
    if hooks.clear_mode not in ("guard", "replace"):
        raise BulletproofError(f"EtlHooks.clear_mode must be 'guard' or 'replace', not {hooks.clear_mode!r}",
                               stage="patch")
    factories = factory_targets(etl_class, hooks.get_connection)
    required = [hooks.run, hooks.clear, hooks.import_teams, *hooks.parents().values()]
    if not factories:
        required.append(hooks.get_connection)
    missing = [n for n in required if not callable(getattr(etl_class, n, None))]
    if missing:
        raise BulletproofError(
            f"{etl_class.__name__} has no method {', '.join(repr(m) for m in missing)}; "
            "name its methods with EtlHooks(...) (or set import_leagues/clubs/series to None)",
            stage="patch", missing=missing)
    patch = _Patch(config or getattr(etl_class, "bulletproof_config", None) or DEFAULT_CONFIG, hooks)
    makers = {hooks.run: lambda f: _make_run(patch, f), hooks.clear: _make_clear,
              hooks.import_teams: _make_import_teams}
    if not factories:
        makers[hooks.get_connection] = _make_get_connection
    for entity, name in hooks.parents().items():
        makers[name] = functools.partial(_make_parent, entity)
    for name in _step_names(etl_class, hooks, set(makers)):
        makers[name] = functools.partial(_make_step, name)
    for name, make in makers.items():
        own = name in etl_class.__dict__
        patch.originals[name] = (own, etl_class.__dict__.get(name))
        setattr(etl_class, name, make(_unwrapped(getattr(etl_class, name))))
    for module, attr in factories:
        current = getattr(module, attr)
        patch.module_originals.append((module, attr, current))
        setattr(module, attr, _make_factory(_unwrapped(current)))
    setattr(etl_class, PATCH_ATTRIBUTE, patch)
    logger.info("patched %s: %s", etl_class.__name__, ", ".join(sorted(makers)))
    return etl_class


def unpatch_etl_class(etl_class: type) -> type:
    """Undo :func:`patch_existing_etl_class` (a class that is not patched is left as it is)."""
    patch = etl_class.__dict__.get(PATCH_ATTRIBUTE)
    if patch is None:
        return etl_class
    for name, (own, value) in patch.originals.items():
        if own:
            setattr(etl_class, name, value)
        else:
            delattr(etl_class, name)
    for module, attr, value in reversed(patch.module_originals):
        setattr(module, attr, value)
    delattr(etl_class, PATCH_ATTRIBUTE)
    return etl_class


def is_patched(etl_class: type) -> bool:
    """True when ``etl_class`` (or a class it inherits from) has protected ``run()``."""
    patch = next((c.__dict__[PATCH_ATTRIBUTE] for c in etl_class.__mro__ if PATCH_ATTRIBUTE in c.__dict__), None)
    return patch is not None and getattr(getattr(etl_class, patch.hooks.run), "__bulletproof_patched__", False)


def create_bulletproof_etl_wrapper(etl_class: type, config: PreservationConfig | None = None, *,
                                   hooks: EtlHooks | None = None) -> type:
    """A protected subclass of ``etl_class``; ``etl_class`` itself stays as it was."""
    wrapper = type(f"Bulletproof{etl_class.__name__}", (etl_class,), {
        "__doc__": f"{etl_class.__name__} with bulletproof-etl protection.\n\n{etl_class.__doc__ or ''}",
        "__module__": etl_class.__module__,
        "__qualname__": f"Bulletproof{etl_class.__qualname__}",
    })
    return patch_existing_etl_class(wrapper, config, hooks=hooks)


def _patch_of(etl_instance):
    return next((c.__dict__[PATCH_ATTRIBUTE] for c in type(etl_instance).__mro__ if PATCH_ATTRIBUTE in c.__dict__), None)


def _config_of(etl_instance) -> PreservationConfig:
    patch = _patch_of(etl_instance)
    return patch.config if patch is not None else getattr(etl_instance, "bulletproof_config", None) or DEFAULT_CONFIG


def _with_aliases(etl_instance, teams_data):
    """The records, each without an alias given the one the ETL's own team import would write:
    of the name it ends up with: under ``team_identity="parent_rows"`` that is ``name (series)``
    where an earlier record of another club, series and league took the name in the league (as
    the ETL, and the team upsert then, rename it)."""
    patch = _patch_of(etl_instance)
    alias = getattr(etl_instance, patch.hooks.team_alias, None) if patch and patch.hooks.team_alias else None
    out, seen, names = [], set(), set()
    apart = patch is not None and patch.config.team_identity == "parent_rows"
    for t in teams_data:
        if alias is not None and isinstance(t, dict) and not t.get("team_alias"):
            name, series, league = t.get("team_name"), t.get("series_name"), t.get("league_id")
            if apart and (t.get("club_name"), series, league) not in seen and (name, league) in names:
                name = f"{name} ({series})"
            seen.add((t.get("club_name"), series, league))
            names.add((name, league))
            t = {**t, "team_alias": alias(name, series)}
        out.append(t)
    return out


def bulletproof_import_teams(etl_instance, conn, teams_data) -> int:
    """Drop-in for ``self.import_teams(conn, teams_data)``: the number of teams imported.

    Inside a protected run it is that run's team upsert. Otherwise it runs the whole
    preservation (constraints, snapshot, upsert, restore, health) on ``conn`` inside a
    savepoint, never commits it, and raises (rolling its savepoint back) on failure or
    CRITICAL health. ``etl_instance.bulletproof_report`` holds the full report afterwards.
    """
    teams_data = _with_aliases(etl_instance, teams_data)
    state = _state(etl_instance)
    if state is not None:
        return state.import_teams(teams_data)
    league = getattr(etl_instance, "league", None)
    p = BulletproofTeamPreservation(real_connection(conn), config=_config_of(etl_instance), league=league)
    setattr(etl_instance, REPORT_ATTRIBUTE, p.report)
    with p:
        p.run(teams_data)
    teams = p.report.teams or {}
    return teams.get("preserved", 0) + teams.get("created", 0)


def emergency_repair_orphans(dsn_or_conn=None, config: PreservationConfig | None = None, *,
                             constraints: bool = False, dry_run: bool = False) -> tuple:
    """Health, repair through the strategies, health again: ``(before, after)`` HealthReports.

    Never deletes a row. With a DSN (or nothing: ``DATABASE_URL`` / the embedded server) it
    commits; with a connection it works in a savepoint and leaves the commit to the caller.
    ``constraints=True`` also repairs constraints first (merging duplicate teams).
    """
    result = emergency_repair(dsn_or_conn, config, constraints=constraints, dry_run=dry_run)
    return result.before, result.after
