"""``bulletproof-etl demo``: the legacy ETL and the protected one, side by side.

Two fresh databases on one server (the embedded PostgreSQL unless a DSN is given): in
both, season 1 of the bundled sample is loaded with the legacy ETL and users create their
data; then season 2 (renamed clubs, respelled series, removed and added teams, duplicated
and messy records) is imported with the legacy ETL in one and with protection in the
other. Every figure of the comparison is a recount with plain SQL (``demo_recount``), never
a number copied from the library's own report.
"""

from __future__ import annotations

import textwrap
import time
from dataclasses import asdict, dataclass, field

import psycopg2
from psycopg2 import sql

from .. import db
from ..errors import BulletproofError
from . import demo_recount as recount
from .render import seconds, table

DEMO_COMMENT = "bulletproof-etl demo"
DEFAULT_PREFIX = "bulletproof_demo"
SIDES = ("legacy", "protected")


@dataclass
class DemoSide:
    """One database after season 2."""

    name: str
    database: str
    ok: bool = False
    seconds: float = 0.0
    error: str | None = None
    teams_before: int = 0
    ids_preserved: int = 0
    keys_surviving: int = 0
    orphans: dict = field(default_factory=dict)  # table -> references pointing at nothing
    lost: dict = field(default_factory=dict)  # table -> user rows gone
    wrong_team: int = 0
    followed_rename: int = 0
    nulled: int = 0
    quarantined: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DemoResult:
    server: str
    user_rows: int = 0
    references: int = 0
    sides: dict = field(default_factory=dict)
    kept: bool = False
    databases: dict = field(default_factory=dict)

    @property
    def protected_ok(self) -> bool:
        side = self.sides.get("protected")
        return bool(side and side.ok and not sum(side.orphans.values()) and not sum(side.lost.values())
                    and not side.wrong_team)

    def to_dict(self) -> dict:
        return {"server": self.server, "user_rows": self.user_rows, "references": self.references,
                "sides": {k: v.to_dict() for k, v in self.sides.items()}, "kept": self.kept,
                "databases": self.databases,
                "protected_ok": self.protected_ok}


def _admin(server_dsn: str):
    conn = psycopg2.connect(server_dsn)
    conn.autocommit = True
    return conn


def _fresh_database(admin, name: str) -> None:
    """Create ``name``; drop an old one first only if the demo made it (its comment says so)."""
    with admin.cursor() as cur:
        cur.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (name,))
        row = cur.fetchone()
        if row is not None:
            if row[0] != DEMO_COMMENT:
                raise BulletproofError(f"a database named {name} exists and was not made by the demo; "
                                       "the demo will not touch it (drop or rename it first)", stage="demo")
            cur.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        cur.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(DEMO_COMMENT)))


def _drop(admin, name: str) -> None:
    with admin.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def _with_dbname(dsn: str, name: str) -> str:
    params = psycopg2.extensions.parse_dsn(dsn)
    params["dbname"] = name
    return psycopg2.extensions.make_dsn(**params)


def _season_one(dsn: str, per_team: float) -> None:
    import rally_etl
    from rally_etl.activity import create_user_activity
    from rally_etl.sample import sample_data_dir

    conn = psycopg2.connect(dsn)
    try:
        rally_etl.install_schema(conn)
        etl = rally_etl.ComprehensiveETL(sample_data_dir(1), dsn)
        if not etl.run():
            raise BulletproofError(f"the legacy ETL could not load season 1: {etl.last_error}", stage="demo")
        create_user_activity(conn, seed=1, per_team=per_team)
        conn.commit()
    finally:
        conn.close()


def _season_two(side: DemoSide, dsn: str, protected: bool) -> None:
    import rally_etl
    from rally_etl.sample import sample_data_dir

    from ..integration.patching import create_bulletproof_etl_wrapper

    etl_class = create_bulletproof_etl_wrapper(rally_etl.ComprehensiveETL) if protected else rally_etl.ComprehensiveETL
    etl = etl_class(sample_data_dir(2), dsn)
    started = time.perf_counter()
    side.ok = bool(etl.run())
    side.seconds = round(time.perf_counter() - started, 3)
    if not side.ok:
        report = getattr(etl, "bulletproof_report", None)
        side.error = (report.error if report is not None else None) or str(etl.last_error)


def database_names(prefix: str = DEFAULT_PREFIX) -> dict:
    """``{"legacy": PREFIX_legacy, "protected": PREFIX_protected}``."""
    return {side: f"{prefix}_{side}" for side in SIDES}


def run_demo(dsn: str | None = None, *, keep: bool = False, per_team: float = 1.0, progress=None,
             prefix: str = DEFAULT_PREFIX) -> DemoResult:
    """Run the comparison; ``dsn`` names the server (any database on it)."""
    def say(text):
        if progress:
            progress(text)

    server = db.resolve_dsn(dsn)
    result = DemoResult(server=db.describe_dsn(server), kept=keep, databases=database_names(prefix))
    renames = recount.sample_renames()
    admin = _admin(server)
    created = []
    try:
        for name, database in result.databases.items():
            _fresh_database(admin, database)
            created.append(database)
            target = _with_dbname(server, database)
            say(f"{name}: loading season 1 of the sample and creating user activity in {database}")
            _season_one(target, per_team)
            before = recount.state(target)
            result.user_rows = sum(len(v) for v in before.rows.values())
            result.references = sum(1 for v in before.refs.values() if v is not None)
            side = DemoSide(name, database, teams_before=len(before.teams))
            say(f"{name}: importing season 2 with the {'protected' if name == 'protected' else 'legacy'} ETL")
            _season_two(side, target, protected=name == "protected")
            after = recount.state(target)
            recount.compare(side, before, after, renames)
            side.quarantined = recount.quarantined(target) if name == "protected" else None
            result.sides[name] = side
            say(f"{name}: done in {seconds(side.seconds)}")
    finally:
        try:
            if not keep:
                for database in created:  # only what the demo made
                    _drop(admin, database)
        finally:
            admin.close()
    return result


def render_demo(result: DemoResult) -> str:
    legacy, prot = result.sides["legacy"], result.sides["protected"]
    rows = [
        ["run() returned", legacy.ok, prot.ok],
        ["time taken", seconds(legacy.seconds), seconds(prot.seconds)],
        ["team ids preserved", f"{legacy.ids_preserved} / {legacy.keys_surviving}",
         f"{prot.ids_preserved} / {prot.keys_surviving}"],
        ["orphaned references", sum(legacy.orphans.values()), sum(prot.orphans.values())],
    ]
    for t in sorted(set(legacy.orphans) | set(prot.orphans)):
        if legacy.orphans.get(t) or prot.orphans.get(t):
            rows.append([f"  {t}", legacy.orphans.get(t, 0), prot.orphans.get(t, 0)])
    rows.append(["user rows lost", sum(legacy.lost.values()), sum(prot.lost.values())])
    for t in sorted(set(legacy.lost) | set(prot.lost)):
        if legacy.lost.get(t) or prot.lost.get(t):
            rows.append([f"  {t}", legacy.lost.get(t, 0), prot.lost.get(t, 0)])
    rows += [["rows on the wrong team", legacy.wrong_team, prot.wrong_team],
             ["rows that followed a renamed club", legacy.followed_rename, prot.followed_rename],
             ["references set to NULL", legacy.nulled, prot.nulled],
             ["rows in quarantine", legacy.quarantined, prot.quarantined]]
    head = (f"season 2 imported over season 1 plus {result.user_rows:,} user rows "
            f"({result.references:,} references to leagues, series and teams), on {result.server}")
    out = [head, "", table(["", "legacy ETL", "protected"], rows)]
    if legacy.error:
        out.append(f"\nlegacy ETL error: {legacy.error}")
    if prot.error:
        out.append(f"protected run error: {prot.error}")
    out.append("")
    out.append(textwrap.fill(
        "Counted afterwards with plain SQL in each database: a reference is orphaned when its id names no "
        "row; a row is on the wrong team when its team's natural key (league, club, canonical series) "
        "differs from before, where a team of a renamed club that plays on counts as the same team.", 100))
    if result.kept:
        out.append(f"The databases are kept: {', '.join(result.databases.values())}.")
    return "\n".join(out)
