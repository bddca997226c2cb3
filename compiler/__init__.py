"""tsym.compiler: ``.tsym`` specs -> exact irreps decomposition and change of basis -> heads.

Public API::

    parse_text, parse_file      -> tuple[TensorSpec, ...]
    compile_spec(spec)          -> HeadPlan
    compile_text, compile_file  -> list[HeadPlan]
    emit_module(plan)           -> str (a standalone torch + e3nn module)
    SelfMixHead                 the generic node-wise self-mix head
"""
from __future__ import annotations

from pathlib import Path

from .head import SelfMixHead
from .emit import emit_module, write_modules
from .errors import SpecError, TsymError
from .parse import parse_file, parse_text
from .plan import HeadPlan, compile_spec
from .spec import TensorSpec

__all__ = [
    "TsymError", "SpecError", "TensorSpec", "HeadPlan", "SelfMixHead",
    "parse_text", "parse_file", "compile_spec", "compile_text", "compile_file",
    "emit_module", "write_modules",
]


def compile_text(text: str, filename: str = "<string>") -> list[HeadPlan]:
    """Parse and compile every tensor block of ``text``."""
    return [compile_spec(spec) for spec in parse_text(text, filename)]


def compile_file(path: str | Path) -> list[HeadPlan]:
    """Parse and compile every tensor block of the ``.tsym`` file at ``path``."""
    return [compile_spec(spec) for spec in parse_file(path)]
