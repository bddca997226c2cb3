"""Multiplicities by weight counting, against the character formula, e3nn, and numerical ranks."""
from __future__ import annotations

import random

import numpy as np
import pytest

from tsym.compiler.decompose import irrep_parity, irreps_string, multiplicities

from ._groups import character_multiplicities, group_of, numeric_rank, projector, random_group, trace_matrix


@pytest.mark.parametrize(
    "indices, equations, traceless, axial, expected",
    [
        ("ijkl", ["ijkl = jikl = ijlk = klij"], [], False, "2x0e+2x2e+1x4e"),
        ("ijk", ["ijk = ikj"], [], False, "2x1o+1x2o+1x3o"),
        ("ij", ["ij = ji"], [(0, 1)], False, "1x2e"),
        ("ij", ["ij = ji"], [], True, "1x0o+1x2o"),
        ("ij", [], [], False, "1x0e+1x1e+1x2e"),
        ("i", [], [], False, "1x1o"),
        ("ijk", ["ijk = jik = ikj"], [], False, "1x1o+1x3o"),
    ],
)
def test_documented_examples(indices, equations, traceless, axial, expected):
    # expected values from the issue text / textbook decompositions, not from this code
    orbits = group_of(indices, equations).orbits()
    mults = multiplicities(orbits, traceless)
    assert irreps_string(mults, irrep_parity(len(indices), axial)) == expected


@pytest.mark.parametrize("seed", range(40))
def test_random_groups_match_character_formula(seed):
    rng = random.Random(1000 + seed)
    n = rng.randint(1, 6)
    idx, eqs = random_group(rng, n)
    group = group_of(idx, eqs)
    orbits = group.orbits()
    if orbits.dim == 0:
        assert group.contains_minus_identity
        return
    assert multiplicities(orbits) == character_multiplicities(group)


@pytest.mark.parametrize("seed", range(15))
def test_random_trace_conditions_match_numerical_rank(seed):
    rng = random.Random(2000 + seed)
    n = rng.randint(2, 4)
    idx, eqs = random_group(rng, n)
    group = group_of(idx, eqs)
    orbits = group.orbits()
    if orbits.dim == 0:
        return
    pairs = [tuple(rng.sample(range(n), 2)) for _ in range(rng.randint(1, 2))]
    mults = multiplicities(orbits, pairs)
    # independent count: dim of {T = P T, traces 0} from numerical ranks
    p = projector(group)
    tr = trace_matrix(n, pairs)
    basis = np.linalg.svd(p)[0][:, : numeric_rank(p)]  # columns span V
    dim = basis.shape[1] - numeric_rank(tr @ basis)
    assert sum((2 * l + 1) * m for l, m in mults.items()) == dim


def test_orders_up_to_eight_fully_symmetric():
    # Sym^n(R^3) = l = n, n-2, ..., each once
    for n in range(1, 9):
        idx = "abcdefgh"[:n]
        eqs = [f"{idx} = {idx[1] + idx[0] + idx[2:]} = {idx[1:] + idx[0]}"] if n > 1 else []
        mults = multiplicities(group_of(idx, eqs).orbits())
        assert mults == {l: 1 for l in range(n % 2, n + 1, 2)}
