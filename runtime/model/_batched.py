"""Prediction in batches: :func:`predict_batched` runs a model on ``ase.Atoms`` (graphs built per
batch with the model's cutoff and dtype) and names the record whose prediction is not finite.

Used by :meth:`TensorModel.predict <tsym.runtime.model.TensorModel.predict>`,
:meth:`TrainedModel.predict <tsym.runtime.model.TrainedModel.predict>` and
:mod:`tsym.runtime.inference.predict`; re-exported by :mod:`tsym.runtime.model`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms

from tsym.compiler import HeadPlan
from tsym.runtime import keys
from tsym.runtime.errors import NonFinitePredictionError
from tsym.runtime.graph import check_sequence, collate

__all__ = ["predict_batched"]

_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}


@torch.no_grad()
def predict_batched(model: torch.nn.Module, plans: Sequence[HeadPlan],
                    structures: Atoms | Sequence[Atoms], batch_size: int = 32, *,
                    source: str = "<structures>", first: int = 0) -> dict[str, np.ndarray]:
    """Run ``model`` (with ``cutoff``, ``dtype``, ``device``) on ``ase.Atoms`` in eval mode.

    Graphs are built per batch with the model's cutoff and dtype; the train/eval mode is restored.
    Returns ``{name: array [n_structures or total atoms, 3, ..., 3]}`` of the model's dtype.
    Errors name ``source`` and the record ``first + k`` for the ``k``-th structure (its place in
    the file, not in its batch); an element beyond the model's ``max_z`` is one.
    """
    if isinstance(structures, Atoms):
        structures = [structures]
    check_sequence(structures, source)
    structures = list(structures)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    parts: dict[str, list[torch.Tensor]] = {p.name: [] for p in plans}
    atom_level = {p.name: p.level == "atom" for p in plans}
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(structures), batch_size):
            graph = collate(structures[start:start + batch_size], model.cutoff, model.dtype,
                            source=source, start=first + start,
                            max_z=getattr(model, "max_z", None))
            graph = {k: v.to(model.device) for k, v in graph.items()}
            for name, value in model(graph).items():
                _check_finite_prediction(name, value, atom_level[name], graph[keys.BATCH],
                                         source, first + start)
                parts[name].append(value.cpu())
    finally:
        model.train(was_training)
    empty = {p.name: np.zeros((0,) + (3,) * p.order, dtype=_NUMPY[model.dtype]) for p in plans}
    return {name: torch.cat(v).numpy() if v else empty[name] for name, v in parts.items()}


def _check_finite_prediction(name: str, value: torch.Tensor, atom_level: bool,
                             batch: torch.Tensor, source: str, first: int) -> None:
    """Raise :class:`NonFinitePredictionError` naming the record whose prediction is not finite.

    ``value``: ``[G or N, 3, ..., 3]``; ``batch``: ``[N]``; ``first``: record of structure 0.
    """
    ok = torch.isfinite(value.reshape(value.shape[0], -1)).all(dim=1)  # [G or N]
    if bool(ok.all()):
        return
    row = int((~ok).nonzero()[0, 0])
    structure = int(batch[row]) if atom_level else row
    what = f"atom {row - int((batch < structure).sum())} of " if atom_level else ""
    raise NonFinitePredictionError(
        f"{source}:record {first + structure}: the prediction of head '{name}' for {what}this "
        "structure is not finite; the model's weights overflow (a diverging training run?); "
        "use an earlier checkpoint or train again with a lower optimiser.lr")
