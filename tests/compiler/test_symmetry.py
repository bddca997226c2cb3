"""Signed permutation groups and orbits, against brute-force projectors."""
from __future__ import annotations

import random

import numpy as np
import pytest

from tsym.compiler.symmetry import SignedPermutationGroup, generators_from_terms

from ._groups import group_of, numeric_rank, projector, random_group


def test_generator_convention_matches_the_equation():
    # T_ijk = T_kij  ->  T[a, b, c] = T[c, a, b] for all values
    (perm, sign), = generators_from_terms("ijk", [(1, "ijk"), (1, "kij")])
    t = np.random.default_rng(0).normal(size=(3, 3, 3))
    sym = 0
    group = SignedPermutationGroup(3, [(perm, sign)])
    for p, s in group.elements():
        sym = sym + s * np.transpose(t, np.argsort(p))  # (g T)[t] = s T[t o p]
    sym = sym / group.order
    for a, b, c in np.ndindex(3, 3, 3):
        assert sym[a, b, c] == pytest.approx(sym[c, a, b], abs=1e-12)
    assert sign == 1


def test_antisymmetric_sign():
    group = group_of("ij", ["ij = -ji"])
    orbits = group.orbits()
    assert orbits.dim == 3  # xy, xz, yz
    # diagonal tuples are forced to zero
    for v in range(3):
        assert orbits.orbit_of[v * 3 + v] == -1
    # T[1, 0] = -T[0, 1]
    assert orbits.orbit_of[1] == orbits.orbit_of[3]
    assert orbits.sign_of[1] == -orbits.sign_of[3]


@pytest.mark.parametrize(
    "indices, equations, order, minus_one",
    [
        ("ijkl", ["ijkl = jikl = ijlk = klij"], 8, False),
        ("ijk", ["ijk = jik = ikj"], 6, False),
        ("ij", ["ij = ji = -ji"], 4, True),
        ("ijk", ["ijk = -jik", "ijk = -ikj"], 6, False),  # Levi-Civita: S3 with sign = parity
        ("ijklmnop", ["ijklmnop = jiklmnop = jklmnopi"], 40320, False),
    ],
)
def test_group_order_and_minus_identity(indices, equations, order, minus_one):
    group = group_of(indices, equations)
    assert group.order == order
    assert group.contains_minus_identity is minus_one
    if order <= 1000:
        assert len(group.elements()) == order


@pytest.mark.parametrize("seed", range(25))
def test_orbit_count_equals_projector_rank(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 4)
    idx, eqs = random_group(rng, n)
    group = group_of(idx, eqs)
    orbits = group.orbits()
    p = projector(group)
    assert orbits.dim == numeric_rank(p)
    # every orbit basis tensor is fixed by the projector
    for k in range(orbits.dim):
        e = np.where(orbits.orbit_of == k, orbits.sign_of, 0).astype(float)
        np.testing.assert_allclose(p @ e, e, atol=1e-12)
    assert orbits.sizes.sum() == (orbits.orbit_of >= 0).sum()
