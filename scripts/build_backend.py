"""tsym's PEP 517 build backend: setuptools, with editable installs that a folder cannot shadow.

pyproject.toml maps one import name onto four folders (``tsym`` -> ``tsym/``, ``tsym.compiler``
-> ``compiler/``, ...), so ``pip install -e .`` cannot be a plain path entry: setuptools installs
an import finder (``__editable___tsym_*_finder``) and appends it to ``sys.meta_path``, *after* the
standard ``PathFinder``.  Run Python from the folder that holds a clone named ``tsym`` and
``PathFinder`` answers first, with the clone's folder as an empty namespace package
(``module 'tsym' has no attribute 'build_model'``; setuptools issue 3557).

The fix: the editable wheel gets one more ``.pth`` line, run at start-up after setuptools' own,
that moves tsym's finder just before ``PathFinder``.  That finder answers only for ``tsym`` and
the packages pyproject maps, so nothing else changes; ``import tsym`` is then always the installed
checkout, from any folder.  Non-editable wheels and sdists are setuptools' own.
``tests/test_install.py`` imports tsym from a clone's parent folder.
"""
from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from pathlib import Path

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (  # noqa: F401 - the backend's hooks, unchanged
    build_sdist,
    build_wheel,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

#: The ``.pth`` file added to the editable wheel (its line installs the finder itself: any order).
PTH_NAME = "__editable__.tsym_finder_first.pth"

_FINDER = re.compile(r"(__editable___tsym_[0-9A-Za-z_]*_finder)\.py")


def finder_first_line(module: str) -> str:
    """The ``.pth`` line: install ``module``'s finder (idempotent) and move it before PathFinder."""
    return (f"import sys, importlib.machinery as _m, {module} as _f; _f.install(); "
            "sys.meta_path.remove(_f._EditableFinder); "
            "sys.meta_path.insert(sys.meta_path.index(_m.PathFinder) "
            "if _m.PathFinder in sys.meta_path else 0, _f._EditableFinder)\n")


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}\n"


def add_finder_first(wheel: Path) -> bool:
    """Rewrite the editable ``wheel`` with :data:`PTH_NAME` (and its RECORD line).  False, and
    the wheel untouched, when it holds no tsym finder (``editable_mode=strict`` or ``compat``)
    or a finder without the ``install`` / ``_EditableFinder`` this line relies on."""
    with zipfile.ZipFile(wheel) as zf:
        entries = [(info, zf.read(info)) for info in zf.infolist()]
    finders = [(m.group(1), data) for info, data in entries
               if (m := _FINDER.fullmatch(info.filename))]
    if len(finders) != 1:
        return False
    module, source = finders[0]
    if b"def install(" not in source or b"class _EditableFinder" not in source:
        return False
    line = finder_first_line(module).encode()
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
        for info, data in entries:
            if info.filename.endswith(".dist-info/RECORD"):
                data = data + _record_line(PTH_NAME, line).encode()
                out.writestr(PTH_NAME, line)
            out.writestr(info, data)
    tmp.replace(wheel)
    return True


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    name = _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
    add_finder_first(Path(wheel_directory) / name)
    return name
