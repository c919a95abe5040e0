"""The documentation matches the code: every command, flag and script is helped and documented,
the documented command lines parse, and the documented Python compiles against the real API."""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from bulletproof_etl import integration
from bulletproof_etl.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "docs/integration.md", "docs/operations.md", "docs/troubleshooting.md",
        "docs/configuration.md"]
SCRIPTS = ["enable_bulletproof_etl", "run_bulletproof_etl", "diagnose_team_id_orphans", "fix_team_id_orphans"]


@pytest.fixture(scope="module")
def text() -> str:
    return "\n".join((ROOT / name).read_text(encoding="utf-8") for name in DOCS)


def _commands(parser: argparse.ArgumentParser) -> dict:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub._choices_actions}
    return {name: (p, helps.get(name)) for name, p in sub.choices.items()}


def _options(parser: argparse.ArgumentParser) -> list:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_command_and_flag_has_help_and_is_documented(text):
    parser = build_parser()
    commands = _commands(parser)
    assert set(commands) == {"run", "health", "repair", "test", "diagnose", "enable", "disable", "demo",
                             "review", "serve", "report"}
    missing = []
    for name, (sub, helptext) in commands.items():
        assert helptext and helptext.strip(), f"command {name} has no help"
        assert sub.description, f"command {name} has no description"
        if f"bulletproof-etl {name}" not in text:
            missing.append(f"bulletproof-etl {name}")
        for action in _options(sub):
            assert action.help and action.help is not argparse.SUPPRESS, f"{name} {action.option_strings}"
            for option in action.option_strings:
                if option.startswith("--") and option not in text:
                    missing.append(f"{name} {option}")
    for action in _options(parser):
        assert action.help, action.option_strings
        missing += [o for o in action.option_strings if o.startswith("--") and o not in text]
    assert missing == []


def test_every_script_flag_has_help_and_is_documented(text):
    for name in SCRIPTS:
        assert f"scripts/{name}.py" in text, name
        parser = _script(name).build_parser()
        assert parser.description, name
        for action in _options(parser):
            assert action.help, (name, action.option_strings)
            for option in action.option_strings:
                lines = [line for line in text.splitlines() if f"{name}.py" in line and option in line]
                assert lines, (name, option)


def test_the_documented_command_lines_parse(text):
    parser = build_parser()
    lines = []
    for block in re.findall(r"```(?:bash|cron)\n(.*?)```", text, re.S):
        for line in block.splitlines():
            match = re.search(r"(?:^|[;&|] *|\$\()bulletproof-etl ([^)#|;]*)", line)
            if match:
                lines.append(match.group(1).strip())
    assert len(lines) >= 20
    for line in lines:
        words = shlex.split(line)
        redirect = next((i for i, w in enumerate(words) if ">" in w), len(words))
        words = words[:redirect]  # a shell redirection ends the command's own words
        try:
            args = parser.parse_args(words)
        except SystemExit as exc:  # argparse exits on a bad line
            raise AssertionError(f"documented but does not parse: bulletproof-etl {line}") from exc
        assert args.command


def test_the_documented_python_compiles_and_names_the_real_api(text):
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 10
    for block in blocks:
        compile(block, "<docs>", "exec")
    for name in integration.__all__:
        if name != "StageEvent":
            assert name in text, name
    for name in ("BulletproofTeamPreservation", "PreservationConfig", "HealthStatus", "Dependent", "TextHint"):
        assert name in text, name


def test_troubleshooting_answers_every_section_of_the_specification():
    page = (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8").lower()
    for section in ("health check fails", "etl import fails", "constraint issues", "emergency procedures"):
        assert f"## {section}" in page, section


def test_the_readme_gives_the_two_commands_for_a_fresh_machine():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    fresh = readme.split("## On a fresh machine", 1)[1].split("##", 1)[0]
    assert "pip install -e '.[test]'" in fresh and "\nbulletproof-etl run " in fresh
    assert "pytest" in readme and "DATABASE_URL" in readme and "--dsn" in readme
    assert "0 6 * * *" in readme  # the daily health check for cron
