"""Linear relations among index permutations, as exact conditions on orbit coordinates.

A relation ``sum_k c_k T_{L_k} = 0`` (each ``L_k`` a permutation of the indices) is the linear map
``R = sum_k c_k P_k`` with ``(P_k T)[t] = T[t o p_k]``, ``p_k[m]`` the position in ``indices`` of
the letter ``L_k[m]``.  Slot permutations commute with ``R^{(x)n}`` for every 3x3 matrix ``R``
(rotations and reflections act the same way on every slot), so ``ker R`` is O(3)-invariant and so
is its intersection with the symmetric (and traceless) space: the allowed tensors stay a
representation, and the compiler only has to cut it down.

For the same reason the rows of ``R`` are the same integer matrix in every per-slot basis (the
Cartesian one of :mod:`basis`, the weight basis of :mod:`decompose`), and a row for the tuple
``t`` has the weight of ``t``.  On orbit coordinates (``T[t] = sign_of[t] c[orbit_of[t]]``) the
row for ``t`` is ``sum_k c_k sign_of[t o p_k] e_{orbit_of[t o p_k]}``; all ``3^n`` rows are
built, then duplicates and zero rows dropped.

>>> from tsym.compiler.parse import parse_text
>>> from tsym.compiler.symmetry import SignedPermutationGroup
>>> spec = parse_text("tensor t { indices ij; relation ij + ji = 0 }")[0]
>>> orbits = SignedPermutationGroup(2).orbits()
>>> check = check_relations(spec, orbits, [])
>>> check.rows.shape, check.redundant  # T_ij + T_ji = 0: 6 distinct conditions, none redundant
((6, 9), ())
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ._rational import dm, eye, nullspace
from .decompose import CARTESIAN_METRIC, trace_rows
from .errors import SpecTooLargeError, SpecWarning, ZeroTensorError
from .spec import Relation, TensorSpec
from .symmetry import Orbits, digits

__all__ = ["RelationCheck", "relation_rows", "check_relations", "MAX_RELATION_ENTRIES"]

#: Refuse relations whose dense condition matrix (3^n rows x orbit coordinates) is larger.
MAX_RELATION_ENTRIES = 50_000_000


@dataclass(frozen=True)
class RelationCheck:
    """The relations of a spec as exact integer conditions on orbit coordinates.

    ``rows`` ``[m, d]`` int64 (each relation scaled to integers, duplicates dropped), ``weights``
    ``[m]`` the weight of each row, ``redundant`` the relations the symmetries, trace conditions
    and earlier relations already imply, and ``warnings`` one located message for each.
    """

    rows: np.ndarray
    weights: np.ndarray
    redundant: tuple[Relation, ...]
    warnings: tuple[str, ...]


def relation_rows(orbits: Orbits, indices: str, relation: Relation) -> tuple[np.ndarray, np.ndarray]:
    """``(rows [m, d] int64, codes [m])``: the distinct non-zero conditions of one relation."""
    n, d = orbits.order, orbits.dim
    size = 3**n
    if size * d > MAX_RELATION_ENTRIES:
        raise SpecTooLargeError(
            relation.loc,
            f"a relation on this tensor would need a {size:,} x {d:,} condition matrix",
            "add symmetries to lower the number of independent components, or drop the relation",
        )
    scale = math.lcm(*(t.coeff.denominator for t in relation.terms))
    coeffs = [int(t.coeff * scale) for t in relation.terms]
    all_digits = digits(np.arange(size), n)  # [3^n, n]
    powers = 3 ** np.arange(n - 1, -1, -1, dtype=np.int64)  # [n]
    rows = np.zeros((size, d), dtype=np.int64)
    for coeff, term in zip(coeffs, relation.terms):
        perm = [indices.index(letter) for letter in term.letters]
        codes = all_digits[:, perm] @ powers  # [3^n] the tuple t o p
        orb = orbits.orbit_of[codes]
        sgn = orbits.sign_of[codes].astype(np.int64)
        ok = orb >= 0
        np.add.at(rows, (np.nonzero(ok)[0], orb[ok]), coeff * sgn[ok])
    keep = np.any(rows != 0, axis=1)
    rows, codes = rows[keep], np.arange(size)[keep]
    if len(rows):
        rows, first = np.unique(rows, axis=0, return_index=True)
        codes = codes[first]
    return rows, codes


def _weights(codes: np.ndarray, n: int) -> np.ndarray:
    return digits(codes, n).sum(axis=1) - n


def check_relations(spec: TensorSpec, orbits: Orbits, trace_pairs) -> RelationCheck:
    """Build the conditions of every relation; find redundant ones; refuse a zero tensor.

    Works exactly (rational null spaces): relation ``r`` is redundant when its rows vanish on
    the space the earlier conditions leave, and the tensor is zero when nothing is left.

    Raises
    ------
    ZeroTensorError
        At the first relation after which only the zero tensor satisfies every condition.
    """
    d, n = orbits.dim, orbits.order
    base, _ = trace_rows(orbits, trace_pairs, CARTESIAN_METRIC)
    space = nullspace(dm(base.tolist(), base.shape))[0] if len(base) else eye(d)  # [d, d']
    all_rows, all_weights, redundant, warnings = [], [], [], []
    for relation in spec.relations:
        rows, codes = relation_rows(orbits, spec.indices, relation)
        on_space = dm(rows.tolist(), rows.shape) * space if len(rows) else None  # [m, d']
        if on_space is None or on_space.is_zero_matrix:
            redundant.append(relation)
            loc = relation.loc
            caret = loc.caret()
            warnings.append(
                f"{loc.prefix()} relation '{relation.to_source()}' changes nothing: the symmetries"
                f"{', trace conditions' if trace_pairs else ''} and earlier relations of tensor "
                f"'{spec.name}' already imply it" + (f"\n{caret}" if caret else "")
                + "\nhint: remove the relation (the tensor and its irreps are the same without it)"
            )
            continue
        kernel, _ = nullspace(on_space)  # [d', d'']
        if kernel.shape[1] == 0:
            raise ZeroTensorError(
                relation.terms[0].loc if relation.terms[0].loc.line else relation.loc,
                f"relation '{relation.to_source()}' leaves only the zero tensor for tensor "
                f"'{spec.name}' (with its symmetries, trace conditions and earlier relations)",
                "check the signs and coefficients of the relation, or drop it",
            )
        space = space * kernel
        all_rows.append(rows)
        all_weights.append(_weights(codes, n))
    if all_rows:
        rows = np.concatenate(all_rows)
        weights = np.concatenate(all_weights)
    else:
        rows, weights = np.zeros((0, d), dtype=np.int64), np.zeros(0, dtype=np.int64)
    return RelationCheck(rows, weights, tuple(redundant), tuple(warnings))


def warn_redundant(check: RelationCheck) -> None:
    """Issue a :class:`SpecWarning` for each redundant relation."""
    for message in check.warnings:
        warnings.warn(message, SpecWarning, stacklevel=3)
