"""Radius graphs against brute-force numpy references, batching, edge vectors and bad input.

``dtype`` and ``tol`` (absolute tolerance on edge vectors, Angstrom) come from tests/conftest.py.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc111, molecule

from tsym.runtime.errors import DataError
from tsym.runtime import keys
from tsym.runtime.graph import atoms_to_graph, batch_graphs, collate, edge_vectors

try:
    import matscipy  # noqa: F401
    _BACKENDS = ["ase", "matscipy"]
except ImportError:  # pragma: no cover
    _BACKENDS = ["ase", pytest.param("matscipy", marks=pytest.mark.skip("matscipy missing"))]

@pytest.fixture(params=_BACKENDS)
def backend(request):
    return request.param


def brute_force(atoms: Atoms, cutoff: float) -> dict[tuple, np.ndarray]:
    """{(i, j, S): r_j - r_i + S @ cell} over every image in a box that surely holds them all."""
    pos, cell, pbc = atoms.positions, np.array(atoms.cell), atoms.pbc
    periodic = np.flatnonzero(pbc)
    ranges = [[0], [0], [0]]
    if periodic.size:
        dual = np.linalg.pinv(cell[periodic])  # [3, p]; column k is dual to periodic row k
        reach = cutoff + np.ptp(pos, axis=0).sum()  # |S @ cell| <= cutoff + |r_i - r_j|
        for col, axis in enumerate(periodic):
            n = int(np.ceil(reach * np.linalg.norm(dual[:, col]))) + 1
            ranges[axis] = range(-n, n + 1)
    out = {}
    for shift in itertools.product(*ranges):
        s = np.array(shift)
        vec = pos[None, :, :] - pos[:, None, :] + s @ cell  # [i, j, 3]
        dist = np.linalg.norm(vec, axis=-1)
        for i, j in zip(*np.nonzero(dist < cutoff)):
            if i != j or s.any():
                out[(int(i), int(j), *shift)] = vec[i, j]
    return out


def graph_edges(graph: dict, dtype=torch.float64) -> dict[tuple, np.ndarray]:
    """{(i, j, S): edge vector} read from a graph; also checks shifts are integers."""
    shifts = graph[keys.EDGE_SHIFTS]
    assert torch.equal(shifts, shifts.round())
    vectors = edge_vectors(graph).detach().to(torch.float64).numpy()
    src, dst = graph[keys.EDGE_INDEX].tolist()
    out = {(i, j, *map(int, s)): v for j, i, s, v in zip(src, dst, shifts.tolist(), vectors)}
    assert len(out) == len(src), "duplicate edges"
    return out


def assert_same_edges(graph, reference, tol):
    got = graph_edges(graph)
    assert set(got) == set(reference)
    for key, vec in reference.items():
        np.testing.assert_allclose(got[key], vec, rtol=0, atol=tol)


def triclinic() -> Atoms:
    cell = [[3.0, 0.2, 0.1], [0.5, 2.8, -0.3], [0.4, -0.6, 3.3]]
    frac = [[0.1, 0.2, 0.3], [0.6, 0.5, 0.1], [1.4, -0.3, 0.7], [0.2, 0.9, -1.6]]  # some outside
    return Atoms("CuOHN", cell=cell, pbc=True, positions=np.array(frac) @ np.array(cell))


@pytest.mark.parametrize("cutoff", [1.6, 5.0])
def test_molecule_matches_brute_force(backend, dtype, tol, cutoff):
    mol = molecule("CH3CH2OH")
    graph = atoms_to_graph(mol, cutoff, dtype, neighbour_backend=backend)
    reference = brute_force(mol, cutoff)
    assert all(key[2:] == (0, 0, 0) and key[0] != key[1] for key in reference)
    assert_same_edges(graph, reference, tol)
    assert graph[keys.POSITIONS].dtype == dtype and graph[keys.CELL].abs().sum() == 0
    if cutoff == 5.0:  # ethanol is smaller than 5 A: every ordered pair
        assert graph[keys.EDGE_INDEX].shape == (2, 9 * 8)


def test_spread_molecule_matches_brute_force(backend):
    """Two clusters 1000 A apart: the working box along non-periodic axes is capped."""
    mol = molecule("CH3CH2OH") + molecule("H2O")
    mol.positions[9:] += [1000.0, -700.0, 3.0]
    assert_same_edges(atoms_to_graph(mol, 2.5, neighbour_backend=backend),
                      brute_force(mol, 2.5), 1e-10)


def test_periodic_matches_brute_force(backend, dtype, tol):
    crystal = triclinic()  # cutoff 4.5 exceeds every cell edge: several images, self-images
    reference = brute_force(crystal, 4.5)
    keys_ = np.array(list(reference))
    assert np.abs(keys_[:, 2:]).max() >= 2 and np.any(keys_[:, 0] == keys_[:, 1])
    assert_same_edges(atoms_to_graph(crystal, 4.5, dtype, neighbour_backend=backend),
                      reference, tol)


@pytest.mark.parametrize("vacuum", [None, 5.0])
def test_slab_mixed_pbc_matches_brute_force(backend, vacuum):
    slab = fcc111("Cu", size=(2, 2, 3), vacuum=vacuum)  # vacuum=None: zero third cell vector
    slab.rattle(0.05, seed=1)
    reference = brute_force(slab, 4.0)
    assert all(key[4] == 0 for key in reference)
    graph = atoms_to_graph(slab, 4.0, neighbour_backend=backend)
    assert_same_edges(graph, reference, 1e-10)
    assert graph[keys.PBC].tolist() == [[True, True, False]]


def test_one_atom_cell_equals_supercell(backend):
    prim = bulk("Cu", "fcc", a=3.6)
    sup = prim * (3, 3, 3)
    g1 = atoms_to_graph(prim, 6.0, neighbour_backend=backend)
    g27 = atoms_to_graph(sup, 6.0, neighbour_backend=backend)
    d1 = np.sort(edge_vectors(g1).norm(dim=1).numpy())
    counts = np.bincount(g27[keys.EDGE_INDEX][1].numpy(), minlength=27)
    # fcc shells below 6 A at a=3.6: (a/sqrt 2) * sqrt(n), n = 1..5, with 12, 6, 24, 12, 24 sites
    assert len(d1) == 12 + 6 + 24 + 12 + 24 and np.all(counts == len(d1))
    np.testing.assert_allclose(np.unique(d1.round(8)), 3.6 / np.sqrt(2) * np.sqrt(np.arange(1, 6)))
    lengths = edge_vectors(g27).norm(dim=1).numpy()
    for centre in range(27):
        d = np.sort(lengths[g27[keys.EDGE_INDEX][1].numpy() == centre])
        np.testing.assert_allclose(d, d1, rtol=0, atol=1e-10)


def test_self_image_is_an_edge_self_pair_is_not(backend):
    graph = atoms_to_graph(bulk("Cu", "fcc", a=3.6), 3.0, neighbour_backend=backend)
    assert graph[keys.EDGE_INDEX].tolist() == [[0] * 12, [0] * 12]
    assert graph[keys.EDGE_SHIFTS].abs().sum(dim=1).min() > 0


def _orthogonal(seed: int, proper: bool) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    q = q if np.linalg.det(q) > 0 else -q
    return q if proper else -q


@pytest.mark.parametrize("proper", [True, False])
def test_rotation_rotates_edge_vectors(backend, dtype, tol, proper):
    rot = _orthogonal(3, proper)
    for atoms, cutoff in [(triclinic(), 4.5), (molecule("CH3CH2OH"), 2.0)]:
        turned = atoms.copy()
        turned.positions = atoms.positions @ rot.T
        turned.set_cell(np.array(atoms.cell) @ rot.T)
        before = graph_edges(atoms_to_graph(atoms, cutoff, dtype, neighbour_backend=backend))
        after = graph_edges(atoms_to_graph(turned, cutoff, dtype, neighbour_backend=backend))
        assert set(before) == set(after)
        for key, vec in before.items():
            np.testing.assert_allclose(after[key], rot @ vec, rtol=0, atol=tol)


def _vectors_by_pair(graph) -> dict[tuple[int, int], np.ndarray]:
    out: dict[tuple[int, int], list] = {}
    for (i, j, *_), vec in graph_edges(graph).items():
        out.setdefault((i, j), []).append(vec)
    return {k: np.array(sorted(map(tuple, v))) for k, v in out.items()}


def test_translation_keeps_edge_vectors(backend):
    for atoms, cutoff in [(triclinic(), 4.5), (molecule("CH3CH2OH"), 2.0)]:
        moved = atoms.copy()
        moved.positions += [7.3, -2.9, 11.4]
        wrapped = moved.copy()
        wrapped.wrap()  # for the molecule (no pbc) this does nothing
        ref = _vectors_by_pair(atoms_to_graph(atoms, cutoff, neighbour_backend=backend))
        for other in (moved, wrapped):
            got = _vectors_by_pair(atoms_to_graph(other, cutoff, neighbour_backend=backend))
            assert set(got) == set(ref)
            for pair, vecs in ref.items():
                np.testing.assert_allclose(got[pair], vecs, rtol=0, atol=1e-10)


def test_batch_molecule_and_crystal(backend, dtype, tol):
    mol, crystal = molecule("CH3CH2OH"), triclinic()
    batch = collate([mol, crystal], 4.5, dtype, neighbour_backend=backend)
    singles = [atoms_to_graph(a, 4.5, dtype, neighbour_backend=backend) for a in (mol, crystal)]
    assert int(batch[keys.NUM_GRAPHS]) == 2 and batch[keys.NUM_GRAPHS].dim() == 0
    assert batch[keys.NUM_ATOMS].tolist() == [9, 4]
    assert batch[keys.BATCH].tolist() == [0] * 9 + [1] * 4
    assert batch[keys.PBC].tolist() == [[False] * 3, [True] * 3]
    assert batch[keys.CELL].shape == (2, 3, 3) and batch[keys.CELL][0].abs().sum() == 0
    cell = torch.as_tensor(np.array(crystal.cell), dtype=dtype)
    torch.testing.assert_close(batch[keys.CELL][1], cell)
    n_mol = singles[0][keys.EDGE_INDEX].shape[1]
    index = batch[keys.EDGE_INDEX]
    assert torch.equal(index[:, :n_mol], singles[0][keys.EDGE_INDEX])
    assert torch.equal(index[:, n_mol:], singles[1][keys.EDGE_INDEX] + 9)
    assert torch.equal(batch[keys.BATCH][index[0]], batch[keys.BATCH][index[1]])
    torch.testing.assert_close(edge_vectors(batch),
                               torch.cat([edge_vectors(g) for g in singles]))
    vectors = edge_vectors(batch).to(torch.float64).numpy()
    reference = {**brute_force(mol, 4.5),
                 **{(i + 9, j + 9, *s): v for (i, j, *s), v in brute_force(crystal, 4.5).items()}}
    assert_same_edges(batch, reference, tol)
    assert vectors.shape == (len(reference), 3)


def test_batch_graphs_of_batches_and_extra_fields():
    graphs = [atoms_to_graph(molecule(name), 2.0) for name in ("H2O", "NH3", "CH4")]
    for k, g in enumerate(graphs):
        g["label"] = torch.full((1, 3), float(k))  # a per-structure field [G, 3]
    nested = batch_graphs([batch_graphs(graphs[:2]), graphs[2]])
    flat = batch_graphs(graphs)
    assert set(nested) == set(flat)
    for name in flat:
        assert torch.equal(nested[name], flat[name]), name
    assert flat["label"][:, 0].tolist() == [0.0, 1.0, 2.0]
    assert flat[keys.BATCH].tolist() == [0] * 3 + [1] * 4 + [2] * 5
    del graphs[1]["label"]
    with pytest.raises(ValueError, match="^graph 1 has fields"):
        batch_graphs(graphs)
    with pytest.raises(ValueError, match="at least one graph"):
        batch_graphs([])


def test_edge_vectors_differentiable_in_positions_and_cell(dtype):
    graph = atoms_to_graph(triclinic(), 4.5, dtype)
    pos = graph[keys.POSITIONS].clone().requires_grad_(True)
    cell = graph[keys.CELL].clone().requires_grad_(True)
    r = edge_vectors({**graph, keys.POSITIONS: pos, keys.CELL: cell})  # [E, 3]
    energy = (r ** 2).sum()
    g_pos, g_cell = torch.autograd.grad(energy, (pos, cell))
    # analytic: dE/dr_e = 2 r_e; r_e = pos[j] - pos[i] + S_e @ cell
    r64, s64 = r.detach().double(), graph[keys.EDGE_SHIFTS].double()
    src, dst = graph[keys.EDGE_INDEX]
    exp_pos = torch.zeros(4, 3, dtype=torch.float64)
    exp_pos = exp_pos.index_add(0, src, 2 * r64).index_add(0, dst, -2 * r64)  # [N, 3]
    exp_cell = 2 * s64.T @ r64  # [3, 3]
    tols = dict(atol=1e-8, rtol=1e-8) if dtype == torch.float64 else dict(atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(g_pos.double(), exp_pos, **tols)
    torch.testing.assert_close(g_cell[0].double(), exp_cell, **tols)
    # a strain applied to positions and cell strains every edge vector
    strain = torch.eye(3, dtype=dtype) + 0.01 * torch.tensor(
        [[1.0, 2, 0], [2, -1, 3], [0, 3, 2]], dtype=dtype)
    strained = edge_vectors({**graph, keys.POSITIONS: graph[keys.POSITIONS] @ strain,
                             keys.CELL: graph[keys.CELL] @ strain})
    torch.testing.assert_close(strained, edge_vectors(graph) @ strain, **tols)


def _too_close() -> Atoms:
    atoms = molecule("CH3CH2OH")
    atoms.positions[5] = atoms.positions[0] + [0.02, 0.0, 0.0]
    return atoms


@pytest.mark.parametrize("bad, message", [
    (Atoms(), r"^<structures>:record 3: the structure has no atoms"),
    (Atoms("H2", positions=[[0, 0, 0], [0, np.nan, 1]]),
     r"^<structures>:record 3: atom 1 has a non-finite position"),
    (Atoms("H", pbc=True), r"^<structures>:record 3: the cell is zero or singular along the "
                           r"periodic axes abc"),
    (Atoms("H", cell=[[2, 0, 0], [0, 2, 0], [2, 2, 0]], pbc=True),
     r"^<structures>:record 3: the cell is zero or singular"),
    (Atoms("H", cell=[[2, 0, 0], [0, 2, 0], [0, 0, 0]], pbc=[True, False, True]),
     r"^<structures>:record 3: the cell is zero or singular along the periodic axes ac"),
    (_too_close(), r"^<structures>:record 3: atoms 0 and 5 are 0.02 Angstrom apart"),
    (Atoms("H", cell=[[0.05, 0, 0], [0, 3, 0], [0, 0, 3]], pbc=True),
     r"^<structures>:record 3: atom 0 and its periodic image are 0.05 Angstrom apart"),
    ("H2O", r"^<structures>:record 3: expected an ase.Atoms, got str"),
])
def test_bad_structures_name_their_index(bad, message):
    good = [molecule("H2O"), bulk("Cu"), molecule("CH4")]
    with pytest.raises(DataError, match=message):
        collate(good + [bad], cutoff=3.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="cutoff"):
        atoms_to_graph(molecule("H2O"), -1.0)
    with pytest.raises(ValueError, match="neighbour_backend"):
        atoms_to_graph(molecule("H2O"), 2.0, neighbour_backend="scipy")
    single = atoms_to_graph(molecule("H2O"), 2.0, source="water.xyz", record=None)
    assert single[keys.NUM_ATOMS].tolist() == [3]
    with pytest.raises(DataError, match=r"^water\.xyz: the structure has no atoms"):
        atoms_to_graph(Atoms(), 2.0, source="water.xyz")


def test_works_without_matscipy(monkeypatch):
    from tsym.runtime import graph as graph_module
    monkeypatch.setattr(graph_module, "_matscipy_neighbour_list", None)
    crystal = triclinic()
    assert_same_edges(atoms_to_graph(crystal, 4.5), brute_force(crystal, 4.5), 1e-10)
    with pytest.raises(ValueError, match="matscipy is not installed"):
        atoms_to_graph(crystal, 4.5, neighbour_backend="matscipy")
