"""``relation`` clauses: irreps and exact bases against an independent numerical reference.

The reference never uses the compiler's orbits, weights or exact algebra: the allowed tensors are
the numerical null space (numpy SVD) of the stacked ``3^n x 3^n`` matrices ``I - P_G`` (the
group average of the symmetries), the trace contractions and the relation operators
``sum_k c_k P_k``; the SO(3) multiplicities come from the characters ``tr(B^T R^(x)n B)`` of
random rotations, solved against ``chi_l(theta) = sin((2l+1) theta/2) / sin(theta/2)``.
"""
from __future__ import annotations

import itertools
import random
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from e3nn import o3

from tsym.compiler import compile_text
from tsym.compiler.errors import RelationError, SpecSyntaxError, SpecWarning, ZeroTensorError
from tsym.compiler.parse import parse_text
from tsym.compiler.spec import Relation, TensorSpec

from ..conftest import rotation_and_d
from ._groups import group_of, projector, trace_matrix


def block(*clauses: str, name: str = "t") -> str:
    return "\n".join([f"tensor {name} {{", *(f"    {c}" for c in clauses), "}"]) + "\n"


def compile_one(text: str):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpecWarning)
        (plan,) = compile_text(text, "spec.tsym")
    return plan


# --- the two cases of the issue ----------------------------------------------------------------
def test_cyclic_sum_removes_the_fully_symmetric_part():
    plain = compile_one(block("indices ijk", "symmetry ijk = jik"))
    assert (plain.irreps, plain.num_components) == ("2x1o+1x2o+1x3o", 18)
    plan = compile_one(block("indices ijk", "symmetry ijk = jik", "relation ijk + jki + kij = 0"))
    assert (plan.irreps, plan.num_components) == ("1x1o+1x2o", 8)
    assert plan.relations == ("ijk + jki + kij = 0",)
    t = plan.to_cartesian(torch.randn(5, 8, dtype=torch.float64))  # [5, 3, 3, 3]
    cyclic = t + t.permute(0, 2, 3, 1) + t.permute(0, 3, 1, 2)
    assert cyclic.abs().max() < 1e-14 * 3 * 8  # three terms of dot products of length 8
    assert (t - t.transpose(1, 2)).abs().max() == 0  # the symmetry holds exactly (shared values)


RIEMANN = ("indices ijkl", "symmetry ijkl = -jikl = -ijlk = klij")


def test_redundant_bianchi_identity_warns_and_changes_nothing():
    plain = compile_one(block(*RIEMANN))
    with pytest.warns(SpecWarning, match=r"^spec\.tsym:4:5: relation 'ijkl \+ iklj \+ iljk = 0' changes nothing"):
        (plan,) = compile_text(block(*RIEMANN, "relation ijkl + iklj + iljk = 0"), "spec.tsym")
    assert (plan.irreps, plan.num_components) == ("1x0e+1x2e", 6) == (plain.irreps, plain.num_components)
    assert torch.equal(plan.change_of_basis, plain.change_of_basis)
    assert plan.warnings and plan.warnings[0].startswith("spec.tsym:4:5:")


def test_coefficients_are_exact_rationals():
    # ji (1 - 1/2 + 0.5) = ji exactly: the relation is T_ij - T_ji = 0, a symmetric matrix
    text = block("indices ij", "relation ij = ji - 1/2 ji + 0.5*ji")
    (spec,) = parse_text(text, "s.tsym")
    assert spec.relations == (Relation.of("ij", (-1, "ji")),)
    assert compile_one(text).irreps == "1x0e+1x2e"
    with pytest.raises(ZeroTensorError):  # 2 T_ij = T_ji: T_ii = 0 and T_ij = 4 T_ij
        compile_text(block("indices ij", "relation 2 ij = ji"))


def test_round_trip_keeps_relations_sum_rule_and_positive():
    text = block("indices ijk", "symmetry ijk = jik", "relation ijk + jki = -kij", "relation 3 ijk - 3/2 kji = 0",
                 "level atom", "sum_rule zero")
    (spec,) = parse_text(text, "s.tsym")
    assert spec.relations[0].to_source() == "ijk + jki + kij = 0"
    assert spec.relations[1].to_source() == "3 ijk - 3/2 kji = 0"
    assert parse_text(spec.to_source()) == (spec,)
    (pos,) = parse_text(block("indices ij", "symmetry ij = ji", "positive definite"))
    assert parse_text(pos.to_source()) == (pos,) and pos.positive.value == "definite"
    built = TensorSpec("t", "ij", relations=(Relation.of("ij", (-1, "ji")),), level="atom", sum_rule="zero")
    assert parse_text(built.to_source()) == (built,)


# --- located errors ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "clause, error, expected",
    [
        ("relation ijk + jkl = 0", RelationError,
         r"^spec\.tsym:3:20: relation term 'jkl' is not a permutation of the indices 'ijk': 'l' is not one of"),
        ("relation ijk + jjk = 0", RelationError, r"^spec\.tsym:3:20: relation term 'jjk' .* 'j' appears twice"),
        ("relation ijk + ij = 0", RelationError, r"^spec\.tsym:3:20: relation term 'ij' .* it has 2 letters"),
        ("relation ijk - ijk = 0", RelationError, r"^spec\.tsym:3:5: this relation says 0 = 0"),
        ("relation ijk + jki = 1", RelationError, r"^spec\.tsym:3:26: a relation is linear in the tensor"),
        ("relation ijk jki = 0", SpecSyntaxError, r"^spec\.tsym:3:18: expected '\+', '-' or '=' in the 'relation'"),
        ("relation ijk + jki", SpecSyntaxError, r"^spec\.tsym:3:23: expected '\+', '-' or '='"),
        ("relation ijk = = 0", SpecSyntaxError, r"^spec\.tsym:3:20: expected a relation term after '='"),
        ("relation ijk = jki = 0", SpecSyntaxError, r"(?s)^spec\.tsym:3:24: expected '\+', '-' or the end.*one '='"),
        ("relation 2ijk = 0", SpecSyntaxError, r"^spec\.tsym:3:14: "),
        ("relation 1/0 ijk = jik", RelationError, r"^spec\.tsym:3:14: the coefficient 1/0 divides by zero"),
    ],
)
def test_relation_errors_are_located(clause, error, expected):
    with pytest.raises(error, match=expected):
        parse_text(block("indices ijk", clause), "spec.tsym")


def test_relation_leaving_only_zero_is_located():
    with pytest.raises(ZeroTensorError, match=r"^spec\.tsym:4:14: relation 'ij \+ ji = 0' leaves only the zero"):
        compile_text(block("indices ij", "symmetry ij = ji", "relation ij + ji = 0"), "spec.tsym")


# --- the independent reference on many random relations ----------------------------------------
def _perm_matrix(indices: str, letters: str) -> np.ndarray:
    """``(P T)[t] = T[t o p]`` on flattened ``[3]*n`` tensors, ``p[m] = indices.index(letters[m])``."""
    n = len(indices)
    perm = [indices.index(ch) for ch in letters]
    tuples = list(itertools.product(range(3), repeat=n))
    index = {t: k for k, t in enumerate(tuples)}
    out = np.zeros((3**n, 3**n))
    for k, t in enumerate(tuples):
        out[k, index[tuple(t[perm[m]] for m in range(n))]] = 1
    return out


def reference(indices, equations, pairs, relations):
    """``(B [3^n, k] orthonormal null space, {l: mult}, err)`` by SVD and characters.

    ``err`` bounds the error of the projector ``B B^T``: the perturbation bound of a singular
    subspace, ``||dM|| / gap`` with ``||dM|| <= 3^n eps ||M||`` for the SVD's backward error and
    the gap the smallest singular value kept in the row space (asserted to be a clear gap).
    """
    n = len(indices)
    p = projector(group_of(indices, equations))
    blocks = [np.eye(3**n) - p]
    if pairs:
        blocks.append(trace_matrix(n, pairs))
    for terms in relations:
        blocks.append(sum(float(c) * _perm_matrix(indices, letters) for c, letters in terms))
    stacked = np.concatenate(blocks)
    _, s, vt = np.linalg.svd(stacked)
    rank = int((s > 1e-9 * s.max()).sum()) if s.size else 0
    assert rank == 0 or s[rank - 1] > 1e-3 * s.max()  # integer-like matrices: no near-null direction
    err = 3**n * 2.0**-52 * s.max() / s[rank - 1] if rank else 0.0
    basis = vt[rank:].T  # [3^n, k]
    if basis.shape[1] == 0:
        return basis, {}, err
    thetas, chis = [], []
    for _ in range(2 * n + 4):
        r = o3.rand_matrix(dtype=torch.float64).numpy()
        full = r
        for _ in range(n - 1):
            full = np.kron(full, r)
        chis.append(np.trace(basis.T @ full @ basis))
        thetas.append(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1)))
    a = np.array([[np.sin((2 * l + 1) * t / 2) / np.sin(t / 2) for l in range(n + 1)] for t in thetas])
    mult = np.linalg.lstsq(a, np.array(chis), rcond=None)[0]
    assert np.abs(mult - np.round(mult)).max() < 1e-6, mult
    return basis, {l: int(round(m)) for l, m in enumerate(mult) if round(m)}, err


def _random_case(rng: random.Random):
    n = rng.choice([2, 3, 3, 4])
    indices = "ijkl"[:n]
    equations = []
    for _ in range(rng.randint(0, 2)):
        perm = list(indices)
        rng.shuffle(perm)
        equations.append(f"{indices} = {'-' if rng.random() < 0.2 else ''}{''.join(perm)}")
    pairs = [(0, 1)] if n >= 2 and rng.random() < 0.2 else []
    relations = [_random_relation(rng, indices) for _ in range(rng.randint(1, 2))]
    return indices, equations, pairs, relations


def _random_relation(rng: random.Random, indices: str) -> list[tuple[Fraction, str]]:
    """A cyclic sum (as the first Bianchi identity), a balanced sum (coefficients adding up to 0:
    the fully symmetric part survives) or a free one (often only zero survives)."""
    def shuffled() -> str:
        perm = list(indices)
        rng.shuffle(perm)
        return "".join(perm)

    kind = rng.choice(["cyclic", "cyclic", "balanced", "balanced", "free"])
    if kind == "cyclic":
        step, terms, letters = shuffled(), [], indices
        for _ in range(len(indices)):
            terms.append((Fraction(1), letters))
            letters = "".join(letters[indices.index(ch)] for ch in step)
            if letters == indices:
                break
        return terms
    count = rng.randint(2, 3)
    coeffs = [Fraction(rng.choice([1, -1, 2, -3]), rng.choice([1, 2])) for _ in range(count)]
    if kind == "balanced":
        coeffs[-1] -= sum(coeffs)
    return [(c, shuffled()) for c in coeffs]


def _text(indices, equations, pairs, relations):
    clauses = [f"indices {indices}", *(f"symmetry {eq}" for eq in equations)]
    clauses += [f"traceless {indices[p]}{indices[q]}" for p, q in pairs]
    for terms in relations:
        text = " + ".join(f"{c} * {letters}" for c, letters in terms).replace("+ -", "- ")
        clauses.append(f"relation {text} = 0")
    return block(*clauses)


ONE = Fraction(1)
NAMED = {
    "cyclic_sum": ("ijk", ["ijk = jik"], [], [[(ONE, "ijk"), (ONE, "jki"), (ONE, "kij")]]),
    "bianchi": ("ijkl", ["ijkl = -jikl = -ijlk = klij"], [], [[(ONE, "ijkl"), (ONE, "iklj"), (ONE, "iljk")]]),
}


@pytest.mark.parametrize("name", sorted(NAMED))
def test_issue_cases_against_svd_and_characters(name):
    _check_against_reference(NAMED[name])


@pytest.mark.parametrize("seed", range(60))
def test_random_relations_against_svd_and_characters(seed):
    _check_against_reference(_random_case(random.Random(seed)))


def _check_against_reference(case):
    text = _text(*case)
    try:
        parse_text(text, "r.tsym")
    except RelationError:  # terms that cancel (0 = 0): refused, and nothing to compare
        return
    basis, mults, err = reference(*case)
    if basis.shape[1] == 0:
        with pytest.raises(ZeroTensorError, match=r"^r\.tsym:\d+:\d+: "), warnings.catch_warnings():
            warnings.simplefilter("ignore", SpecWarning)
            compile_text(text, "r.tsym")
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpecWarning)
        (plan,) = compile_text(text, "r.tsym")
    parity = "e" if len(case[0]) % 2 == 0 else "o"
    assert plan.irreps == "+".join(f"{m}x{l}{parity}" for l, m in sorted(mults.items()))
    k = basis.shape[1]
    q = plan.change_of_basis.reshape(plan.num_components, -1).numpy()  # [k, 3^n]
    assert q.shape[0] == k
    # Q rounds exact values once; a dot product of 3^n such entries (|entries| <= 1, row norm 1)
    # with n + 1 roundings per product (R^(x)n by kron) is off by <= (3^n + n + 1) eps sqrt(3^n)
    n = len(case[0])
    tol = 2 * (3**n + n + 1) * 2.0**-53 * 3 ** (n / 2)
    np.testing.assert_allclose(q.T @ q, basis @ basis.T, atol=err + tol)  # the same space
    np.testing.assert_allclose(q @ q.T, np.eye(k), atol=tol)
    # rows transform with e3nn's D (float64 end to end)
    r, d = rotation_and_d(o3.Irreps(plan.irreps))
    r = r.numpy()
    full = r
    for _ in range(len(case[0]) - 1):
        full = np.kron(full, r)
    np.testing.assert_allclose(q @ full, d.numpy() @ q, atol=tol)
    # a relation warns exactly when it does not lower the dimension (checked one at a time)
    redundant = set()
    for j in range(len(case[3])):
        before = reference(case[0], case[1], case[2], case[3][:j])[0].shape[1]
        after = reference(case[0], case[1], case[2], case[3][: j + 1])[0].shape[1]
        if before == after:
            redundant.add(j)
    assert len([w for w in caught if issubclass(w.category, SpecWarning)]) == len(redundant)
