"""What the adapters of optional backbone packages share: the import of the package (an error
that says how to install it), the elements a per-element backbone covers, and their lookup.

The packages themselves (``mace``, ``nequip``) are imported only inside the functions of their
adapters (:mod:`tsym.runtime.nn.mace`, :mod:`tsym.runtime.nn.nequip_lib`), when such a backbone
is built: ``import tsym`` works without them.

>>> elements_of(["H", 8])
(1, 8)
>>> elements_of(None, "mace")
Traceback (most recent call last):
...
tsym.runtime.errors.ModelConfigError: backbone 'mace': pass backbone_kwargs elements=[...], the elements of your data (e.g. elements: [H, C, O]); it keeps weights per element
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from ase.data import atomic_numbers as _Z_OF, chemical_symbols

from tsym.runtime.errors import ModelConfigError, UnknownElementError

__all__ = ["INSTALL", "missing_extra", "elements_of", "ElementIndex"]

#: How to install each optional backbone (README, "Use a head on MACE, NequIP or your own network").
INSTALL = {
    "mace": 'pip install -c constraints.txt -e ".[mace]" && '
            "pip install -c constraints.txt --no-deps mace-torch==0.3.16",
    "nequip": 'pip install -c constraints.txt -e ".[nequip]"',
    "sevenn": 'pip install -c constraints.txt -e ".[sevenn]"',
}


def missing_extra(backbone: str, extra: str, err: ImportError) -> ModelConfigError:
    """The error for an absent (or broken) optional package: it names the install command."""
    return ModelConfigError(f"backbone {backbone!r} needs the optional package of the "
                            f"{extra!r} extra ({err}); install it with: {INSTALL[extra]}")


def elements_of(elements: Sequence[str | int] | None, backbone: str = "") -> tuple[int, ...]:
    """Atomic numbers (sorted, distinct) from symbols or numbers, e.g. ``["H", "O"]``."""
    if elements is None or isinstance(elements, (str, bytes)) or not len(elements):
        raise ModelConfigError(
            f"backbone {backbone!r}: pass backbone_kwargs elements=[...], the elements of your "
            "data (e.g. elements: [H, C, O]); it keeps weights per element")
    out = set()
    for e in elements:
        if isinstance(e, str) and e in _Z_OF and e != "X":
            out.add(_Z_OF[e])
        elif isinstance(e, int) and not isinstance(e, bool) and 1 <= e < len(chemical_symbols):
            out.add(e)
        else:
            raise ModelConfigError(f"backbone {backbone!r}: {e!r} in elements is not an element "
                                   "(write a symbol such as 'O' or an atomic number)")
    return tuple(sorted(out))


class ElementIndex(torch.nn.Module):
    """Atomic numbers ``[N]`` -> index of each in ``elements`` ``[N]`` (long); an element outside
    ``elements`` raises :class:`UnknownElementError` naming it and the backbone."""

    def __init__(self, elements: Sequence[int], owner: str):
        super().__init__()
        self.elements = tuple(int(z) for z in elements)
        self.owner = owner
        table = torch.full((max(self.elements) + 1,), -1, dtype=torch.long)
        table[list(self.elements)] = torch.arange(len(self.elements))
        self.register_buffer("table", table, persistent=False)

    def forward(self, atomic_numbers: torch.Tensor) -> torch.Tensor:
        z = atomic_numbers.long()  # [N]
        inside = (z >= 0) & (z < self.table.numel())
        index = torch.where(inside, self.table[z.clamp(0, self.table.numel() - 1)], -1)  # [N]
        if not torch.jit.is_tracing() and index.numel() and bool((index < 0).any()):
            bad = int(z[index < 0][0])
            name = chemical_symbols[bad] if 0 < bad < len(chemical_symbols) else str(bad)
            covered = ", ".join(chemical_symbols[e] for e in self.elements)
            raise UnknownElementError(
                f"backbone {self.owner!r}: element {name} (Z={bad}) is not among its elements "
                f"({covered}); build it with backbone_kwargs elements=[...] that include it")
        return index
