"""tsym: a symbolic tensor-symmetry compiler plus runtime for equivariant graph neural networks.

>>> import tsym
>>> plan = tsym.compile_text("tensor elastic { indices ijkl; symmetry ijkl = jikl = ijlk = klij }")[0]
>>> plan.irreps, plan.num_components
('2x0e+2x2e+1x4e', 21)
"""
from __future__ import annotations

from tsym.compiler import (
    HeadPlan,
    SelfMixHead,
    TensorSpec,
    TsymError,
    compile_file,
    compile_spec,
    compile_text,
    emit_module,
    parse_file,
    parse_text,
)
from tsym.compiler.emit import TSYM_VERSION as __version__
from tsym.runtime.equivariance import EquivarianceReport, check_equivariance
from tsym.runtime.model import TensorModel, build_model
from tsym.runtime.nn.registry import register_backbone
from tsym.runtime.nn.wrap import backbone_from_module

__all__ = [
    "TsymError", "TensorSpec", "HeadPlan", "SelfMixHead", "compile_file", "compile_text",
    "compile_spec", "parse_file", "parse_text", "emit_module", "build_model", "TensorModel",
    "__version__",
    "check_equivariance", "EquivarianceReport", "backbone_from_module", "register_backbone",
]
