"""Without the ``sevenn`` package, ``backbone="sevenn"`` says how to install it (runs with or
without the extra: the package is hidden from the import system)."""
from __future__ import annotations

import sys

import pytest

import tsym
from tsym.runtime.errors import ModelConfigError

from ...conftest import SPECS_DIR


def test_missing_sevenn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sevenn", None)
    with pytest.raises(ModelConfigError, match=r"^backbone 'sevenn' needs the optional package "
                                               r"of the 'sevenn' extra .*install it with: pip "
                                               r"install -c constraints.txt -e \"\.\[sevenn\]\""):
        tsym.build_model([SPECS_DIR / "dipole.tsym"], backbone="sevenn",
                         backbone_kwargs={"checkpoint": "7net-0"})
