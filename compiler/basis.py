"""Exact change of basis from e3nn irreps to symmetric Cartesian tensors.

The construction works in the symmetric subspace (one coordinate per orbit of index tuples) with
exact rational arithmetic, so its cost grows with the number of independent components, not 3^n:

1. ``V`` = tensors with the spec's symmetry (orbit coordinates), cut by the trace conditions and
   the relations (a rational null space ``N``; both commute with O(3), so ``V`` stays a
   representation).
2. The rotation generators ``A_x, A_y, A_z`` (``(A_a)_bc = -eps_abc``) act on ``V`` as rational
   matrices ``H_a``; e3nn's generators of ``D^l`` are ``X_a`` with ``D^l(exp(t A_a)) = exp(t X_a)``.
3. For each ``l``: the *zonal* vectors of irrep copies are ``{w : H_y w = 0, C w = -l(l+1) w}``
   (``C = sum_a H_a^2``); e3nn's real basis has its ``m = 0`` component invariant about ``y``.
   Their canonical basis comes from a reduced row echelon form, then a rational Gram-Schmidt
   (full-tensor inner product) makes the copies orthogonal.
4. Each zonal vector is the ``m = 0`` column of an intertwiner ``E`` (``H_a E = E X_a``).  With a
   positive diagonal ``S`` such that ``X~_a = S^-1 X_a S`` is rational, ``E S`` solves the rational
   ladder ``H_a (E S) = (E S) X~_a`` column by column, starting from ``m = 0``.
5. Each column is normalised exactly: a row of Q is ``c / sqrt(s)`` with ``c`` rational (orbit
   coordinates with signs) and ``s`` its rational squared norm.  Floats are rounded once from that.

Row order of Q: irreps sorted by ``l`` (all share one parity); within ``l``, the copies in the
canonical order of step 3 (the reduced echelon basis of the zonal space, orbits ordered by their
smallest index tuple, lexicographically); within a copy, e3nn's component order ``m = -l..l``.
Q satisfies ``Q[m, i...] R_i1j1 ... R_injn = D(R)[m, m'] Q[m', j...]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from math import isqrt

import numpy as np
import sympy
from sympy import QQ

from ._rational import dm, eye, nullspace, sqrt_ratio_to_float, to_fraction, zeros
from .decompose import CARTESIAN_METRIC, trace_rows
from .symmetry import Orbits

__all__ = ["ExactBasis", "exact_basis", "e3nn_generators", "rational_generators"]

_LEVI = {(0, 1, 2): 1, (1, 2, 0): 1, (2, 0, 1): 1, (0, 2, 1): -1, (2, 1, 0): -1, (1, 0, 2): -1}


def _cartesian_generator(a: int) -> list[list[int]]:
    return [[-_LEVI.get((a, b, c), 0) for c in range(3)] for b in range(3)]


def e3nn_generators(l: int) -> np.ndarray:
    """e3nn 0.6's real so(3) generators of ``D^l`` (``[3, 2l+1, 2l+1]``, float64).

    Same formulas as ``e3nn.o3.so3_generators`` (su(2) generators conjugated by e3nn's real-to-complex
    change of basis), in float64; the tests compare them with e3nn.
    """
    j = l
    m = np.arange(-j, j)
    raising = np.diag(-np.sqrt(j * (j + 1) - m * (m + 1.0)), k=-1)
    m = np.arange(-j + 1, j + 1)
    lowering = np.diag(np.sqrt(j * (j + 1) - m * (m - 1.0)), k=1)
    m = np.arange(-j, j + 1)
    su2 = np.stack([0.5 * (raising + lowering), np.diag(1j * m), -0.5j * (raising - lowering)])
    q = np.zeros((2 * l + 1, 2 * l + 1), dtype=np.complex128)
    for mm in range(-l, 0):
        q[l + mm, l + abs(mm)] = 1 / 2**0.5
        q[l + mm, l - abs(mm)] = -1j / 2**0.5
    q[l, l] = 1
    for mm in range(1, l + 1):
        q[l + mm, l + abs(mm)] = (-1) ** mm / 2**0.5
        q[l + mm, l - abs(mm)] = 1j * (-1) ** mm / 2**0.5
    q = (-1j) ** l * q
    x = np.conj(q.T) @ su2 @ q
    assert np.abs(x.imag).max() < 1e-10
    return x.real


def _exact_sqrt(x: Fraction) -> Fraction:
    p, q = isqrt(x.numerator), isqrt(x.denominator)
    if p * p != x.numerator or q * q != x.denominator:
        raise ArithmeticError(f"{x} is not the square of a rational")
    return Fraction(p, q)


@lru_cache(maxsize=None)
def rational_generators(l: int) -> tuple[tuple[tuple[tuple[Fraction, ...], ...], ...], tuple[Fraction, ...]]:
    """``(X~, sigma2)``: ``X~_a = S^-1 X_a S`` rational, ``S = diag(sqrt(sigma2))`` positive.

    The entries of e3nn's generators are square roots of rationals (denominators divide 8); their
    squares are recovered exactly, and ``S`` is found by a walk over the non-zero entries.
    """
    x = e3nn_generators(l)
    dim = 2 * l + 1
    sq = np.vectorize(lambda v: Fraction(v * v).limit_denominator(64))(x)
    if np.abs(np.vectorize(float)(sq) - x * x).max() > 1e-9:
        raise ArithmeticError("unexpected e3nn generator entries")
    sigma2: list[Fraction | None] = [None] * dim
    sigma2[l] = Fraction(1)
    changed = True
    while changed:
        changed = False
        for a in range(3):
            for i, j in zip(*np.nonzero(np.abs(x[a]) > 1e-12)):
                if sigma2[j] is not None and sigma2[i] is None:
                    sigma2[i] = sigma2[j] * sq[a, i, j]
                    changed = True
                elif sigma2[i] is not None and sigma2[j] is None:
                    sigma2[j] = sigma2[i] / sq[a, i, j]
                    changed = True
    assert all(s is not None for s in sigma2)
    xt = []
    for a in range(3):
        rows = []
        for i in range(dim):
            row = []
            for j in range(dim):
                if abs(x[a, i, j]) < 1e-12:
                    row.append(Fraction(0))
                    continue
                val = _exact_sqrt(sq[a, i, j] * sigma2[j] / sigma2[i])
                row.append(val if x[a, i, j] > 0 else -val)
            rows.append(tuple(row))
        xt.append(tuple(rows))
    return tuple(xt), tuple(sigma2)  # type: ignore[return-value]


@dataclass(frozen=True)
class ExactBasis:
    """The exact change of basis: row ``r`` of Q is ``sign_of[t] * coeffs[r, orbit_of[t]] / sqrt(norms2[r])``.

    ``coeffs`` is a list of rows of Fractions in orbit coordinates; ``ls`` the ``l`` of each row.
    """

    orbits: Orbits
    coeffs: tuple[tuple[Fraction, ...], ...]
    norms2: tuple[Fraction, ...]
    ls: tuple[int, ...]

    @property
    def dim(self) -> int:
        return len(self.coeffs)

    def orbit_values(self, mantissa_bits: int = 53) -> np.ndarray:
        """``[dim, d]`` float64 values ``c / sqrt(s)`` on orbit representatives, rounded once."""
        d = self.orbits.dim
        out = np.zeros((self.dim, d), dtype=np.float64)
        cache: dict[tuple[Fraction, Fraction], float] = {}
        for r, (row, s) in enumerate(zip(self.coeffs, self.norms2)):
            for k, c in enumerate(row):
                if c:
                    key = (c, s)
                    if key not in cache:
                        cache[key] = sqrt_ratio_to_float(c, s, mantissa_bits)
                    out[r, k] = cache[key]
        return out

    def dense(self, dtype=np.float64) -> np.ndarray:
        """``[dim, 3, ..., 3]`` Q, each entry rounded once from the exact value to ``dtype``."""
        bits = 24 if np.dtype(dtype) == np.float32 else 53
        vals = self.orbit_values(bits)  # [dim, d]
        orb, sgn = self.orbits.orbit_of, self.orbits.sign_of
        q = np.zeros((self.dim, len(orb)), dtype=np.float64)
        ok = orb >= 0
        q[:, ok] = vals[:, orb[ok]] * sgn[ok]
        return q.astype(dtype).reshape((self.dim,) + (3,) * self.orbits.order)

    def sympy_array(self):
        """The exact Q as a sympy ``ImmutableDenseNDimArray`` of shape ``[dim, 3, ..., 3]``."""
        orb, sgn = self.orbits.orbit_of, self.orbits.sign_of
        flat = []
        for row, s in zip(self.coeffs, self.norms2):
            inv = 1 / sympy.sqrt(sympy.Rational(s.numerator, s.denominator))
            vals = [sympy.Rational(c.numerator, c.denominator) * inv if c else sympy.Integer(0) for c in row]
            flat.extend(vals[o] * int(g) if o >= 0 else sympy.Integer(0) for o, g in zip(orb, sgn))
        shape = (self.dim,) + (3,) * self.orbits.order
        return sympy.ImmutableDenseNDimArray(flat, shape)


def _generator_matrices(orbits: Orbits) -> list:
    """``H_a`` on orbit coordinates: ``(H_a c)[O] = sum_k sum_j A_a[rep_k, j] T[rep with slot k = j]``."""
    n, d = orbits.order, orbits.dim
    reps = orbits.rep_digits()  # [d, n]
    powers = 3 ** np.arange(n - 1, -1, -1, dtype=np.int64)
    mats = []
    for a in range(3):
        gen = np.asarray(_cartesian_generator(a), dtype=np.int64)
        h = np.zeros((d, d), dtype=np.int64)
        for k in range(n):
            for j in range(3):
                coef = gen[reps[:, k], j]  # [d]
                moved = reps.copy()
                moved[:, k] = j
                codes = moved @ powers
                orb = orbits.orbit_of[codes]
                sgn = orbits.sign_of[codes].astype(np.int64)
                ok = (orb >= 0) & (coef != 0)
                np.add.at(h, (np.nonzero(ok)[0], orb[ok]), coef[ok] * sgn[ok])
        mats.append(dm(h.tolist(), (d, d)))
    return mats


def _restrict(h, basis, free):
    """The matrix of ``h`` on the invariant subspace spanned by ``basis`` (identity on ``free`` rows)."""
    return (h * basis).extract(free, list(range(basis.shape[1])))


def exact_basis(orbits: Orbits, trace_pairs=(), mults: dict[int, int] | None = None,
                extra_rows: np.ndarray | None = None) -> ExactBasis:
    """Build the exact change of basis for the non-zero orbits and trace conditions.

    ``mults`` (from :func:`decompose.multiplicities`) is checked against the dimensions found here.
    ``extra_rows`` ``[m, d]``: further O(3)-invariant conditions on orbit coordinates (relations).
    """
    d = orbits.dim
    rows, _ = trace_rows(orbits, trace_pairs, CARTESIAN_METRIC)
    if extra_rows is not None and len(extra_rows):
        rows = np.concatenate([rows, np.asarray(extra_rows, dtype=np.int64)])
    if len(rows):
        nbasis, nfree = nullspace(dm(rows.tolist(), rows.shape))  # [d, d']
    else:
        nbasis, nfree = eye(d), list(range(d))
    dprime = nbasis.shape[1]
    hs = [_restrict(h, nbasis, nfree) for h in _generator_matrices(orbits)]  # 3 x [d', d']
    weights = dm(np.diag(orbits.sizes).tolist(), (d, d)) if d else zeros(0, 0)
    gram_full = nbasis.transpose() * weights * nbasis  # [d', d'] inner product on V_tr coords

    zonal, zfree = nullspace(hs[1])  # [d', z]
    casimir = hs[0] * hs[0] + hs[1] * hs[1] + hs[2] * hs[2]
    cz = _restrict(casimir, zonal, zfree)  # [z, z]
    coeffs, norms2, ls = [], [], []
    found = {}
    for l in range(orbits.order + 1):
        if mults is not None and l not in mults:
            continue
        w_basis, _ = nullspace(cz + eye(cz.shape[0]) * QQ(l * (l + 1)))  # [z, m_l]
        m_l = w_basis.shape[1]
        if m_l == 0:
            continue
        found[l] = m_l
        w = zonal * w_basis  # [d', m_l]
        w = _gram_schmidt(w, gram_full)
        e = _ladder(l, w, hs)  # list of 2l+1 blocks [d', m_l]
        cols = [nbasis * block for block in e]  # [d, m_l] each, orbit coordinates
        for copy in range(m_l):
            for comp in range(2 * l + 1):
                c = [to_fraction(x) for x in cols[comp].extract(list(range(d)), [copy]).to_list_flat()]
                s = sum((ci * ci * int(sz) for ci, sz in zip(c, orbits.sizes)), Fraction(0))
                coeffs.append(tuple(c))
                norms2.append(s)
                ls.append(l)
    total = sum((2 * l + 1) * m for l, m in found.items())
    if total != dprime or (mults is not None and found != mults):
        raise RuntimeError(f"inconsistent decomposition: found {found} (dim {total}), expected {mults} (dim {dprime})")
    return ExactBasis(orbits=orbits, coeffs=tuple(coeffs), norms2=tuple(norms2), ls=tuple(ls))


def _gram_schmidt(w, gram):
    """Orthogonalise the columns of ``w`` for the inner product ``gram`` (exact, order kept)."""
    cols = [w.extract(list(range(w.shape[0])), [k]) for k in range(w.shape[1])]
    done = []
    for v in cols:
        for u, uu in done:
            coef = (u.transpose() * gram * v).to_list_flat()[0] / uu
            v = v - u * coef
        done.append((v, (v.transpose() * gram * v).to_list_flat()[0]))
    return done[0][0].hstack(*[v for v, _ in done[1:]]) if len(done) > 1 else done[0][0]


def _ladder(l: int, w, hs) -> list:
    """Columns ``E~_m`` (blocks ``[d', copies]``) with ``H_a E~ = E~ X~_a`` and ``E~_0 = w``."""
    xt, _ = rational_generators(l)
    dim = 2 * l + 1
    known = {l: w}
    for level in range(1, l + 1):
        targets = [l - level, l + level]
        eqs = []  # (coefficients on targets, rhs block)
        for j in sorted(known):
            for a in range(3):
                col = [xt[a][i][j] for i in range(dim)]
                involved = [i for i in range(dim) if col[i] != 0 and i not in known]
                if not involved or any(i not in targets for i in involved):
                    continue
                rhs = hs[a] * known[j]
                for i in range(dim):
                    if col[i] != 0 and i in known:
                        rhs = rhs - known[i] * QQ(col[i].numerator, col[i].denominator)
                eqs.append(([col[t] for t in targets], rhs))
        pair = None
        for p in range(len(eqs)):
            for q in range(p + 1, len(eqs)):
                (a0, a1), (b0, b1) = eqs[p][0], eqs[q][0]
                if a0 * b1 - a1 * b0 != 0:
                    pair = (p, q)
                    break
            if pair:
                break
        if pair is None:
            raise RuntimeError(f"ladder for l={l} is underdetermined at level {level}")
        (a0, a1), ra = eqs[pair[0]]
        (b0, b1), rb = eqs[pair[1]]
        det = a0 * b1 - a1 * b0
        # [a0 a1; b0 b1] [u; v] = [ra; rb]
        u = ra * _q(b1 / det) - rb * _q(a1 / det)
        v = rb * _q(a0 / det) - ra * _q(b0 / det)
        known[targets[0]] = u
        known[targets[1]] = v
    # exact check of the intertwining relation
    for a in range(3):
        for j in range(dim):
            lhs = hs[a] * known[j]
            rhs = zeros(*known[j].shape)
            for i in range(dim):
                if xt[a][i][j] != 0:
                    rhs = rhs + known[i] * _q(xt[a][i][j])
            if lhs != rhs:
                raise RuntimeError(f"ladder for l={l} does not intertwine (generator {a}, column {j})")
    return [known[i] for i in range(dim)]


def _q(x: Fraction):
    return QQ(x.numerator, x.denominator)
