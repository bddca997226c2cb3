"""The baseline heads and the sum rule / positivity of the plan (issue 12)."""
from __future__ import annotations

import pytest
import torch

from tsym.compiler import compile_text
from tsym.runtime.nn.heads import InvariantHead, LinearHead

from ...compiler.test_constraints import BORN, ELASTIC, features, make_head, sum_bound


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_linear_head_obeys_the_sum_rule(dtype):
    plan, head = make_head(BORN, dtype, LinearHead)
    counts = [4, 7, 0]
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor(counts))
    x = features(sum(counts), dtype)
    out = head(x, batch, 3)  # [11, 3, 3]
    sums = torch.zeros(3, 9, dtype=torch.float64).index_add_(0, batch, out.double().reshape(-1, 9))
    assert (sums.abs().max(dim=1).values <= sum_bound(head, x, batch, counts, dtype)).all()


def test_linear_head_builds_positive_elastic_tensors():
    plan, head = make_head(ELASTIC, torch.float64, LinearHead)
    assert str(head.irreps_rows) == plan.factor_irreps == "2x0e+1x1e+3x2e+1x3e+1x4e"
    out = head(features(4, torch.float64), torch.tensor([0, 0, 1, 1]), 2)  # [2, 3, 3, 3, 3]
    assert out.shape == (2, 3, 3, 3, 3)


def test_invariant_head_refuses_positive_but_takes_the_sum_rule():
    (plan,) = compile_text(ELASTIC)
    with pytest.raises(ValueError, match="cannot build a positive tensor"):
        InvariantHead("4x0e+2x1o", plan.irreps, plan.change_of_basis, **plan.head_options())
    (born,) = compile_text(BORN)
    head = InvariantHead("4x0e+2x1o", born.irreps, born.change_of_basis, born.level, **born.head_options())
    out = head(torch.randn(5, 10, dtype=torch.float32), torch.tensor([0, 0, 0, 1, 1]), 2)
    # 3 atoms, each entry off by <= (d + 1) u |c||Q| with d = 9 (the projection) and u = eps / 2
    assert out[:3].double().sum(dim=0).abs().max() < 3 * 10 * torch.finfo(torch.float32).eps * out.abs().max()
