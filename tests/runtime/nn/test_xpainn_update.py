"""XPaiNN's update block (``runtime/nn/_xpainn_update.py``) against its e3nn modules.

The block computes ``Linear_U`` and ``Linear_V`` from their flat weights as one matmul per l and
its norms and dot products in an m-major layout.  The reference here is the formula of the
``xpainn.py`` docstring written with the e3nn ``o3.Linear`` modules themselves (whose weights the
block uses) and flat per-channel sums (``index_add`` over the components of each channel).

Tolerances: float64 1e-12 and float32 1e-5 relative to the largest entry: both sides add the
same products (at most ~15 terms per sum here: channels x (2l+1), the MLP widths) in a
different order, so they differ by a few float32 roundings (~15 x 2^-24 ~ 1e-6) per step of a
short chain (norm, linear, MLP, products).
"""
from __future__ import annotations

import pytest
import torch
from e3nn import o3

from tsym.runtime.nn.xpainn import UpdateBlock

from ...conftest import default_dtype

TOL = {torch.float64: 1e-12, torch.float32: 1e-5}
SCALARS = 5


def _block(irreps, dtype):
    torch.manual_seed(0)
    with default_dtype(dtype):
        block = UpdateBlock({"scalars": f"{SCALARS}x0e", "equivariant": irreps})
        with torch.no_grad():  # nonzero biases everywhere, so every term is exercised
            for p in block.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return block


def _reference(block, irreps, s, v):
    """The update with e3nn's modules and flat per-channel sums."""
    v_n = block.equivariant_norm(v)
    u, w = block.linear_u(v_n), block.linear_v(v_n)  # [N, dim] each
    channel, degree, start = [], [], 0
    for mul, ir in irreps:
        channel += [start + c for c in range(mul) for _ in range(ir.dim)]
        degree += [float(ir.dim)] * mul
        start += mul
    channel = torch.tensor(channel)
    degree = torch.tensor(degree, dtype=v.dtype)

    def channel_sum(x):
        return x.new_zeros(x.shape[0], start).index_add_(1, channel, x)  # [N, K]
    norms = torch.sqrt(channel_sum(w * w) + block.eps ** 2) - block.eps
    a_vv, a_sv, a_ss = torch.split(
        block.update_mlp(torch.cat([block.scalar_norm(s), norms], dim=-1)), block.split, dim=-1)
    dots = channel_sum(u * w) * torch.rsqrt(degree)
    return s + a_sv * block.dot_linear(dots) + a_ss, v + u * a_vv.index_select(1, channel)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("irreps", ["6x0e+4x1o+3x2e", "4x1o+2x2e", "5x0e", "3x0e+2x1o+2x2e+1x3o"])
def test_update_equals_e3nn_modules(dtype, irreps):
    irreps = o3.Irreps(irreps)
    block = _block(irreps, dtype)
    g = torch.Generator().manual_seed(1)
    s0 = torch.randn(9, SCALARS, generator=g, dtype=dtype)
    v0 = torch.randn(9, irreps.dim, generator=g, dtype=dtype)
    results = []
    for fn in (lambda s, v: _reference(block, irreps, s, v), block):
        s, v = s0.clone().requires_grad_(), v0.clone().requires_grad_()
        out_s, out_v = fn(s, v)
        loss = (out_s ** 2).sum() + (out_v ** 3).sum()
        grads = torch.autograd.grad(loss, [s, v, *block.parameters()], allow_unused=True)
        results.append([out_s, out_v, *grads])
    names = ["s", "v", "d s", "d v"] + [f"d {n}" for n, _ in block.named_parameters()]
    for name, want, got in zip(names, *results):
        if want is None:  # e.g. the norm's empty bias without 0e
            assert got is None, name
            continue
        scale = want.abs().max().item()
        assert scale > 0, name
        assert (got - want).abs().max().item() <= TOL[dtype] * scale, name
