"""``sum_rule zero`` and ``positive definite``: located errors, exact sums, positivity, equivariance."""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
from e3nn import o3

from tsym.compiler import SelfMixHead, compile_text, emit_module
from tsym.compiler.errors import ClauseValueError, ConstraintError
from tsym.compiler.parse import parse_text

from ..conftest import default_dtype, rotation_and_d

IRREPS_IN = "4x0e+2x1o+2x1e+2x2e"
BORN = "tensor z {\n    indices ij\n    level atom\n    sum_rule zero\n}\n"
POLAR = "tensor a {\n    indices ij\n    symmetry ij = ji\n    positive definite\n}\n"
ELASTIC = "tensor c {\n    indices ijkl\n    symmetry ijkl = jikl = ijlk = klij\n    positive definite\n    pool mean\n}\n"
MANDEL = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]


def block(*clauses: str) -> str:
    return "\n".join(["tensor t {", *(f"    {c}" for c in clauses), "}"]) + "\n"


# --- located errors ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "clauses, error, expected",
    [
        (["indices ij", "sum_rule zero"], ConstraintError, r"^s\.tsym:3:5: sum_rule applies to atom tensors"),
        (["indices ij", "level atom", "sum_rule one"], ClauseValueError, r"^s\.tsym:4:14: unknown sum_rule 'one'"),
        (["indices ij", "positive yes"], ClauseValueError, r"^s\.tsym:3:14: unknown positive 'yes'"),
        (["indices ijk", "symmetry ijk = jik", "positive definite"], ConstraintError, r"^s\.tsym:4:5: .*odd rank 3"),
        (["indices ij", "symmetry ij = ji", "parity axial", "positive definite"], ConstraintError,
         r"^s\.tsym:5:5: .*an axial tensor"),
        (["indices ij", "symmetry ij = -ji", "positive definite"], ConstraintError, r"^s\.tsym:4:5: .*antisymmetric"),
        (["indices ij", "positive definite"], ConstraintError, r"^s\.tsym:3:5: .*must be symmetric"),
        (["indices ijkl", "symmetry ijkl = jikl = ijlk", "positive definite"], ConstraintError,
         r"^s\.tsym:4:5: .*must be of elastic type"),
        (["indices ij", "symmetry ij = ji", "traceless ij", "positive definite"], ConstraintError,
         r"^s\.tsym:5:5: .*traceless"),
        (["indices ij", "relation ij = ji", "positive definite"], ConstraintError, r"^s\.tsym:4:5: .*relations"),
        (["indices ijklmn", "symmetry ijklmn = jiklmn", "positive definite"], ConstraintError,
         r"^s\.tsym:4:5: .*rank 2 and 4, not 6"),
        (["indices ij", "symmetry ij = ji", "level atom", "sum_rule zero", "positive definite"], ConstraintError,
         r"^s\.tsym:6:5: tensor 't' cannot be both positive and sum to zero"),
    ],
)
def test_constraint_errors_are_located(clauses, error, expected):
    with pytest.raises(error, match=expected):
        parse_text(block(*clauses), "s.tsym")


# --- helpers -----------------------------------------------------------------------------------
def make_head(text: str, dtype, cls=SelfMixHead, seed: int = 0):
    (plan,) = compile_text(text)
    with default_dtype(dtype):
        torch.manual_seed(seed)
        head = cls(IRREPS_IN, plan.irreps, plan.change_of_basis, plan.level, plan.pool, hidden_mul=4,
                   mlp_hidden=8, **plan.head_options())
        # random weights everywhere (not only e3nn's initialisation)
        with torch.no_grad():
            for p in head.parameters():
                p.copy_(torch.randn_like(p))
    return plan, head


def features(n: int, dtype, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, o3.Irreps(IRREPS_IN).dim, generator=g, dtype=dtype)


def rotate(t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Rotate every slot of ``t`` ``[m, 3, ..., 3]`` by ``r``."""
    for k in range(1, t.dim()):
        t = torch.movedim(torch.tensordot(t, r, dims=([k], [1])), -1, k)
    return t


def mandel(c: torch.Tensor) -> torch.Tensor:
    """``[m, 3, 3, 3, 3]`` -> ``[m, 6, 6]`` with sqrt(2) on each off-diagonal pair."""
    w = [1.0 if i == j else 2**0.5 for i, j in MANDEL]
    rows = [[c[:, i, j, k, l] * w[a] * w[b] for b, (k, l) in enumerate(MANDEL)] for a, (i, j) in enumerate(MANDEL)]
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


# --- the sum rule ------------------------------------------------------------------------------
def sum_bound(head, x, batch, counts, dtype) -> torch.Tensor:
    """Bound on |sum over a structure's atoms| of an output component, per structure.

    With means accumulated in float64 and rounded once: each centred row ``z = y - fl(m)`` is off
    by <= u (|m| + |z|) <= 3 u max|y| per component (u the unit roundoff of ``dtype``), and each of
    the ``d`` products of ``z Q`` adds <= (d + 1) u |z||Q| <= 2 (d + 1) u max|y| max|Q|; summed over
    the ``n`` atoms of a structure (the test sums in float64): n (3 + 2 (d + 1)) u A, with
    ``A = max_atom sum_r |y_r| max|Q|`` the size of one Cartesian output before centring.
    """
    u = torch.finfo(dtype).eps / 2
    with torch.no_grad():
        y = head.node_irreps(x).double()  # [N, d]
    q = head.change_of_basis.abs().max().item()
    a = (y.abs().sum(dim=1) * q).max().item()
    d = y.shape[1]
    return torch.tensor([n * (3 + 2 * (d + 1)) * u * a for n in counts], dtype=torch.float64)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sum_rule_holds_per_structure_batched_padded_and_single(dtype):
    plan, head = make_head(BORN, dtype)
    counts = [5, 1, 12, 0]  # the last structure has no atoms (a padded batch)
    batch = torch.repeat_interleave(torch.arange(4), torch.tensor(counts))
    x = features(sum(counts), dtype)
    out = head(x, batch, 4)  # [N, 3, 3]
    assert out.dtype == dtype and out.shape == (sum(counts), 3, 3)
    sums = torch.zeros(4, 9, dtype=torch.float64).index_add_(0, batch, out.double().reshape(-1, 9))
    bound = sum_bound(head, x, batch, counts, dtype)
    assert (sums.abs().max(dim=1).values <= bound).all(), (sums, bound)
    assert out.abs().max() > 1e3 * bound.max()  # the outputs themselves are far from zero
    single = head(x[:5])  # batch None: one structure
    assert single.double().sum(dim=0).abs().max() <= bound[0]
    torch.testing.assert_close(single, out[:5], rtol=0, atol=float(bound[0]))


# --- positive definiteness ---------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", range(4))
def test_positive_definite_for_random_inputs_and_weights(dtype, seed):
    for text in (POLAR, ELASTIC):
        plan, head = make_head(text, dtype, seed=seed)
        batch = torch.tensor([0, 0, 1, 1, 1, 2])
        out = head(features(6, dtype, seed=seed + 10), batch, 3).double()  # [3, 3, 3(, 3, 3)]
        # T = y Q with orthonormal rows of Q: sum_r |y_r Q_rc| <= |y| = |T|_F, so an entry is off
        # by <= gamma_d |T|_F (d products summed) and two entries that are equal in exact
        # arithmetic differ by at most twice that.
        u = torch.finfo(dtype).eps / 2
        d = plan.num_components
        norm = out.reshape(3, -1).norm(dim=1)  # [3] |T|_F per structure
        tol = 2 * (d * u / (1 - d * u)) * norm
        if plan.order == 4:  # the elastic symmetries, entry by entry
            for perm in ((0, 2, 1, 3, 4), (0, 1, 2, 4, 3), (0, 3, 4, 1, 2)):
                assert ((out - out.permute(*perm)).reshape(3, -1).abs().max(dim=1).values <= tol).all()
        mats = out if plan.order == 2 else mandel(out)
        assert ((mats - mats.transpose(1, 2)).reshape(3, -1).abs().max(dim=1).values <= 2 * tol).all()
        eig = torch.linalg.eigvalsh(0.5 * (mats + mats.transpose(1, 2)))  # [3, 3 or 6]
        assert (eig.min(dim=1).values > 0).all(), eig


@pytest.mark.parametrize("text", [BORN, POLAR, ELASTIC],
                         ids=["born_sum_rule", "polarizability", "elastic"])
def test_constrained_head_is_equivariant_float64(text):
    """Sum-rule and positive heads rotate (and reflect) with their features."""
    plan, head = make_head(text, torch.float64)
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    x = features(7, torch.float64)
    for proper in (True, False):
        r, d = rotation_and_d(IRREPS_IN, proper=proper)
        out = head(x, batch, 2)
        rotated = head(x @ d.T, batch, 2)
        assert (rotated - rotate(out, r)).abs().max() < 1e-12 * max(1.0, out.abs().max().item())


def test_semidefinite_has_no_floor():
    (plan,) = compile_text(POLAR.replace("definite", "semidefinite"))
    assert plan.head_options()["floor"] == 0.0 and plan.factor_irreps == "1x0e+1x1e+1x2e"


# --- the emitted module enforces the same physics ----------------------------------------------
@pytest.mark.parametrize("text", [BORN, ELASTIC], ids=["born", "elastic"])
def test_emitted_module_matches_the_runtime_head(text, tmp_path):
    plan, head = make_head(text, torch.float64)
    path = tmp_path / f"{plan.name}_head.py"
    path.write_text(emit_module(plan))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    with default_dtype(torch.float64):
        emitted = getattr(module, f"{plan.name.capitalize()}Head")(IRREPS_IN, hidden_mul=4, mlp_hidden=8)
    emitted.load_state_dict(head.state_dict())
    batch = torch.tensor([0, 0, 0, 1, 1])
    x = features(5, torch.float64)
    np.testing.assert_array_equal(emitted(x, batch, 2).detach().numpy(), head(x, batch, 2).detach().numpy())
