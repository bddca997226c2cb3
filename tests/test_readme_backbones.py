"""The README's "### MACE", "### NequIP" and "### SevenNet" examples run, and print what their
comments say.

Each ``print(...)  # expected`` line of a block must print ``expected``; a block whose package is
absent is skipped with the install command (extras ``mace``, ``nequip``, ``sevenn``).
"""
from __future__ import annotations

import contextlib
import io
import os
import re

import pytest

from tsym.runtime.nn.extras import INSTALL

from .conftest import REPO

SECTIONS = {"### MACE": ("mace", "mace"), "### NequIP": ("nequip", "nequip"),
            "### SevenNet": ("sevenn", "sevenn")}  # module, extra


def _block(heading: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(f"\n{heading}\n")
    body = text[start:text.index("\n#", start + len(heading) + 2)]
    match = re.search(r"```python\n(.*?)```", body, re.S)
    assert match, f"no python block under {heading}"
    return match.group(1)


@pytest.mark.parametrize("heading", list(SECTIONS))
def test_readme_backbone_example(heading, monkeypatch, tmp_path):
    module, extra = SECTIONS[heading]
    pytest.importorskip(module, reason=f"the {extra!r} extra is not installed: {INSTALL[extra]}")
    code = _block(heading)
    expected = [line.split("#", 1)[1].strip() for line in code.splitlines()
                if line.startswith("print(") and "#" in line]
    assert len(expected) >= 2, f"{heading}: no print(...)  # expected lines"
    assert len(code.strip().splitlines()) <= 8, f"{heading}: the example should stay short"
    monkeypatch.chdir(tmp_path)  # an empty folder outside the clone: specs by library name
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"README.md {heading}", "exec"), {"__name__": "readme"})
    assert out.getvalue().splitlines() == expected
    assert os.getcwd() == str(tmp_path)
