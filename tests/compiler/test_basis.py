"""The exact change of basis: orthonormality, symmetry, trace conditions, e3nn equivariance."""
from __future__ import annotations

import random

import numpy as np
import pytest
import sympy
import torch
from e3nn import o3

from tsym.compiler.basis import e3nn_generators, exact_basis, rational_generators
from tsym.compiler.decompose import irrep_parity, irreps_string, multiplicities

from ..conftest import default_dtype, rotation_and_d
from ._groups import group_of, projector, random_group, trace_matrix

CASES = [
    ("ij", ["ij = ji"], [], False),
    ("ij", ["ij = ji"], [], True),
    ("ij", ["ij = ji"], [(0, 1)], False),
    ("ij", [], [], False),
    ("ijk", ["ijk = ikj"], [], False),
    ("ijk", ["ijk = jik = ikj"], [], False),
    ("ijk", ["ijk = -jik", "ijk = -ikj"], [], True),
    ("ijkl", ["ijkl = jikl = ijlk = klij"], [], False),
    ("ijkl", ["ijkl = jikl = ijlk"], [(0, 1), (2, 3)], False),
    ("ijkl", ["ijkl = jikl = ijkl", "ijkl = -ijlk"], [], True),
    ("ijklmn", ["ijklmn = jiklmn = jklmni"], [], False),
]


def build(indices, equations, traceless):
    orbits = group_of(indices, equations).orbits()
    mults = multiplicities(orbits, traceless)
    return exact_basis(orbits, traceless, mults), mults


def test_generators_match_e3nn():
    with default_dtype(torch.float64):
        for l in range(7):
            np.testing.assert_allclose(e3nn_generators(l), o3.so3_generators(l).numpy(), atol=1e-14)


@pytest.mark.parametrize("l", range(9))
def test_rational_generators_are_a_positive_rescaling(l):
    xt, sigma2 = rational_generators(l)
    s = np.sqrt(np.array([float(v) for v in sigma2]))
    x = e3nn_generators(l)
    for a in range(3):
        back = np.diag(s) @ np.array([[float(v) for v in row] for row in xt[a]]) @ np.diag(1 / s)
        np.testing.assert_allclose(back, x[a], atol=1e-12)


@pytest.mark.parametrize("case", CASES[:9], ids=lambda c: str(c))
def test_exact_orthonormality_with_sympy(case):
    basis, _ = build(*case[:3])
    q = basis.sympy_array()
    mat = sympy.Matrix(q.reshape(q.shape[0], 3 ** len(case[0])).tolist())
    gram = (mat * mat.T).applyfunc(sympy.nsimplify)
    assert gram == sympy.eye(mat.shape[0])
    # every entry is an exact algebraic number: a rational times the square root of a rational
    for value in set(mat):
        assert (value**2).is_Rational


@pytest.mark.parametrize("case", CASES, ids=lambda c: str(c))
def test_float64_orthonormal_symmetric_traceless_and_projector(case):
    indices, equations, traceless, _ = case
    basis, _ = build(indices, equations, traceless)
    n = len(indices)
    q = basis.dense(np.float64).reshape(basis.dim, -1)
    assert np.abs(q @ q.T - np.eye(basis.dim)).max() <= 1e-14
    group = group_of(indices, equations)
    if n <= 4:
        p = projector(group)
        # Q^T Q is the projector onto {T = P T, traces = 0} (built independently here)
        tr = trace_matrix(n, traceless) if traceless else np.zeros((0, 3**n))
        u, s, _ = np.linalg.svd(p)
        v = u[:, s > 1e-9]
        if len(tr):
            null = np.linalg.svd(tr @ v)[2][np.linalg.matrix_rank(tr @ v):].T
            v = v @ null
        np.testing.assert_allclose(q.T @ q, v @ v.T, atol=1e-12)
    else:
        p = None
    # each row satisfies the symmetry equations exactly as floats (same values, signs)
    t = q.reshape((basis.dim,) + (3,) * n)
    for perm, sign in group.generators:
        np.testing.assert_array_equal(t, sign * np.transpose(t, [0] + [1 + k for k in np.argsort(perm)]))


@pytest.mark.parametrize("case", CASES, ids=lambda c: str(c))
def test_equivariance_against_e3nn(case):
    indices, equations, traceless, axial = case
    basis, mults = build(indices, equations, traceless)
    n = len(indices)
    irreps = o3.Irreps(irreps_string(mults, irrep_parity(n, axial)))
    q = torch.from_numpy(basis.dense(np.float64))
    for proper in (True, False):
        for _ in range(3):
            r, d = rotation_and_d(irreps, proper)
            if True:
                rotated = q
                for _ in range(n):  # contract every Cartesian index with R (first index of R)
                    rotated = torch.tensordot(rotated, r, dims=([1], [0]))
                if axial:
                    rotated = rotated * torch.det(r)
                expected = torch.einsum("ab,b...->a...", d, q)
                assert (rotated - expected).abs().max() <= 1e-12


def test_float32_is_rounded_once_from_exact_values():
    basis, _ = build("ijkl", ["ijkl = jikl = ijlk = klij"], [])
    q32 = basis.dense(np.float32).reshape(basis.dim, -1)
    exact = basis.sympy_array()
    flat = exact.reshape(basis.dim, 81).tolist()
    for r in range(basis.dim):
        for c in range(0, 81, 7):
            value = sympy.N(flat[r][c], 40)
            # nearest float32 computed with mpmath at 40 digits, independently of the code
            want = np.float32(float(value))
            if abs(float(value) - float(want)) > 0:
                nxt = np.nextafter(want, np.float32(np.inf) if float(value) > float(want) else np.float32(-np.inf))
                assert abs(value - sympy.Float(float(want), 40)) <= abs(value - sympy.Float(float(nxt), 40))
            assert q32[r, c] == want


@pytest.mark.parametrize("seed", range(12))
def test_random_groups_equivariant_and_orthonormal(seed):
    rng = random.Random(3000 + seed)
    n = rng.randint(1, 4)
    idx, eqs = random_group(rng, n)
    orbits = group_of(idx, eqs).orbits()
    if orbits.dim == 0:
        return
    mults = multiplicities(orbits)
    basis = exact_basis(orbits, (), mults)
    q = torch.from_numpy(basis.dense(np.float64))
    assert (q.reshape(basis.dim, -1) @ q.reshape(basis.dim, -1).T - torch.eye(basis.dim)).abs().max() < 1e-14
    irreps = o3.Irreps(irreps_string(mults, irrep_parity(n, False)))
    r, d = rotation_and_d(irreps, proper=False)
    rotated = q
    for _ in range(n):
        rotated = torch.tensordot(rotated, r, dims=([1], [0]))
    assert (rotated - torch.einsum("ab,b...->a...", d, q)).abs().max() < 1e-12


def test_d_from_matrix_agrees_on_a_generic_rotation():
    """The same check through ``D_from_matrix`` itself, on a rotation where e3nn's own rounding
    (matrix_exp, acos) stays below 1e-12."""
    basis, mults = build("ijkl", ["ijkl = jikl = ijlk = klij"], [])
    irreps = o3.Irreps(irreps_string(mults, 1))
    q = torch.from_numpy(basis.dense(np.float64))
    with default_dtype(torch.float64):
        r = o3.angles_to_matrix(torch.tensor(0.3), torch.tensor(1.1), torch.tensor(-0.7))
        d = irreps.D_from_matrix(r)
    rotated = q
    for _ in range(4):
        rotated = torch.tensordot(rotated, r, dims=([1], [0]))
    assert (rotated - torch.einsum("ab,b...->a...", d, q)).abs().max() <= 1e-12
