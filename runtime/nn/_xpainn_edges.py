"""The per-edge part of XPaiNN's message block as one autograd function with its own backward.

Eager training spends most of the backbone's time on the per-edge products and their backward
(``benchmarks/README.md``, "Speed").  Written with autograd, each of the ~20 operations per edge
chunk keeps its inputs alive for the backward and allocates its own ``[chunk, hidden]`` or
``[chunk, dim]`` temporaries; the backward then runs as many nodes again.  :func:`edge_sums` does
the same sums in one :class:`torch.autograd.Function`: the forward keeps only its inputs (node
arrays, the radial basis and the harmonics), works on each chunk in place, and the backward
recomputes the gathers it needs, chunk by chunk, and writes the gradients straight into their
node or edge arrays (gate gradients as short sums over the 2l+1 components, no broadcast copies).

With ``g = phi[src] * filt`` split into gates ``g_v`` (per l, absent in the first block), ``g_Y``
(per l) and scalar messages ``g_s``, and features in the m-major layout ``[2l+1, mul]`` per l::

    ds[i] = sum_{e: dst(e)=i} g_s[e]
    dv_l[i, q, c] = sum_{e: dst(e)=i} g_Y,l[e, c] Y_l[e, q] + g_v,l[e, c] v_l[src(e), q, c]

(``Y_0 = 1``: 'component' normalisation).  The backward, with ``G = d loss / d dv`` gathered at
``dst``: ``d g_Y,l[e, c] = sum_q G[e, q, c] Y_l[e, q]``, ``d g_v,l[e, c] = sum_q G[e, q, c]
v_l[src, q, c]``, ``d v_l[src] += g_v,l G``, ``d Y_l[e, q] = sum_c G[e, q, c] g_Y,l[e, c]``,
``d phi[src] += d g * filt``, ``d filt = d g * phi[src]``; the filter ``filt = (radial W^T + b) *
envelope = [radial * envelope, envelope] [W, b]^T`` is one small matmul per chunk, recomputed in
the backward rather than kept.  Checked against autograd of the
plain path in ``tests/runtime/nn/test_xpainn_edges.py``.

Second derivatives: the backward above works in place.  When autograd records the backward
(``create_graph=True``, as for a derivative of an output with respect to the positions that is
itself differentiated: Hessian-vector products, a loss on APTs), :meth:`_EdgeSums.backward`
computes the gradients of :func:`_reference_sums` (the same sums written with plain
differentiable operations on whole arrays) with autograd instead, so they can be differentiated
again, to any order; ``tests/runtime/spectra/test_double_backward.py`` checks it with
``gradgradcheck``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

__all__ = ["EdgePlan", "edge_sums", "KERNEL_CHUNK"]

#: Edges per chunk in :func:`edge_sums` at most (``XPaiNN.edge_chunk`` may ask for fewer): its
#: ``[chunk, hidden]`` work arrays then stay in the CPU caches (a training step of 32 molecules,
#: 7k edges, one thread: 256-768 alike, 1024 ~10% slower).
KERNEL_CHUNK = 512


@dataclass(frozen=True)
class EdgePlan:
    """The static layout of one message block's per-edge work.

    ``muls``/``dims``: channels and 2l+1 per degree l; ``num_scalars``: width of ``g_s``;
    ``has_v``: the gates ``g_v`` lead ``g`` (not in the first block); ``chunk``: edges at a time.
    """
    muls: tuple[int, ...]
    dims: tuple[int, ...]
    num_scalars: int
    has_v: bool
    chunk: int

    @property
    def channels(self) -> int:  # K
        return sum(self.muls)

    @property
    def dim(self) -> int:
        return sum(m * d for m, d in zip(self.muls, self.dims))


def _blocks(plan: EdgePlan):
    """Per l: (mul, 2l+1, column of the feature block, column of its gate, column in sh)."""
    col = gate = sh_col = 0
    for mul, d in zip(plan.muls, plan.dims):
        yield mul, d, col, gate, sh_col
        col, gate, sh_col = col + mul * d, gate + mul, sh_col + d


def _component_sum(out: torch.Tensor, grad: torch.Tensor, factor: torch.Tensor) -> None:
    """``out[e, c] = sum_q grad[e, q, c] * factor[e, q, c]`` (factor broadcast), in place."""
    torch.mul(grad[:, 0], factor[:, 0], out=out)
    for q in range(1, grad.shape[1]):
        out.addcmul_(grad[:, q], factor[:, q])


class _EdgeSums(torch.autograd.Function):
    @staticmethod
    def forward(ctx, phi, basis, weight, v_t, sh, edge_index, plan: EdgePlan):
        ctx.save_for_backward(phi, basis, weight, v_t, sh, edge_index)
        ctx.plan = plan
        n, hidden, k = phi.shape[0], phi.shape[1], plan.channels
        off_y = k if plan.has_v else 0
        off_s = off_y + k
        ds = phi.new_zeros(n, plan.num_scalars)  # [N, S]
        dv = phi.new_zeros(n, plan.dim)  # [N, dim] (m-major)
        size = min(plan.chunk, edge_index.shape[1])
        filt_buf, g_buf, msg_buf = (phi.new_empty(size, w) for w in (hidden, hidden, plan.dim))
        s_buf = phi.new_empty(size, plan.num_scalars)
        for start in range(0, edge_index.shape[1], plan.chunk):
            src, dst = edge_index[0, start:start + plan.chunk], edge_index[1, start:start + plan.chunk]
            c = src.shape[0]
            f = torch.mm(basis[start:start + c], weight.t(), out=filt_buf[:c])  # [C, hidden]
            g = torch.index_select(phi, 0, src, out=g_buf[:c]).mul_(f)  # [C, hidden]
            # a contiguous source: index_add_ of a strided one takes a slow path
            ds.index_add_(0, dst, s_buf[:c].copy_(g[:, off_s:]))
            msg = msg_buf[:c]  # [C, dim]
            if plan.has_v:
                torch.index_select(v_t, 0, src, out=msg)
            for mul, d, col, gate, sh_col in _blocks(plan):
                m = msg[:, col:col + mul * d].view(c, d, mul)
                g_y = g[:, off_y + gate:off_y + gate + mul].unsqueeze(1)  # [C, 1, mul]
                if plan.has_v:
                    m.mul_(g[:, gate:gate + mul].unsqueeze(1))
                    if d == 1:
                        m.add_(g_y)
                    else:
                        m.addcmul_(g_y, sh[start:start + c, sh_col:sh_col + d].unsqueeze(2))
                elif d == 1:
                    m.copy_(g_y)
                else:
                    torch.mul(g_y, sh[start:start + c, sh_col:sh_col + d].unsqueeze(2), out=m)
            dv.index_add_(0, dst, msg)
        return ds, dv

    @staticmethod
    def backward(ctx, grad_ds, grad_dv):
        phi, basis, weight, v_t, sh, edge_index = ctx.saved_tensors
        plan: EdgePlan = ctx.plan
        need = ctx.needs_input_grad
        if torch.is_grad_enabled():  # create_graph: a backward that is differentiable itself
            inputs = (phi, basis, weight, v_t, sh)
            wrt = [t for i, t in enumerate(inputs) if need[i]]
            with torch.enable_grad():
                outs = _reference_sums(phi, basis, weight, v_t, sh, edge_index, plan)
                grads = iter(torch.autograd.grad(outs, wrt, (grad_ds, grad_dv),
                                                 create_graph=True, allow_unused=True))
            return (*(next(grads) if need[i] else None for i in range(5)), None, None)
        k, hidden = plan.channels, phi.shape[1]
        off_y = k if plan.has_v else 0
        off_s = off_y + k
        grad_ds, grad_dv = grad_ds.contiguous(), grad_dv.contiguous()
        g_phi, g_w, g_v, g_sh = (  # accumulated (g_sh: its l = 0 column stays zero)
            torch.zeros_like(t) if (t is not None and need[i]) else None
            for i, t in zip((0, 2, 3, 4), (phi, weight, v_t, sh)))
        g_basis = torch.empty_like(basis) if need[1] else None  # every row written once
        size = min(plan.chunk, edge_index.shape[1])
        f_buf, p_buf, gg_buf = (phi.new_empty(size, hidden) for _ in range(3))
        big_buf, vj_buf = phi.new_empty(size, plan.dim), phi.new_empty(size, plan.dim)
        for start in range(0, edge_index.shape[1], plan.chunk):
            src, dst = edge_index[0, start:start + plan.chunk], edge_index[1, start:start + plan.chunk]
            c = src.shape[0]
            r = basis[start:start + c]
            f = torch.mm(r, weight.t(), out=f_buf[:c])  # [C, hidden], the filter again
            p = torch.index_select(phi, 0, src, out=p_buf[:c])  # [C, hidden]
            big = torch.index_select(grad_dv, 0, dst, out=big_buf[:c])  # [C, dim] (m-major)
            gg = gg_buf[:c]  # d loss / d g
            gg[:, off_s:] = grad_ds.index_select(0, dst)
            vj = torch.index_select(v_t, 0, src, out=vj_buf[:c]) if plan.has_v else None
            for mul, d, col, gate, sh_col in _blocks(plan):
                grad = big[:, col:col + mul * d].view(c, d, mul)
                y_cols = slice(off_y + gate, off_y + gate + mul)
                if d == 1:
                    gg[:, y_cols] = grad[:, 0]
                else:
                    _component_sum(gg[:, y_cols], grad,
                                   sh[start:start + c, sh_col:sh_col + d].unsqueeze(2))
                    if g_sh is not None:
                        g_y = p[:, y_cols] * f[:, y_cols]
                        g_sh[start:start + c, sh_col:sh_col + d] = (grad * g_y.unsqueeze(1)).sum(2)
                if plan.has_v:
                    _component_sum(gg[:, gate:gate + mul], grad,
                                   vj[:, col:col + mul * d].view(c, d, mul))
                    if g_v is not None:  # d v_l[src] = g_v,l * G, in place in G
                        grad.mul_((p[:, gate:gate + mul] * f[:, gate:gate + mul]).unsqueeze(1))
            if g_v is not None:
                g_v.index_add_(0, src, big)
            gf = p.mul_(gg)  # d loss / d filter, in place of phi[src]
            if g_phi is not None:
                g_phi.index_add_(0, src, gg.mul_(f))
            if g_w is not None:
                g_w.addmm_(gf.t(), r)
            if g_basis is not None:
                torch.mm(gf, weight, out=g_basis[start:start + c])
        return g_phi, g_basis, g_w, g_v, g_sh, None, None


def _reference_sums(phi, basis, weight, v_t, sh, edge_index, plan: EdgePlan
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """:class:`_EdgeSums`'s forward with plain differentiable operations on all edges at once."""
    src, dst = edge_index  # [E] each
    k, n, num_edges = plan.channels, phi.shape[0], edge_index.shape[1]
    off_y = k if plan.has_v else 0
    off_s = off_y + k
    g = phi.index_select(0, src) * (basis @ weight.t())  # [E, hidden]
    ds = phi.new_zeros(n, plan.num_scalars).index_add(0, dst, g[:, off_s:])  # [N, S]
    v_j = v_t.index_select(0, src) if plan.has_v else None  # [E, dim]
    msgs = []
    for mul, d, col, gate, sh_col in _blocks(plan):
        g_y = g[:, off_y + gate:off_y + gate + mul].unsqueeze(1)  # [E, 1, mul]
        m = g_y if d == 1 else g_y * sh[:, sh_col:sh_col + d].unsqueeze(2)  # [E, d, mul]
        if v_j is not None:
            m = m + g[:, gate:gate + mul].unsqueeze(1) * v_j[:, col:col + mul * d].view(
                num_edges, d, mul)
        msgs.append(m.expand(num_edges, d, mul).reshape(num_edges, mul * d))
    dv = phi.new_zeros(n, plan.dim).index_add(0, dst, torch.cat(msgs, dim=1))  # [N, dim]
    return ds, dv


def edge_sums(phi: torch.Tensor, radial: torch.Tensor, envelope: torch.Tensor,
              linear: torch.nn.Linear, v_t: Optional[torch.Tensor], sh: torch.Tensor,
              edge_index: torch.Tensor, plan: EdgePlan) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums of the messages at each centre: ``[N, S]`` and ``[N, dim]`` (m-major).

    ``phi`` [N, hidden] node filters; the edge filters ``linear(radial) * envelope`` [E, hidden]
    (``radial`` [E, B], ``envelope`` [E, 1]) are made chunk by chunk, never whole, as one
    matmul ``[radial * envelope, envelope] @ [W, b]^T``; ``v_t`` [N, dim] the normalised
    features (m-major; None in the first block), ``sh`` [E, sum of 2l+1] harmonics,
    ``edge_index`` [2, E] (neighbour, centre).  Differentiable in every tensor and in
    ``linear``'s weight and bias."""
    basis = radial * envelope  # [E, B]
    weight = linear.weight  # [hidden, B]
    if linear.bias is not None:
        basis = torch.cat([basis, envelope], dim=1)  # [E, B + 1]
        weight = torch.cat([weight, linear.bias.unsqueeze(1)], dim=1)  # [hidden, B + 1]
    return _EdgeSums.apply(phi, basis, weight, v_t, sh, edge_index, plan)
