"""tsym.runtime.nn: the model code -- backbones, their contract and registry, the output heads.

* :mod:`~tsym.runtime.nn.xpainn`: XPaiNN, the default backbone (PaiNN extended to any degree l);
* :mod:`~tsym.runtime.nn.embedding`: its node and edge embeddings (one-hot or quantum-chemistry
  element table in ``assets/``, Bessel basis, cutoff envelope);
* :mod:`~tsym.runtime.nn.registry`: the backbone contract and the backbones by name;
* :mod:`~tsym.runtime.nn.nequip`: a second, NequIP-style backbone;
* :mod:`~tsym.runtime.nn.mace`, :mod:`~tsym.runtime.nn.nequip_lib`: MACE and NequIP (optional
  packages) as backbones, with :mod:`~tsym.runtime.nn.extras`;
* :mod:`~tsym.runtime.nn.heads`: the baseline heads beside the compiled self-mix head.
"""
