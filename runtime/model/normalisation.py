"""Target normalisation: a head's irreps coordinates in data units <-> the network's scale.

A head is trained on *normalised irreps coordinates*: the label ``T`` (Cartesian) is mapped to
its irreps coordinates ``y = plan.from_cartesian(T)`` ``[..., irreps.dim]`` and normalised with
statistics of the **training split only** (:meth:`Normalisation.fit`)::

    y_n = (y - shift) / scale

``shift`` is nonzero only on the ``0e`` components (the mean of the l = 0 part; per atom, times
the number of atoms, for a sum-pooled structure-level head); ``scale`` is one number per l: the
RMS over the training split of that l's components (after the shift), so a small anisotropic
part is not drowned by a large trace.  Both are equivariant operations (a scalar per irrep
copy), so the trained model stays exactly equivariant.  The network's raw output is read as
``y_n``; :class:`~tsym.runtime.model.TrainedModel` de-normalises it *before* ``to_cartesian``, so
its predictions are in data units.

>>> y = torch.tensor([[2.0, 1, 0, 0], [4.0, -1, 0, 0]])  # irreps coordinates of two labels
>>> norm = Normalisation.fit("1x0e+1x1o", y, order=2)
>>> norm.shift[0], [round(s, 4) for s in norm.scale]  # l=0: mean 3, RMS 1; l=1: RMS sqrt(1/3)
(3.0, [1.0, 0.5774, 0.5774, 0.5774])
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from e3nn import o3

__all__ = ["Normalisation", "l_of_components"]


def l_of_components(irreps: str) -> list[int]:
    """The l of each component of ``irreps`` (length ``irreps.dim``)."""
    return [ir.l for mul, ir in o3.Irreps(irreps) for _ in range(mul * ir.dim)]


def _even_scalars(irreps: str) -> list[bool]:
    """Whether each component belongs to a ``0e`` irrep (the only ones that may be shifted)."""
    return [(ir.l, ir.p) == (0, 1) for mul, ir in o3.Irreps(irreps) for _ in range(mul * ir.dim)]


@dataclass(frozen=True)
class Normalisation:
    """``y_n = (y - shift * (n_atoms if per_atom_shift else 1)) / scale``, per irreps component.

    Attributes
    ----------
    irreps : str
        The head's irreps (layout of ``shift`` and ``scale``).
    shift, scale : tuple of float
        ``[irreps.dim]``; ``shift`` is zero outside ``0e``; ``scale`` is the same within an l.
    per_atom_shift : bool
        The shift is per atom (a sum-pooled structure-level head: extensive labels).
    cartesian_scale : float
        RMS of the shifted Cartesian labels (scale of the ``cartesian`` loss).
    """

    irreps: str
    shift: tuple
    scale: tuple
    per_atom_shift: bool = False
    cartesian_scale: float = 1.0

    @classmethod
    def identity(cls, irreps: str) -> Normalisation:
        dim = o3.Irreps(irreps).dim
        return cls(str(irreps), (0.0,) * dim, (1.0,) * dim)

    @classmethod
    def fit(cls, irreps: str, targets: torch.Tensor, *, order: int,
            n_atoms: torch.Tensor | None = None, shift: bool = True,
            uniform_scale: bool = False) -> Normalisation:
        """Statistics of ``targets`` ``[M, irreps.dim]``, the irreps coordinates of the labels.

        ``order`` is the tensor's number of indices (for the RMS of its ``3^order`` Cartesian
        entries); ``n_atoms`` ``[M]`` (atoms per structure) makes the shift per atom.  An l whose
        RMS is zero (or below 1e-12 of the largest) gets the largest RMS as its scale.
        ``shift=False`` keeps the shift at zero (a sum rule: atom tensors summing to zero stay
        so only without a shift); ``uniform_scale=True`` uses one scale, the RMS over all
        components (a positive head: only a positive multiple of a positive matrix is sure to
        stay positive).
        """
        y = torch.as_tensor(targets, dtype=torch.float64)  # [M, d]
        dim = o3.Irreps(irreps).dim
        if y.dim() != 2 or y.shape[1] != dim:
            raise ValueError(f"targets must be [M, {dim}] for irreps '{irreps}', got "
                             f"{tuple(y.shape)}")
        if y.shape[0] == 0:
            raise ValueError("cannot fit a normalisation on zero labelled items")
        even = torch.tensor(_even_scalars(irreps))  # [d] bool
        count = None if n_atoms is None else torch.as_tensor(n_atoms, dtype=torch.float64)[:, None]
        per_item = y if count is None else y / count  # [M, d]
        zero = torch.zeros(dim, dtype=torch.float64)
        shift = torch.where(even, per_item.mean(dim=0), zero) if shift else zero  # [d]
        residual = y - (shift if count is None else shift * count)  # [M, d]
        ls = torch.tensor(l_of_components(irreps))  # [d]
        if uniform_scale:
            ls = torch.zeros_like(ls)  # one group: one scale for every component
        rms = {l: float(residual[:, ls == l].pow(2).mean().sqrt()) for l in ls.unique().tolist()}
        top = max(rms.values())
        fixed = {l: (r if r > 1e-12 * top else top) if top > 0 else 1.0 for l, r in rms.items()}
        scale = tuple(fixed[l] for l in ls.tolist())
        cart = math.sqrt(float(residual.pow(2).sum(dim=1).mean()) / 3 ** order)
        return cls(str(irreps), tuple(shift.tolist()), scale, count is not None,
                   cart if cart > 0 else 1.0)

    def tensors(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``shift``, ``scale`` as ``[d]`` tensors of ``like``'s dtype and device."""
        opts = dict(dtype=like.dtype, device=like.device)
        return torch.tensor(self.shift, **opts), torch.tensor(self.scale, **opts)

    def normalise(self, y: torch.Tensor, n_atoms: torch.Tensor | None = None) -> torch.Tensor:
        """``[M, d]`` data-unit irreps -> normalised (``n_atoms`` ``[M]`` if per-atom shift)."""
        shift, scale = self.tensors(y)
        return (y - self._offset(shift, n_atoms, y)) / scale

    def denormalise(self, y_n: torch.Tensor, n_atoms: torch.Tensor | None = None) -> torch.Tensor:
        """Inverse of :meth:`normalise`."""
        shift, scale = self.tensors(y_n)
        return y_n * scale + self._offset(shift, n_atoms, y_n)

    def _offset(self, shift, n_atoms, like):
        if not self.per_atom_shift:
            return shift  # [d]
        if n_atoms is None:
            raise ValueError("this normalisation shifts per atom: pass n_atoms")
        return n_atoms.to(like.dtype)[:, None] * shift  # [M, d]

    def to_dict(self) -> dict:
        return {"irreps": self.irreps, "shift": list(self.shift), "scale": list(self.scale),
                "per_atom_shift": self.per_atom_shift, "cartesian_scale": self.cartesian_scale}

    @classmethod
    def from_dict(cls, d: Mapping) -> Normalisation:
        return cls(d["irreps"], tuple(d["shift"]), tuple(d["scale"]), bool(d["per_atom_shift"]),
                   float(d["cartesian_scale"]))
