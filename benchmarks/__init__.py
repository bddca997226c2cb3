"""tsym's benchmarks: timing and accuracy scripts over one helper module, :mod:`benchmarks.common`.

Run one from the clone's root as a module: ``python -m benchmarks.backbone_speed --quick``.
The results, with their commands and machines, are in ``benchmarks/README.md``.
"""
