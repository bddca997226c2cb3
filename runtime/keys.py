"""Names of the fields of a batched graph (a plain ``dict[str, torch.Tensor]``).

Shapes use ``N`` = total atoms in the batch, ``E`` = total edges, ``G`` = structures in the batch.
"""
from __future__ import annotations

POSITIONS = "positions"            # [N, 3] float, Cartesian positions (Angstrom)
ATOMIC_NUMBERS = "atomic_numbers"  # [N] long
CELL = "cell"                      # [G, 3, 3] float, rows are lattice vectors (zeros for molecules)
PBC = "pbc"                        # [G, 3] bool
EDGE_INDEX = "edge_index"          # [2, E] long; row 0 = source (neighbour j), row 1 = target (centre i)
EDGE_SHIFTS = "edge_shifts"        # [E, 3] float, integer image shifts S: r_ij = r_j - r_i + S @ cell
BATCH = "batch"                    # [N] long, structure index of each atom
NUM_GRAPHS = "num_graphs"          # [] long (0-d tensor), G
NUM_ATOMS = "num_atoms"            # [G] long, atoms per structure
EDGE_VECTORS = "edge_vectors"      # [E, 3] float, r_j - r_i + shift (computed, differentiable)
EDGE_LENGTHS = "edge_lengths"      # [E] float
NODE_FEATURES = "node_features"    # [N, irreps.dim] float, e3nn irreps layout
ATOM_MASK = "atom_mask"            # [N] bool, which atoms carry an atom-level label

__all__ = [
    "POSITIONS", "ATOMIC_NUMBERS", "CELL", "PBC", "EDGE_INDEX", "EDGE_SHIFTS", "BATCH",
    "NUM_GRAPHS", "NUM_ATOMS", "EDGE_VECTORS", "EDGE_LENGTHS", "NODE_FEATURES", "ATOM_MASK",
]
