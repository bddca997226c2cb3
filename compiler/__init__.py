"""tsym.compiler: ``.tsym`` specs -> exact irreps decomposition and change of basis -> heads.

Public API::

    parse_text, parse_file      -> tuple[TensorSpec, ...]
    compile_spec(spec)          -> HeadPlan
    compile_text, compile_file  -> list[HeadPlan]
    emit_module(plan)           -> str (a standalone torch + e3nn module)
    SelfMixHead                 the generic node-wise self-mix head (compiler/head.py, which
                                emit pastes into generated modules), on CartesianReadout
                                (checks, Q, pooling; the baselines' base), with its
                                EquivariantLayerNorm and scalar_indices
    HeadInputError              what a head raises when called with inputs that do not fit it
"""
from __future__ import annotations

from pathlib import Path

from .emit import emit_module, write_modules
from .errors import SpecError, SpecWarning, TsymError
from ._guards import HeadInputError
from .head import EquivariantLayerNorm, SelfMixHead
from .parse import parse_file, parse_text
from .plan import HeadPlan, compile_spec
from .readout import CartesianReadout, scalar_indices
from .spec import TensorSpec

__all__ = [
    "TsymError", "SpecError", "SpecWarning", "TensorSpec", "HeadPlan", "SelfMixHead", "CartesianReadout",
    "EquivariantLayerNorm", "scalar_indices", "HeadInputError",
    "parse_text", "parse_file", "compile_spec", "compile_text", "compile_file",
    "emit_module", "write_modules",
]


def compile_text(text: str, filename: str = "<string>") -> list[HeadPlan]:
    """Parse and compile every tensor block of ``text``."""
    return [compile_spec(spec) for spec in parse_text(text, filename)]


def compile_file(path: str | Path) -> list[HeadPlan]:
    """Parse and compile every tensor block of the ``.tsym`` file at ``path``."""
    return [compile_spec(spec) for spec in parse_file(path)]
