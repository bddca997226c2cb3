"""Derivative tensors of a model's structure-level heads with respect to the atomic positions.

For a head ``y`` (a Cartesian tensor ``[3, ..., 3]`` per structure) the derivative tensor of
atom ``i`` is ``T[i, a, ..., c] = d y[a, ...] / d r[i, c]``: the tensor's own indices first, the
displacement direction ``c`` last, one more index than the head.  From a dipole head that is the
atomic polar tensor (APT, ``P_i[a, b] = d mu_a / d r_(i,b)``, the Born-charge order), from a
polarizability head the Raman tensor ``d alpha_ab / d r_(i,c)``.

They are autograd of the model itself (no finite differences), so they are exactly as
equivariant as the model: rotating and reflecting the structure by ``R`` turns each atom's
tensor into ``R`` applied to every index; translating the structure changes nothing; and since a
translation-invariant head has ``sum_i d y / d r_i = d y / d t = 0``, the APTs of each structure
add up to zero (to rounding).  One backward pass per Cartesian component of the head (3 for a
dipole, 9 for a polarizability) serves every atom of every structure of the batch, because a
structure's output depends on its own atoms only.

>>> import tsym
>>> from ase.build import molecule
>>> model = tsym.build_model("tensor mu { indices i }", seed=0, dtype=torch.float64,
...     backbone_kwargs=dict(num_scalars=8, irreps="8x0e+4x1o", num_blocks=1,
...                          embedding="onehot"), head_kwargs=dict(hidden_mul=2, mlp_hidden=4))
>>> apt = derivatives(model, molecule("H2O"))["mu"]   # [3 atoms, 3 (mu_a), 3 (r_b)]
>>> apt.shape, bool(abs(apt.sum(axis=0)).max() < 1e-12)
((3, 3, 3), True)
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from ase import Atoms

from tsym.compiler import HeadPlan
from tsym.runtime import keys
from tsym.runtime.errors import TsymError
from tsym.runtime.graph import collate

__all__ = ["DerivativeError", "derivatives", "graph_derivatives", "structure_heads"]


class DerivativeError(TsymError, ValueError):
    """A derivative (or spectrum) that the model or its inputs cannot give: a head the model
    lacks, an atom-level head, a Hessian of the wrong shape, a unit that is not known."""


def _plans(model) -> dict[str, HeadPlan]:
    plans = getattr(model, "plans", None)
    if plans is None:
        raise DerivativeError(f"{type(model).__name__} is not a tsym model (no plans): pass a "
                              "TensorModel or TrainedModel")
    return dict(plans) if isinstance(plans, Mapping) else {p.name: p for p in plans}


def structure_heads(model, heads: str | Sequence[str] | None = None) -> list[str]:
    """The names of ``heads`` (default: every structure-level head of ``model``), checked.

    Raises :class:`DerivativeError` naming a head the model lacks or one at atom level (its
    derivative would couple every pair of atoms; not supported).
    """
    plans = _plans(model)
    if heads is None:
        names = [n for n, p in plans.items() if p.level == "structure"]
        if not names:
            raise DerivativeError(f"the model has no structure-level head (heads: "
                                  f"{sorted(plans)}); derivatives need one")
        return names
    names = [heads] if isinstance(heads, str) else list(heads)
    for name in names:
        if name not in plans:
            raise DerivativeError(f"the model has no head '{name}' (heads: {sorted(plans)})")
        if plans[name].level != "structure":
            raise DerivativeError(f"head '{name}' is per atom; derivatives are taken of "
                                  "structure-level heads only")
    return names


def graph_derivatives(model: torch.nn.Module, graph: Mapping[str, torch.Tensor],
                      heads: str | Sequence[str] | None = None, *, create_graph: bool = False,
                      with_values: bool = False) -> dict[str, torch.Tensor]:
    """Derivative tensors on a batched graph (``tsym.collate``), as torch tensors.

    Parameters
    ----------
    model : TensorModel or TrainedModel
        Run as it is (train or eval mode: the caller's choice).
    graph : dict of str to torch.Tensor
        ``positions`` ``[N, 3]`` are used as they are when they require grad (so a caller can
        differentiate further with respect to them), else as a fresh leaf.
    heads : str or sequence of str, optional
        Structure-level heads; default all of them.
    create_graph : bool
        Record the derivatives' own graph, so that a loss on them can be back-propagated (to
        the weights, or to the positions again).  Every tsym backbone and head supports it.
    with_values : bool
        Also return each head's output under its name plus ``":value"`` ``[G, 3, ..., 3]``.

    Returns
    -------
    dict of str to torch.Tensor
        ``{head: [N, 3, ..., 3, 3]}``: ``out[h][i, a, ..., c] = d y_h[g(i), a, ...] / d r[i, c]``.
    """
    names = structure_heads(model, heads)
    pos = graph[keys.POSITIONS]  # [N, 3]
    if not pos.requires_grad:
        pos = pos.detach().requires_grad_(True)
    graph = {**graph, keys.POSITIONS: pos}
    out: dict[str, torch.Tensor] = {}
    with torch.enable_grad():
        values = model(graph)
        last = (names[-1], values[names[-1]][0].numel() - 1) if names else None
        for name in names:
            y = values[name]  # [G, 3, ..., 3]
            flat = y.reshape(y.shape[0], -1)  # [G, K]
            cols = []
            for k in range(flat.shape[1]):
                keep = create_graph or (name, k) != last
                (grad,) = torch.autograd.grad(flat[:, k].sum(), pos, retain_graph=keep,
                                              create_graph=create_graph, allow_unused=True)
                cols.append(torch.zeros_like(pos) if grad is None else grad)  # [N, 3]
            out[name] = torch.stack(cols, dim=1).reshape(pos.shape[0], *y.shape[1:], 3)
            if with_values:
                out[name + ":value"] = y if create_graph else y.detach()
    return out


def derivatives(model: torch.nn.Module, structures: Atoms | Sequence[Atoms],
                heads: str | Sequence[str] | None = None, *, batch_size: int = 32,
                source: str = "<structures>") -> dict[str, np.ndarray]:
    """Derivative tensors of ``model``'s structure-level heads for ``ase.Atoms``, in eval mode.

    Graphs are built with the model's cutoff and dtype, ``batch_size`` structures at a time.

    Returns
    -------
    dict of str to numpy.ndarray
        ``{head: [total atoms, 3, ..., 3, 3]}`` (atoms of all structures in order, the model's
        dtype): ``T[i, a, ..., c] = d y[a, ...] / d r[i, c]`` in the head's unit per Angstrom.

    Raises
    ------
    DerivativeError
        A head the model lacks, or an atom-level head.
    DataError
        A bad structure (named by ``source`` and its place in ``structures``).
    """
    names = structure_heads(model, heads)
    if isinstance(structures, Atoms):
        structures = [structures]
    structures = list(structures)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(structures), batch_size):
            graph = collate(structures[start:start + batch_size], model.cutoff, model.dtype,
                            source=source, start=start, max_z=getattr(model, "max_z", None))
            graph = {k: v.to(model.device) for k, v in graph.items()}
            for name, value in graph_derivatives(model, graph, names).items():
                parts[name].append(value.detach().cpu().numpy())
    finally:
        model.train(was_training)
    plans = _plans(model)
    dtype = np.float64 if model.dtype == torch.float64 else np.float32
    return {name: np.concatenate(v) if v else np.zeros((0,) + (3,) * (plans[name].order + 1),
                                                       dtype=dtype)
            for name, v in parts.items()}
