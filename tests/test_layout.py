"""The layout: one folder per stage, a stage imports only the stages below it, no import circles.

Read from the source (every ``import`` and ``from ... import`` anywhere in a module, inside
functions too), not from what happens to be loaded, so a lazy import cannot hide a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "bulletproof_etl"
MAX_LINES = 350

#: The stages from the bottom up; a module may import its own stage and those before it.
STAGES = (
    ("base", {"errors", "config", "config_check", "db", "lock_wait", "failures", "catalog", "state", "version"}),
    ("identity", {"identity"}),
    ("snapshot", {"snapshot"}),
    ("health", {"health"}),
    ("restore", {"restore"}),
    ("preservation", {"preservation", "_transaction", "_callbacks"}),
    ("integration", {"integration"}),
    ("review", {"review"}),
    ("web", {"web"}),
    ("cli", {"cli"}),
)
RANK = {part: rank for rank, (_name, parts) in enumerate(STAGES) for part in parts}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imports_of(module: str, path: Path, modules: dict) -> set:
    """Every module of the package that ``module`` imports, wherever the import statement is."""
    out = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "bulletproof_etl")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                source = _resolve(module, is_package, node.level, node.module)
            elif (node.module or "").split(".")[0] == "bulletproof_etl":
                source = node.module
            else:
                continue
            for alias in node.names:  # ``from . import x``: x may be a submodule
                sub = f"{source}.{alias.name}"
                out.add(sub if sub in modules else source)
    return {m for m in out if m in modules and m != module}


def _graph() -> dict:
    modules = _modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def _rank(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) == 1:  # bulletproof_etl/__init__.py: the public facade, above everything
        return len(STAGES)
    return RANK.get(parts[1])


def _stage(module: str) -> str:
    rank = _rank(module)
    return "the public facade" if rank == len(STAGES) else STAGES[rank][0]


def test_every_module_belongs_to_a_stage():
    unplaced = sorted(m for m in _modules() if _rank(m) is None)
    assert unplaced == [], f"modules outside every stage (add them to STAGES or move them): {unplaced}"


def test_no_import_circles():
    graph = _graph()
    cycles = []
    state: dict = {}
    stack: list = []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == [], "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_a_stage_imports_only_the_stages_below_it():
    upward = sorted(
        f"{module} ({_stage(module)}) imports {target} ({_stage(target)})"
        for module, targets in _graph().items()
        for target in targets
        if _rank(target) is not None and _rank(module) is not None and _rank(target) > _rank(module)
    )
    assert upward == []


def test_the_checks_catch_a_circle_and_an_upward_import(tmp_path):
    """The walker itself: a lazy import inside a function is an import like any other."""
    lazy = tmp_path / "m.py"
    lazy.write_text("def f():\n    from ..cli import main\n    from . import keys\n")
    found = imports_of("bulletproof_etl.snapshot.rows", lazy,
                       {"bulletproof_etl.cli": 1, "bulletproof_etl.snapshot.keys": 1})
    assert found == {"bulletproof_etl.cli", "bulletproof_etl.snapshot.keys"}
    assert _rank("bulletproof_etl.cli") > _rank("bulletproof_etl.snapshot.rows")


@pytest.mark.parametrize("folder", ["src", "benchmarks"])
def test_no_module_over_350_lines(folder):
    base = ROOT / folder
    if not base.is_dir():
        pytest.fail(f"{base} is missing")
    long = {str(p.relative_to(ROOT)): n for p in base.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_every_stage_says_what_it_guarantees():
    missing = [name for _stage, parts in STAGES for name in parts
               if (PACKAGE / name).is_dir() and not ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))]
    assert missing == []


def test_the_documented_import_paths_work():
    from bulletproof_etl import BulletproofTeamPreservation, HealthStatus, PreservationConfig  # noqa: F401
    from bulletproof_etl.cli import main
    from bulletproof_etl.integration import (  # noqa: F401
        EtlHooks,
        bulletproof_import_teams,
        create_bulletproof_etl_wrapper,
        emergency_repair_orphans,
        patch_existing_etl_class,
        unpatch_etl_class,
    )

    assert callable(main)
