"""Target normalisation, per-head losses, and a model that answers in data units.

Each head is trained on *normalised irreps coordinates*: the label ``T`` (Cartesian) is mapped to
its irreps coordinates ``y = plan.from_cartesian(T)`` ``[..., irreps.dim]`` and normalised with
statistics of the **training split only** (:meth:`Normalisation.fit`)::

    y_n = (y - shift) / scale

``shift`` is nonzero only on the ``0e`` components (the mean of the l = 0 part; per atom, times
the number of atoms, for a sum-pooled structure-level head); ``scale`` is one number per l: the
RMS over the training split of that l's components (after the shift), so a small anisotropic
part is not drowned by a large trace.  Both are equivariant operations (a scalar per irrep
copy), so the trained model stays exactly equivariant.  The network's raw output is read as
``y_n``; :class:`TrainedModel` de-normalises it *before* ``to_cartesian``, so its predictions are
in data units.

Losses (:class:`HeadLoss`), per labelled item (a structure, or a labelled atom):

* ``irreps``: ``sum_l w_l * mean_{components of l} (pred_n - y_n)^2 / sum_l w_l``;
* ``cartesian``: ``mean_{3^n entries} ((T_pred - T) / s)^2`` with one scale ``s``, the RMS of the
  shifted Cartesian training labels.

>>> y = torch.tensor([[2.0, 1, 0, 0], [4.0, -1, 0, 0]])  # irreps coordinates of two labels
>>> norm = Normalisation.fit("1x0e+1x1o", y, order=2)
>>> norm.shift[0], [round(s, 4) for s in norm.scale]  # l=0: mean 3, RMS 1; l=1: RMS sqrt(1/3)
(3.0, [1.0, 0.5774, 0.5774, 0.5774])
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms
from e3nn import o3

from tsym.compiler import HeadPlan
from tsym.runtime import keys
from tsym.runtime.errors import ConfigError

__all__ = ["Normalisation", "fit_normalisations", "HeadLoss", "TrainedModel",
           "l_of_components"]


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
        so only without a shift; :func:`fit_normalisations` then scales a positive head's shift
        down to what every training label lies above);
        ``uniform_scale=True`` uses one scale, the RMS over all components (a positive head:
        only a positive multiple of a positive matrix is sure to stay positive).
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

    def __init__(self, plan: HeadPlan, norm: Normalisation, space: str = "irreps",
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


class TrainedModel(torch.nn.Module):
    """A :class:`~tsym.runtime.model.TensorModel` whose heads' outputs are normalised irreps.

    ``forward(graph)`` returns Cartesian tensors in data units (de-normalised before
    ``to_cartesian``); ``forward(graph, normalised=True)`` returns the normalised irreps
    coordinates ``{name: [G or N, irreps.dim]}`` the losses compare.
    """

    def __init__(self, model: torch.nn.Module, norms: Mapping[str, Normalisation]):
        super().__init__()
        self.model = model
        self.plans = {plan.name: plan for plan in model.plans}
        missing = sorted(set(self.plans) - set(norms))
        if missing:
            raise ValueError(f"no normalisation for heads {missing}")
        self.norms = {name: norms[name] for name in self.plans}

    @property
    def cutoff(self) -> float:
        return self.model.cutoff

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def device(self) -> torch.device:
        return self.model.device

    def forward(self, graph: Mapping[str, torch.Tensor], normalised: bool = False
                ) -> dict[str, torch.Tensor]:
        raw = self.model(graph)
        out = {}
        n_atoms = graph.get(keys.NUM_ATOMS)  # [G]
        for name, plan in self.plans.items():
            y_n = plan.from_cartesian(raw[name])  # [G or N, d] (Q has orthonormal rows)
            if normalised:
                out[name] = y_n
            else:
                y = self.norms[name].denormalise(y_n, n_atoms)  # [G or N, d]
                out[name] = plan.to_cartesian(y)  # [G or N, 3, ..., 3]
        return out

    def predict(self, structures: Atoms | Sequence[Atoms], batch_size: int = 32
                ) -> dict[str, np.ndarray]:
        """Predictions in data units, ``{name: [n_structures or total atoms, 3, ..., 3]}``."""
        from ..model import predict_batched

        return predict_batched(self, list(self.plans.values()), structures, batch_size)


def fit_normalisations(plans: Sequence[HeadPlan], graphs: Sequence[Mapping]
                       ) -> dict[str, Normalisation]:
    """Per plan, :meth:`Normalisation.fit` of the labels in ``graphs`` (the training split).

    ``graphs`` hold ``"label:<name>"`` (and ``"mask:<name>"`` for atom-level labels), as made by
    :func:`tsym.runtime.data.collate_records`; a sum-pooled structure-level head gets a per-atom
    shift.
    """
    norms = {}
    for plan in plans:
        labels = torch.cat([g[f"label:{plan.name}"] for g in graphs]).double()  # [M, 3, ..]
        n_atoms = None
        if plan.level == "atom":
            labels = labels[torch.cat([g[f"mask:{plan.name}"] for g in graphs])]
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
