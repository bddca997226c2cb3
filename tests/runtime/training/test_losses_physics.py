"""Normalisation of sum-rule and positive heads keeps their physics (issue 12)."""
from __future__ import annotations

import torch

from tsym.compiler import compile_text
from tsym.runtime import keys
from tsym.runtime.training.losses import fit_normalisations

from ...compiler.test_constraints import BORN, POLAR


def test_normalisation_of_constrained_heads_keeps_the_physics():
    (born,) = compile_text(BORN)
    (alpha,) = compile_text(POLAR)
    g = torch.Generator().manual_seed(3)
    labels_z = torch.randn(6, 3, 3, generator=g, dtype=torch.float64) + 2.0  # a non-zero mean trace
    a = torch.randn(4, 3, 3, generator=g, dtype=torch.float64)
    labels_a = a @ a.transpose(1, 2) + 5 * torch.eye(3, dtype=torch.float64)
    graph = {f"label:{born.name}": labels_z, f"mask:{born.name}": torch.ones(6, dtype=torch.bool),
             f"label:{alpha.name}": labels_a, keys.NUM_ATOMS: torch.tensor([1, 2, 1, 2])}
    norms = fit_normalisations([born, alpha], [graph])
    assert set(norms[born.name].shift) == {0.0}  # a shift would break the sum rule
    assert len(set(norms[born.name].scale)) == 3  # one per l, as for any head
    # positive labels: the 0e shift (their rotation-averaged mean, per atom) is positive, scaled
    # down so that every training label lies above it (in the positive semidefinite order)
    shift = torch.tensor(norms[alpha.name].shift, dtype=torch.float64)
    t = alpha.to_cartesian(shift[None])[0]  # per atom
    assert torch.linalg.eigvalsh(t).min() > 0 and shift[1:].abs().max() == 0
    n = graph[keys.NUM_ATOMS].double()
    gap = torch.linalg.eigvalsh(labels_a - n[:, None, None] * t).min(dim=1).values  # [4]
    assert gap.min() >= -1e-12 * labels_a.abs().max() and gap.min() <= 1e-9 * labels_a.abs().max()
    assert len(set(norms[alpha.name].scale)) == 1  # a positive multiple keeps T positive
    # labels whose mean is not positive: no shift
    graph[f"label:{alpha.name}"] = -labels_a
    norms = fit_normalisations([alpha], [graph])
    assert set(norms[alpha.name].shift) == {0.0} and len(set(norms[alpha.name].scale)) == 1
