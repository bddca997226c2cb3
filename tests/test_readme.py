"""The README's first lines are the two commands for a fresh machine; CI runs the second one."""
from __future__ import annotations

import re

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


def _section_code(title: str) -> str:
    """The first ```python block under the README heading ``### {title}``."""
    text = (REPO / "README.md").read_text()
    section = re.split(r"\n##+ ", text.split(f"\n### {title}\n", 1)[1], maxsplit=1)[0]
    return section.split("```python\n", 1)[1].split("\n```", 1)[0]


def test_own_network_example_runs(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    code = _section_code("Your own network")
    assert len([ln for ln in code.splitlines() if ln and not ln.startswith(" ")]) <= 8
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "(1, 3, 3)"
    assert re.search(r"polarizability: order 2 polar, relative error .*  ok$", out[2])
