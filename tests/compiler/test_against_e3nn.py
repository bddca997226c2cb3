"""Cross-checks of the decomposition against e3nn's CartesianTensor / ReducedTensorProducts."""
from __future__ import annotations

import random

import pytest
import torch
from e3nn import o3
from e3nn.io import CartesianTensor
from e3nn.o3 import ReducedTensorProducts

import tsym
from tsym.compiler.decompose import multiplicities

from ..conftest import SPECS_DIR
from ._groups import character_multiplicities, group_of, random_group

SPEC_FILES = sorted(SPECS_DIR.glob("*.tsym"))


def _formula(spec) -> str:
    """e3nn's formula for a spec whose equations all start with the identity term."""
    parts = [spec.indices]
    for eq in spec.symmetries:
        first = eq.terms[0]
        for t in eq.terms[1:]:
            parts.append(("-" if first.sign * t.sign < 0 else "") + t.letters)
    return "=".join(parts)


def _sorted(irreps: str) -> list[tuple[int, int, int]]:
    out = {}
    for mul, ir in o3.Irreps(irreps):
        out[(ir.l, ir.p)] = out.get((ir.l, ir.p), 0) + mul
    return sorted((l, p, m) for (l, p), m in out.items())


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_every_library_spec_matches_e3nn_and_characters(path):
    plan = tsym.compile_file(path)[0]
    spec = plan.spec
    group = group_of(spec.indices, [" = ".join(("-" if t.sign < 0 else "") + t.letters for t in eq.terms)
                                    for eq in spec.symmetries])
    if spec.relations:
        # relations: the SVD null space and characters of random rotations (test_relations.py)
        from .test_relations import reference

        relations = [[(t.coeff, t.letters) for t in rel.terms] for rel in spec.relations]
        pairs = [(spec.indices.index(p.letters[0]), spec.indices.index(p.letters[1])) for p in spec.traceless]
        equations = [" = ".join(("-" if t.sign < 0 else "") + t.letters for t in eq.terms) for eq in spec.symmetries]
        _, mults, _ = reference(spec.indices, equations, pairs, relations)
        assert {ir.l: mul for mul, ir in o3.Irreps(plan.irreps)} == mults
    elif not spec.traceless:
        # character formula over the group elements (independent of the weight counting)
        chars = character_multiplicities(group)
        assert {ir.l: mul for mul, ir in o3.Irreps(plan.irreps)} == chars
        if all(eq.terms[0].letters == spec.indices and eq.terms[0].sign == 1 for eq in spec.symmetries):
            formula = _formula(spec)
            e3nn_irreps = CartesianTensor(formula)
            ours = _sorted(plan.irreps)
            if plan.axial:  # e3nn's CartesianTensor is polar: flip the parity of ours
                ours = sorted((l, -p, m) for l, p, m in ours)
            assert ours == _sorted(str(e3nn_irreps))
            # the same subspace: both Q^T Q are the projector onto the allowed tensors
            with torch.no_grad():
                q_e3nn = e3nn_irreps.reduced_tensor_products().change_of_basis.to(torch.float64)
            a = q_e3nn.reshape(len(q_e3nn), -1)
            b = plan.change_of_basis.reshape(plan.num_components, -1)
            assert torch.allclose(a.T @ a, b.T @ b, atol=1e-6)  # e3nn's basis is float32-accurate
    else:
        # traceless symmetric rank 2: the textbook answer is one l=2
        assert plan.irreps == "1x2e"


@pytest.mark.parametrize("seed", range(10))
def test_random_groups_match_reduced_tensor_products(seed):
    rng = random.Random(5000 + seed)
    n = rng.randint(2, 4)
    idx, eqs = random_group(rng, n, max_gens=2)
    group = group_of(idx, eqs)
    orbits = group.orbits()
    if orbits.dim == 0:
        return
    # e3nn takes one formula: chain our equations (all have the identity first)
    formula = "=".join([idx] + [e.split("=")[1].strip() for e in eqs])
    rtp = ReducedTensorProducts(formula, **{c: "1o" for c in idx})
    ours = multiplicities(orbits)
    theirs = {}
    for mul, ir in rtp.irreps_out:
        theirs[ir.l] = theirs.get(ir.l, 0) + mul
    assert ours == theirs
