"""``bulletproof-etl enable`` installs the capture triggers; ``disable`` removes them (snapshot/capture.py)."""

from __future__ import annotations

import contextlib

from .. import db
from ..catalog import read_catalog
from ..snapshot import capture


def install_triggers(dsn: str | None, config) -> str:
    """Install (or re-install) every capture trigger in one transaction; a line saying what."""
    with contextlib.closing(db.connect(db.resolve_dsn(dsn))) as conn:
        catalog = read_catalog(conn, config)  # triggers change no table or column: read once
        made = capture.install(conn, config, catalog)
        conn.commit()
        found = capture.status(conn, config, catalog)
    tables = sorted({m.split(":")[0] for m in made})
    return (f"capture triggers: {len(made)} installed on {len(tables)} tables ({', '.join(tables)}), "
            f"{found.state}; the next run takes the full snapshot once, later runs copy only what they change")


def add_disable_parser(sub, parents: list) -> None:
    disable = sub.add_parser("disable", parents=parents, help="remove the capture triggers `enable` installed",
                             description="Drop the capture triggers and their functions. Runs take the full "
                                         "snapshot again (as before `enable`); nothing else changes.")
    disable.set_defaults(handler=cmd_disable)


def cmd_enable(args) -> int:
    """``enable``: the capture triggers first (unless ``--no-triggers``), then the patch check and
    the self-test (``commands.cmd_enable``)."""
    from . import commands

    if not args.no_triggers:
        commands._out(install_triggers(args.dsn, commands.load_config(args)))
    return commands.cmd_enable(args)


def cmd_disable(args) -> int:
    from . import commands

    with contextlib.closing(db.connect(db.resolve_dsn(args.dsn))) as conn:
        dropped = capture.uninstall(conn, commands.load_config(args))
        conn.commit()
    commands._out(f"capture triggers: {len(dropped)} removed" + "".join(f"\n  {d}" for d in dropped))
    return commands.EXIT_OK
