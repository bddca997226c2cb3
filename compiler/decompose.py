"""O(3) irreps multiplicities of a symmetric (and possibly traceless) tensor space, by counting.

The tensors of a spec form ``V = {T : g T = T for g in G, tr_pq T = 0 for the traceless pairs}``.
Every irrep of V has the same parity, ``(-1)^n`` for polar tensors and ``(-1)^(n+1)`` for axial
ones.  The SO(3) content follows from the weights (the character on rotations about one axis):
in the complex basis ``b_-1 = x - iy, b_0 = z, b_+1 = x + iy`` of every slot, a basis tuple has
weight ``sum(a_k)`` and the group of signed slot permutations acts on those tuples exactly as on
Cartesian ones, so ``dim V_w`` is the number of non-zero orbits of weight ``w`` minus the rank of
the trace conditions on them (the metric pairs ``(-1, +1)``, ``(+1, -1)`` and ``(0, 0)``).  Then
``mult(l) = dim V_l - dim V_(l+1)``.  Exact integers: no numerical rank, no group enumeration.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._rational import column_rank, dm
from .symmetry import Orbits, digits

__all__ = ["weight_dimensions", "multiplicities", "irreps_string", "trace_rows", "irrep_parity"]

# metrics of the trace contraction: {(a, b): coefficient} on slot values 0, 1, 2
CARTESIAN_METRIC = {(0, 0): 1, (1, 1): 1, (2, 2): 1}
WEIGHT_METRIC = {(0, 2): 1, (2, 0): 1, (1, 1): 2}  # 2 * inverse of the Gram matrix of b_-, b_0, b_+


def trace_rows(orbits: Orbits, pairs: Sequence[tuple[int, int]], metric: dict) -> tuple[np.ndarray, np.ndarray]:
    """The trace conditions as a dense integer matrix on orbit coordinates.

    Returns ``(rows, codes)``: ``rows`` ``[n_conditions, d]`` (duplicates and zero rows removed) and,
    for each row, the code of one remaining index tuple (for the weight of the row).
    """
    n = orbits.order
    d = orbits.dim
    out_rows, out_codes = [], []
    if n < 2 or not pairs:
        return np.zeros((0, d), dtype=np.int64), np.zeros(0, dtype=np.int64)
    rest = digits(np.arange(3 ** (n - 2)), n - 2)  # [3^(n-2), n-2]
    powers = 3 ** np.arange(n - 1, -1, -1, dtype=np.int64)
    for p, q in pairs:
        others = [k for k in range(n) if k not in (p, q)]
        rows = np.zeros((len(rest), d), dtype=np.int64)
        for (a, b), coeff in metric.items():
            full = np.empty((len(rest), n), dtype=np.int64)
            full[:, others] = rest
            full[:, p] = a
            full[:, q] = b
            codes = full @ powers
            orb = orbits.orbit_of[codes]
            sgn = orbits.sign_of[codes].astype(np.int64)
            ok = orb >= 0
            np.add.at(rows, (np.nonzero(ok)[0], orb[ok]), coeff * sgn[ok])
        rest_codes = rest @ (3 ** np.arange(n - 3, -1, -1, dtype=np.int64)) if n > 2 else np.zeros(1, np.int64)
        out_rows.append(rows)
        out_codes.append(np.asarray(rest_codes, dtype=np.int64).reshape(-1))
    rows = np.concatenate(out_rows)
    codes = np.concatenate(out_codes)
    nonzero = np.any(rows != 0, axis=1)
    rows, codes = rows[nonzero], codes[nonzero]
    if len(rows):
        rows, first = np.unique(rows, axis=0, return_index=True)
        codes = codes[first]
    return rows, codes


def _weights(codes: np.ndarray, n: int) -> np.ndarray:
    if n == 0:
        return np.zeros(len(codes), dtype=np.int64)
    return digits(codes, n).sum(axis=1) - n


def weight_dimensions(orbits: Orbits, pairs: Sequence[tuple[int, int]] = (),
                      extra_rows: np.ndarray | None = None,
                      extra_weights: np.ndarray | None = None) -> dict[int, int]:
    """``{w: dim V_w}`` for ``w >= 0`` (weights with respect to one rotation axis).

    ``extra_rows`` ``[m, d]`` (with the weight of each row in ``extra_weights``) are further
    conditions that are the same matrix in every per-slot basis: the relations of
    :mod:`tsym.compiler.relations`.
    """
    n = orbits.order
    w_orbit = _weights(orbits.reps, n)  # [d]
    rows, codes = trace_rows(orbits, pairs, WEIGHT_METRIC)
    w_rows = _weights(codes, n - 2) if len(rows) else np.zeros(0, dtype=np.int64)
    if extra_rows is not None and len(extra_rows):
        rows = np.concatenate([rows, extra_rows])
        w_rows = np.concatenate([w_rows, extra_weights])
    dims = {}
    for w in range(0, n + 1):
        cols = np.nonzero(w_orbit == w)[0]
        count = len(cols)
        sel = rows[w_rows == w][:, cols] if len(rows) else np.zeros((0, count), dtype=np.int64)
        sel = sel[np.any(sel != 0, axis=1)] if len(sel) else sel
        rank = column_rank(dm(sel.tolist(), sel.shape)) if len(sel) and count else 0
        dims[w] = count - rank
    return dims


def multiplicities(orbits: Orbits, pairs: Sequence[tuple[int, int]] = (),
                   extra_rows: np.ndarray | None = None,
                   extra_weights: np.ndarray | None = None) -> dict[int, int]:
    """``{l: multiplicity}`` of the SO(3) irreps (only the non-zero ones)."""
    dims = weight_dimensions(orbits, pairs, extra_rows, extra_weights)
    n = orbits.order
    mults = {}
    for l in range(0, n + 1):
        m = dims.get(l, 0) - dims.get(l + 1, 0)
        if m < 0:  # impossible for a representation; guards against a broken invariant
            raise RuntimeError(f"negative multiplicity for l={l}: {dims}")
        if m:
            mults[l] = m
    return mults


def irrep_parity(order: int, axial: bool) -> int:
    """Parity of every irrep of a rank-``order`` tensor: ``(-1)^n``, times -1 if axial."""
    return (-1) ** (order + (1 if axial else 0))


def irreps_string(mults: dict[int, int], parity: int) -> str:
    """e3nn Irreps string sorted by l, e.g. ``"2x0e+2x2e+1x4e"``."""
    p = "e" if parity == 1 else "o"
    return "+".join(f"{m}x{l}{p}" for l, m in sorted(mults.items()))
