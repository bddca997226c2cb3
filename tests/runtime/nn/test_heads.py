"""Tests of the baseline heads (``tsym.runtime.nn.heads``) and the ``kind`` switch of the model.

Expected values come from symmetry and from linearity alone:

* an equivariant head maps features rotated by ``D(R)`` to the output rotated by ``R^{(x)n}``
  (proper and improper ``R``, polar tensors);
* the invariant head's output does not change when the features (or the structure) rotate, and
  it keeps the spec's index symmetry (``P(T) = T`` with the plan's projection, and the index
  permutations of the spec);
* a sum-pooled head equals the sum of the head applied to each node alone (a mean: divided by
  the count), which checks pooling without re-implementing it.

Tolerances: float64 1e-10, float32 1e-5 (``TOLERANCES``), relative to the largest entry of the
expected output (absolute for outputs that must vanish, which are exact zeros or ~1e-16).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import molecule

import tsym
from tsym.compiler import compile_text
from tsym.compiler.errors import TsymError
from tsym.runtime.errors import ModelConfigError
from tsym.runtime.nn.heads import HEAD_KINDS, InvariantHead, LinearHead, make_head
from tsym.runtime.equivariance import assert_equivariant, rotate_atoms, rotate_cartesian

from ...conftest import TOLERANCES, default_dtype, rotation_and_d

IRREPS_IN = "4x0e+3x1o+2x1e+2x2e"
POLAR = "tensor alpha { indices ij; symmetry ij = ji; pool mean }"
HYPER = "tensor beta { indices ijk; symmetry ijk = jik = ikj }"
SHIELD = "tensor sigma { indices ij; level atom }"
BACKBONE = dict(num_scalars=8, irreps="8x0e+4x1o+2x2e", num_blocks=1, num_basis=6,
                embedding="onehot")
BATCH = torch.tensor([0, 0, 0, 1, 1])  # 5 nodes in 2 structures


def _plan(text):
    return compile_text(text)[0]


def _head(cls, plan, dtype, **kwargs):
    with default_dtype(dtype):
        torch.manual_seed(0)
        return cls(IRREPS_IN, plan.irreps, plan.change_of_basis, plan.level, plan.pool,
                   **kwargs).to(dtype)


def _close(actual, expected, tol):
    actual, expected = actual.detach(), expected.detach()
    scale = max(float(expected.abs().max()), 1e-30)
    assert float((actual - expected).abs().max()) <= tol * scale


@pytest.mark.parametrize("proper", [True, False], ids=["proper", "improper"])
@pytest.mark.parametrize("text", [POLAR, HYPER, SHIELD], ids=["polar", "hyper", "shield"])
def test_linear_head_is_equivariant(text, proper, dtype):
    plan, tol = _plan(text), TOLERANCES[dtype]
    head = _head(LinearHead, plan, dtype)
    r, d = rotation_and_d(IRREPS_IN, proper, dtype)
    x = torch.randn(5, d.shape[0], dtype=dtype, generator=torch.Generator().manual_seed(1))
    out = head(x, BATCH, 2)  # [G|N, 3, ..., 3]
    expected = rotate_cartesian(out, r, order=plan.order)
    _close(head(x @ d.T, BATCH, 2), expected, tol)
    assert float(out.detach().abs().max()) > 1e-3  # not trivially equivariant


@torch.no_grad()
def test_linear_head_leaves_missing_irreps_zero():
    """``3o`` is not in the features: that block of the hyperpolarizability is exactly zero."""
    plan = _plan(HYPER)  # 1x1o+1x3o
    head = _head(LinearHead, plan, torch.float64)
    x = torch.randn(5, head.irreps_in.dim, dtype=torch.float64)
    y = plan.from_cartesian(head(x, BATCH, 2))  # [2, 10]  irreps coordinates
    assert plan.irreps == "1x1o+1x3o"
    assert float(y[:, 3:].abs().max()) < 1e-12
    assert float(y[:, :3].abs().min()) > 0.0
    shield = _head(LinearHead, _plan(SHIELD), torch.float64)  # 0e+1e+2e: 1e present here
    assert float(_plan(SHIELD).from_cartesian(shield(x, BATCH)).abs().min()) > 0.0


@pytest.mark.parametrize("cls", [LinearHead, InvariantHead])
@pytest.mark.parametrize("text", [POLAR, HYPER], ids=["mean", "sum"])
def test_structure_pooling_matches_single_nodes(cls, text):
    plan = _plan(text)
    head = _head(cls, plan, torch.float64)
    x = torch.randn(5, head.irreps_in.dim, dtype=torch.float64)
    per_node = torch.stack([head(x[i:i + 1])[0] for i in range(5)])  # [5, 3, ..., 3]
    expected = torch.stack([per_node[:3].sum(0), per_node[3:].sum(0)])
    if plan.pool == "mean":
        expected = torch.stack([per_node[:3].mean(0), per_node[3:].mean(0)])
    _close(head(x, BATCH, 2), expected, 1e-12)
    _close(head(x, BATCH), expected, 1e-12)  # num_graphs inferred from batch


@pytest.mark.parametrize("text", [POLAR, HYPER, SHIELD], ids=["polar", "hyper", "shield"])
def test_invariant_head_is_invariant_and_symmetric(text, dtype):
    plan, tol = _plan(text), TOLERANCES[dtype]
    head = _head(InvariantHead, plan, dtype, mlp_hidden=8)
    r, d = rotation_and_d(IRREPS_IN, True, dtype)
    x = torch.randn(5, d.shape[0], dtype=dtype, generator=torch.Generator().manual_seed(2))
    out = head(x, BATCH, 2)  # [G|N, 3, ..., 3]
    _close(head(x @ d.T, BATCH, 2), out, tol)  # invariant, not rotated
    assert not torch.allclose(rotate_cartesian(out, r, order=plan.order), out, atol=1e-3)
    _close(plan.to_cartesian(plan.from_cartesian(out)), out, tol)  # symmetric projection
    if plan.order == 3:  # ijk = jik = ikj
        _close(out.transpose(1, 2), out, tol)
        _close(out.transpose(2, 3), out, tol)
    if text == POLAR:
        _close(out.transpose(1, 2), out, tol)


def test_q_stays_float64_and_float32_runs():
    plan = _plan(HYPER)
    for cls in (LinearHead, InvariantHead):
        head = _head(cls, plan, torch.float32)
        assert head.change_of_basis.dtype == torch.float64
        assert head(torch.randn(5, head.irreps_in.dim), BATCH, 2).dtype == torch.float32
        head = head.double()
        assert head.change_of_basis.dtype == torch.float64
        assert "change_of_basis" in head.state_dict() and "_q32" not in head.state_dict()


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("cls", [LinearHead, InvariantHead])
def test_heads_script(cls):
    """``tsym export`` scripts the heads: the scripted head gives the same numbers."""
    head = _head(cls, _plan(POLAR), torch.float32)
    scripted = torch.jit.script(head)
    x = torch.randn(5, head.irreps_in.dim)
    torch.testing.assert_close(scripted(x, BATCH, 2), head(x, BATCH, 2), rtol=0, atol=0)
    torch.testing.assert_close(scripted(x, None, None), head(x), rtol=0, atol=0)


def test_bad_arguments_raise():
    plan = _plan(HYPER)
    with pytest.raises(ValueError, match="reaches none"):  # 3o only, backbone without 3o
        LinearHead("4x0e+2x1o", "1x3o", torch.zeros(7, 3, 3, 3))
    with pytest.raises(ValueError, match="no 0e"):
        InvariantHead("2x1o", plan.irreps, plan.change_of_basis)
    with pytest.raises(ValueError, match="kind must be one of"):
        make_head(IRREPS_IN, plan.irreps, plan.change_of_basis, kind="quadratic")
    with pytest.raises(ValueError, match="change_of_basis"):
        LinearHead(IRREPS_IN, plan.irreps, torch.zeros(9, 3, 3, 3))  # dim 10
    assert HEAD_KINDS == ("selfmix", "linear", "invariant")


# ------------------------------------------------------------------- through tsym.build_model
def _ethanol():
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=1)
    return atoms


def _model(kind, dtype=torch.float64):
    return tsym.build_model([POLAR, HYPER, SHIELD], cutoff=4.0, dtype=dtype,
                            backbone_kwargs=BACKBONE,
                            head_kwargs=dict(kind=kind, hidden_mul=2, mlp_hidden=4))


ORDERS = {"alpha": 2, "beta": 3, "sigma": 2}
LEVELS = {"alpha": False, "beta": False, "sigma": True}


def test_model_kinds_equivariance():
    structures = [_ethanol(), molecule("H2O")]
    linear = _model("linear")
    assert all(isinstance(h, LinearHead) for h in linear.heads.values())
    assert_equivariant(linear.predict, structures, ORDERS, atol=1e-9, rtol=1e-8,
                       atom_level=LEVELS)
    invariant = _model("invariant")
    assert all(isinstance(h, InvariantHead) for h in invariant.heads.values())
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(invariant.predict, structures, ORDERS, atol=1e-9, rtol=1e-8,
                           atom_level=LEVELS)
    r = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))[0]
    before = invariant.predict(structures)
    after = invariant.predict([rotate_atoms(a, r) for a in structures])
    for name, value in before.items():  # invariant: the same tensor for the rotated structure
        np.testing.assert_allclose(after[name], value, rtol=1e-9, atol=1e-9 * abs(value).max())
    alpha = before["alpha"]  # [2, 3, 3], symmetric by projection
    np.testing.assert_allclose(alpha, alpha.transpose(0, 2, 1), atol=1e-12 * abs(alpha).max())


def test_model_linear_saves_and_loads(tmp_path):
    model = _model("linear", torch.float32)
    path = tmp_path / "linear.pt"
    model.save(path)
    loaded = tsym.build_model(checkpoint=path)
    assert loaded.head_kwargs["kind"] == "linear"
    assert all(isinstance(h, LinearHead) for h in loaded.heads.values())
    structures = [_ethanol()]
    for name, value in model.predict(structures).items():
        np.testing.assert_array_equal(loaded.predict(structures)[name], value)


def test_model_bad_kind_raises():
    with pytest.raises(ModelConfigError, match="kind must be one of") as info:
        _model("bogus")
    assert isinstance(info.value, TsymError)
