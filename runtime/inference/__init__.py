"""tsym.runtime.inference: a trained model in use.

* :mod:`~tsym.runtime.inference.predict`: load a run, predict to extxyz, the ASE calculator;
* :mod:`~tsym.runtime.inference.evaluate`: per-head error metrics (``tsym eval``);
* :mod:`~tsym.runtime.inference.plots`: parity plots of an evaluation;
* :mod:`~tsym.runtime.inference.export`: one TorchScript file that needs only torch.
"""
