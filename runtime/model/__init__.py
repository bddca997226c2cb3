"""tsym.runtime.model: assembled models, their checkpoints and their loading.

* :mod:`~tsym.runtime.model.build`: ``TensorModel`` (compiled heads on a backbone),
  ``TrainedModel`` (one in data units) and ``build_model`` (untrained, or from a checkpoint);
* :mod:`~tsym.runtime.model.checkpoint`: both checkpoint layouts, atomic writes, reads;
* :mod:`~tsym.runtime.model.normalisation`: a head's irreps coordinates <-> the network's scale;
* ``_batched``: predictions in batches (:func:`predict_batched`).
"""
from __future__ import annotations

from ._batched import predict_batched
from .build import TensorModel, TrainedModel, build_model

__all__ = ["build_model", "TensorModel", "TrainedModel", "predict_batched"]
