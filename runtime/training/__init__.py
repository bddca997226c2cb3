"""tsym.runtime.training: configs, normalisation and losses, the training loop.

* :mod:`~tsym.runtime.training.config`: YAML sections -> frozen dataclasses;
* :mod:`~tsym.runtime.training.losses`: target normalisation and per-head losses;
* :mod:`~tsym.runtime.training.setup`: what a run reads (plans, splits, batches);
* :mod:`~tsym.runtime.training.distributed`, :mod:`~tsym.runtime.training.schedule`,
  :mod:`~tsym.runtime.training.ema`, :mod:`~tsym.runtime.training.messages`: processes, the
  learning-rate schedule, the weights' average, the divergence message;
* :mod:`~tsym.runtime.training.refine`: full-batch L-BFGS after the loop;
* :mod:`~tsym.runtime.training.loop`: ``train`` (``tsym train``).
"""
