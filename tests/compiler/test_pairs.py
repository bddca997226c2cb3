"""``pair_contract`` (compiler/_pairs.py): column-chunked pair products against the whole-array
formula, values and gradients.

The reference is ``blockdiag(M_g) @ (x[a] * x[b])`` (and ``S @ (o * W[path])``) written with
plain autograd on whole arrays.  Both compute the same products and the same sums over the
pairs of a group, chunking only the independent columns; in the backward the gradient of a
component collects at most ``2 * pairs`` terms (each index occurs at most once per pair side).
Tolerances: float64 1e-12 and float32 1e-5 relative to the largest entry (a sum of at most
~2 x 30 terms: 60 x 2^-24 ~ 3.6e-6).
"""
from __future__ import annotations

import pytest
import torch

import tsym.compiler.head._pairs as pairs_mod
from tsym.compiler.head._pairs import pair_contract, sparse_matrix, sparse_pattern

TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def _problem(dtype, cols, seed=0):
    g = torch.Generator().manual_seed(seed)
    d, sizes, rows = 6, [5, 0, 9, 16], [3, 2, 4, 7]  # an empty group too
    a = torch.randint(0, d, (sum(sizes),), generator=g)
    b = torch.randint(0, d, (sum(sizes),), generator=g)
    mats = [torch.randn(r, s, generator=g, dtype=dtype) for r, s in zip(rows, sizes)]
    x = torch.randn(d, cols, generator=g, dtype=dtype)
    paths = 4
    weights = torch.randn(paths, cols, generator=g, dtype=dtype)
    path_idx = torch.randint(0, paths, (sum(rows),), generator=g)
    summed = torch.randn(3, sum(rows), generator=g, dtype=dtype)
    return x, a, b, mats, weights, path_idx, summed


def _reference(x, a, b, mats, weights=None, path_idx=None, summed=None):
    pairs = x[a] * x[b]
    o = torch.cat([m @ p for m, p in zip(mats, torch.split(pairs, [m.shape[1] for m in mats]))])
    return o if weights is None else summed @ (o * weights[path_idx])


def _close(got, want, dtype):
    scale = want.abs().max().item()
    assert scale > 0
    assert (got - want).abs().max().item() <= TOL[dtype] * scale


def _chunked(sparse):
    """pair_contract with the groups' block-diagonal matrix, dense or sparse COO."""
    def run(x, a, b, mats, *weighted):
        mat = torch.block_diag(*mats)
        mat_t = mat.t().contiguous()
        if sparse:
            mat, mat_t = (sparse_matrix(sparse_pattern(m), m[tuple(sparse_pattern(m))],
                                        list(m.shape)) for m in (mat, mat_t))
        return pair_contract(x, a, b, mat, mat_t, *weighted)
    return run


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("budget", [1, 200, 1 << 18])  # chunks of 64 columns, ~64, all at once
def test_pair_contract_equals_whole_arrays(dtype, weighted, sparse, budget, monkeypatch):
    monkeypatch.setattr(pairs_mod, "PAIR_BUDGET", budget)
    x, a, b, mats, weights, path_idx, summed = _problem(dtype, cols=203)
    mats[0][1, 2] = 0.0  # an exact zero, left out of the sparse pattern
    extra = (weights, path_idx, summed) if weighted else ()
    outs = []
    for fn in (_reference, _chunked(sparse)):
        xx = x.clone().requires_grad_()
        ww = weights.clone().requires_grad_()
        args = (ww, path_idx, summed) if extra else ()
        y = fn(xx, a, b, mats, *args)
        loss = (y ** 3).sum()
        outs.append([y, *torch.autograd.grad(loss, [xx, ww] if extra else [xx])])
    for want, got in zip(*outs):
        _close(got, want, dtype)


def test_sparse_pattern_keeps_every_nonzero():
    dense = torch.tensor([[0.0, 2.0, 0.0], [1e-300, 0.0, -3.0]], dtype=torch.float64)
    pattern = sparse_pattern(dense)
    assert pattern.tolist() == [[0, 1, 1], [1, 0, 2]]  # row-major: coalesced order
    mat = sparse_matrix(pattern, dense[tuple(pattern)], [2, 3])
    assert torch.equal(mat.to_dense(), dense)
