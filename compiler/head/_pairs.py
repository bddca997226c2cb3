"""Clebsch-Gordan contraction of component pairs, in cache-sized column chunks (eager).

This file, like ``_fused.py``, is pasted verbatim into the standalone modules that
``tsym.compiler.emit`` writes, so it imports only ``typing`` and ``torch``.

The self-mix head's tensor products (``_fused.py``) hold features as ``[components, columns]``
(columns = node x channel) and compute ``out = M @ (x[a] * x[b])``: the products of the component
pairs ``(a, b)`` that the paths use, contracted with the Clebsch-Gordan matrix ``M`` (block
diagonal over groups of paths).  For an elastic tensor the pair products are 435 rows x 8,336 columns (14 MB in
float32) for 15 output rows: written whole, the products, their gathers and their gradients go
through main memory several times.  :func:`pair_contract` computes the same thing a few hundred
columns at a time (the pair products of a chunk stay in the caches) in one autograd function whose
backward recomputes the gathers per chunk::

    d x[a] += (M^T d out) * x[b],   d x[b] += (M^T d out) * x[a]

and never keeps the pair products.  That backward works in place; when autograd records it
(``create_graph=True``: second derivatives, e.g. of an output's derivative with respect to the
positions) it computes the same gradients from :func:`_reference`, the plain differentiable
expression, instead, so the result is differentiable again (any order).  The matrices are
constants (no gradient); the eager head
passes them as sparse COO tensors: the Clebsch-Gordan matrix of the elastic head's second
product is 205 x 435 with 917 nonzeros (7%), so one sparse matmul per chunk replaces one dense
matmul per group (8 for elastic) and skips the zeros.
"""
from typing import List, Optional, Tuple

import torch

#: Pair-product elements per chunk (``pairs x columns``): 2^18 floats, 1 MiB in float32.
PAIR_BUDGET = 1 << 18


def _chunk_width(num_pairs: int, num_cols: int) -> int:
    return max(64, min(num_cols, PAIR_BUDGET // max(num_pairs, 1)))


def _mm(mat: torch.Tensor, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``mat @ x`` into ``out`` (a reused buffer: a fresh result per chunk costs more than the
    sparse product itself; ``out`` holds finite numbers, which ``beta=0`` ignores)."""
    if mat.is_sparse:
        return torch.addmm(out, mat, x, beta=0, out=out)
    return torch.mm(mat, x, out=out)


class _PairContract(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, a_idx, b_idx, mat, mat_t, weights, path_idx, summed):
        ctx.save_for_backward(x, a_idx, b_idx, weights, path_idx, summed)
        ctx.mat, ctx.mat_t = mat, mat_t
        num_pairs, cols = a_idx.shape[0], x.shape[1]
        rows = mat.shape[0]
        width = _chunk_width(num_pairs, cols)
        out = x.new_empty(rows if weights is None else summed.shape[0], cols)  # [R or T, C]
        buf_a, buf_b = x.new_empty(num_pairs * width), x.new_empty(num_pairs * width)
        buf_w, buf_o = x.new_empty(rows * width), x.new_zeros(rows * width)
        for c0 in range(0, cols, width):
            xc = x[:, c0:c0 + width]
            w = xc.shape[1]
            pa = torch.index_select(xc, 0, a_idx, out=buf_a[:num_pairs * w].view(num_pairs, w))
            pb = torch.index_select(xc, 0, b_idx, out=buf_b[:num_pairs * w].view(num_pairs, w))
            oc = _mm(mat, pa.mul_(pb), buf_o[:rows * w].view(rows, w))  # [R, w]
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
        mat, mat_t = ctx.mat, ctx.mat_t
        if torch.is_grad_enabled():  # create_graph: a backward that is differentiable itself
            return _reference_backward(ctx, grad_out, x, a_idx, b_idx, weights, path_idx, summed)
        need_x = ctx.needs_input_grad[0]
        need_w = weights is not None and ctx.needs_input_grad[5]
        rows = mat.shape[0]
        num_pairs, cols = a_idx.shape[0], x.shape[1]
        width = _chunk_width(num_pairs, cols)
        grad_x = torch.empty_like(x) if need_x else None
        grad_w = torch.empty_like(weights) if need_w else None
        buf_p = x.new_empty(num_pairs * width)
        buf_a, buf_b = x.new_empty(num_pairs * width), x.new_empty(num_pairs * width)
        buf_o, buf_oc = x.new_empty(rows * width), x.new_zeros(rows * width)
        buf_g = x.new_zeros(num_pairs * width)
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
                    oc = _mm(mat, torch.mul(xa, xb, out=buf_p[:num_pairs * w].view(num_pairs, w)),
                             buf_oc[:rows * w].view(rows, w))
                    grad_w[:, c0:c0 + w] = torch.zeros_like(grad_w[:, :w]).index_add_(
                        0, path_idx, oc.mul_(go))
                go = go.mul_(weights[:, c0:c0 + w].index_select(0, path_idx))  # d o
            if not need_x:
                continue
            gp = _mm(mat_t, go.contiguous(), buf_g[:num_pairs * w].view(num_pairs, w))  # d pairs
            gx = buf_x[:x.shape[0] * w].view(x.shape[0], w).zero_()
            gx.index_add_(0, a_idx, xb.mul_(gp))
            gx.index_add_(0, b_idx, xa.mul_(gp))
            grad_x[:, c0:c0 + w] = gx
        return grad_x, None, None, None, None, grad_w, None, None


def _reference(x: torch.Tensor, a_idx: torch.Tensor, b_idx: torch.Tensor, mat: torch.Tensor,
               weights: Optional[torch.Tensor], path_idx: Optional[torch.Tensor],
               summed: Optional[torch.Tensor]) -> torch.Tensor:
    """:func:`pair_contract` on whole arrays with differentiable torch operations."""
    dense = mat.to_dense() if mat.is_sparse else mat  # [R, P]
    out = dense @ (x.index_select(0, a_idx) * x.index_select(0, b_idx))  # [R, C]
    if weights is None or path_idx is None or summed is None:
        return out
    return summed @ (out * weights.index_select(0, path_idx))  # [T, C]


def _reference_backward(ctx, grad_out, x, a_idx, b_idx, weights, path_idx, summed):
    """The gradients of :func:`_reference`, recorded by autograd (``create_graph=True``)."""
    need_w = weights is not None and ctx.needs_input_grad[5]
    wrt = [t for t, need in ((x, ctx.needs_input_grad[0]), (weights, need_w)) if need]
    if not wrt:
        return None, None, None, None, None, None, None, None
    with torch.enable_grad():
        out = _reference(x, a_idx, b_idx, ctx.mat, weights, path_idx, summed)
        grads = list(torch.autograd.grad(out, wrt, grad_out, create_graph=True))
    grad_x = grads.pop(0) if ctx.needs_input_grad[0] else None
    grad_w = grads.pop(0) if need_w else None
    return grad_x, None, None, None, None, grad_w, None, None


def pair_contract(x: torch.Tensor, a_idx: torch.Tensor, b_idx: torch.Tensor, mat: torch.Tensor,
                  mat_t: torch.Tensor, weights: Optional[torch.Tensor] = None,
                  path_idx: Optional[torch.Tensor] = None,
                  summed: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``o = mat @ (x[a_idx] * x[b_idx])``: ``x`` [D, C] -> [R, C].

    ``mat`` [R, pairs] (dense, or a sparse COO tensor: the Clebsch-Gordan matrices of the
    head are ~7-20% nonzero) and ``mat_t`` its transpose, in ``x``'s dtype.  With ``weights``
    [paths, C], ``path_idx`` [R] and ``summed`` [T, R]: ``summed @ (o * weights[path_idx])``
    [T, C] instead (per-column path weights, then a sum of the rows into outputs).
    Differentiable in ``x`` and ``weights``."""
    return _PairContract.apply(x, a_idx, b_idx, mat, mat_t, weights, path_idx, summed)


def sparse_pattern(dense: torch.Tensor) -> torch.Tensor:
    """``[2, nnz]`` row-major positions of the nonzero entries of ``dense`` (exact zeros only
    are left out), the coalesced order of a sparse COO tensor."""
    return dense.nonzero().t().contiguous()


def sparse_matrix(pattern: torch.Tensor, values: torch.Tensor, shape: List[int]) -> torch.Tensor:
    """A coalesced sparse COO tensor from :func:`sparse_pattern`'s positions and the values."""
    return torch.sparse_coo_tensor(pattern, values, shape, is_coalesced=True,
                                   check_invariants=False)


def block_diagonal(flat: torch.Tensor, rows: List[int], cols: List[int]
                   ) -> Tuple[Tuple[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor],
                              List[int]]:
    """The block-diagonal matrix of blocks ``[rows_g, cols_g]`` stored one after the other in
    ``flat``: ``(pattern, values)`` of it and of its transpose, and its shape."""
    blocks: List[torch.Tensor] = []
    offset = 0
    for r, c in zip(rows, cols):
        blocks.append(flat[offset:offset + r * c].view(r, c))
        offset += r * c
    dense = torch.block_diag(*blocks)  # [sum rows, sum cols]
    pattern, pattern_t = sparse_pattern(dense), sparse_pattern(dense.t())
    return ((pattern, dense[pattern[0], pattern[1]]),
            (pattern_t, dense.t()[pattern_t[0], pattern_t[1]]),
            [int(dense.shape[0]), int(dense.shape[1])])


def dense_pairs(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                mats: List[torch.Tensor]) -> torch.Tensor:
    """``blockdiag(mats) @ (x[a] * x[b])`` [rows, C] on whole arrays, one dense matmul per
    block (the scripted, traced and compiled path)."""
    pairs = x.index_select(0, a) * x.index_select(0, b)  # [P, C]
    sizes = [mat.shape[1] for mat in mats]
    return torch.cat([mat @ chunk for mat, chunk in
                      zip(mats, torch.split(pairs, sizes, dim=0))], dim=0)
