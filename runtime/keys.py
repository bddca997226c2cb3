"""Names of the fields of a batched graph (a plain ``dict[str, torch.Tensor]``), and of the
per-node fields the backbone's modules declare irreps for.

Shapes use ``N`` = total atoms in the batch, ``E`` = total edges, ``G`` = structures in the batch.

>>> label("alpha"), mask("alpha")
('label:alpha', 'mask:alpha')
"""
from __future__ import annotations

from typing import Final

# ---- a batched graph (tsym.runtime.graph)
POSITIONS: Final = "positions"            # [N, 3] float, Cartesian positions (Angstrom)
ATOMIC_NUMBERS: Final = "atomic_numbers"  # [N] long
CELL: Final = "cell"                      # [G, 3, 3] float, rows are lattice vectors (zeros for molecules)
PBC: Final = "pbc"                        # [G, 3] bool
EDGE_INDEX: Final = "edge_index"          # [2, E] long; row 0 = source (neighbour j), row 1 = target (centre i)
EDGE_SHIFTS: Final = "edge_shifts"        # [E, 3] float, integer image shifts S: r_ij = r_j - r_i + S @ cell
BATCH: Final = "batch"                    # [N] long, structure index of each atom
NUM_GRAPHS: Final = "num_graphs"          # [] long (0-d tensor), G
NUM_ATOMS: Final = "num_atoms"            # [G] long, atoms per structure
EDGE_VECTORS: Final = "edge_vectors"      # [E, 3] float, r_j - r_i + shift (computed, differentiable)
NODE_FEATURES: Final = "node_features"    # [N, irreps.dim] float, e3nn irreps layout (a backbone's output)

#: The graph fields a backbone is given (README, "The backbone contract"): training and predict
#: pass the whole graph, but ``tsym export`` passes only these,
#: so a backbone must read nothing else (``backbone_from_module`` passes only these everywhere).
BACKBONE_INPUTS: Final = (POSITIONS, ATOMIC_NUMBERS, EDGE_INDEX, EDGE_SHIFTS, CELL, BATCH)

# ---- the fields inside the XPaiNN backbone (irreps_in / irreps_out of its modules)
SCALARS: Final = "scalars"                # [N, S] the invariant node state, irreps Sx0e
EQUIVARIANT: Final = "equivariant"        # [N, irreps.dim] the equivariant node state
EDGE_SH: Final = "edge_sh"                # [E, sh.dim] spherical harmonics of the edge vectors
EDGE_RADIAL: Final = "edge_radial"        # [E, B] radial basis of the edge lengths, Bx0e
EDGE_ENVELOPE: Final = "edge_envelope"    # [E, 1] cutoff envelope, 1x0e

_LABEL, _MASK = "label:", "mask:"


def label(name: str) -> str:
    """The field of head ``name``'s label: ``[G, 3, ..., 3]`` (structure level) or
    ``[N, 3, ..., 3]`` (atom level), float."""
    return _LABEL + name


def mask(name: str) -> str:
    """The field of head ``name``'s atom mask: ``[N]`` bool, True where the atom is labelled
    (atom-level labels only)."""
    return _MASK + name


__all__ = [
    "POSITIONS", "ATOMIC_NUMBERS", "CELL", "PBC", "EDGE_INDEX", "EDGE_SHIFTS", "BATCH",
    "NUM_GRAPHS", "NUM_ATOMS", "EDGE_VECTORS", "NODE_FEATURES", "BACKBONE_INPUTS", "SCALARS",
    "EQUIVARIANT",
    "EDGE_SH", "EDGE_RADIAL", "EDGE_ENVELOPE", "label", "mask",
]
