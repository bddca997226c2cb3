"""``tsym.check_equivariance``: a wrong irreps layout (the right size, sorted) is reported as a
large error, the right layout as rounding; on a built model, a (backbone, head) pair, a plain
function and a graph dict.  Float32 and float64, tolerances derived below."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

import tsym
from tsym.compiler import SelfMixHead
from tsym.runtime.equivariance._check import _transforms

from ..conftest import TOLERANCES, default_dtype
from ._concat_net import LAYOUT, SORTED, ConcatNet

SPEC = "tensor alpha { indices ij; symmetry ij = ji }"
HEAD_KW = dict(hidden_mul=4, mlp_hidden=8)


def _structures():
    crystal = bulk("NaCl", "rocksalt", a=4.0) * (1, 1, 2)
    crystal.rattle(0.05, seed=1)
    return [molecule("CH3OH"), molecule("H2O"), crystal]


def _model(irreps, dtype, state=None):
    with default_dtype(dtype):
        torch.manual_seed(0)
        net = ConcatNet()
        if state is not None:
            net.load_state_dict({k: v.to(dtype) for k, v in state.items()})
        backbone = tsym.backbone_from_module(net, irreps, cutoff=4.0, check=False)
        return tsym.build_model(SPEC, backbone=backbone, dtype=dtype, head_kwargs=HEAD_KW)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_sorted_layout_is_a_large_error(dtype):
    report = tsym.check_equivariance(_model(SORTED, dtype), _structures())
    assert not report.ok
    # a layout error is of the order of the output: far above any rounding of either dtype
    assert report["alpha"].relative > 1e-2
    assert "NOT EQUIVARIANT" in str(report) and "alpha" in str(report)


def test_right_layout_is_rounding_float64():
    report = tsym.check_equivariance(_model(LAYOUT, torch.float64), _structures())
    assert report.ok and report.dtype == "float64"
    assert report["alpha"].relative <= TOLERANCES[torch.float64]


def test_right_layout_is_rounding_float32():
    """Bound by the triangle inequality with the float64 twin F (same weights):
    |f(gx) - g.f(x)| <= |f(gx) - F(gx)| + |g.(f(x) - F(x))| + |F(gx) - g.F(x)|, and g. moves a
    row's largest entry to at most its Frobenius norm, <= 3 x its largest entry for rank 2."""
    m32 = _model(LAYOUT, torch.float32)
    m64 = _model(LAYOUT, torch.float64)
    m64.load_state_dict({k: v.double() for k, v in m32.state_dict().items()})
    atoms = _structures()
    r64 = tsym.check_equivariance(m64, atoms)
    rounding = 0.0
    for moved in [atoms] + [t.apply(atoms) for t in _transforms(atoms, 0, True)]:
        a, b = m32.predict(moved)["alpha"], m64.predict(moved)["alpha"]
        rounding = max(rounding, float(np.abs(a.astype(np.float64) - b).max()))
    report = tsym.check_equivariance(m32, atoms)  # seed 0: the transformations above
    assert report.dtype == "float32"
    assert report["alpha"].error <= (1 + 3) * rounding + r64["alpha"].error
    assert report.ok


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_backbone_and_head_pair(dtype):
    plan = tsym.compile_text(SPEC)[0]
    with default_dtype(dtype):
        torch.manual_seed(0)
        backbone = tsym.backbone_from_module(ConcatNet(), LAYOUT, cutoff=4.0)
        right = SelfMixHead(LAYOUT, plan.irreps, plan.change_of_basis, **HEAD_KW).to(dtype)
        wrong = SelfMixHead(SORTED, plan.irreps, plan.change_of_basis, **HEAD_KW).to(dtype)
    report = tsym.check_equivariance((backbone, {"right": right, "wrong": wrong}),
                                     _structures())
    assert report["wrong"].relative > 1e-2
    # sqrt(eps) of the dtype (the report's own tolerance): well above rounding of a short chain
    assert report["right"].relative <= report.tolerance
    assert report.tolerance == pytest.approx(float(torch.finfo(dtype).eps) ** 0.5)
    assert not report.ok


def test_plain_function_and_graph_input():
    def centred(structures):  # per atom: position minus the centre (polar); a fixed vector
        rows = np.concatenate([a.positions - a.positions.mean(0) for a in structures])
        return {"r": rows, "fixed": np.tile([1.0, 0.0, 0.0], (len(structures), 1))}

    atoms = [molecule("CH4"), molecule("NH3")]
    report = tsym.check_equivariance(centred, atoms, orders={"r": 1, "fixed": 1})
    assert report["r"].relative <= TOLERANCES[torch.float64]
    assert report["fixed"].relative > 0.1  # does not rotate: caught
    graph = tsym.runtime.graph.collate(atoms, 3.0, torch.float64)
    again = tsym.check_equivariance(centred, graph, orders={"r": 1, "fixed": 1})
    assert again["r"].relative <= TOLERANCES[torch.float64]
    with pytest.raises(tsym.TsymError, match="needs orders"):
        tsym.check_equivariance(centred, atoms)


def test_axial_head_report():
    spec = "tensor g { indices ij; symmetry ij = ji; parity axial; level atom }"
    with default_dtype(torch.float64):
        torch.manual_seed(0)
        backbone = tsym.backbone_from_module(ConcatNet(), LAYOUT, cutoff=4.0)
    torch.manual_seed(0)
    model = tsym.build_model(spec, backbone=backbone, dtype=torch.float64, head_kwargs=HEAD_KW)
    report = tsym.check_equivariance(model, _structures()[:2])
    assert report["g"].axial and report["g"].atom_level
    assert report["g"].scale > 0 and report["g"].relative <= TOLERANCES[torch.float64]
