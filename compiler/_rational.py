"""Exact rational linear algebra on top of sympy's ``DomainMatrix`` over ``QQ``.

sympy dispatches dense ``QQ`` matrices to FLINT (python-flint) when it is installed, which makes the
row reductions here fast; the results are exact either way.
"""
from __future__ import annotations

from fractions import Fraction
from math import isqrt

from sympy import QQ
from sympy.polys.matrices import DomainMatrix

__all__ = ["dm", "zeros", "eye", "nullspace", "column_rank", "to_fraction", "sqrt_ratio_to_float"]


def dm(rows: list[list], shape: tuple[int, int] | None = None) -> DomainMatrix:
    """A dense ``QQ`` matrix from nested lists of ints/Fractions/QQ elements."""
    if shape is None:
        shape = (len(rows), len(rows[0]) if rows else 0)
    conv = [[QQ(int(x.numerator), int(x.denominator)) if isinstance(x, Fraction) else QQ(x) for x in r]
            for r in rows]
    return DomainMatrix(conv, shape, QQ).to_dense()


def zeros(r: int, c: int) -> DomainMatrix:
    return DomainMatrix.zeros((r, c), QQ).to_dense()


def eye(n: int) -> DomainMatrix:
    return DomainMatrix.eye(n, QQ).to_dense()


def nullspace(m: DomainMatrix) -> tuple[DomainMatrix, list[int]]:
    """Canonical basis of ``{x : m x = 0}`` as the COLUMNS of a ``[ncols, k]`` matrix.

    The basis comes from the reduced row echelon form: one vector per free column ``f`` (in
    increasing order), with 1 at ``f``, 0 at the other free columns.  Returns ``(basis, free)``.
    """
    nrows, ncols = m.shape
    if nrows == 0:
        return eye(ncols), list(range(ncols))
    rref, pivots = m.rref()
    pivots = list(pivots)
    free = [j for j in range(ncols) if j not in set(pivots)]
    if not free:
        return zeros(ncols, 0), []
    # rows of the rref for the pivots: x[p_r] = - sum_f R[r, f] x[f]
    sub = rref.extract(list(range(len(pivots))), free).to_list()  # [rank, k]
    basis = [[QQ(0)] * len(free) for _ in range(ncols)]
    for k, f in enumerate(free):
        basis[f][k] = QQ(1)
    for r, p in enumerate(pivots):
        for k in range(len(free)):
            basis[p][k] = -sub[r][k]
    return DomainMatrix(basis, (ncols, len(free)), QQ).to_dense(), free


def column_rank(m: DomainMatrix) -> int:
    if m.shape[0] == 0 or m.shape[1] == 0:
        return 0
    return int(m.rank())


def to_fraction(x) -> Fraction:
    return Fraction(int(x.numerator), int(x.denominator))


def _round_fraction(x: Fraction, mantissa_bits: int) -> Fraction:
    """Round a positive rational to ``mantissa_bits`` significant bits, ties to even."""
    if x == 0:
        return Fraction(0)
    e = x.numerator.bit_length() - x.denominator.bit_length()
    if Fraction(2) ** e > x:
        e -= 1
    # x in [2^e, 2^(e+1)); scale so that the integer part has mantissa_bits bits
    shift = mantissa_bits - 1 - e
    scaled = x * (Fraction(2) ** shift)
    q, r = divmod(scaled.numerator, scaled.denominator)
    twice = 2 * r
    if twice > scaled.denominator or (twice == scaled.denominator and q % 2 == 1):
        q += 1
    return Fraction(q) / (Fraction(2) ** shift)


def sqrt_ratio_to_float(c: Fraction, s: Fraction, mantissa_bits: int = 53) -> float:
    """``c / sqrt(s)`` (``s > 0``) rounded once to a float with ``mantissa_bits`` bits.

    The square root is taken on integers with 64 guard bits beyond the target precision and a
    sticky bit, so the single rounding is correct (ties cannot be mistaken).
    """
    if c == 0:
        return 0.0
    sign = -1.0 if c < 0 else 1.0
    x = (c * c) / s  # the exact square of the value
    p, q = x.numerator, x.denominator
    # sqrt(p/q) = sqrt(p q) / q ; scale by 2^(2k) for k guard bits
    k = mantissa_bits + 64 + max(0, q.bit_length() - p.bit_length())
    num = p * q << (2 * k)
    root = isqrt(num)
    exact = root * root == num
    value = Fraction(root, q << k)
    if not exact:  # sticky bit: the true value is strictly above `value` by < one guard unit
        value += Fraction(1, (q << k) * 2)
    return sign * float(_round_fraction(value, mantissa_bits))
