"""``positive definite``: which tensors it applies to, and the factor ``L`` of ``T = L L^T``.

A symmetric rank-2 tensor ``T_ij`` is a symmetric 3x3 matrix; a rank-4 tensor with
``ijkl = jikl = ijlk = klij`` (elastic type) is a symmetric 6x6 matrix in the Mandel basis of
symmetric index pairs.  In both cases the head builds ``T = L L^T + floor I`` from a general
(not symmetric) factor:

- rank 2: ``T_ij = sum_m L_im L_jm`` with ``L_ij`` a general rank-2 tensor (``0e+1e+2e``);
- rank 4: ``T_ijkl = sum_mn L_ijmn L_klmn`` with ``L_ijmn = L_jimn = L_ijnm`` (36 components,
  ``2x0e+1e+3x2e+3e+4e``): a general 6x6 matrix in the Mandel basis, and the sum over all nine
  ``(m, n)`` is the Mandel inner product of the symmetric pair, so ``T`` in the Mandel basis is
  ``L_M L_M^T``.

``L`` transforms as a tensor, so ``L L^T`` does too (equivariant), and it is positive semidefinite
for every ``L``; the identity (``delta_ik delta_jl`` symmetrised for rank 4) is O(3)-invariant.  A
polar even-rank tensor is even under inversion, and so is ``L``: the construction is O(3)- not
only SO(3)-equivariant.  It has no meaning for an axial tensor (a pseudo-tensor changes sign
under inversion, a positive matrix cannot), an odd rank, an antisymmetric tensor, trace
conditions (a positive matrix has a positive trace) or relations (``L L^T`` would not obey them).
"""
from __future__ import annotations

from .errors import ConstraintError
from .symmetry import SignedPermutationGroup, generators_from_terms

__all__ = ["check_positive", "factor_symmetries", "POSITIVE_GROUPS"]

#: The signed permutation groups (as generator terms) ``positive`` accepts, by rank.
POSITIVE_GROUPS = {2: ("ij = ji",), 4: ("ijkl = jikl = ijlk = klij",)}
_FACTOR_SYMMETRY = {2: (), 4: ("ijkl = jikl = ijlk",)}


def _elements(n: int, equations) -> set:
    """The group of equations given as lists of ``(sign, letters)`` terms."""
    gens = []
    for terms in equations:
        gens += generators_from_terms(terms[0][1], terms)
    return set(SignedPermutationGroup(n, gens).elements())


def _canonical(indices: str, texts) -> list[list[tuple[int, str]]]:
    """Equations written on ``ijkl`` renamed to the spec's letters, as ``(sign, letters)`` terms."""
    table = str.maketrans("ijkl"[: len(indices)], indices)
    return [[(1, t.strip().translate(table)) for t in text.split("=")] for text in texts]


def _source(terms) -> str:
    return " = ".join(letters for _, letters in terms)


def check_positive(spec) -> None:
    """Raise :class:`ConstraintError` (at the ``positive`` clause) where positivity has no meaning."""
    loc = spec.positive.loc
    n = spec.order
    what = f"'positive {spec.positive.value}' on tensor '{spec.name}'"
    if n % 2:
        raise ConstraintError(loc, f"{what}: a tensor of odd rank {n} is not a matrix, so it has no sign",
                              "remove the positive clause (it applies to rank 2 and rank 4 tensors)")
    if n not in POSITIVE_GROUPS:
        raise ConstraintError(loc, f"{what}: tsym builds positive tensors of rank 2 and 4, not {n}",
                              "remove the positive clause")
    if spec.parity == "axial":
        raise ConstraintError(loc, f"{what}: an axial tensor changes sign under inversion, a positive "
                              "matrix cannot", "remove 'parity axial' or the positive clause")
    if spec.traceless:
        raise ConstraintError(loc, f"{what}: a positive matrix has a positive trace, and this tensor is "
                              "traceless", "remove the traceless clause or the positive clause")
    if spec.relations:
        raise ConstraintError(loc, f"{what}: L L^T does not obey the relations of the tensor",
                              "remove the relation clauses or the positive clause")
    want = _canonical(spec.indices, POSITIVE_GROUPS[n])
    have = _elements(n, [[(t.sign, t.letters) for t in eq.terms] for eq in spec.symmetries])
    if have == _elements(n, want):
        return
    if any(sign < 0 for _, sign in have):
        raise ConstraintError(loc, f"{what}: an antisymmetric tensor has no sign (x^T A x = 0)",
                              f"positive needs exactly 'symmetry {_source(want[0])}'")
    kind = "symmetric" if n == 2 else "of elastic type (a symmetric 6x6 Mandel matrix)"
    raise ConstraintError(loc, f"{what}: the tensor must be {kind}, with exactly the symmetry "
                          f"'{_source(want[0])}'", f"write 'symmetry {_source(want[0])}'")


def factor_symmetries(indices: str) -> list[str]:
    """The symmetry equations of the general factor ``L`` of ``T = L L^T`` on ``indices``."""
    return [_source(terms) for terms in _canonical(indices, _FACTOR_SYMMETRY[len(indices)])]
