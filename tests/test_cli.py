"""The tsym command line: inspect, compile, table; user errors without tracebacks."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import tsym
from tsym.cli import main

from .conftest import SPECS_DIR

POLAR = "tensor alpha {\n    indices ij\n    symmetry ij = ji\n    units \"bohr^3\"\n}\n"


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "alpha.tsym"
    path.write_text(POLAR)
    return path


def test_inspect_text(spec_file, capsys):
    assert main(["inspect", str(spec_file)]) == 0
    out = capsys.readouterr().out
    lines = dict(line.split(None, 1) if " " in line else (line, "") for line in out.splitlines())
    assert "1x0e+1x2e" in out
    assert "num components" in out and " 6" in out
    for key in ("name", "indices", "order", "parity", "level", "pool", "irreps"):
        assert key in lines


def test_inspect_shows_relations(tmp_path, capsys):
    path = tmp_path / "mixed.tsym"
    path.write_text("tensor m {\n indices ijk\n symmetry ijk = jik\n relation ijk + jki + kij = 0\n}\n")
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(None, 1)[1] for line in out if line.startswith("relation")] == ["ijk + jki + kij = 0"]
    assert [line.split()[-1] for line in out if line.startswith("irreps")] == ["1x1o+1x2o"]
    assert main(["inspect", str(path), "--json"]) == 0
    item = json.loads(capsys.readouterr().out)[0]
    assert item["relations"] == ["ijk + jki + kij = 0"] and item["num_components"] == 8


def test_inspect_prints_a_redundant_relation_warning(tmp_path, capsys):
    path = tmp_path / "riemann.tsym"
    path.write_text("tensor r {\n indices ijkl\n symmetry ijkl = -jikl = -ijlk = klij\n"
                    " relation ijkl + iklj + iljk = 0\n}\n")
    assert main(["inspect", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith(f"tsym: warning: {path}:4:2: relation 'ijkl + iklj + iljk = 0' changes nothing")
    assert "1x0e+1x2e" in captured.out


def test_inspect_json_has_change_of_basis(spec_file, capsys):
    assert main(["inspect", str(spec_file), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data) == 1
    item = data[0]
    assert item["irreps"] == "1x0e+1x2e" and item["num_components"] == 6 and item["order"] == 2
    q = torch.tensor(item["change_of_basis"], dtype=torch.float64)
    assert q.shape == (6, 3, 3)
    assert torch.equal(q, tsym.compile_file(spec_file)[0].change_of_basis)


def test_compile_writes_modules(spec_file, tmp_path, capsys):
    out = tmp_path / "heads"
    assert main(["compile", str(spec_file), "-o", str(out)]) == 0
    assert (out / "alpha.py").exists()
    assert str(out / "alpha.py") in capsys.readouterr().out


def test_table_of_the_spec_library(capsys):
    assert main(["table", str(SPECS_DIR)]) == 0
    out = capsys.readouterr().out
    assert "2x0e+2x2e+1x4e" in out  # elastic
    assert "name" in out.splitlines()[0]


def test_user_error_exit_code_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.tsym"
    bad.write_text("tensor t {\n    indices ij\n    symetry ij = ji\n}\n")
    result = subprocess.run([sys.executable, "-m", "tsym.cli", "inspect", str(bad)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith(f"{bad}:3:5: ")
    assert "Traceback" not in result.stderr
    assert "symmetry" in result.stderr  # the suggestion


def test_missing_file_is_a_user_error(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope.tsym")]) == 2
    err = capsys.readouterr().err
    assert "nope.tsym" in err and "Traceback" not in err


def test_tsym_warnings_print_as_one_line(spec_file, monkeypatch, capsys):
    """A slow-basis announcement reads ``tsym: warning: FILE:LINE:COL: ...``; other warnings
    keep Python's format."""
    import warnings

    from tsym.compiler import plan as plan_module
    from tsym.compiler.errors import SlowBasisWarning

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # main() replaces it
    monkeypatch.setattr(plan_module, "SLOW_BASIS_SECONDS", -1.0)  # announce even this tiny spec
    with pytest.warns(SlowBasisWarning) as record:
        assert main(["inspect", str(spec_file)]) == 0
    text = warnings.formatwarning(record[0].message, record[0].category, "plan.py", 1)
    assert text.startswith(f"tsym: warning: {spec_file}:1:1: the exact change of basis of tensor "
                           "'alpha' would take about 0 seconds") and text.count("\n") == 1
    assert "UserWarning" in warnings.formatwarning("x", UserWarning, "f.py", 3)
