"""Per-head losses in normalised irreps space, and the normalisations fitted on the training split.

Each head is trained on the normalised irreps coordinates ``y_n`` of its labels
(:class:`~tsym.runtime.model.normalisation.Normalisation`).  Losses (:class:`HeadLoss`), per labelled
item (a structure, or a labelled atom):

* ``cartesian`` (the default): ``mean_{3^n entries} ((T_pred - T) / s)^2`` with one scale ``s``,
  the RMS of the shifted Cartesian training labels: errors weigh as in the reported RMSE / MAE;
* ``irreps``: ``sum_l w_l * mean_{components of l} (pred_n - y_n)^2 / sum_l w_l``: every l
  weighs the same after its scaling, however small its share of the tensor.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import torch

from tsym.compiler import HeadPlan
from tsym.runtime import keys
from tsym.runtime.errors import ConfigError
from tsym.runtime.model.normalisation import Normalisation, l_of_components

__all__ = ["HeadLoss", "fit_normalisations"]


class HeadLoss:
    """The loss of one head, summed over labelled items (divide by the global item count).

    Parameters
    ----------
    plan : HeadPlan
    norm : Normalisation
    space : {"irreps", "cartesian"}
    l_weights : dict of int to float, optional
        Weight of each l in the ``irreps`` space (default 1 for every l).
    """

    def __init__(self, plan: HeadPlan, norm: Normalisation, space: str = "cartesian",
                 l_weights: Mapping | None = None):
        self.plan, self.norm, self.space = plan, norm, space
        ls = l_of_components(plan.irreps)
        present = sorted(set(ls))
        weights = {l: 1.0 for l in present}
        for l, w in (l_weights or {}).items():
            if l not in weights:
                raise ConfigError(f"head '{plan.name}': l_weights has l={l}, but its irreps "
                                  f"'{plan.irreps}' hold l = {present}")
            weights[l] = float(w)
        total = sum(weights.values())
        if not total > 0:
            raise ConfigError(f"head '{plan.name}': l_weights are all zero")
        dims = {l: ls.count(l) for l in present}
        # per component: w_l / (dim_l * sum w), so that the weights of all components sum to 1
        self.component_weights = torch.tensor([weights[l] / (dims[l] * total) for l in ls],
                                              dtype=torch.float64)  # [d]

    def __call__(self, pred_n: torch.Tensor, label: torch.Tensor,
                 n_atoms: torch.Tensor | None = None) -> torch.Tensor:
        """Sum over items of the per-item loss: ``pred_n`` ``[M, d]``, ``label`` ``[M, 3, ..]``."""
        if self.space == "irreps":
            target = self.norm.normalise(self.plan.from_cartesian(label), n_atoms)  # [M, d]
            weights = self.component_weights.to(pred_n)
            return ((pred_n - target).pow(2) * weights).sum()
        pred = self.plan.to_cartesian(self.norm.denormalise(pred_n, n_atoms))  # [M, 3, ..., 3]
        diff = (pred - label).reshape(pred.shape[0], -1) / self.norm.cartesian_scale  # [M, 3^n]
        return diff.pow(2).mean(dim=1).sum()

    def abs_error(self, pred_n: torch.Tensor, label: torch.Tensor,
                  n_atoms: torch.Tensor | None = None) -> torch.Tensor:
        """Sum over items of the mean absolute error of the Cartesian entries, in data units."""
        pred = self.plan.to_cartesian(self.norm.denormalise(pred_n, n_atoms))
        return (pred - label).reshape(pred.shape[0], -1).abs().mean(dim=1).sum()


def fit_normalisations(plans: Sequence[HeadPlan], graphs: Sequence[Mapping]
                       ) -> dict[str, Normalisation]:
    """Per plan, :meth:`Normalisation.fit` of the labels in ``graphs`` (the training split).

    ``graphs`` hold ``"label:<name>"`` (and ``"mask:<name>"`` for atom-level labels), as made by
    :func:`tsym.runtime.data.collate_records`; a sum-pooled structure-level head gets a per-atom
    shift.
    """
    norms = {}
    for plan in plans:
        labels = torch.cat([g[keys.label(plan.name)] for g in graphs]).double()  # [M, 3, ..]
        n_atoms = None
        if plan.level == "atom":
            labels = labels[torch.cat([g[keys.mask(plan.name)] for g in graphs])]
        elif plan.pool == "sum":
            n_atoms = torch.cat([g[keys.NUM_ATOMS] for g in graphs])  # [M]
        if labels.shape[0] == 0:
            raise ValueError(f"head '{plan.name}': no labelled items in the training split")
        y = plan.from_cartesian(labels)  # [M, d] float64
        positive = plan.positive is not None
        norm = Normalisation.fit(plan.irreps, y, order=plan.order, n_atoms=n_atoms,
                                 shift=plan.sum_rule is None, uniform_scale=positive)
        if positive:
            c = _positive_shift_factor(plan, norm.shift, labels, n_atoms)
            norm = dataclasses.replace(norm, shift=tuple(c * v for v in norm.shift))
        norms[plan.name] = norm
    return norms


def _sym_matrices(plan: HeadPlan, t: torch.Tensor) -> torch.Tensor:
    """``[M, 3, ..., 3]`` -> ``[M, 3, 3]`` (rank 2) or the ``[M, 6, 6]`` Mandel matrices (rank 4)."""
    if plan.order == 2:
        return 0.5 * (t + t.transpose(1, 2))
    basis = torch.zeros(9, 6, dtype=t.dtype)  # orthonormal basis of the symmetric index pairs
    for a, (i, j) in enumerate(((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))):
        w = 1.0 if i == j else 0.5**0.5
        basis[3 * i + j, a] += w
        basis[3 * j + i, a] += w if i != j else 0.0
    mats = basis.T @ t.reshape(t.shape[0], 9, 9) @ basis  # [M, 6, 6]
    return 0.5 * (mats + mats.transpose(1, 2))


def _positive_shift_factor(plan: HeadPlan, shift: Sequence[float], labels: torch.Tensor,
                           n_atoms: torch.Tensor | None) -> float:
    """The largest ``c`` in [0, 1] with ``T_k - c n_k S`` positive semidefinite for every label.

    A positive head predicts ``s (L L^T + floor I) + c S`` (``S`` the ``0e`` shift, per atom times
    ``n_k`` for a sum-pooled head): positive when ``S`` is, and it can only reach tensors above
    ``c S``, so ``c`` is as large as the training labels allow (0 when ``S`` is not positive
    definite, e.g. labels of both signs).  ``c_k`` is the smallest generalised eigenvalue of
    ``(T_k, n_k S)``.
    """
    s_t = plan.to_cartesian(torch.tensor(shift, dtype=torch.float64)[None])  # [1, 3, ..., 3]
    s_mat = _sym_matrices(plan, s_t)[0]
    eig = torch.linalg.eigvalsh(s_mat)
    if not eig.min() > 1e-12 * max(1.0, float(eig.abs().max())):
        return 0.0
    inv_root = torch.linalg.inv(torch.linalg.cholesky(s_mat))  # S = R R^T, inv_root = R^-1
    t = _sym_matrices(plan, labels)  # [M, k, k]
    lam = torch.linalg.eigvalsh(inv_root @ t @ inv_root.T).min(dim=1).values  # [M]
    if n_atoms is not None:
        lam = lam / n_atoms.to(lam.dtype)
    return float(lam.min().clamp(0.0, 1.0))
