"""The eager training kernel of XPaiNN's message block (``runtime/nn/_xpainn_edges.py``).

``MessageBlock`` with ``edge_kernel`` on (the default for eager training) must give the same
sums and the same gradients, for every input and weight, as the plain autograd path
(``edge_kernel`` off), which ``test_xpainn_paths.py`` checks against a direct per-edge sum.

Tolerances: float64 1e-12 and float32 1e-5 relative to the largest entry.  Both paths add the
same products in a different order (per chunk in place, gradients as sums over the 2l+1
components written out); each entry is a sum of at most ~40 edge terms here, so the float32
rounding difference is bounded by ~40 x 2^-24 ~ 2.4e-6 of the largest term, below 1e-5.
"""
from __future__ import annotations

import pytest
import torch

from tsym.runtime.nn._xpainn_edges import KERNEL_CHUNK
from tsym.runtime.nn.xpainn import XPaiNN

from .test_xpainn_paths import _block, _inputs

TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def _run(block, args, kernel, chunk):
    block.edge_kernel = kernel
    s, v, sh, radial, envelope, edge_index = (
        a.clone().requires_grad_(a.is_floating_point()) for a in args)
    out_s, out_v = block(s, v, sh, radial, envelope, edge_index, edge_chunk=chunk)
    loss = (out_s ** 2).sum() + (out_v ** 3).sum()
    wrt = [s, v, sh, radial, envelope, *block.parameters()]
    return [out_s, out_v, *torch.autograd.grad(loss, wrt, allow_unused=True)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("first", [True, False])
@pytest.mark.parametrize("chunk", [None, 1, 7, 1000])
def test_kernel_equals_autograd(dtype, first, chunk):
    block = _block(dtype, first)
    args = _inputs(dtype)
    want = _run(block, args, False, chunk)
    got = _run(block, args, True, chunk)
    names = ["s", "v", "d s", "d v", "d sh", "d radial", "d envelope"] + [
        f"d {n}" for n, _ in block.named_parameters()]
    for name, a, b in zip(names, want, got):
        if a is None:  # the first block has no equivariant norm: no gradient for it
            assert b is None, name
            continue
        scale = a.abs().max().item()
        assert scale > 0, name
        assert (a - b).abs().max().item() <= TOL[dtype] * scale, name


def test_kernel_only_where_it_belongs():
    """Eager training uses the kernel; no-grad runs, traces and compiled blocks the plain path
    (``compile_blocks`` turns it off, inductor fuses the plain path itself)."""
    block = _block(torch.float64, first=False)
    args = _inputs(torch.float64, num_edges=3 * KERNEL_CHUNK // 2)
    calls = []
    original = type(block)._edges

    def spy(self, *a, **k):
        calls.append("plain")
        return original(self, *a, **k)
    type(block)._edges = spy
    try:
        block(*args, edge_chunk=None)[0].sum().backward()
        assert calls == []  # the kernel ran
        with torch.no_grad():
            block(*args, edge_chunk=None)
        assert calls == ["plain"]
    finally:
        type(block)._edges = original
    model = XPaiNN(num_scalars=8, irreps="8x0e+4x1o", num_blocks=2, embedding="onehot")
    assert all(m.edge_kernel for m in model.messages)
    model.compile_blocks = XPaiNN.compile_blocks.__get__(model)
    real = torch.compile
    torch.compile = lambda fn, **kw: fn  # only the switch is checked here
    try:
        model.compile_blocks()
    finally:
        torch.compile = real
    assert not any(m.edge_kernel for m in model.messages)
