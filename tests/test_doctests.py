"""Run the docstring examples of every tsym module (imported under its real ``tsym.*`` name)."""
from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest


def _modules():
    names = ["tsym"]
    for pkg_name in ("tsym.compiler", "tsym.runtime", "tsym.grammar"):
        pkg = importlib.import_module(pkg_name)
        names.append(pkg_name)
        names += [f"{pkg_name}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__)]
    return sorted(set(names))


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    try:
        module = importlib.import_module(name)
    except ImportError as err:  # an optional dependency of that module is missing
        pytest.skip(f"{name}: {err}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest failures in {name}"
