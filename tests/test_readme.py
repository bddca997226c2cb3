"""The README's first lines are the two commands for a fresh machine; CI runs the second one."""
from __future__ import annotations

from .conftest import REPO


def _readme_commands() -> list[str]:
    lines = (REPO / "README.md").read_text().splitlines()
    assert lines[0] == "```bash"
    end = lines.index("```", 1)
    return lines[1:end]


def test_two_commands_first():
    commands = _readme_commands()
    assert len(commands) == 2
    assert "constraints.txt" in commands[0] and "constraints.txt" in commands[1]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in ci


def test_constraints_pin_torch():
    pins = (REPO / "constraints.txt").read_text().split()
    assert "torch==2.13.0" in pins
