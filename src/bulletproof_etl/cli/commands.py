"""The commands behind ``bulletproof-etl``: each takes the parsed arguments and returns an exit code."""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

from .. import db
from ..config import DEFAULT_CONFIG, PreservationConfig
from ..errors import BulletproofError
from ..health.check import HealthStatus
from ..state import relname
from . import render
from .checksums import checksums, differences

EXIT_OK, EXIT_WARNING, EXIT_FAILED = 0, 1, 2


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _note(args, text: str) -> None:
    if not args.quiet:
        sys.stderr.write(text + "\n")


def _status_code(health: dict | None) -> int:
    if not health:
        return EXIT_FAILED
    return HealthStatus(health["status"]).exit_code


# -- choosing and preparing the ETL ----------------------------------------------------------
def load_etl(spec: str | None):
    """The ETL class: ``module:Class``, or the reference ``rally_etl.ComprehensiveETL``."""
    if not spec:
        from rally_etl import ComprehensiveETL

        return ComprehensiveETL
    return _import(spec, "--etl", "myapp.nightly:NightlyImport")


def load_config(args) -> PreservationConfig:
    """``--config MODULE:NAME`` (a PreservationConfig), else the reference schema's."""
    spec = getattr(args, "config", None)
    if not spec:
        return DEFAULT_CONFIG
    found = _import(spec, "--config", "myapp.bulletproof:CONFIG")
    if not isinstance(found, PreservationConfig):
        raise BulletproofError(f"--config {spec!r} is a {type(found).__name__}, not a PreservationConfig")
    return found


def _import(spec: str, option: str, example: str):
    module, _, name = spec.partition(":")
    if not module or not name:
        raise BulletproofError(f"{option} {spec!r}: expected MODULE:NAME, e.g. {example}")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise BulletproofError(f"{option} {spec!r}: cannot import {module}: {exc}") from exc
    except AttributeError as exc:
        raise BulletproofError(f"{option} {spec!r}: {module} has no {name}") from exc


def _has_schema(dsn: str, config: PreservationConfig) -> bool:
    conn = db.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", (relname(config.schema, config.table("teams")),))
            return cur.fetchone()[0] is not None
    finally:
        conn.close()


def _schema_in_transaction(etl_class):
    """The reference ETL creating the reference schema inside its (rolled-back) transaction."""
    import rally_etl

    class ScratchSchemaETL(etl_class):
        def get_connection(self):
            conn = super().get_connection()
            with conn.cursor() as cur:
                cur.execute(rally_etl.schema_sql())
            return conn

    ScratchSchemaETL.label = f"{etl_class.__name__} (reference schema created in the transaction)"
    return ScratchSchemaETL


def _prepare(args, *, dry_run: bool):
    """(dsn, ETL class, data dir), installing the reference schema on an empty database."""
    dsn = db.resolve_dsn(args.dsn)
    etl_class = load_etl(args.etl)
    if args.etl is None and not _has_schema(dsn, load_config(args)):
        if dry_run:
            _note(args, "the database has no reference schema: it is created inside the run and rolled back")
            etl_class = _schema_in_transaction(etl_class)
        else:
            import rally_etl

            conn = db.connect(dsn)
            try:
                rally_etl.install_schema(conn)
            finally:
                conn.close()
            _note(args, f"installed the reference schema in {db.describe_dsn(dsn)}")
    if args.data_dir:
        data_dir = Path(args.data_dir)
    else:
        from rally_etl.sample import sample_data_dir

        data_dir = sample_data_dir(1)
    return dsn, etl_class, data_dir


def protected_run(args, *, dry_run: bool, force: bool = False):
    """Run the wrapped ETL; returns (ok, report dict)."""
    from ..integration.patching import PATCH_ATTRIBUTE, create_bulletproof_etl_wrapper

    dsn, etl_class, data_dir = _prepare(args, dry_run=dry_run)
    config = load_config(args) if getattr(args, "config", None) else None
    wrapped = create_bulletproof_etl_wrapper(etl_class, config)
    patch = wrapped.__dict__[PATCH_ATTRIBUTE]
    etl = wrapped(data_dir, dsn, league=args.league)
    progress = render.Progress(total=len(patch.originals) + 4, enabled=not args.quiet)
    etl.bulletproof_dry_run = dry_run
    etl.bulletproof_force = force
    etl.bulletproof_progress = progress
    _note(args, f"{getattr(etl_class, 'label', etl_class.__name__)} on {db.describe_dsn(dsn)}, data {data_dir}"
          + (f", league {args.league}" if args.league else "") + (" (dry run)" if dry_run else ""))
    try:
        ok = getattr(etl, patch.hooks.run)()
    finally:
        progress.close()
    report = etl.bulletproof_report.to_dict() if getattr(etl, "bulletproof_report", None) else {}
    return bool(ok), report


# -- the commands ----------------------------------------------------------------------------
def cmd_run(args) -> int:
    ok, report = protected_run(args, dry_run=args.dry_run, force=args.force)
    if args.json:
        _out(json.dumps(report, indent=2, sort_keys=True, default=str))
    else:
        _out(render.run_text(report, ok))
    return _status_code(report.get("health")) if ok else EXIT_FAILED


def cmd_test(args) -> int:
    dsn = db.resolve_dsn(args.dsn)
    config = load_config(args)
    schemas = [config.schema, config.state_schema]
    conn = db.connect(dsn)
    try:
        before = checksums(conn, schemas)
    finally:
        conn.close()
    ok, report = protected_run(args, dry_run=True)
    conn = db.connect(dsn)
    try:
        changed = differences(before, checksums(conn, schemas))
    finally:
        conn.close()
    result = {"pipeline_ok": ok, "tables_compared": len(before), "changed": changed,
              "health": (report.get("health") or {}).get("status"), "report": report}
    if args.json:
        _out(json.dumps(result, indent=2, sort_keys=True, default=str))
    else:
        _out(render.run_text(report, ok))
        _out("")
        if changed:
            _out(f"self-test FAILED: the dry run changed {', '.join(changed)}")
        else:
            _out(f"self-test: nothing changed ({len(before)} tables and sequences compared by checksum)")
        _out(f"self-test: the protected pipeline {'passed' if ok else 'FAILED'}")
    if changed or not ok:
        return EXIT_FAILED
    return _status_code(report.get("health"))


def cmd_health(args) -> int:
    from ..catalog import read_catalog
    from ..health.check import check_health

    conn = db.connect(args.dsn)
    try:
        config = load_config(args)
        report = check_health(conn, config, read_catalog(conn, config))
        conn.rollback()
    finally:
        conn.close()
    if args.json:
        _out(report.to_json())
    elif args.prometheus:
        sys.stdout.write(report.to_prometheus())
    else:
        _out(render.health_text(report.to_dict()))
    return report.status.exit_code


def cmd_diagnose(args) -> int:
    from ..health.diagnose import diagnose

    conn = db.connect(args.dsn)
    try:
        report = diagnose(conn, load_config(args), examples=args.examples)
    finally:
        conn.close()
    if args.json:
        _out(report.to_json())
        return report.exit_code
    rows = [[c.column, c.entity, c.owner, c.has_fk, c.orphans] for c in report.columns]
    _out(render.table(["column", "references", "owner", "foreign key", "orphans"], rows, right={4}))
    for c in report.columns:
        if not c.examples:
            continue
        _out(f"\n{c.column}: {c.orphans} orphaned, for example:")
        ex = [[json.dumps(e["pk"], sort_keys=True), e["id"], _known(e)] for e in c.examples]
        _out(render.table(["row", "dangling id", "what the ledger knows"], ex, right={1}))
    _out(f"\norphaned references: {report.user_orphans} user-owned, {report.etl_orphans} ETL-owned")
    if report.stale_ids:  # the evidence votes of ids no ledger knows (issue 13)
        votes = [[s["entity"], s["old_id"], s["rows"],
                  "; ".join(f"{c}: {v['rows']} ({', '.join(f'{p} {n}' for p, n in sorted(v['paths'].items()))})"
                            for c, v in s["candidates"].items()) or "-",
                  s["decision"] + (f" -> {s['new_id']}" if s["new_id"] is not None else "")]
                 for s in report.stale_ids]
        _out("\nstale ids no ledger knows, and what their rows' evidence votes for:")
        _out(render.table(["entity", "stale id", "rows", "candidates: rows (by path)", "decision"], votes,
                          right={1, 2}))
    if report.runs:
        runs = [[r["run_id"], r["started_at"][:19], r["mode"], r["outcome"], r["snapshot"]] for r in report.runs]
        _out("\n" + render.table(["run", "started", "mode", "outcome", "snapshot"], runs, right={0}))
    elif not report.state_schema:
        _out("no protected run has happened here yet (no identity ledger): "
             "`bulletproof-etl repair` can map only by the rows' evidence (above), context and content")
    return report.exit_code


def _known(example: dict) -> str:
    key = example.get("ledger_key")
    if key is None:
        return "unknown to the ledger"
    now = example.get("key_now")
    where = f"now id {now}" if now is not None else "no row has it now"
    return f"key {'/'.join(key)} ({where})"


def cmd_repair(args) -> int:
    from ..integration.repair import emergency_repair, repair_from_snapshot

    if args.from_snapshot:
        result = repair_from_snapshot(args.dsn, args.from_snapshot, load_config(args), dry_run=args.dry_run)
        if args.json:
            _out(json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str))
        else:
            rows = [[e, r.in_snapshot, r.in_place, r.renumbered, r.reinserted, len(r.conflicts)]
                    for e, r in result.entities.items()]
            _out(render.table(["entity", "in snapshot", "in place", "renumbered", "re-inserted", "conflicts"], rows))
            for r in result.entities.values():
                for conflict in r.conflicts[:10]:
                    _out(f"  conflict: {conflict}")
            _out("")
            _out(("DRY RUN (rolled back): " if args.dry_run else "") + result.message())
            _out("")
            _out(render.health_text(result.health.to_dict(), title=f"health against run {result.run_id}"))
        return result.health.status.exit_code
    result = emergency_repair(args.dsn, load_config(args), constraints=args.emergency, dry_run=args.dry_run)
    if args.json:
        _out(json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str))
    else:
        _out(render.health_text(result.before.to_dict(), title="before"))
        if result.constraints:
            done = result.constraints.get("repaired") or []
            _out("\nconstraints: " + ("; ".join(done) if done else "nothing to repair"))
        if result.restore:
            totals = result.restore.get("totals", {})
            _out("\nrepair: " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())))
        _out("")
        _out(render.health_text(result.after.to_dict(), title="after"))
        verdict = {"rolled_back": "health would still be CRITICAL: the repair was rolled back",
                   "dry_run": "DRY RUN: nothing was changed"}.get(result.outcome, "repair committed")
        _out(f"\n{verdict} (run {result.run_id})")
    if result.outcome == "rolled_back":
        return EXIT_FAILED
    return result.after.status.exit_code


def cmd_enable(args) -> int:
    from ..integration.patching import (
        PATCH_ATTRIBUTE,
        is_patched,
        patch_existing_etl_class,
        unpatch_etl_class,
    )

    if getattr(args, "create_indexes", False):
        from .indexes import create_reference_indexes

        _out(create_reference_indexes(args.dsn, load_config(args)))
    etl_class = load_etl(args.etl)
    before = {n: getattr(etl_class, n) for n in dir(etl_class) if callable(getattr(etl_class, n, None))}
    config = load_config(args) if args.config else None
    patch_existing_etl_class(etl_class, config)
    patch_existing_etl_class(etl_class, config)  # idempotent: a second call changes nothing
    names = sorted(etl_class.__dict__[PATCH_ATTRIBUTE].originals)
    kept = all(getattr(etl_class, n).__name__ == before[n].__name__ for n in names)
    active = is_patched(etl_class)
    _out(f"{etl_class.__module__}.{etl_class.__name__}: protection {'active' if active else 'NOT active'} "
         f"({len(names)} methods patched: {', '.join(names)}; names and docstrings kept: {'yes' if kept else 'no'})")
    unpatch_etl_class(etl_class)
    restored = all(getattr(etl_class, n) is before[n] for n in names)
    _out(f"unpatch restores the original methods: {'yes' if restored else 'NO'}")
    started = time.perf_counter()
    args.json = False
    code = cmd_test(args)
    _out(f"\nself-test finished in {render.seconds(time.perf_counter() - started)}")
    if active and restored and code != EXIT_FAILED:
        _out("bulletproof protection is ready: run the ETL with `bulletproof-etl run` (or "
             "scripts/run_bulletproof_etl.py), or call patch_existing_etl_class() in your own entry point")
    return code if active and restored else EXIT_FAILED


def cmd_demo(args) -> int:
    from .demo import render_demo, run_demo

    result = run_demo(args.dsn, keep=args.keep, progress=None if args.quiet else _note_progress,
                      prefix=args.prefix)
    if args.json:
        _out(json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str))
    else:
        _out(render_demo(result))
    return EXIT_OK if result.protected_ok else EXIT_FAILED


def _note_progress(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
