"""Tests of the node-wise self-mix head ``tsym.compiler.head.SelfMixHead``.

The changes of basis come from e3nn's ``CartesianTensor`` (built in float64), independently of the
tsym compiler.  ``dtype``/``tol`` (float32: 1e-5, float64: 1e-10, relative to the largest output
entry) and ``rotation_and_d`` come from tests/conftest.py.  Heads are built under their dtype as
the default dtype: e3nn's tensor products keep their Clebsch-Gordan constants in that dtype.
"""
from __future__ import annotations

import copy
import functools
import io
import pickle

import pytest
import torch
from e3nn import o3
from e3nn.io import CartesianTensor

from tsym.compiler.head import SelfMixHead

from ..conftest import default_dtype, rotation_and_d

# name -> (formula, irreps_out, axial); an axial tensor keeps the numbers of Q and flips parities
TARGETS = {
    "vector": ("i", "1x1o", False),
    "sym2": ("ij=ji", "1x0e+1x2e", False),
    "axial_sym2": ("ij=ji", "1x0o+1x2o", True),
    "antisym2": ("ij=-ji", "1x1e", False),
    "levi_civita": ("ijk=-jik=-ikj", "1x0o", False),
    "sym3": ("ijk=jik=kji", "1x1o+1x3o", False),
    "elastic": ("ijkl=jikl=ijlk=klij", "2x0e+2x2e+1x4e", False),
}
SMALL_IN = "6x0e+3x1o+2x2e"
VECTOR_IN = "6x0e+4x1o"  # only even scalars and odd vectors: parity comes from products


@functools.cache
def _bases():
    """formula -> float64 Q [irreps.dim, 3, ..., 3], from e3nn's CartesianTensor (~0.5 s)."""
    out = {}
    with default_dtype(torch.float64):
        for formula, irreps, axial in TARGETS.values():
            if formula in out:
                continue
            ct = CartesianTensor(formula)
            assert o3.Irreps(irreps).dim == ct.dim  # same layout (axial: only parities differ)
            if not axial:
                assert ct == o3.Irreps(irreps)
            out[formula] = ct.reduced_tensor_products().change_of_basis.clone()
    return out


@pytest.fixture(scope="module")
def bases():
    return _bases()


def _head(bases, target, irreps_in=SMALL_IN, dtype=torch.float64, seed=0, **kw):
    """A fresh head for ``target``, built under ``dtype`` as the default dtype."""
    formula, irreps_out, _ = TARGETS[target]
    torch.manual_seed(seed)
    with default_dtype(dtype):
        kw.setdefault("hidden_mul", 3)
        kw.setdefault("mlp_hidden", 8)
        return SelfMixHead(irreps_in, irreps_out, bases[formula], **kw)


@functools.cache
def _shared_head(target, irreps_in=SMALL_IN, dtype=torch.float64, level="structure", pool="sum"):
    """A head shared by the read-only tests (building one costs ~0.2-0.3 s)."""
    return _head(_bases(), target, irreps_in, dtype, level=level, pool=pool)


def _features(irreps, n, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, o3.Irreps(irreps).dim, generator=g, dtype=torch.float64).to(dtype)


def _rotate(t, r):
    """``t`` [batch, 3, ..., 3] -> ``R^{(x) n} t`` (R applied on every Cartesian index)."""
    for k in range(1, t.dim()):
        t = torch.movedim(torch.tensordot(t, r, dims=([k], [1])), -1, k)
    return t


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# ---------------------------------------------------------------------------- equivariance


def _check_equivariance(head, irreps_in, axial, dtype, tol):
    x = _features(irreps_in, 7, dtype)  # [7, irreps_in.dim]
    batch = torch.tensor([0, 1, 0, 1, 1, 0, 1])
    out = head(x, batch, 2)  # [2 or 7, 3, ..., 3]
    assert out.dtype == dtype
    assert out.abs().max() > 1e-3  # not trivially equivariant
    for proper in (True, False):
        r, d = rotation_and_d(irreps_in, proper=proper, dtype=dtype)
        sign = -1.0 if (axial and not proper) else 1.0  # det(R) for an axial tensor
        assert _rel(head(x @ d.T, batch, 2), sign * _rotate(out, r)) < tol, f"proper={proper}"
    return out


def _input_for(target):
    return VECTOR_IN if target in ("axial_sym2", "levi_civita", "antisym2") else SMALL_IN


@pytest.mark.parametrize("target", list(TARGETS))
def test_equivariant_end_to_end(target, dtype, tol):
    """Rotating (proper and improper R) the node features rotates the pooled Cartesian output."""
    head = _shared_head(target, _input_for(target), dtype)
    out = _check_equivariance(head, _input_for(target), TARGETS[target][2], dtype, tol)
    assert out.shape == (2,) + (3,) * (out.dim() - 1)


@pytest.mark.parametrize("target", ["elastic", "axial_sym2"])
def test_equivariant_end_to_end_atom_level(target, dtype, tol):
    head = _shared_head(target, _input_for(target), dtype, level="atom")
    out = _check_equivariance(head, _input_for(target), TARGETS[target][2], dtype, tol)
    assert out.shape[0] == 7


def test_improper_rotation_separates_axial_from_polar(bases):
    """The same Q with polar or axial irreps differs exactly by det(R) under an improper R."""
    x = _features(VECTOR_IN, 5, torch.float64)
    r, d = rotation_and_d(VECTOR_IN, proper=False)
    head = _shared_head("axial_sym2", VECTOR_IN)
    out, out_rot = head(x), head(x @ d.T)
    assert _rel(out_rot, -_rotate(out, r)) < 1e-10
    assert _rel(out_rot, _rotate(out, r)) > 0.5


@pytest.mark.parametrize("target", ["sym2", "elastic", "sym3", "antisym2", "levi_civita"])
def test_output_has_the_declared_symmetry(target, dtype):
    irreps_in = VECTOR_IN if target in ("antisym2", "levi_civita") else SMALL_IN
    out = _shared_head(target, irreps_in, dtype, level="atom")(_features(irreps_in, 4, dtype))
    formula = TARGETS[target][0]
    letters = formula.split("=")[0]
    for term in formula.split("=")[1:]:
        sign = -1.0 if term.startswith("-") else 1.0
        perm = [1 + letters.index(c) for c in term.lstrip("-")]
        permuted = out.permute([0] + perm)  # T with the indices in the order of ``term``
        assert _rel(permuted, sign * out) < 1e-6


# ---------------------------------------------------------------------------- pooling


@pytest.mark.parametrize("pool", ["sum", "mean"])
def test_pooling_equals_per_structure_calls(bases, pool, dtype, tol):
    head = _shared_head("elastic", dtype=dtype, pool=pool)
    batch = torch.tensor([2, 0, 1, 2, 0, 1, 2, 1, 2])  # sizes 2, 3, 4, interleaved
    x = _features(SMALL_IN, 9, dtype)
    out = head(x, batch, 3)  # [3, 3, 3, 3, 3]
    assert out.shape == (3, 3, 3, 3, 3)
    for g in range(3):
        alone = head(x[batch == g])  # batch None: one structure
        assert alone.shape == (1, 3, 3, 3, 3)
        assert _rel(out[g], alone[0]) < tol
    assert torch.equal(head(x, batch), out)  # num_graphs inferred from batch
    # sum/mean relation computed in the irreps basis, independently of the head's pooling
    y = head.node_irreps(x)  # [9, 21]
    q = bases["ijkl=jikl=ijlk=klij"].to(dtype).reshape(21, 81)
    for g, size in enumerate([2, 3, 4]):
        pooled = y[batch == g].sum(0) / (size if pool == "mean" else 1)
        assert _rel(out[g].reshape(81), pooled @ q) < tol


def test_empty_structure_pools_to_zero(bases):
    for pool in ("sum", "mean"):
        head = _shared_head("sym2", pool=pool)
        out = head(_features(SMALL_IN, 3, torch.float64), torch.tensor([0, 0, 2]), 4)
        assert out.shape == (4, 3, 3)
        assert torch.all(out[1] == 0) and torch.all(out[3] == 0)
        assert torch.isfinite(out).all()


def test_atom_level_is_per_node():
    head = _shared_head("sym2", level="atom")
    x = _features(SMALL_IN, 5, torch.float64)
    out = head(x, torch.tensor([0, 0, 1, 1, 1]), 2)
    assert out.shape == (5, 3, 3)
    assert torch.equal(out, head(x))
    for i in range(5):
        assert _rel(head(x[i : i + 1])[0], out[i]) < 1e-12


# ---------------------------------------------------------------------------- reachability


@pytest.mark.parametrize(
    "irreps_in, hidden_mul",
    [("8x0e+4x1o+4x2e", 4), ("64x0e+32x1o+16x2e", 16)],
    ids=["small", "xpainn_size"],
)
def test_elastic_4e_is_nonzero_and_trainable(bases, irreps_in, hidden_mul):
    """lmax-2 features reach the 4e part of the elastic tensor through the two self-mix rounds."""
    head = _head(bases, "elastic", irreps_in, hidden_mul=hidden_mul, mlp_hidden=16)
    sl = [s for (mul, ir), s in zip(head.irreps_out, head.irreps_out.slices()) if ir.l == 4][0]
    x = _features(irreps_in, 6, torch.float64).requires_grad_(True)
    out = head(x, torch.tensor([0, 0, 0, 1, 1, 1]), 2)  # [2, 3, 3, 3, 3]
    q4 = bases["ijkl=jikl=ijlk=klij"][sl].reshape(9, 81)  # orthonormal 4e rows of Q
    part_4e = out.reshape(2, 81) @ q4.T  # [2, 9] 4e coordinates of the Cartesian output
    assert part_4e.abs().max() > 1e-3 * out.abs().max()
    grad_x, grad_w = torch.autograd.grad(part_4e.sum(), [x, head.mlp[2].weight])
    assert grad_x.abs().max() > 1e-6 and grad_w.abs().max() > 1e-6
    # no 4e in irreps_in: the linear skip carries none of it, all of it comes from self-mixing
    assert torch.all(head.skip(x)[:, sl] == 0)


@pytest.mark.parametrize("target", ["levi_civita", "antisym2", "sym3", "axial_sym2"])
def test_parity_reachable_from_even_scalars_and_odd_vectors(bases, target):
    """0o (a triple product), 1e, 3o and 2o from 0e + 1o inputs are nonzero and depend on x."""
    head = _head(bases, target, VECTOR_IN, skip=False)
    x = _features(VECTOR_IN, 4, torch.float64).requires_grad_(True)
    y = head.node_irreps(x)  # [4, irreps_out.dim]
    assert y.abs().max() > 1e-3
    (grad,) = torch.autograd.grad(y.sum(), [x])
    assert grad.abs().max() > 1e-6


# ---------------------------------------------------------------------------- serialisation


def _outputs(head, dtype):
    x = _features(head.irreps_in, 5, dtype, seed=7)
    return head(x, torch.tensor([0, 1, 1, 0, 1]), 2), head(x)


def test_torchscript_matches_eager(dtype):
    head = _shared_head("elastic", dtype=dtype)
    scripted = torch.jit.script(head)
    for a, b in zip(_outputs(scripted, dtype), _outputs(head, dtype)):
        assert torch.allclose(a, b, rtol=0, atol=1e-12 if dtype == torch.float64 else 1e-6)
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    buf.seek(0)
    loaded = torch.jit.load(buf)
    for a, b in zip(_outputs(loaded, dtype), _outputs(head, dtype)):
        assert torch.equal(a, b) or torch.allclose(a, b, rtol=0, atol=1e-6)


def test_pickle_and_deepcopy_give_identical_outputs(bases, dtype):
    head = _shared_head("elastic", dtype=dtype)
    ref = _outputs(head, dtype)
    for clone in (pickle.loads(pickle.dumps(head)), copy.deepcopy(head)):
        for a, b in zip(_outputs(clone, dtype), ref):
            assert torch.equal(a, b)


def test_state_dict_round_trip_weights_only(bases, dtype):
    head = _head(bases, "elastic", dtype=dtype, seed=0)
    buf = io.BytesIO()
    torch.save(head.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh = _head(bases, "elastic", dtype=dtype, seed=123)
    assert not torch.equal(_outputs(fresh, dtype)[0], _outputs(head, dtype)[0])
    fresh.load_state_dict(state)
    for a, b in zip(_outputs(fresh, dtype), _outputs(head, dtype)):
        assert torch.equal(a, b)
    assert state["change_of_basis"].dtype == torch.float64
    assert "_q32" not in state  # derived, not saved


def test_change_of_basis_is_one_float64_buffer(bases):
    q = bases["ij=ji"]
    head = _head(bases, "sym2", dtype=torch.float32)
    assert head.change_of_basis.dtype == torch.float64 and torch.equal(head.change_of_basis, q)
    assert head.change_of_basis.data_ptr() != q.data_ptr()  # a copy: the caller's Q may change
    out = head(_features(SMALL_IN, 3, torch.float32))
    assert out.dtype == torch.float32


def test_dtype_changes_keep_q_float64_and_constants_exact(bases):
    """A float32-built head made ``.double()`` is equivariant to float64 precision; ``Q`` stays."""
    head = _head(bases, "elastic", dtype=torch.float32)
    head.double()
    assert head.change_of_basis.dtype == torch.float64
    _check_equivariance(head, SMALL_IN, False, torch.float64, 1e-10)
    head.float()
    assert head.change_of_basis.dtype == torch.float64  # not rounded to float32
    assert torch.equal(head.change_of_basis, bases["ijkl=jikl=ijlk=klij"])
    _check_equivariance(head, SMALL_IN, False, torch.float32, 1e-5)


def test_state_dict_holds_only_weights_and_q(bases):
    head = _head(bases, "elastic")
    keys = set(head.state_dict())
    assert not any("w3j" in k for k in keys)  # e3nn's constants are rebuilt, not saved
    assert {"change_of_basis", "mlp.2.weight", "tp1.weight", "norm.weight"} <= keys
    assert set(pickle.loads(pickle.dumps(head)).state_dict()) == keys
    assert set(copy.deepcopy(head).state_dict()) == keys


@pytest.mark.slow
def test_torch_compile_matches_eager(bases):
    head = _head(bases, "sym2", dtype=torch.float32)
    compiled = torch.compile(head)
    for a, b in zip(_outputs(compiled, torch.float32), _outputs(head, torch.float32)):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "irreps_in, target, match",
    [
        ("4x1o+2x2e", "sym2", r"^irreps_in has no 0e scalars .*irreps_in '4x1o\+2x2e', irreps_out"),
        ("4x0o+4x1o", "sym2", r"^irreps_in has no 0e scalars"),
        ("8x0e", "sym2", r"^irreps_in needs lmax >= 1 .*irreps_in '8x0e', irreps_out '1x0e\+1x2e'"),
        ("4x0e+2x1e", "levi_civita", r"^target irreps \['0o'\] of irreps_out '1x0o' are not reach"),
        ("4x0e+2x1e", "vector", r"^target irreps \['1o'\] .* from irreps_in '4x0e\+2x1e'"),
    ],
)
def test_construction_errors(bases, irreps_in, target, match):
    with pytest.raises(ValueError, match=match):
        _head(bases, target, irreps_in)


def test_unreachable_high_l_target_raises():
    """l = 7 from l = 1 inputs: two rounds reach l <= 4."""
    with pytest.raises(ValueError, match=r"^target irreps \['7o'\]"):
        SelfMixHead("4x0e+2x1o", "1x7o", torch.zeros(15, 3))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"level": "molecule"}, r"^level must be 'structure' or 'atom'"),
        ({"pool": "max"}, r"^pool must be 'sum' or 'mean'"),
        ({"hidden_mul": 0}, r"^hidden_mul and mlp_hidden must be >= 1"),
    ],
)
def test_bad_options_raise(bases, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _head(bases, "sym2", **kwargs)


def test_change_of_basis_shape_is_checked(bases):
    with pytest.raises(ValueError, match=r"^change_of_basis must have shape \[irreps_out.dim=6"):
        SelfMixHead(SMALL_IN, "1x0e+1x2e", torch.zeros(5, 3, 3))
