"""tsym: a symbolic tensor-symmetry compiler plus runtime for equivariant graph neural networks.

>>> import tsym
>>> plan = tsym.compile_text("tensor elastic { indices ijkl; symmetry ijkl = jikl = ijlk = klij }")[0]
>>> plan.irreps, plan.num_components
('2x0e+2x2e+1x4e', 21)
>>> tsym.load_plans("elastic")[0].irreps  # a spec of the library that ships with tsym
'2x0e+2x2e+1x4e'

``import tsym`` loads the compiler only (sympy, numpy, lark); the names that need torch and e3nn
(``build_model``, ``TensorModel``, ``collate``, ``SelfMixHead``, ``TsymCalculator``,
``derivatives`` and the spectra) load their modules on first access (PEP 562), so the compiler
and its command line start without torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from tsym.compiler import (
    HeadPlan,
    TensorSpec,
    TsymError,
    compile_file,
    compile_spec,
    compile_text,
    emit_module,
    library_names,
    load_plans,
    parse_file,
    parse_text,
)
from tsym.compiler.emit import TSYM_VERSION as __version__

if TYPE_CHECKING:
    from tsym.compiler.head import SelfMixHead
    from tsym.runtime.equivariance import EquivarianceReport, check_equivariance
    from tsym.runtime.graph import collate
    from tsym.runtime.inference.calculator import TsymCalculator
    from tsym.runtime.model import TensorModel, build_model
    from tsym.runtime.nn.registry import register_backbone
    from tsym.runtime.nn.wrap import backbone_from_module
    from tsym.runtime.spectra import (HarmonicSpectrum, derivatives, graph_derivatives,
                                      harmonic_spectrum, model_spectrum, normal_modes)

__all__ = [
    "TsymError", "TensorSpec", "HeadPlan", "SelfMixHead", "compile_file", "compile_text",
    "compile_spec", "parse_file", "parse_text", "emit_module", "load_plans", "library_names",
    "build_model", "TensorModel",
    "collate", "__version__",
    "check_equivariance", "EquivarianceReport", "backbone_from_module", "register_backbone",
    "TsymCalculator", "derivatives", "graph_derivatives", "normal_modes", "harmonic_spectrum",
    "model_spectrum", "HarmonicSpectrum",
]
_SPECTRA = ("derivatives", "graph_derivatives", "normal_modes", "harmonic_spectrum",
            "model_spectrum", "HarmonicSpectrum")


def __getattr__(name: str):
    """The torch names, imported on first access (then cached in the module)."""
    if name in ("build_model", "TensorModel"):
        from tsym.runtime import model as home
    elif name == "collate":
        from tsym.runtime import graph as home
    elif name in ("check_equivariance", "EquivarianceReport"):
        from tsym.runtime import equivariance as home
    elif name == "register_backbone":
        from tsym.runtime.nn import registry as home
    elif name == "backbone_from_module":
        from tsym.runtime.nn import wrap as home
    elif name == "TsymCalculator":
        from tsym.runtime.inference import calculator as home
    elif name in _SPECTRA:
        from tsym.runtime import spectra as home
    elif name == "SelfMixHead":
        from tsym.compiler import head as home
    else:
        raise AttributeError(f"module 'tsym' has no attribute {name!r}")
    value = getattr(home, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
