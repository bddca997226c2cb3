"""Frozen node features of a backbone, per structure, for a kernel readout.

A :class:`FeatureSet` is what a kernel readout reads: the node features of every atom (in the
backbone's e3nn layout, float64), their irreps, the atoms' elements and the atom count of each
structure.  :func:`extract_features` runs any tsym model's backbone (a ``TensorModel``, a
``TrainedModel``) in eval mode without gradients.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from ase import Atoms

from tsym.runtime import keys
from tsym.runtime.errors import KernelError
from tsym.runtime.graph import collate

__all__ = ["FeatureSet", "extract_features"]


@dataclass(frozen=True)
class FeatureSet:
    """Node features of ``G`` structures.

    Attributes
    ----------
    features : torch.Tensor
        ``[N, irreps.dim]`` float64, atoms structure by structure.
    irreps : str
        e3nn irreps of the features.
    atomic_numbers : torch.Tensor
        ``[N]`` long.
    num_atoms : torch.Tensor
        ``[G]`` long.
    """

    features: torch.Tensor
    irreps: str
    atomic_numbers: torch.Tensor
    num_atoms: torch.Tensor

    def __post_init__(self):
        n = int(self.num_atoms.sum())
        if self.features.shape[0] != n or self.atomic_numbers.shape[0] != n:
            raise KernelError(f"a FeatureSet of {n} atoms got features {tuple(self.features.shape)}"
                              f" and atomic numbers {tuple(self.atomic_numbers.shape)}")

    @property
    def batch(self) -> torch.Tensor:
        """``[N]`` long: the structure of each atom."""
        return torch.repeat_interleave(torch.arange(len(self.num_atoms)), self.num_atoms)

    def __len__(self) -> int:
        return int(self.num_atoms.shape[0])

    def subset(self, index: Sequence[int]) -> FeatureSet:
        """The structures ``index`` (in that order)."""
        index = torch.as_tensor(index, dtype=torch.long)
        starts = torch.cumsum(self.num_atoms, 0) - self.num_atoms  # [G]
        atoms = torch.cat([torch.arange(int(starts[g]), int(starts[g] + self.num_atoms[g]))
                           for g in index.tolist()]) if len(index) else torch.zeros(0, dtype=torch.long)
        return FeatureSet(self.features[atoms], self.irreps, self.atomic_numbers[atoms],
                          self.num_atoms[index])


def _backbone(model) -> tuple[torch.nn.Module, str, float, torch.dtype]:
    inner = getattr(model, "model", model)  # a TrainedModel wraps a TensorModel
    backbone = getattr(inner, "backbone", None)
    if backbone is None:
        raise KernelError(f"{type(model).__name__} has no backbone: pass a tsym model")
    return backbone, str(inner.irreps_in), float(inner.cutoff), inner.dtype


@torch.no_grad()
def extract_features(model, structures: Atoms | Sequence[Atoms], batch_size: int = 64
                     ) -> FeatureSet:
    """The node features the backbone of ``model`` gives ``structures`` (eval mode, float64 out).

    Parameters
    ----------
    model : TensorModel or TrainedModel
    structures : ase.Atoms or a sequence of them
    batch_size : int
    """
    if isinstance(structures, Atoms):
        structures = [structures]
    backbone, irreps, cutoff, dtype = _backbone(model)
    was_training = backbone.training
    backbone.eval()
    parts, numbers, counts = [], [], []
    try:
        for start in range(0, len(structures), batch_size):
            chunk = list(structures[start:start + batch_size])
            graph = collate(chunk, cutoff=cutoff, dtype=dtype, start=start)
            out = backbone(graph)
            parts.append(out[keys.NODE_FEATURES].detach().to(torch.float64))  # [n, dim]
            numbers.append(graph[keys.ATOMIC_NUMBERS])
            counts.append(graph[keys.NUM_ATOMS])
    finally:
        backbone.train(was_training)
    if not parts:
        raise KernelError("no structures to extract features from")
    return FeatureSet(torch.cat(parts), irreps, torch.cat(numbers).long(), torch.cat(counts).long())
