"""Second derivatives through every hand-written backward, backbone and head (float64).

``torch.autograd.gradcheck`` compares autograd's first derivatives with finite differences, and
``gradgradcheck`` the derivatives of the backward itself (``create_graph=True``): before, the
custom kernels (``compiler/_pairs.py``, ``runtime/nn/_xpainn_edges.py``) raised "trying to
differentiate twice a function marked with @once_differentiable".  Their backward now records
the plain differentiable expression when autograd asks for a graph.  gradcheck's own tolerances
(atol 1e-5, rtol 1e-3 on central differences of step 1e-6) are float64's.  The XPaiNN block
(~100 inputs) is checked in gradcheck's fast mode (random directions in input and output space,
``torch.autograd.gradcheck(fast_mode=True)``); the kernels that fail without the change fail it
too (checked by running this file against the previous ``@once_differentiable`` kernels).
"""
from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import tsym
from tsym.compiler.head._pairs import pair_contract, sparse_matrix, sparse_pattern
from tsym.runtime.nn.extras import INSTALL

from ..nn.test_extra_backbones import KWARGS as EXTRA_KWARGS
from ..nn.test_extra_backbones import PACKAGE
from ..nn.test_xpainn_paths import _block, _inputs
from ._models import molecules, tiny_model


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
def test_pair_contract_twice_differentiable(weighted, sparse):
    g = torch.Generator().manual_seed(0)
    d, pairs, rows, cols = 4, 6, 5, 3
    a, b = torch.randint(0, d, (pairs,), generator=g), torch.randint(0, d, (pairs,), generator=g)
    mat = torch.randn(rows, pairs, generator=g, dtype=torch.float64)
    mat[0, 0] = 0.0
    mat_t = mat.t().contiguous()
    if sparse:
        mat, mat_t = (sparse_matrix(sparse_pattern(m), m[tuple(sparse_pattern(m))],
                                    list(m.shape)) for m in (mat, mat_t))
    x = torch.randn(d, cols, generator=g, dtype=torch.float64, requires_grad=True)
    if weighted:
        w = torch.randn(2, cols, generator=g, dtype=torch.float64, requires_grad=True)
        path = torch.randint(0, 2, (rows,), generator=g)
        summed = torch.randn(2, rows, generator=g, dtype=torch.float64)
        fn, inputs = (lambda x, w: pair_contract(x, a, b, mat, mat_t, w, path, summed)), (x, w)
    else:
        fn, inputs = (lambda x: pair_contract(x, a, b, mat, mat_t)), (x,)
    assert gradcheck(fn, inputs)
    assert gradgradcheck(fn, inputs)


@pytest.mark.parametrize("first", [True, False])
def test_xpainn_edge_kernel_twice_differentiable(first):
    block = _block(torch.float64, first)
    block.edge_kernel = True  # the hand-written backward (it runs whenever grad is enabled)
    s, v, sh, radial, envelope, edge_index = _inputs(torch.float64, num_nodes=4, num_edges=9)
    inputs = tuple(t.clone().requires_grad_() for t in (s, v, sh, envelope))

    def fn(s, v, sh, envelope):  # (radial's path is the model test's)
        return block(s, v, sh, radial, envelope, edge_index)

    # fast mode: finite differences along random directions, not every input (~10x quicker)
    assert gradcheck(fn, inputs, fast_mode=True)
    assert gradgradcheck(fn, inputs, fast_mode=True)


BACKBONES = {"xpainn": None, "nequip": dict(irreps_hidden="4x0e+2x1o+2x2e", num_basis=4,
                                            radial_hidden=8, num_attrs=10),
             **EXTRA_KWARGS}


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_model_positions_twice_differentiable(backbone):
    """positions -> (dipole, polarizability) of a whole model: first and second derivatives."""
    if backbone in PACKAGE:
        module, extra = PACKAGE[backbone]
        pytest.importorskip(module, reason=f"the {extra!r} extra is not installed: "
                                           f"{INSTALL[extra]}")
    model = tiny_model(torch.float64, backbone, BACKBONES[backbone])
    water = molecules()[0]
    if backbone in EXTRA_KWARGS:  # their elements: H, C, O, Zn
        water.symbols = "OHH"
    graph = tsym.collate([water], model.cutoff, torch.float64)

    def fn(pos):
        out = model({**graph, "positions": pos})
        return out["dipole"], out["polarizability"]

    pos = graph["positions"].clone().requires_grad_()
    assert gradcheck(fn, (pos,))
    assert gradgradcheck(fn, (pos,))
