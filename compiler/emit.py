"""Emit a standalone PyTorch module (torch + e3nn only) for one compiled plan.

The emitted file reads as if written by hand: a header (spec source, its SHA-256, the tsym
version), one docstring, one import block, ``__all__``, the constants (``SPEC``, ``IRREPS``, the
change of basis ``CHANGE_OF_BASIS`` in float64 plus ``CHANGE_OF_BASIS_F32``, both rounded once from
the exact values), ``to_cartesian``, ``from_cartesian``, the generic ``SelfMixHead`` (the code of
every module of ``tsym/compiler/head/``, see :func:`pasted_modules`; their docstrings, imports and
``__all__`` left out) and a head class
``<CamelCaseName>Head(irreps_in, ...)``: one template (:data:`_TEMPLATE`) filled in by
:func:`emit_module`.  The output is byte-identical for the same spec.

The basis is stored compactly as its values on the orbit representatives plus, for every index
tuple, its orbit and sign; ``CHANGE_OF_BASIS`` is expanded once at import.
"""
from __future__ import annotations

import ast
import re
import string
import sys
from importlib import metadata, resources
from pathlib import Path

import numpy as np

from .plan import HeadPlan

__all__ = ["emit_module", "write_modules", "class_name"]

#: tsym's version, from the installed package (pyproject.toml is the one place it is written).
TSYM_VERSION = metadata.version("tsym")


def class_name(name: str) -> str:
    """``elastic_stiffness`` -> ``ElasticStiffnessHead``."""
    parts = [p for p in re.split(r"_+", name) if p]
    camel = "".join(p[:1].upper() + p[1:] for p in parts) or "Tensor"
    if camel[0].isdigit():
        camel = "T" + camel
    return camel + "Head"


#: The folder of the package whose every module emit pastes (``compiler/head/``, the standalone
#: torch head), read as package data: importing the package would import torch.
HEAD_FOLDER = "head"


def pasted_modules() -> list[str]:
    """The file names of :data:`HEAD_FOLDER` but its ``__init__``, each after the ones it imports
    (relatively); the modules import nothing else of tsym but ``TsymError``, which the emitted
    module defines itself (:data:`_ERROR_ROOT`)."""
    folder = resources.files("tsym.compiler").joinpath(HEAD_FOLDER)
    needs: dict[str, set[str]] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".py") and entry.name != "__init__.py":
            tree = ast.parse(entry.read_text(encoding="utf-8"))
            needs[entry.name] = {f"{node.module}.py" for node in tree.body
                                 if isinstance(node, ast.ImportFrom) and node.level == 1}
    order: list[str] = []
    while len(order) < len(needs):
        ready = [n for n in needs if n not in order and needs[n] <= set(order)]
        if not ready:
            raise RuntimeError(f"the modules of {HEAD_FOLDER}/ import each other in a cycle")
        order += ready
    return order


_ERROR_ROOT = '''class TsymError(Exception):
    """Root of the errors this module raises on purpose (``tsym.TsymError`` in the library)."""
'''


def _head_parts() -> tuple[str, str]:
    """The files of :func:`pasted_modules` as (one import block, their code without docstrings,
    ``__all__`` and relative imports), the code of one after the other."""
    absolute: dict[str, list[str]] = {}  # module ("" for plain imports) -> names, first seen order
    codes = []
    for filename in pasted_modules():
        text = resources.files("tsym.compiler").joinpath(HEAD_FOLDER, filename).read_text(
            encoding="utf-8")
        lines = text.splitlines()
        tree = ast.parse(text)
        dropped: set[int] = set()
        for node in tree.body:
            span = range(node.lineno - 1, node.end_lineno)
            if isinstance(node, ast.ImportFrom) and node.level:  # a pasted file, or TsymError
                if node.module == "errors":
                    codes.append(_ERROR_ROOT)
            elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
                names = absolute.setdefault(node.module, [])
                names += [a.name for a in node.names if a.name not in names]
            elif isinstance(node, ast.Import):
                absolute.setdefault("", []).extend(a.name for a in node.names)
            elif not (isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)) and not (
                    isinstance(node, ast.Expr) and node is tree.body[0]):  # not the docstring
                continue
            dropped.update(span)
        first_code = min(node.lineno - 1 for node in tree.body if not any(
            k in dropped for k in range(node.lineno - 1, node.end_lineno)))
        code = [ln for k, ln in enumerate(lines) if k >= first_code and k not in dropped]
        codes.append("\n".join(code).strip() + "\n")
    plain = sorted(set(absolute.pop("", [])))
    stdlib = [f"import {m}" for m in plain if m in sys.stdlib_module_names] + [
        f"from {m} import {', '.join(sorted(n))}" for m, n in sorted(absolute.items())
        if m.split(".")[0] in sys.stdlib_module_names]
    others = [f"import {m}" for m in plain if m not in sys.stdlib_module_names] + [
        f"from {m} import {', '.join(sorted(n))}" for m, n in sorted(absolute.items())
        if m.split(".")[0] not in sys.stdlib_module_names]
    return "\n".join(stdlib) + "\n\n" + "\n".join(others), "\n\n".join(codes)


def _floats(values: np.ndarray) -> str:
    rows = []
    for row in values:
        rows.append("    [" + ", ".join(repr(float(v)) for v in row) + "],")
    return "[\n" + "\n".join(rows) + "\n]"


def _ints(values: np.ndarray, per_line: int = 40) -> str:
    vals = [str(int(v)) for v in values]
    lines = [", ".join(vals[i : i + per_line]) for i in range(0, len(vals), per_line)]
    return "[\n    " + ",\n    ".join(lines) + ",\n]"


_TEMPLATE = string.Template('''$header
"""tsym head for tensor $name_repr: irreps $irreps, $num_components components.

Needs only torch and e3nn.  ``$cls(irreps_in)`` maps node features (e3nn irreps ``irreps_in``)
to the Cartesian tensor ``[n, $shape]`` ($level level, pool $pool).  ``SelfMixHead`` below is
the generic head of tsym (``tsym/compiler/head/``), the same code as in the library;
it raises ``HeadInputError`` (a ``ValueError``) when called with inputs that do not fit it.
"""
$imports

__all__ = ["$cls", "SelfMixHead", "IRREPS", "SPEC", "CHANGE_OF_BASIS", "to_cartesian", "from_cartesian"]

TSYM_VERSION = $version_repr
SPEC = $source_repr
SPEC_HASH = $hash_repr
NAME = $name_repr
INDICES = $indices_repr
ORDER = $order
IRREPS = $irreps_repr
PARITY = $parity_repr
LEVEL = $level_repr
POOL = $pool_repr
UNITS = $units_repr
# Physics the head enforces: the atom tensors of a structure sum to zero (SUM_RULE); a positive
# tensor T = L L^T + FLOOR I from a factor L with irreps FACTOR_IRREPS and change of basis
# FACTOR_BASIS [factor dim, 3^n] (float64, rounded once from exact values); None otherwise.
SUM_RULE = $sum_rule_repr
FACTOR_IRREPS = $factor_irreps_repr
FLOOR = $floor_repr
_FACTOR_VALUES = $factor_values
FACTOR_BASIS = None if _FACTOR_VALUES is None else torch.tensor(_FACTOR_VALUES, dtype=torch.float64)

# Change of basis: Q[r, t] = SIGN_OF[t] * VALUES[r][ORBIT_OF[t]] (0 where ORBIT_OF[t] < 0), t the
# row-major index of the Cartesian component; values rounded once from exact algebraic numbers.
_VALUES_F64 = $values_f64
_VALUES_F32 = $values_f32
_ORBIT_OF = $orbit_of
_SIGN_OF = $sign_of


def _expand(values: List[List[float]], dtype: torch.dtype) -> torch.Tensor:
    vals = torch.tensor(values, dtype=torch.float64)  # [dim, n_orbits]
    orbit = torch.tensor(_ORBIT_OF, dtype=torch.long)  # [3^n]
    sign = torch.tensor(_SIGN_OF, dtype=torch.float64)  # [3^n]
    q = vals[:, orbit.clamp(min=0)] * sign  # [dim, 3^n]; sign is 0 on zero orbits
    return q.to(dtype).reshape([len(values)] + [3] * ORDER)


CHANGE_OF_BASIS = _expand(_VALUES_F64, torch.float64)  # [irreps.dim, 3, ..., 3]
CHANGE_OF_BASIS_F32 = _expand(_VALUES_F32, torch.float32)


def to_cartesian(x: torch.Tensor) -> torch.Tensor:
    """[..., irreps.dim] -> [..., 3, ..., 3]."""
    q = (CHANGE_OF_BASIS_F32 if x.dtype == torch.float32 else CHANGE_OF_BASIS).to(x.device, x.dtype)
    return (x @ q.reshape(q.shape[0], -1)).reshape(x.shape[:-1] + (3,) * ORDER)


def from_cartesian(t: torch.Tensor) -> torch.Tensor:
    """[..., 3, ..., 3] -> [..., irreps.dim] (coordinates of the symmetric part)."""
    q = (CHANGE_OF_BASIS_F32 if t.dtype == torch.float32 else CHANGE_OF_BASIS).to(t.device, t.dtype)
    flat = t.reshape(t.shape[: t.dim() - ORDER] + (-1,))
    return flat @ q.reshape(q.shape[0], -1).T


# ---- the generic node-wise self-mix head (the modules of tsym/compiler/head/) ----

$head_code

class $cls(SelfMixHead):
    """Node-wise self-mix head for $name_repr ($irreps); see ``SelfMixHead``."""

    def __init__(self, irreps_in, hidden_mul: int = 16, mlp_hidden: int = 32, skip: bool = True):
        super().__init__(irreps_in, IRREPS, CHANGE_OF_BASIS, level=LEVEL, pool=POOL,
                         hidden_mul=hidden_mul, mlp_hidden=mlp_hidden, skip=skip,
                         sum_rule=SUM_RULE, factor_irreps=FACTOR_IRREPS, factor_basis=FACTOR_BASIS,
                         floor=FLOOR)
''')


def emit_module(plan: HeadPlan) -> str:
    """The source text of the standalone module for ``plan``."""
    exact = plan._exact
    if exact is None:
        raise ValueError("the plan has no exact basis to emit")
    header = "\n".join(
        [f"# Generated by tsym {TSYM_VERSION} from the spec below. Do not edit; recompile instead.",
         f"# spec sha256: {plan.spec_hash}", "#"]
        + ["# " + ln if ln else "#" for ln in plan.source.splitlines()])
    imports, head_code = _head_parts()
    factor = plan.factor_basis_array  # numpy: emitting needs no torch
    return _TEMPLATE.substitute(
        sum_rule_repr=repr(plan.sum_rule == "zero"),
        factor_irreps_repr=repr(plan.factor_irreps), floor_repr=repr(float(plan.floor)),
        factor_values="None" if factor is None else _floats(factor.reshape(factor.shape[0], -1)),
        header=header, cls=class_name(plan.name), imports=imports, head_code=head_code,
        shape=", ".join(["3"] * plan.order), num_components=plan.num_components,
        irreps=plan.irreps, level=plan.level, pool=plan.pool, order=plan.order,
        version_repr=repr(TSYM_VERSION), source_repr=repr(plan.source),
        hash_repr=repr(plan.spec_hash), name_repr=repr(plan.name),
        indices_repr=repr(plan.indices), irreps_repr=repr(plan.irreps),
        parity_repr=repr(plan.parity), level_repr=repr(plan.level), pool_repr=repr(plan.pool),
        units_repr=repr(plan.units), values_f64=_floats(exact.orbit_values(53)),
        values_f32=_floats(exact.orbit_values(24)), orbit_of=_ints(exact.orbits.orbit_of),
        sign_of=_ints(exact.orbits.sign_of))


def write_modules(plans: list[HeadPlan], outdir: str | Path) -> list[Path]:
    """Write one ``<name>.py`` per plan into ``outdir`` (created if needed)."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for plan in plans:
        path = out / f"{plan.name}.py"
        path.write_text(emit_module(plan), encoding="utf-8")
        paths.append(path)
    return paths
