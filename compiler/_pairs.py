"""Clebsch-Gordan contraction of component pairs, in cache-sized column chunks (eager).

This file, like ``_fused.py``, is pasted verbatim into the standalone modules that
``tsym.compiler.emit`` writes, so it imports only ``typing`` and ``torch``.

The self-mix head's tensor products (``_fused.py``) hold features as ``[components, columns]``
(columns = node x channel) and compute ``out = blockdiag(M_g) @ (x[a] * x[b])``: the products of
the component pairs ``(a, b)`` that the paths use, contracted group by group with Clebsch-Gordan
matrices ``M_g``.  For an elastic tensor the pair products are 435 rows x 8,336 columns (14 MB in
float32) for 15 output rows: written whole, the products, their gathers and their gradients go
through main memory several times.  :func:`pair_contract` computes the same thing a few hundred
columns at a time (the pair products of a chunk stay in the caches) in one autograd function whose
backward recomputes the gathers per chunk::

    d x[a] += (M^T d out) * x[b],   d x[b] += (M^T d out) * x[a]

and never keeps the pair products.  The matrices are constants (no gradient).
"""
from typing import List, Optional, Tuple

import torch

#: Pair-product elements per chunk (``pairs x columns``): 2^18 floats, 1 MiB in float32.
PAIR_BUDGET = 1 << 18


def _chunk_width(num_pairs: int, num_cols: int) -> int:
    return max(64, min(num_cols, PAIR_BUDGET // max(num_pairs, 1)))


def _contract(pairs: torch.Tensor, mats: List[torch.Tensor], sizes: List[int],
              out: torch.Tensor) -> None:
    """``out = blockdiag(mats) @ pairs`` group by group (``sizes``: pairs per group)."""
    row = 0
    for mat, chunk in zip(mats, torch.split(pairs, sizes, dim=0)):
        torch.mm(mat, chunk, out=out[row:row + mat.shape[0]])
        row += mat.shape[0]


class _PairContract(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, a_idx, b_idx, mats: Tuple[torch.Tensor, ...], sizes: Tuple[int, ...],
                weights, path_idx, summed):
        ctx.save_for_backward(x, a_idx, b_idx, weights, path_idx, summed)
        ctx.mats, ctx.sizes = mats, sizes
        num_pairs, cols = a_idx.shape[0], x.shape[1]
        rows = sum(m.shape[0] for m in mats)
        width = _chunk_width(num_pairs, cols)
        out = x.new_empty(rows if weights is None else summed.shape[0], cols)  # [R or T, C]
        buf_a, buf_b = x.new_empty(num_pairs * width), x.new_empty(num_pairs * width)
        buf_o, buf_w = x.new_empty(rows * width), x.new_empty(rows * width)
        for c0 in range(0, cols, width):
            xc = x[:, c0:c0 + width]
            w = xc.shape[1]
            pa = torch.index_select(xc, 0, a_idx, out=buf_a[:num_pairs * w].view(num_pairs, w))
            pb = torch.index_select(xc, 0, b_idx, out=buf_b[:num_pairs * w].view(num_pairs, w))
            oc = buf_o[:rows * w].view(rows, w)
            _contract(pa.mul_(pb), list(mats), list(sizes), oc)
            if weights is None:
                out[:, c0:c0 + w] = oc
                continue
            wc = torch.index_select(weights[:, c0:c0 + w], 0, path_idx,
                                    out=buf_w[:rows * w].view(rows, w))  # [R, w]
            out[:, c0:c0 + w] = summed @ oc.mul_(wc)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, a_idx, b_idx, weights, path_idx, summed = ctx.saved_tensors
        need_x = ctx.needs_input_grad[0]
        need_w = weights is not None and ctx.needs_input_grad[5]
        mats_t = [m.t() for m in ctx.mats]
        rows_of = [m.shape[0] for m in ctx.mats]
        rows = sum(rows_of)
        num_pairs, cols = a_idx.shape[0], x.shape[1]
        width = _chunk_width(num_pairs, cols)
        grad_x = torch.empty_like(x) if need_x else None
        grad_w = torch.empty_like(weights) if need_w else None
        buf_g, buf_p = x.new_empty(num_pairs * width), x.new_empty(num_pairs * width)
        buf_a, buf_b = x.new_empty(num_pairs * width), x.new_empty(num_pairs * width)
        buf_o, buf_w = x.new_empty(rows * width), x.new_empty(rows * width)
        buf_x = x.new_empty(x.shape[0] * width)
        for c0 in range(0, cols, width):
            xc = x[:, c0:c0 + width]
            w = xc.shape[1]
            go = grad_out[:, c0:c0 + w]  # [R or T, w]
            xa = torch.index_select(xc, 0, a_idx, out=buf_a[:num_pairs * w].view(num_pairs, w))
            xb = torch.index_select(xc, 0, b_idx, out=buf_b[:num_pairs * w].view(num_pairs, w))
            if weights is not None:  # out = S (o * W[path]), o = M pairs
                go = torch.mm(summed.t(), go, out=buf_o[:rows * w].view(rows, w))  # d (o W)
                if need_w:
                    oc = buf_w[:rows * w].view(rows, w)
                    _contract(torch.mul(xa, xb, out=buf_p[:num_pairs * w].view(num_pairs, w)),
                              list(ctx.mats), list(ctx.sizes), oc)
                    grad_w[:, c0:c0 + w] = torch.zeros_like(grad_w[:, :w]).index_add_(
                        0, path_idx, oc.mul_(go))
                go = go.mul_(weights[:, c0:c0 + w].index_select(0, path_idx))  # d o
            if not need_x:
                continue
            go = go.contiguous()
            gp = buf_g[:num_pairs * w].view(num_pairs, w)  # d loss / d pairs
            _contract(go, mats_t, rows_of, gp)
            gx = buf_x[:x.shape[0] * w].view(x.shape[0], w).zero_()
            gx.index_add_(0, a_idx, xb.mul_(gp))
            gx.index_add_(0, b_idx, xa.mul_(gp))
            grad_x[:, c0:c0 + w] = gx
        return grad_x, None, None, None, None, grad_w, None, None


def pair_contract(x: torch.Tensor, a_idx: torch.Tensor, b_idx: torch.Tensor,
                  mats: List[torch.Tensor], weights: Optional[torch.Tensor] = None,
                  path_idx: Optional[torch.Tensor] = None,
                  summed: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``o = blockdiag(mats) @ (x[a_idx] * x[b_idx])``: ``x`` [D, C] -> [sum of mat rows, C].

    ``mats[g]`` [rows_g, pairs_g] (the pairs of group g are the next ``pairs_g`` entries of
    ``a_idx``/``b_idx``), in ``x``'s dtype.  With ``weights`` [paths, C], ``path_idx`` [rows]
    and ``summed`` [T, rows]: ``summed @ (o * weights[path_idx])`` [T, C] instead (per-column
    path weights, then a sum of the rows into outputs).  Differentiable in ``x`` and
    ``weights``."""
    sizes = tuple(m.shape[1] for m in mats)
    return _PairContract.apply(x, a_idx, b_idx, tuple(m.contiguous() for m in mats), sizes,
                               weights, path_idx, summed)
