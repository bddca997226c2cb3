"""The arithmetic of XPaiNN's update block, per degree l, with ``Linear_U`` and ``Linear_V`` as
one matrix product.

``UpdateBlock`` keeps its e3nn ``o3.Linear`` modules (they hold the weights, so the state dict
is unchanged) but does not call them: for irreps with one entry per l both maps are
block-diagonal, ``y_l[n, v, q] = alpha_l sum_u x_l[n, u, q] W_l[u, v]`` (``alpha_l`` e3nn's path
weight, ``1/sqrt(mul_l)``; plus e3nn's bias on ``0e``), so per l the features are transposed
once to ``[N (2l+1), mul]`` and multiplied by ``[W_u | W_v]`` in one ``matmul``; the norms
``|V|`` and dot products ``<U, V>`` are sums over the short middle axis of ``[N, 2l+1, mul]``
(no index_add over a flat layout), and ``U`` is scaled by its gate in that layout before it goes
back to e3nn's.  Same function to float rounding (``tests/runtime/nn/test_xpainn_update.py``
checks it against the e3nn modules).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from e3nn import o3

__all__ = ["LinearPlan", "linear_plan", "update"]


@dataclass(frozen=True)
class LinearPlan:
    """Where each block's ``[mul, mul]`` matrix lies in an ``o3.Linear``'s flat weight.

    ``offsets[k]``, ``alphas[k]``: start and path weight of block k; ``bias_block``: the block
    with e3nn's bias (the ``0e`` one; -1: none), ``bias_alpha`` its path weight."""
    offsets: tuple[int, ...]
    alphas: tuple[float, ...]
    bias_block: int
    bias_alpha: float


def linear_plan(lin: o3.Linear, irreps: o3.Irreps) -> LinearPlan:
    """The :class:`LinearPlan` of ``o3.Linear(irreps, irreps, ...)`` for irreps with one entry
    per irrep (so e3nn's only paths are block k -> block k)."""
    offsets, alphas = [-1] * len(irreps), [0.0] * len(irreps)
    offset, bias_block, bias_alpha = 0, -1, 1.0
    for ins in lin.instructions:
        if ins.i_in == -1:
            bias_block, bias_alpha = ins.i_out, float(ins.path_weight)
            continue
        if ins.i_in != ins.i_out:
            raise ValueError(f"unexpected path {ins.i_in} -> {ins.i_out} in {lin}")
        offsets[ins.i_in], alphas[ins.i_in] = offset, float(ins.path_weight)
        offset += ins.path_shape[0] * ins.path_shape[1]
    if min(offsets) < 0:
        raise ValueError(f"{lin} misses the path of some block of {irreps}")
    return LinearPlan(tuple(offsets), tuple(alphas), bias_block, bias_alpha)


def _matrix(weight: torch.Tensor, plan: LinearPlan, k: int, mul: int) -> torch.Tensor:
    start = plan.offsets[k]
    return weight[start:start + mul * mul].view(mul, mul) * plan.alphas[k]  # [mul_in, mul_out]


def update(block, s: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``UpdateBlock.forward``: ``s`` [N, S], ``v`` [N, dim] (e3nn layout) -> the same."""
    n = v.shape[0]
    v_n = block.equivariant_norm(v)  # [N, dim]
    lin_u, lin_v = block.linear_u, block.linear_v
    us, norms, dots = [], [], []
    for k, x in enumerate(torch.split(v_n, block.feature_sizes, dim=-1)):
        mul, d = block.muls[k], block.dims[k]
        w_uv = torch.cat([_matrix(lin_u.weight, block.plan_u, k, mul),
                          _matrix(lin_v.weight, block.plan_v, k, mul)], dim=1)  # [mul, 2 mul]
        if d == 1:
            if k == block.plan_u.bias_block:
                bias = torch.cat([lin_u.bias * block.plan_u.bias_alpha,
                                  lin_v.bias * block.plan_v.bias_alpha])  # [2 mul]
                y = torch.addmm(bias, x, w_uv)
            else:
                y = x @ w_uv
            y = y.view(n, 1, 2 * mul)  # [N, 1, 2 mul]
        else:
            x_t = x.reshape(n, mul, d).transpose(1, 2).reshape(n * d, mul)  # [N (2l+1), mul]
            y = (x_t @ w_uv).view(n, d, 2 * mul)  # [N, 2l+1, 2 mul]
        u, w = y[..., :mul], y[..., mul:]  # [N, 2l+1, mul] each
        us.append(u)
        norms.append((w * w).sum(dim=1))  # [N, mul]
        dots.append((u * w).sum(dim=1) * d ** -0.5)  # [N, mul]
    norms_t = torch.sqrt(torch.cat(norms, dim=-1) + block.eps ** 2) - block.eps  # [N, K]
    a_vv, a_sv, a_ss = torch.split(
        block.update_mlp(torch.cat([block.scalar_norm(s), norms_t], dim=-1)), block.split, dim=-1)
    s = s + a_sv * block.dot_linear(torch.cat(dots, dim=-1)) + a_ss  # [N, S]
    parts = []
    for u, gate, mul, d in zip(us, torch.split(a_vv, block.muls, dim=-1), block.muls, block.dims):
        parts.append((u * gate.unsqueeze(1)).transpose(1, 2).reshape(n, mul * d))  # e3nn layout
    return s, v + torch.cat(parts, dim=-1)  # [N, dim]
