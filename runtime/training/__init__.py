"""tsym.runtime.training: configs, normalisation and losses, the training loop.

* :mod:`~tsym.runtime.training.config`: YAML sections -> frozen dataclasses;
* :mod:`~tsym.runtime.training.losses`: target normalisation and per-head losses;
* :mod:`~tsym.runtime.training.setup`: processes, splits, schedule, EMA around the loop;
* :mod:`~tsym.runtime.training.loop`: ``train`` (``tsym train``).
"""
