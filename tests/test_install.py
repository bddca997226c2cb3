"""``import tsym`` from the folder that holds a clone named ``tsym`` (issue 14).

Python puts the current folder first on ``sys.path``; there the clone's root, a folder without
``__init__.py``, is an empty namespace package ``tsym``.  The editable install's finder must answer
before it (``scripts/build_backend.py`` moves it ahead of ``PathFinder``); a non-editable install
is a regular package, which wins anyway.
"""
from __future__ import annotations

import base64
import hashlib
import importlib.util
import subprocess
import sys
import zipfile

from .conftest import REPO


def _backend():
    spec = importlib.util.spec_from_file_location("build_backend", REPO / "scripts" / "build_backend.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_import_from_the_parent_of_a_clone_named_tsym(tmp_path):
    (tmp_path / "tsym").symlink_to(REPO, target_is_directory=True)  # a clone named tsym
    code = ("import tsym, tsym.grammar\n"
            "tsym.build_model, tsym.compile_text\n"
            "tsym.grammar.get_parser()\n"  # package data (the .lark grammar)
            "print(tsym.__file__)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("__init__.py")  # a regular package, not the namespace


def test_the_console_script_from_the_parent_of_a_clone(tmp_path):
    (tmp_path / "tsym").symlink_to(REPO, target_is_directory=True)
    proc = subprocess.run([sys.executable, "-m", "tsym", "inspect", "tsym/compiler/specs/dipole.tsym"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "1x1o" in proc.stdout


def _wheel(path, files: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr("tsym-0.1.0.dist-info/RECORD", "".join(f"{n},,\n" for n in files))


FINDER = b"import sys\nclass _EditableFinder:\n    pass\ndef install():\n    sys.meta_path.append(_EditableFinder)\n"


def test_backend_adds_the_pth_line_with_its_record(tmp_path):
    backend = _backend()
    wheel = tmp_path / "tsym-0.1.0-0.editable-py3-none-any.whl"
    _wheel(wheel, {"__editable___tsym_0_1_0_finder.py": FINDER, "__editable__.tsym-0.1.0.pth": b"x"})
    assert backend.add_finder_first(wheel)
    with zipfile.ZipFile(wheel) as zf:
        line = zf.read(backend.PTH_NAME)
        record = zf.read("tsym-0.1.0.dist-info/RECORD").decode().splitlines()
        assert zf.read("__editable___tsym_0_1_0_finder.py") == FINDER
    digest = base64.urlsafe_b64encode(hashlib.sha256(line).digest()).rstrip(b"=").decode()
    assert f"{backend.PTH_NAME},sha256={digest},{len(line)}" in record
    assert line.startswith(b"import ") and line.count(b"\n") == 1  # a .pth line site.py runs


def test_the_pth_line_puts_the_finder_before_pathfinder(tmp_path):
    """Run the line as site.py would, with a stand-in finder module on the path."""
    backend = _backend()
    (tmp_path / "__editable___tsym_9_finder.py").write_bytes(FINDER)
    line = backend.finder_first_line("__editable___tsym_9_finder")
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n{line}"
            "import importlib.machinery as m, __editable___tsym_9_finder as f\n"
            "order = [type(x).__name__ if not isinstance(x, type) else x.__name__ for x in sys.meta_path]\n"
            "assert sys.meta_path.count(f._EditableFinder) == 1, order\n"
            "assert sys.meta_path.index(f._EditableFinder) + 1 == sys.meta_path.index(m.PathFinder), order\n")
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_backend_leaves_other_wheels_alone(tmp_path):
    backend = _backend()
    wheel = tmp_path / "strict.whl"
    _wheel(wheel, {"__editable__.tsym-0.1.0.pth": b"/some/link/tree\n"})
    before = wheel.read_bytes()
    assert not backend.add_finder_first(wheel)
    assert wheel.read_bytes() == before
