"""The README and docs/ cover every option and setting, the README stays a tour, and nothing points outside the repo."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import ROOT

# The doors an operator runs (those present in this tree); each one's --help lists its options.
DOORS = [
    "scheduler.py",
    "memory_sync.py",
    "backend_monitor.py",
    "run_backup_now.py",
    "restore_from_github.py",
    "run_migration.py",
    "verify_deployment.py",
    "tools/health_server.py",
    "tools/decisions.py",
    "tools/ai_client.py",
    "tools/mcp_server.py",
    "tests/test_gpt5_activation.py",
]
SCRIPTS = [door for door in DOORS if (ROOT / door).exists()]

FLAG = re.compile(r"(?<![\w-])--[a-z](?:[a-z0-9-]*[a-z0-9])?")
# argparse lists subcommands indented by four spaces under the positional arguments; options by two.
SUBCOMMAND = re.compile(r"^ {4}([a-z][a-z0-9-]*)(?: {2,}|$)", re.MULTILINE)
# Built so that this file does not itself contain what it forbids.
OUTSIDE = re.compile(r"OPERATIONS[_]GUIDE|\bSPEC(?:\.md|\s+section)|\.\./shared")
README_MAX_LINES = 300


def documentation() -> str:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return "\n".join(page.read_text(encoding="utf-8") for page in pages)


def mentioned(word: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def help_text(run_script, script: str, *words: str) -> str:
    # A wide terminal keeps argparse from breaking a flag across lines ("--sync-" / "decisions").
    result = run_script(script, *words, "--help", env={"COLUMNS": "1000"}, timeout=60)
    assert result.returncode == 0, f"{script} {' '.join(words)} --help exited {result.returncode}: {result.stderr}"
    return result.stdout


def flags_of(run_script, script: str, *words: str) -> dict[str, set[str]]:
    """Every flag of the command and of its subcommands, by the command line that shows it."""
    text = help_text(run_script, script, *words)
    found = {" ".join((script, *words)): set(FLAG.findall(text)) - {"--help"}}
    for sub in SUBCOMMAND.findall(text):
        found.update(flags_of(run_script, script, *words, sub))
    return found


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_command_line_flag_is_documented(run_script, script):
    docs = documentation()
    missing = {
        command: sorted(flag for flag in flags if not mentioned(flag, docs))
        for command, flags in flags_of(run_script, script).items()
    }
    missing = {command: flags for command, flags in missing.items() if flags}
    assert not missing, f"flags missing from README.md and docs/*.md: {missing}"


def test_every_variable_of_env_example_is_documented():
    names = re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE)
    assert names, ".env.example lists no variable"
    docs = documentation()
    missing = sorted(name for name in set(names) if not mentioned(name, docs))
    assert not missing, f"variables of .env.example missing from README.md and docs/*.md: {missing}"


def test_the_readme_stays_a_tour_of_at_most_300_lines():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_no_file_points_outside_the_repository():
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    offenders = []
    for name in filter(None, files):
        path = ROOT / name
        if not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore")
        offenders += [
            f"{name}:{number}: {line.strip()}"
            for number, line in enumerate(text.splitlines(), 1)
            if OUTSIDE.search(line)
        ]
    assert not offenders, "references to files outside the repository:\n" + "\n".join(offenders)
