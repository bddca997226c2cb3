"""Covariant kernels between groups of atomic environments (structures, or single atoms).

For one target irrep ``ir = (l, p)`` of dimension ``d = 2l + 1``, an atomic environment ``i``
carries

* ``h_i`` ``[mult, d]``: the backbone's node-feature channels of irrep ``ir`` (a constant ``[1, 1]``
  for ``0e``, so that the ``0e`` kernel is the scalar kernel alone);
* ``s_i`` ``[n_s]``: an invariant descriptor (the node's ``0e`` channels, standardised);
* ``z_i``: its element.

The environment kernel (SA-GPR's form with a Gaussian instead of a polynomial scalar kernel)::

    k(i, j) = h_i^T h_j * k0(i, j)                     # [d, d]
    k0(i, j) = [z_i == z_j] * exp(-|s_i - s_j|^2 / (2 sigma^2))

and a group kernel sums it over the environments of two groups with pooling weights ``w``
(1 for ``pool sum`` and for atoms, ``1 / n_atoms`` for ``pool mean``)::

    K(A, B) = sum_{i in A, j in B} w_i w_j k(i, j)     # [d, d]

Covariance: under ``g`` in O(3) every ``h_i`` becomes ``h_i D(g)^T`` (its rows are irreps ``ir``
of e3nn), ``s`` and ``z`` do not change, so ``K(gA, gB) = D(g) K(A, B) D(g)^T``, for rotations and
reflections alike (the parity is carried by ``D``).  ``k0`` raised to a power ``zeta`` is the same
Gaussian with ``sigma / sqrt(zeta)``, so ``sigma`` is the one shape parameter.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Environments", "group_kernel", "self_kernel"]


@dataclass(frozen=True)
class Environments:
    """Atomic environments of one irrep block, grouped into outputs.

    Attributes
    ----------
    h : torch.Tensor
        ``[n, mult, d]`` covariant channels.
    s : torch.Tensor
        ``[n, n_s]`` invariant descriptor (``n_s`` may be 0).
    z : torch.Tensor
        ``[n]`` long, atomic numbers.
    group : torch.Tensor
        ``[n]`` long, the output (structure or atom) each environment belongs to.
    weight : torch.Tensor
        ``[n]`` pooling weights.
    n_groups : int
    """

    h: torch.Tensor
    s: torch.Tensor
    z: torch.Tensor
    group: torch.Tensor
    weight: torch.Tensor
    n_groups: int

    def __len__(self) -> int:
        return int(self.h.shape[0])

    @property
    def dim(self) -> int:
        return int(self.h.shape[2])

    def select(self, groups: torch.Tensor) -> Environments:
        """The environments of ``groups`` (``[k]`` long, distinct), renumbered 0..k-1 in order."""
        new = torch.full((self.n_groups,), -1, dtype=torch.long)
        new[groups] = torch.arange(len(groups))
        keep = new[self.group] >= 0  # [n]
        return Environments(self.h[keep], self.s[keep], self.z[keep], new[self.group[keep]],
                            self.weight[keep], int(len(groups)))

    def groups_range(self, start: int, stop: int) -> Environments:
        """The environments of groups ``start..stop-1`` (renumbered from 0)."""
        return self.select(torch.arange(start, min(stop, self.n_groups)))


def _k0(a: Environments, b: Environments, sigma: float) -> torch.Tensor:
    """Scalar kernel ``[n_a, n_b]``: same element times a Gaussian of the descriptors."""
    same = (a.z[:, None] == b.z[None, :]).to(a.h.dtype)  # [n_a, n_b]
    if a.s.shape[1] == 0:
        return same
    d2 = torch.cdist(a.s, b.s).pow(2)  # [n_a, n_b]
    return same * torch.exp(-0.5 * d2 / sigma ** 2)


def group_kernel(a: Environments, b: Environments, sigma: float, chunk: int = 256
                 ) -> torch.Tensor:
    """``K[A, :, B, :]`` ``[G_a, d, G_b, d]`` between the groups of ``a`` and of ``b``.

    Computed in chunks of ``chunk`` environments of ``a`` (memory ``chunk * n_b * d^2``).
    """
    d = a.dim
    out = a.h.new_zeros(a.n_groups, d, b.n_groups, d)
    hb = b.h * b.weight[:, None, None]  # [n_b, mult, d]
    for start in range(0, len(a), chunk):
        sl = slice(start, start + chunk)
        ha = a.h[sl] * a.weight[sl, None, None]  # [c, mult, d]
        part = torch.einsum("ica,jcb->iajb", ha, hb)  # [c, d, n_b, d]
        part = part * _k0(Environments(a.h[sl], a.s[sl], a.z[sl], a.group[sl], a.weight[sl],
                                       a.n_groups), b, sigma)[:, None, :, None]
        pooled = part.new_zeros(part.shape[0], d, b.n_groups, d).index_add_(2, b.group, part)
        out.index_add_(0, a.group[sl], pooled)  # [G_a, d, G_b, d]
    return out


def self_kernel(a: Environments, sigma: float, groups_per_chunk: int = 128) -> torch.Tensor:
    """The diagonal blocks ``K(A, A)`` ``[G_a, d, d]`` (for predictive variances)."""
    blocks = []
    for start in range(0, a.n_groups, groups_per_chunk):
        part = a.groups_range(start, start + groups_per_chunk)
        k = group_kernel(part, part, sigma)  # [g, d, g, d]
        idx = torch.arange(part.n_groups)
        blocks.append(k[idx, :, idx, :])  # [g, d, d]
    return torch.cat(blocks) if blocks else a.h.new_zeros(0, a.dim, a.dim)
