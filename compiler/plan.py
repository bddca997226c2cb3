"""``HeadPlan``: the one contract between the compiler and the runtime.

``compile_spec(spec)`` runs the pipeline for one validated :class:`TensorSpec`:
symmetry group -> orbits of index tuples -> multiplicities (counting) -> exact change of basis.

>>> from tsym.compiler.parse import parse_text
>>> plan = compile_spec(parse_text("tensor alpha { indices ij; symmetry ij = ji }")[0])
>>> plan.irreps, plan.num_components
('1x0e+1x2e', 6)
"""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from .basis import ExactBasis, exact_basis
from .decompose import irrep_parity, irreps_string, multiplicities
from .errors import SlowBasisWarning, SpecTooLargeError, ZeroTensorError
from .positive import factor_symmetries
from .relations import check_relations, warn_redundant
from .spec import SymmetryEquation, TensorSpec
from .symmetry import SignedPermutationGroup, generators_from_terms

if TYPE_CHECKING:
    import torch

__all__ = ["HeadPlan", "compile_spec", "MAX_ORDER", "POSITIVE_FLOOR", "max_basis_bytes",
           "max_basis_seconds", "estimate_basis_seconds", "SLOW_BASIS_SECONDS"]

#: ``floor`` of a ``positive definite`` head: ``T = L L^T + floor I``.
POSITIVE_FLOOR = 1e-3

#: Orders above this are refused outright: the 3^n Cartesian components alone are too many.
MAX_ORDER = 12
#: Seconds of exact basis work per cubed number of independent components ``d``: the exact null
#: spaces and ladders cost ~``d^3`` rational operations.  Measured (``exact_basis`` alone, one
#: thread of a shared 2-core Xeon VM under load ~5): d = 81, 162, 243, 324, 486, 729 took 0.21,
#: 2.0, 2.5, 7.8, 43 and 125 s, i.e. ``(1.7 .. 4.7) x 1e-7 d^3``; the largest constant is used, so
#: the estimate errs high (d = 729 took 26 s on a quiet machine, 134 s on an AMD EPYC).
SECONDS_PER_COMPONENT_CUBED = 4.7e-7
#: An estimate above this many seconds is announced (:class:`SlowBasisWarning`) before the work.
SLOW_BASIS_SECONDS = 10.0


def _human(nbytes: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{int(nbytes)} bytes"


def max_basis_bytes() -> int:
    """Memory allowed for one change of basis (float64 + float32), ``TSYM_MAX_BASIS_BYTES`` or 2 GiB."""
    return int(os.environ.get("TSYM_MAX_BASIS_BYTES", 2 * 1024**3))


def max_basis_seconds() -> float:
    """Estimated seconds allowed for one exact basis, ``TSYM_MAX_BASIS_SECONDS`` or 600 (10 min)."""
    return float(os.environ.get("TSYM_MAX_BASIS_SECONDS", 600.0))


def estimate_basis_seconds(num_components: int) -> float:
    """Rough time to derive the exact basis of ``num_components`` independent components.

    >>> round(estimate_basis_seconds(3**6)), round(estimate_basis_seconds(3**7) / 60)
    (182, 82)
    """
    return SECONDS_PER_COMPONENT_CUBED * float(num_components) ** 3


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} second{'s' if round(seconds) != 1 else ''}"
    if seconds < 7200:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.0f} hours"


def _check_cost(spec: TensorSpec, dim: int) -> None:
    """Refuse (above :func:`max_basis_seconds`) or announce (above 10 s) a slow exact basis."""
    seconds = estimate_basis_seconds(dim)
    if seconds <= SLOW_BASIS_SECONDS:
        return
    what = (f"the exact change of basis of tensor '{spec.name}' would take about "
            f"{_duration(seconds)} to derive ({dim:,} independent components; the cost grows "
            f"as their cube)")
    if seconds > max_basis_seconds():
        raise SpecTooLargeError(
            spec.loc, f"{what}; the limit is {_duration(max_basis_seconds())}",
            hint="add the symmetries the tensor has (each index-pair symmetry such as "
                 f"'{spec.indices} = {spec.indices[1]}{spec.indices[0]}{spec.indices[2:]}' "
                 "about halves the components, i.e. ~8x less time), or raise "
                 "TSYM_MAX_BASIS_SECONDS (seconds)")
    warnings.warn(f"{spec.loc.prefix()} {what}", SlowBasisWarning, stacklevel=3)


@dataclass(frozen=True, eq=False)
class HeadPlan:
    """Everything the runtime knows about one tensor spec.

    Attributes
    ----------
    name, indices, level, pool, units, parity
        From the spec.
    irreps : str
        e3nn Irreps string of the tensor, sorted by l (one parity), e.g. ``"2x0e+2x2e+1x4e"``.
    change_of_basis : torch.Tensor
        ``[irreps.dim, 3, ..., 3]`` float64; rows orthonormal; ``Q^T Q`` projects onto the
        allowed tensors.  ``change_of_basis_f32`` is the same, rounded once from the exact values.
        Both are made from ``basis_array`` / ``basis_array_f32`` (the same values as numpy arrays,
        what the compiler itself uses) on first access, so compiling needs no torch.
    source, spec_hash
        Canonical source of the spec block and its SHA-256 (checkpoints rebuild plans from it).
    group_order : int
        Order of the signed permutation group of the symmetry equations.
    basis_origin : str
        ``"exact"``: Q is rounded from exact algebraic numbers (see ``exact_change_of_basis``).
    relations : tuple of str
        The spec's relations in canonical text (``"ijk + jki + kij = 0"``).
    sum_rule : str or None
        ``"zero"``: the head makes the atom tensors of each structure add up to zero.
    positive : str or None
        ``"definite"`` / ``"semidefinite"``: the head builds ``T = L L^T (+ floor I)`` from a
        general factor ``L`` with irreps ``factor_irreps`` and change of basis ``factor_basis``
        (``[factor dim, 3, ..., 3]`` float64, the rows of a rank-2 ``L_ij`` or of a rank-4
        ``L_ijkl = L_jikl = L_ijlk``).
    warnings : tuple of str
        Located notes on clauses that change nothing (e.g. redundant relations).
    """

    name: str
    indices: str
    irreps: str
    level: str
    pool: str
    units: str | None
    parity: str
    basis_array: np.ndarray = field(repr=False)  # [dim, 3, ..., 3] float64
    basis_array_f32: np.ndarray = field(repr=False)  # [dim, 3, ..., 3] float32
    source: str = field(repr=False)
    spec_hash: str = field(repr=False)
    group_order: int = field(repr=False)
    basis_origin: str = "exact"
    spec: TensorSpec | None = field(default=None, repr=False)
    _exact: ExactBasis | None = field(default=None, repr=False)
    relations: tuple[str, ...] = ()
    sum_rule: str | None = None
    positive: str | None = None
    factor_irreps: str | None = None
    factor_basis_array: np.ndarray | None = field(default=None, repr=False)  # [dim, 3, ..., 3]
    warnings: tuple[str, ...] = field(default=(), repr=False)

    # torch loads only here, when a head or the runtime first asks for a tensor: the compiler
    # and its command line (inspect, compile, table) run without it.
    @cached_property
    def change_of_basis(self) -> torch.Tensor:
        """``basis_array`` as a float64 ``torch.Tensor`` (``[irreps.dim, 3, ..., 3]``)."""
        import torch
        return torch.from_numpy(self.basis_array)

    @cached_property
    def change_of_basis_f32(self) -> torch.Tensor:
        """``basis_array_f32`` as a float32 ``torch.Tensor``."""
        import torch
        return torch.from_numpy(self.basis_array_f32)

    @cached_property
    def factor_basis(self) -> torch.Tensor | None:
        """``factor_basis_array`` as a float64 ``torch.Tensor`` (``None`` without positivity)."""
        if self.factor_basis_array is None:
            return None
        import torch
        return torch.from_numpy(self.factor_basis_array)

    def head_options(self) -> dict:
        """The keyword arguments of the head classes that enforce the sum rule and positivity.

        ``floor`` is :data:`POSITIVE_FLOOR` for ``positive definite`` (in the head's output
        units: the normalised units during training, where a unit is the labels' RMS).
        """
        opts: dict = {}
        if self.sum_rule == "zero":
            opts["sum_rule"] = True
        if self.positive is not None:
            opts["factor_irreps"] = self.factor_irreps
            opts["factor_basis"] = self.factor_basis
            opts["floor"] = self.floor
        return opts

    @property
    def floor(self) -> float:
        """The head's ``floor``: :data:`POSITIVE_FLOOR` for ``positive definite``, else 0."""
        return POSITIVE_FLOOR if self.positive == "definite" else 0.0

    @property
    def order(self) -> int:
        return len(self.indices)

    @property
    def num_components(self) -> int:
        """Number of independent components (= ``irreps.dim``)."""
        return int(self.basis_array.shape[0])

    @property
    def axial(self) -> bool:
        return self.parity == "axial"

    @cached_property
    def exact_change_of_basis(self):
        """The exact Q as a sympy ``ImmutableDenseNDimArray`` (built on first access)."""
        if self._exact is None:
            raise AttributeError("this plan has no exact basis")
        return self._exact.sympy_array()

    def _q(self, like: torch.Tensor) -> torch.Tensor:
        f32 = self.change_of_basis_f32
        q = f32 if like.dtype == f32.dtype else self.change_of_basis
        return q.to(device=like.device, dtype=like.dtype)

    def to_cartesian(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., irreps.dim] -> [..., 3, ..., 3]`` (differentiable, any leading dims)."""
        q = self._q(x)
        out = x @ q.reshape(q.shape[0], -1)  # [..., 3^n]
        return out.reshape(x.shape[:-1] + (3,) * self.order)

    def from_cartesian(self, t: torch.Tensor) -> torch.Tensor:
        """``[..., 3, ..., 3] -> [..., irreps.dim]``: the coordinates of the symmetric part of ``t``."""
        q = self._q(t)
        n = self.order
        if tuple(t.shape[t.dim() - n:]) != (3,) * n:
            raise ValueError(f"expected a tensor [..., {', '.join(['3'] * n)}], got {tuple(t.shape)}")
        flat = t.reshape(t.shape[: t.dim() - n] + (-1,))  # [..., 3^n]
        return flat @ q.reshape(q.shape[0], -1).T

    def to_dict(self) -> dict:
        """JSON-ready summary (``tsym inspect --json``)."""
        return {
            "name": self.name,
            "indices": self.indices,
            "order": self.order,
            "parity": self.parity,
            "level": self.level,
            "pool": self.pool,
            "units": self.units,
            "irreps": self.irreps,
            "num_components": self.num_components,
            "group_order": self.group_order,
            "basis_origin": self.basis_origin,
            "relations": list(self.relations),
            "sum_rule": self.sum_rule,
            "positive": self.positive,
            "factor_irreps": self.factor_irreps,
            "warnings": list(self.warnings),
            "spec_hash": self.spec_hash,
        }


def _equation_generators(spec: TensorSpec, eq) -> list:
    return generators_from_terms(spec.indices, [(t.sign, t.letters) for t in eq.terms])


def _group(spec: TensorSpec) -> SignedPermutationGroup:
    gens = [g for eq in spec.symmetries for g in _equation_generators(spec, eq)]
    return SignedPermutationGroup(len(spec.indices), gens)


def _zero_error(spec: TensorSpec) -> ZeroTensorError:
    # find the first equation after which -1 is in the group, to point at it
    gens = []
    for eq in spec.symmetries:
        gens += _equation_generators(spec, eq)
        if SignedPermutationGroup(len(spec.indices), gens).contains_minus_identity:
            return ZeroTensorError(
                eq.terms[0].loc if eq.terms[0].loc.line else eq.loc,
                f"the symmetries of tensor '{spec.name}' leave only the zero tensor: together they "
                f"imply T_{spec.indices} = -T_{spec.indices}",
                hint="check the signs: a term may appear once with '+' and once with '-' "
                "(e.g. 'ij = ji' and 'ij = -ji'); drop the conflicting equation or sign",
            )
    loc = spec.symmetries[0].loc if spec.symmetries else spec.loc
    return ZeroTensorError(
        loc,
        f"the symmetries of tensor '{spec.name}' force every component to zero",
        hint="relax the symmetry equations (check their signs)",
    )


def compile_spec(spec: TensorSpec) -> HeadPlan:
    """Compile one validated spec into a :class:`HeadPlan` (exact basis, float64/float32 Q)."""
    n = spec.order
    if n > MAX_ORDER:
        raise SpecTooLargeError(
            spec.loc,
            f"tensor '{spec.name}' has order {n}: its 3^{n} = {3**n:,} Cartesian components "
            f"(a dense tensor of {_human(3**n * 8)} in float64, and a change of basis of up to "
            f"{_human(9**n * 8)}) are beyond what tsym builds (order <= {MAX_ORDER})",
            hint=f"use at most {MAX_ORDER} indices",
        )
    group = _group(spec)
    orbits = group.orbits()
    if orbits.dim == 0:
        raise _zero_error(spec)
    pairs = [(spec.indices.index(p.letters[0]), spec.indices.index(p.letters[1])) for p in spec.traceless]
    size = orbits.dim * 3**n * (8 + 4)  # upper bound: traces only lower the dimension
    if size > max_basis_bytes():
        raise SpecTooLargeError(
            spec.loc,
            f"the change of basis of tensor '{spec.name}' would need {_human(size)} "
            f"({orbits.dim:,} independent components x 3^{n} = {3**n:,} Cartesian entries, "
            f"float64 + float32); the limit is {_human(max_basis_bytes())}",
            hint="add the symmetries the tensor has, or raise TSYM_MAX_BASIS_BYTES",
        )
    _check_cost(spec, orbits.dim)
    relations = check_relations(spec, orbits, pairs)
    warn_redundant(relations)
    mults = multiplicities(orbits, pairs, relations.rows, relations.weights)
    if not mults:
        loc = spec.traceless[0].loc if spec.traceless else spec.loc
        raise ZeroTensorError(
            loc,
            f"the trace conditions of tensor '{spec.name}' leave only the zero tensor",
            hint="remove a traceless clause",
        )
    parity = irrep_parity(n, spec.parity == "axial")
    exact = exact_basis(orbits, pairs, mults, relations.rows)
    q64 = exact.dense(np.float64)  # [dim, 3, ..., 3]
    q32 = exact.dense(np.float32)
    source = spec.to_source()
    return HeadPlan(
        name=spec.name,
        indices=spec.indices,
        irreps=irreps_string(mults, parity),
        level=spec.level,
        pool=spec.pool,
        units=spec.units,
        parity=spec.parity,
        basis_array=q64,
        basis_array_f32=q32,
        source=source,
        spec_hash=hashlib.sha256(source.encode()).hexdigest(),
        group_order=group.order,
        basis_origin="exact",
        spec=spec,
        _exact=exact,
        relations=tuple(r.to_source() for r in spec.relations),
        sum_rule=spec.sum_rule.value if spec.sum_rule else None,
        **_positive_fields(spec),
        warnings=relations.warnings,
    )


def _positive_fields(spec: TensorSpec) -> dict:
    if spec.positive is None:
        return {}
    equations = tuple(SymmetryEquation.of(*(t.strip() for t in eq.split("=")))
                      for eq in factor_symmetries(spec.indices))
    factor = compile_spec(TensorSpec(f"{spec.name}_factor", spec.indices, equations))
    return {
        "positive": spec.positive.value,
        "factor_irreps": factor.irreps,
        "factor_basis_array": factor.basis_array,
    }
