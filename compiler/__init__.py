"""tsym.compiler: ``.tsym`` specs -> exact irreps decomposition and change of basis -> heads.

Public API::

    parse_text, parse_file      -> tuple[TensorSpec, ...]
    compile_spec(spec)          -> HeadPlan
    compile_text, compile_file  -> list[HeadPlan]
    load_plans(spec)            -> list[HeadPlan]: a library name, a .tsym path or spec text
    library_names()             the spec library that ships with tsym (compiler/specs/)
    emit_module(plan)           -> str (a standalone torch + e3nn module)
    SelfMixHead                 the generic node-wise self-mix head (compiler/head/, which
                                emit pastes into generated modules), on CartesianReadout
                                (checks, Q, pooling; the baselines' base), with its
                                EquivariantLayerNorm and scalar_indices
    HeadInputError              what a head raises when called with inputs that do not fit it

The compiler runs on sympy, numpy and lark; torch and e3nn load only when a head is used
(``SelfMixHead`` and its kin below resolve on first access, PEP 562) or a plan's tensors are read.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .emit import emit_module, write_modules
from .errors import SpecError, SpecWarning, TsymError
from .library import library_names, load_plans
from .parse import parse_file, parse_text
from .plan import HeadPlan, compile_spec
from .spec import TensorSpec

if TYPE_CHECKING:
    from .head import (CartesianReadout, EquivariantLayerNorm, HeadInputError, SelfMixHead,
                       scalar_indices)

__all__ = [
    "TsymError", "SpecError", "SpecWarning", "TensorSpec", "HeadPlan", "SelfMixHead", "CartesianReadout",
    "EquivariantLayerNorm", "scalar_indices", "HeadInputError",
    "parse_text", "parse_file", "compile_spec", "compile_text", "compile_file",
    "emit_module", "write_modules", "load_plans", "library_names",
]


def compile_text(text: str, filename: str = "<string>") -> list[HeadPlan]:
    """Parse and compile every tensor block of ``text``."""
    return [compile_spec(spec) for spec in parse_text(text, filename)]


def compile_file(path: str | Path) -> list[HeadPlan]:
    """Parse and compile every tensor block of the ``.tsym`` file at ``path``."""
    return [compile_spec(spec) for spec in parse_file(path)]


#: Names of :mod:`tsym.compiler.head` (torch + e3nn), imported on first access.
_HEAD_NAMES = ("CartesianReadout", "EquivariantLayerNorm", "SelfMixHead", "scalar_indices",
               "HeadInputError")


def __getattr__(name: str):
    if name in _HEAD_NAMES:
        from . import head  # torch and e3nn load here, not with the compiler
        value = getattr(head, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
