"""Structures -> graphs: radius graphs with periodic image shifts, batching, edge vectors.

A graph is a plain ``dict[str, torch.Tensor]`` whose keys are the constants of
:mod:`tsym.runtime.keys`.  A graph built from one structure is already a batch of one, so
:func:`batch_graphs` concatenates single graphs and batches alike::

    POSITIONS       [N, 3]     float, as given minus their centroid (:func:`local_positions`)
    ATOMIC_NUMBERS  [N]        long
    CELL            [G, 3, 3]  float, rows are lattice vectors; zeros when pbc is all False
    PBC             [G, 3]     bool
    EDGE_INDEX      [2, E]     long, row 0 = source j (neighbour), row 1 = target i (centre)
    EDGE_SHIFTS     [E, 3]     float holding integers S (image of j): r_ij = r_j - r_i + S @ cell
    BATCH           [N]        long, structure index of each atom
    NUM_GRAPHS      []         long, G
    NUM_ATOMS       [G]        long

Edge convention: an edge ``(j -> i)`` is stored as ``EDGE_INDEX[:, e] = (j, i)``; messages flow from
the neighbour ``j`` (source) to the centre ``i`` (target), and :func:`edge_vectors` returns
``r_ij = positions[j] - positions[i] + S @ cell``, the vector that points from ``i`` to ``j``.
Each pair within the cutoff appears in both directions.  ``i == j`` with ``S == 0`` is never an
edge; a periodic image of the atom itself (``i == j``, ``S != 0``) is.  The graph stores integer
shifts, never vectors, so edge vectors are differentiable in positions and cell (forces, stress)
and follow any rotation or strain applied to both.

The neighbour search is a maintained library: matscipy's ``neighbour_list`` when it is installed,
ASE's ``primitive_neighbor_list`` otherwise (``neighbour_backend="auto"|"ase"|"matscipy"``).
Both bin the cell into cutoff-sized bins, whose number grows with the cell's volume; when the
bins would outnumber the atoms many times (a few atoms in a large cell, or the 0.1 Angstrom
overlap check), ``"auto"`` pairs the atoms with a k-d tree instead (``"tree"``,
:mod:`tsym.runtime.neighbours`), whose cost does not depend on empty space.
Non-periodic directions (molecules, slabs) get a working box that encloses the atoms; it never
changes the result, only the binning.

Examples
--------
>>> import torch
>>> from ase.build import molecule
>>> from tsym.runtime import keys
>>> g = collate([molecule("H2O"), molecule("CH4")], cutoff=1.2)
>>> int(g[keys.NUM_GRAPHS]), g[keys.NUM_ATOMS].tolist(), tuple(g[keys.CELL].shape)
(2, [3, 5], (2, 3, 3))
>>> bool(torch.all(edge_vectors(g).norm(dim=1) < 1.2))
True
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols
from ase.neighborlist import primitive_neighbor_list

from tsym.runtime.errors import DataError, ModelConfigError
from tsym.runtime import keys
from tsym.runtime.neighbours import bin_count, tree_pairs

try:  # optional, faster backend (see benchmarks/neighbour_list.py)
    from matscipy.neighbours import neighbour_list as _matscipy_neighbour_list
except ImportError:  # pragma: no cover - depends on the environment
    _matscipy_neighbour_list = None

__all__ = [
    "node_batch",
    "MIN_DISTANCE",
    "BACKENDS",
    "atoms_to_graph",
    "collate",
    "batch_graphs",
    "check_structure",
    "check_distances",
    "edge_vectors",
    "neighbour_list",
    "element_problem",
    "local_positions",
    "check_sequence",
]

MIN_DISTANCE = 0.1  # Angstrom; two atoms (or an atom and its image) closer than this are an error
BACKENDS = ("auto", "ase", "matscipy", "tree")
#: ``"auto"`` uses the k-d tree when the binning libraries would make more bins than this many
#: per atom (plus a floor): their cost then is empty space, not atoms.
BINS_PER_ATOM, MIN_BINS = 64, 4096
_SOURCE = "<structures>"
_MAX_BOX_IN_CUTOFFS = 100.0  # working box along a non-periodic direction, in cutoffs, at most

# fields by how they batch; any other field is concatenated along its first dimension
_EDGE_INDEX_FIELDS = (keys.EDGE_INDEX,)
_OFFSET_FIELDS = (keys.BATCH,)


def _resolve_backend(backend: str, bins: float = 0.0, n_atoms: int = 0) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"neighbour_backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        if bins > BINS_PER_ATOM * n_atoms + MIN_BINS:
            return "tree"
        return "matscipy" if _matscipy_neighbour_list is not None else "ase"
    if backend == "matscipy" and _matscipy_neighbour_list is None:
        raise ValueError("neighbour_backend='matscipy' but matscipy is not installed; "
                         "pip install matscipy, or use 'ase'")
    return backend


def _working_cell(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Positions and a full-rank cell with the same periodic lattice for the neighbour search.

    Periodic rows of ``cell`` are kept.  Each non-periodic row becomes a unit vector orthogonal
    to the periodic rows (and to the other new rows) scaled to the extent of the atoms along it,
    and the positions are translated so that the atoms sit inside that box.  Shifts along
    non-periodic rows are always zero, and a translation does not change ``r_j - r_i``, so the
    neighbour list of the working cell is the neighbour list of the structure.
    """
    n_periodic = int(pbc.sum())
    if n_periodic == 3:
        return positions, cell
    if n_periodic == 0:
        complement = np.eye(3)  # [3, 3]
    else:
        _, _, vt = np.linalg.svd(cell[pbc])  # periodic rows span vt[:p]
        complement = vt[n_periodic:]  # [3 - p, 3] orthonormal, orthogonal to the periodic rows
    along = positions @ complement.T  # [N, 3 - p]
    low = along.min(axis=0)
    length = np.minimum(along.max(axis=0) - low + 1.0, _MAX_BOX_IN_CUTOFFS * cutoff)
    work = cell.copy()
    work[~pbc] = length[:, None] * complement  # [3 - p, 3]
    if np.linalg.det(work) < 0:
        work[np.flatnonzero(~pbc)[0]] *= -1.0
    return positions - low @ complement, work  # atoms past a capped box are still found


def neighbour_list(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float,
                   backend: str = "auto") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All ordered pairs closer than ``cutoff``, periodic images included, in a fixed order.

    Parameters
    ----------
    positions : ndarray, shape (N, 3)
    cell : ndarray, shape (3, 3)
        Rows are lattice vectors; rows along non-periodic directions are ignored.
    pbc : ndarray of bool, shape (3,)
    cutoff : float
    backend : {"auto", "ase", "matscipy", "tree"}
        ``"auto"``: matscipy (else ASE), or the k-d tree when their bins would outnumber the
        atoms (:data:`BINS_PER_ATOM`): the cost then stays O(atoms) however large the cell.

    Returns
    -------
    i, j : ndarray of int, shape (E,)
        Centre and neighbour, sorted by ``(i, j, S)``.
    shifts : ndarray of int, shape (E, 3)
        Image of ``j``: ``r_ij = positions[j] - positions[i] + shifts @ cell``.
    distances : ndarray of float, shape (E,)
        ``|r_ij| < cutoff``; ``i == j`` only with a nonzero shift.
    """
    positions = np.asarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool)
    work_positions, work_cell = _working_cell(positions, cell, pbc, cutoff)
    backend = _resolve_backend(backend, bin_count(work_cell, cutoff), len(positions))
    if backend == "tree":
        i, j, shifts = tree_pairs(work_positions, work_cell, pbc, cutoff)
    elif backend == "matscipy":
        i, j, shifts = _matscipy_neighbour_list("ijS", positions=work_positions, cell=work_cell,
                                                pbc=pbc, cutoff=cutoff)
    else:
        i, j, shifts = primitive_neighbor_list("ijS", pbc, work_cell, work_positions, cutoff,
                                               self_interaction=False)
    i, j, shifts = i.astype(np.int64), j.astype(np.int64), shifts.astype(np.int64)
    vectors = positions[j] - positions[i] + shifts.astype(np.float64) @ work_cell  # [E, 3]
    distances = np.linalg.norm(vectors, axis=1)  # [E]
    keep = (distances < cutoff) & ~((i == j) & ~shifts.any(axis=1))
    i, j, shifts, distances = i[keep], j[keep], shifts[keep], distances[keep]
    order = np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], j, i))
    return i[order], j[order], shifts[order], distances[order]


#: hint of an element outside the model's range (shared by data checks and predict)
ELEMENT_HINT = ("use a model whose embedding covers it (the default max_z is 118), or leave such "
                "records out (data: {on_error: skip})")


def element_problem(numbers: np.ndarray, max_z: int) -> str | None:
    """Why atomic numbers fall outside ``1..max_z`` (the first atom, every element), or None.

    >>> element_problem(np.array([8, 1, 69, 92, 69]), 53)
    'atom 2 is Tm (Z = 69), an element the model does not cover (Z = 1..53); also U (Z = 92)'
    """
    numbers = np.asarray(numbers)
    bad = np.flatnonzero((numbers < 1) | (numbers > max_z))
    if not bad.size:
        return None

    def name(z: int) -> str:
        return f"{chemical_symbols[z]} (Z = {z})" if 0 < z < len(chemical_symbols) else \
            f"atomic number {z}"

    first = int(numbers[bad[0]])
    text = (f"atom {int(bad[0])} is {name(first)}, an element the model does not cover "
            f"(Z = 1..{max_z})")
    others = [int(z) for z in np.unique(numbers[bad]) if z != first]
    if others:
        text += "; also " + ", ".join(name(z) for z in others)
    return text


def check_structure(atoms: object, source: str = _SOURCE, record: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated float64 positions [N, 3], cell [3, 3] and pbc [3] of one structure.

    Raises :class:`DataError` (reason ``"bad structure"``) for a non-``Atoms``, no atoms,
    non-finite positions or cell, or a zero or singular periodic cell.
    """
    def bad(message: str, hint: str | None = None) -> DataError:
        return DataError(source, record, message, hint=hint, reason="bad structure")

    if not isinstance(atoms, Atoms):
        raise bad(f"expected an ase.Atoms, got {type(atoms).__name__}")
    if len(atoms) < 1:
        raise bad("the structure has no atoms")
    positions = np.array(atoms.positions, dtype=np.float64)  # [N, 3]
    cell = np.array(atoms.cell, dtype=np.float64)  # [3, 3]
    pbc = np.array(atoms.pbc, dtype=bool)  # [3]
    nonfinite = np.flatnonzero(~np.isfinite(positions).all(axis=1))
    if nonfinite.size:
        raise bad(f"atom {nonfinite[0]} has a non-finite position "
                  f"{positions[nonfinite[0]].tolist()}")
    if not np.isfinite(cell).all():
        raise bad(f"the cell has non-finite entries {cell.tolist()}")
    if pbc.any():
        periodic = cell[pbc]  # [p, 3]
        norms = np.linalg.norm(periodic, axis=1)
        # volume of the periodic lattice relative to a box with the same edges: 0 when singular
        volume = np.sqrt(max(np.linalg.det(periodic @ periodic.T), 0.0))
        if norms.min() < 1e-8 or volume < 1e-6 * np.prod(norms):
            axes = "".join("abc"[k] for k in np.flatnonzero(pbc))
            raise bad(f"the cell is zero or singular along the periodic axes {axes} "
                      f"(pbc={pbc.tolist()}, cell={cell.tolist()})",
                      "set a full-rank cell, or pbc=False for a molecule")
    return positions, cell, pbc


def check_sequence(structures: object, source: str = _SOURCE) -> None:
    """Raise :class:`DataError` unless ``structures`` is a sequence or iterable (of structures;
    each is checked where it is used), naming what it is instead (``None``, a number, a path)."""
    if isinstance(structures, (str, bytes)) or not hasattr(structures, "__iter__"):
        raise DataError(source, None, f"expected an ase.Atoms or a list of them, got "
                        f"{type(structures).__name__} {structures!r:.40}",
                        hint="read a file first: ase.io.read(path, index=':')")


def check_distances(i: np.ndarray, j: np.ndarray, distances: np.ndarray, source: str = _SOURCE,
                    record: int | None = None) -> None:
    """Raise :class:`DataError` (reason ``"atoms too close"``) if two atoms (or an atom and its
    periodic image) of a neighbour list ``i``, ``j`` [E] are closer than ``MIN_DISTANCE``."""
    if distances.size and distances.min() < MIN_DISTANCE:
        k = int(np.argmin(distances))
        a, b = sorted((int(i[k]), int(j[k])))
        what = f"atom {a} and its periodic image" if a == b else f"atoms {a} and {b}"
        raise DataError(source, record, f"{what} are {distances[k]:.3g} Angstrom apart "
                        f"(minimum {MIN_DISTANCE})",
                        hint="check for duplicated atoms and that positions are in Angstrom",
                        reason="atoms too close")


def local_positions(positions: np.ndarray) -> np.ndarray:
    """``positions`` [N, 3] minus their centroid, in float64.

    A translation changes no edge vector ``r_j - r_i + S @ cell`` (nor the shifts ``S``), and done
    in float64 before the graph is cast to the model's dtype it makes the graph's numbers the
    size of the structure, not of its distance from the origin: a structure 1e6 Angstrom away
    predicts what it predicts at the origin, to the model dtype's rounding (float32 positions
    of 1e6 are only good to 0.06 Angstrom).
    """
    positions = np.asarray(positions, dtype=np.float64)  # [N, 3]
    return positions - positions.mean(axis=0)  # [N, 3]


def atoms_to_graph(atoms: Atoms, cutoff: float, dtype: torch.dtype = torch.float64, *,
                   neighbour_backend: str = "auto", source: str = _SOURCE,
                   record: int | None = None, max_z: int | None = None
                   ) -> dict[str, torch.Tensor]:
    """Radius graph of one structure, as a batch of one (fields in the module docstring).

    Parameters
    ----------
    atoms : ase.Atoms
        A molecule (pbc all False, any cell or none), a crystal, or a slab (mixed pbc).
    cutoff : float
        Edges join atoms (and periodic images) strictly closer than ``cutoff`` Angstrom.
    dtype : torch.dtype
        Float dtype of positions, cell and shifts.
    neighbour_backend : {"auto", "ase", "matscipy", "tree"}
    source, record : str, int or None
        Where the structure comes from; errors start with ``"{source}:record {record}:"``.
    max_z : int, optional
        The largest atomic number the model covers (:func:`element_problem`).

    Raises
    ------
    DataError
        No atoms, non-finite positions or cell, a zero or singular periodic cell, two atoms
        (or an atom and its image) closer than ``MIN_DISTANCE``, an element beyond ``max_z``.
    """
    if not (np.isscalar(cutoff) and np.isfinite(cutoff) and float(cutoff) > 0):
        raise ValueError(f"cutoff must be a positive finite number, got {cutoff!r}")
    if dtype not in (torch.float32, torch.float64):  # an integer dtype would truncate positions
        raise ModelConfigError(f"collate: dtype must be torch.float32 or torch.float64 (as "
                               f"build_model takes), got {dtype!r}")
    positions, cell, pbc = check_structure(atoms, source, record)
    problem = None if max_z is None else element_problem(atoms.numbers, max_z)
    if problem:
        raise DataError(source, record, problem, hint=ELEMENT_HINT, reason="unknown element")
    positions = local_positions(positions)  # [N, 3] float64, centroid at the origin
    search = max(float(cutoff), MIN_DISTANCE)
    i, j, shifts, distances = neighbour_list(positions, cell, pbc, search, neighbour_backend)
    check_distances(i, j, distances, source, record)
    keep = distances < cutoff
    i, j, shifts = i[keep], j[keep], shifts[keep]
    if not pbc.any():
        cell = np.zeros((3, 3))
    n = len(atoms)
    return {
        keys.POSITIONS: torch.as_tensor(positions, dtype=dtype),  # [N, 3]
        keys.ATOMIC_NUMBERS: torch.as_tensor(atoms.numbers, dtype=torch.long),  # [N]
        keys.CELL: torch.as_tensor(cell, dtype=dtype).unsqueeze(0),  # [1, 3, 3]
        keys.PBC: torch.as_tensor(pbc).unsqueeze(0),  # [1, 3]
        keys.EDGE_INDEX: torch.as_tensor(np.stack([j, i]), dtype=torch.long),  # [2, E]
        keys.EDGE_SHIFTS: torch.as_tensor(shifts, dtype=dtype),  # [E, 3]
        keys.BATCH: torch.zeros(n, dtype=torch.long),  # [N]
        keys.NUM_GRAPHS: torch.tensor(1, dtype=torch.long),  # []
        keys.NUM_ATOMS: torch.tensor([n], dtype=torch.long),  # [1]
    }


def batch_graphs(graphs: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate graphs (each a batch of one or more structures) into one batch.

    ``EDGE_INDEX`` is offset by the atoms before it, ``BATCH`` by the structures before it,
    ``NUM_GRAPHS`` is summed, and every other field (known or not, e.g. per-atom ``[N, ...]`` or
    per-structure ``[G, ...]`` labels) is concatenated along its first dimension.
    """
    graphs = list(graphs)
    if not graphs:
        raise ValueError("batch_graphs needs at least one graph")
    names = set(graphs[0])
    for k, g in enumerate(graphs):
        if set(g) != names:
            raise ValueError(f"graph {k} has fields {sorted(g)}, graph 0 has {sorted(names)}")
    n_atoms = torch.tensor([int(g[keys.NUM_ATOMS].sum()) for g in graphs])
    n_graphs = torch.tensor([int(g[keys.NUM_GRAPHS]) for g in graphs])
    atom_offset = torch.cumsum(n_atoms, 0) - n_atoms  # [len(graphs)]
    graph_offset = torch.cumsum(n_graphs, 0) - n_graphs  # [len(graphs)]
    out: dict[str, torch.Tensor] = {}
    for name in graphs[0]:
        if name == keys.NUM_GRAPHS:
            out[name] = n_graphs.sum()  # []
        elif name in _EDGE_INDEX_FIELDS:
            out[name] = torch.cat([g[name] + o for g, o in zip(graphs, atom_offset)], dim=1)
        elif name in _OFFSET_FIELDS:
            out[name] = torch.cat([g[name] + o for g, o in zip(graphs, graph_offset)], dim=0)
        else:
            out[name] = torch.cat([g[name] for g in graphs], dim=0)
    return out


def collate(structures: Atoms | Sequence[Atoms], cutoff: float,
            dtype: torch.dtype = torch.float64, *, neighbour_backend: str = "auto",
            source: str = _SOURCE, start: int = 0, max_z: int | None = None
            ) -> dict[str, torch.Tensor]:
    """Graphs of a list of structures, batched; errors name ``source`` and the structure's
    record number, ``start`` + its index in the list (``start``: the list's place in the file).

    >>> from ase.build import bulk
    >>> g = collate(bulk("Cu", "fcc", a=3.6), cutoff=3.0)  # 12 nearest neighbours at 2.55 A
    >>> tuple(g["edge_index"].shape)
    (2, 12)
    """
    if isinstance(structures, Atoms):
        structures = [structures]
    check_sequence(structures, source)
    graphs = [atoms_to_graph(atoms, cutoff, dtype, neighbour_backend=neighbour_backend,
                             source=source, record=start + k, max_z=max_z)
              for k, atoms in enumerate(structures)]
    return batch_graphs(graphs)


def node_batch(graph: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``graph[BATCH]`` [N] (the structure of each node), or zeros for a graph of one structure."""
    batch = graph.get(keys.BATCH)
    if batch is None:
        positions = graph[keys.POSITIONS]  # [N, 3]
        batch = torch.zeros(positions.shape[0], dtype=torch.long, device=positions.device)
    return batch  # [N]


def edge_vectors(graph: dict[str, torch.Tensor]) -> torch.Tensor:
    """``r_ij = positions[j] - positions[i] + S @ cell[batch[i]]``, shape ``[E, 3]``.

    Differentiable in ``graph[POSITIONS]`` and ``graph[CELL]``; points from the centre ``i``
    (``EDGE_INDEX[1]``) to the neighbour ``j`` (``EDGE_INDEX[0]``).  ``graph[EDGE_VECTORS]`` is
    returned as it is when present; the image-shift term is added only when ``EDGE_SHIFTS`` and
    ``CELL`` are in the graph (``BATCH`` absent: one structure).
    """
    if keys.EDGE_VECTORS in graph:
        return graph[keys.EDGE_VECTORS]
    positions = graph[keys.POSITIONS]  # [N, 3]
    source, target = graph[keys.EDGE_INDEX]  # [E], [E]
    vectors = positions[source] - positions[target]  # [E, 3]
    if keys.EDGE_SHIFTS in graph and keys.CELL in graph:
        cell = graph[keys.CELL].to(positions.dtype).reshape(-1, 3, 3)  # [G, 3, 3]
        batch = graph.get(keys.BATCH)
        structure = batch[target] if batch is not None else torch.zeros_like(target)  # [E]
        shifts = graph[keys.EDGE_SHIFTS].to(positions.dtype)  # [E, 3]
        vectors = vectors + torch.einsum("ek,ekc->ec", shifts, cell[structure])  # [E, 3]
    return vectors
