"""Tests of the XPaiNN backbone (tsym.runtime.nn.xpainn).

Graphs are built here by brute force (numpy), independently of ``tsym.runtime.graph``: all pairs
(and, for crystals, all image shifts in a small box) closer than the cutoff; ``edge_index`` row 0 is
the neighbour j, row 1 the centre i, and r_ij = pos[j] - pos[i] + shift @ cell.
"""
from __future__ import annotations

import copy
import itertools
import pickle

import numpy as np
import pytest
import torch
from ase.build import molecule

from tsym.compiler.errors import TsymError
from tsym.runtime import keys
from tsym.runtime.nn.xpainn import MessageBlock, UpdateBlock, XPaiNN, edge_vectors
from tsym.runtime.nn.embedding import BackboneConfigError, IrrepsMismatchError

from ...conftest import default_dtype, rotation_and_d

IRREPS = "16x0e+8x1o+4x2e"
CUTOFF = 4.0


def _model(dtype, embedding="qc", cutoff=CUTOFF, cutoff_fn="cosine", seed=0):
    torch.manual_seed(seed)
    with default_dtype(dtype):
        return XPaiNN(num_scalars=16, irreps=IRREPS, num_blocks=2, num_basis=8, cutoff=cutoff,
                      embedding=embedding, cutoff_fn=cutoff_fn)


def _molecule_graph(pos, numbers, cutoff=CUTOFF, dtype=torch.float64):
    pos = np.asarray(pos, dtype=float)
    dist = np.linalg.norm(pos[None, :, :] - pos[:, None, :], axis=-1)  # [i, j]
    i, j = np.nonzero((dist < cutoff) & ~np.eye(len(pos), dtype=bool))
    return {keys.POSITIONS: torch.tensor(pos, dtype=dtype),
            keys.ATOMIC_NUMBERS: torch.tensor(np.asarray(numbers), dtype=torch.long),
            keys.EDGE_INDEX: torch.tensor(np.stack([j, i]), dtype=torch.long)}


def _crystal_graph(pos, numbers, cell, cutoff=CUTOFF, reach=3, dtype=torch.float64):
    pos, cell = np.asarray(pos, dtype=float), np.asarray(cell, dtype=float)
    src, dst, shifts = [], [], []
    for s in itertools.product(range(-reach, reach + 1), repeat=3):
        vec = pos[None, :, :] + np.asarray(s) @ cell - pos[:, None, :]  # [i, j, 3]
        dist = np.linalg.norm(vec, axis=-1)
        i, j = np.nonzero((dist < cutoff) & (dist > 1e-8))
        src.append(j)
        dst.append(i)
        shifts += [s] * len(i)
    return {keys.POSITIONS: torch.tensor(pos, dtype=dtype),
            keys.ATOMIC_NUMBERS: torch.tensor(np.asarray(numbers), dtype=torch.long),
            keys.EDGE_INDEX: torch.tensor(np.stack([np.concatenate(src), np.concatenate(dst)])),
            keys.EDGE_SHIFTS: torch.tensor(np.asarray(shifts, dtype=float).reshape(-1, 3), dtype=dtype),
            keys.CELL: torch.tensor(cell[None], dtype=dtype)}


def _features(model, graph):
    return model(graph)[keys.NODE_FEATURES]


def _close(got, want, tol):
    scale = want.abs().max().item()
    assert scale > 0.1  # the features are not trivially zero
    assert (got - want).abs().max().item() <= tol * scale


ETHANOL = molecule("CH3CH2OH")
# a triclinic two-atom cell (Angstrom) with a rock-salt-like pair
CELL = np.array([[3.1, 0.0, 0.0], [0.9, 2.9, 0.0], [0.4, 0.7, 3.3]])
CRYSTAL_POS, CRYSTAL_Z = np.array([[0.1, 0.2, 0.0], [1.6, 1.5, 1.4]]), [11, 17]


@pytest.mark.parametrize("proper", [True, False], ids=["R", "-R"])
def test_rotation_equivariance(dtype, tol, proper):
    model = _model(dtype)
    graph = _molecule_graph(ETHANOL.positions, ETHANOL.numbers, dtype=dtype)
    rot, d = rotation_and_d(model.irreps_out, proper=proper, dtype=dtype)
    rotated = {**graph, keys.POSITIONS: graph[keys.POSITIONS] @ rot.T}
    feats = _features(model, graph)
    assert feats.dtype == dtype and feats.shape == (9, model.irreps_out.dim)
    assert feats[:, 32:].abs().max() > 0.05  # the l = 1, 2 features are not trivially zero
    _close(_features(model, rotated), feats @ d.T, tol)


def test_translation_and_permutation_invariance(dtype, tol):
    model = _model(dtype, embedding="onehot")
    graph = _molecule_graph(ETHANOL.positions, ETHANOL.numbers, dtype=dtype)
    feats = _features(model, graph)
    moved = {**graph, keys.POSITIONS: graph[keys.POSITIONS] + torch.tensor([3.0, -7.0, 11.0], dtype=dtype)}
    _close(_features(model, moved), feats, tol)
    perm = torch.from_numpy(np.random.default_rng(1).permutation(9))  # new atom a is old atom perm[a]
    inverse = torch.argsort(perm)
    edges = inverse[graph[keys.EDGE_INDEX]][:, torch.randperm(graph[keys.EDGE_INDEX].shape[1])]
    permuted = {keys.POSITIONS: graph[keys.POSITIONS][perm],
                keys.ATOMIC_NUMBERS: graph[keys.ATOMIC_NUMBERS][perm], keys.EDGE_INDEX: edges}
    _close(_features(model, permuted), feats[perm], tol)


def test_periodic_rotation_and_given_edge_vectors(dtype, tol):
    model = _model(dtype)
    graph = _crystal_graph(CRYSTAL_POS, CRYSTAL_Z, CELL, dtype=dtype)
    feats = _features(model, graph)
    # the shift term is really used: r_ij with shifts differs from pos[j] - pos[i]
    src, dst = graph[keys.EDGE_INDEX]
    plain = graph[keys.POSITIONS][src] - graph[keys.POSITIONS][dst]
    assert (edge_vectors(graph) - plain).abs().max() > 1.0
    want = (torch.tensor(CRYSTAL_POS)[src] - torch.tensor(CRYSTAL_POS)[dst]
            + graph[keys.EDGE_SHIFTS].double() @ torch.tensor(CELL)).to(dtype)
    torch.testing.assert_close(edge_vectors(graph), want, rtol=tol, atol=tol)
    # given EDGE_VECTORS take precedence over positions
    given = {**graph, keys.EDGE_VECTORS: want, keys.POSITIONS: torch.zeros_like(graph[keys.POSITIONS])}
    _close(_features(model, given), feats, tol)
    # rotate positions and cell, keep the integer shifts
    for proper in (True, False):
        rot, d = rotation_and_d(model.irreps_out, proper=proper, dtype=dtype)
        rotated = {**graph, keys.POSITIONS: graph[keys.POSITIONS] @ rot.T,
                   keys.CELL: graph[keys.CELL] @ rot.T}
        _close(_features(model, rotated), feats @ d.T, tol)


def test_periodic_supercell_and_batch(dtype, tol):
    """A 2x1x1 supercell and a batch of two structures give the per-atom features of the cell."""
    model = _model(dtype)
    feats = _features(model, _crystal_graph(CRYSTAL_POS, CRYSTAL_Z, CELL, dtype=dtype))
    super_cell = CELL * np.array([[2.0], [1.0], [1.0]])
    super_pos = np.concatenate([CRYSTAL_POS, CRYSTAL_POS + CELL[0]])
    big = _crystal_graph(super_pos, CRYSTAL_Z * 2, super_cell, dtype=dtype)
    _close(_features(model, big), feats.repeat(2, 1), tol)
    mol = _molecule_graph(ETHANOL.positions, ETHANOL.numbers, dtype=dtype)
    mol_feats = _features(model, mol)
    crystal = _crystal_graph(CRYSTAL_POS, CRYSTAL_Z, CELL, dtype=dtype)
    n_edges = mol[keys.EDGE_INDEX].shape[1]
    batch = {  # structure 0: ethanol (zero cell, zero shifts), structure 1: the crystal
        keys.POSITIONS: torch.cat([mol[keys.POSITIONS], crystal[keys.POSITIONS]]),
        keys.ATOMIC_NUMBERS: torch.cat([mol[keys.ATOMIC_NUMBERS], crystal[keys.ATOMIC_NUMBERS]]),
        keys.EDGE_INDEX: torch.cat([mol[keys.EDGE_INDEX], crystal[keys.EDGE_INDEX] + 9], dim=1),
        keys.EDGE_SHIFTS: torch.cat([torch.zeros(n_edges, 3, dtype=dtype), crystal[keys.EDGE_SHIFTS]]),
        keys.CELL: torch.cat([torch.zeros(1, 3, 3, dtype=dtype), crystal[keys.CELL]]),
        keys.BATCH: torch.tensor([0] * 9 + [1, 1]),
    }
    _close(_features(model, batch), torch.cat([mol_feats, feats]), tol)


@pytest.mark.parametrize("cutoff_fn", ["cosine", "polynomial"])
def test_smooth_at_cutoff(cutoff_fn):
    """An edge at cutoff - 1e-6 changes the features by ~0 compared with no edge at all."""
    model = _model(torch.float64, cutoff_fn=cutoff_fn)
    pos = np.array([[0.0, 0.0, 0.0], [1.1, 0.3, -0.2], [0.0, 0.0, CUTOFF - 1e-6]])
    graph = _molecule_graph(pos, [6, 8, 1])  # edges 0-1 and 0-2 (1-2 is beyond the cutoff)
    assert graph[keys.EDGE_INDEX].shape[1] == 4
    src, dst = graph[keys.EDGE_INDEX]
    keep = ~((src == 2) | (dst == 2))
    without = {**graph, keys.EDGE_INDEX: graph[keys.EDGE_INDEX][:, keep]}
    feats, feats_without = _features(model, graph), _features(model, without)
    assert (feats - feats_without).abs().max().item() < 1e-8 * feats.abs().max().item()
    closer = {**graph, keys.POSITIONS: graph[keys.POSITIONS] * torch.tensor([[1.0], [1.0], [0.5]])}
    assert (_features(model, closer) - feats_without).abs().max().item() > 1e-3  # the edge is live


@pytest.mark.parametrize("embedding", ["qc", "onehot"])
def test_gradients_reach_every_parameter(embedding):
    model = _model(torch.float64, embedding=embedding)
    graph = _molecule_graph(ETHANOL.positions, ETHANOL.numbers)
    graph[keys.POSITIONS].requires_grad_(True)
    feats = _features(model, graph)
    weights = torch.randn(feats.shape, generator=torch.Generator().manual_seed(3), dtype=feats.dtype)
    (feats * weights).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum().item() > 0, name
    assert torch.isfinite(graph[keys.POSITIONS].grad).all()
    assert graph[keys.POSITIONS].grad.abs().sum() > 0


def test_embeddings_differ_and_isolated_atom():
    graph = _molecule_graph(ETHANOL.positions, ETHANOL.numbers, dtype=torch.float32)
    qc, onehot = _model(torch.float32, "qc"), _model(torch.float32, "onehot")
    assert not torch.allclose(_features(qc, graph), _features(onehot, graph))
    assert qc.node_embedding.kind == "qc" and onehot.node_embedding.kind == "onehot"
    single = _molecule_graph([[0.0, 0.0, 0.0]], [8], dtype=torch.float32)
    out = _features(qc, single)
    assert out.shape == (1, 76) and torch.isfinite(out).all()
    assert torch.all(out[:, 32:] == 0)  # l > 0 features of a lone atom vanish (by symmetry)


def test_message_direction():
    """Row 0 of EDGE_INDEX is the neighbour j, row 1 the centre i that receives the message."""
    model = _model(torch.float64)
    pos = [[0.0, 0.0, 0.0], [0.4, 1.0, -0.6]]
    graph = {**_molecule_graph(pos, [6, 8]), keys.EDGE_INDEX: torch.tensor([[1], [0]])}
    torch.testing.assert_close(edge_vectors(graph), torch.tensor([[0.4, 1.0, -0.6]], dtype=torch.float64))
    feats = _features(model, graph)
    lone = _features(model, _molecule_graph([pos[1]], [8]))
    torch.testing.assert_close(feats[1:], lone, rtol=1e-12, atol=1e-12)  # atom 1 only sends
    assert (feats[0, 32:].abs().max() > 1e-3) and torch.all(feats[1, 32:] == 0)


def test_output_irreps_and_layout():
    model = _model(torch.float32)
    assert str(model.irreps_out) == "32x0e+8x1o+4x2e"  # 16 scalars + the 16x0e of the irreps
    assert str(XPaiNN(embedding="onehot").irreps_out) == "256x0e+64x1o+32x2e"
    graph = _molecule_graph(ETHANOL.positions, ETHANOL.numbers, dtype=torch.float32)
    out = model(graph)
    assert set(out) == set(graph) | {keys.NODE_FEATURES} and keys.NODE_FEATURES not in graph


def test_deepcopy_and_pickle_round_trip():
    model = _model(torch.float64)
    graph = _molecule_graph(ETHANOL.positions, ETHANOL.numbers)
    want = _features(model, graph)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        torch.testing.assert_close(_features(clone, graph), want, rtol=0, atol=0)
    fresh = _model(torch.float64, seed=1)
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(_features(fresh, graph), want, rtol=0, atol=0)


def test_irreps_errors_at_construction():
    with pytest.raises(BackboneConfigError,
                       match=r"^XPaiNN: field 'scalars \(num_scalars\)' must be scalars 'Nx0e' with N >= 1"):
        XPaiNN(num_scalars=0, irreps=IRREPS)
    with pytest.raises(BackboneConfigError,
                       match=r"^XPaiNN: field 'irreps' irreps '16x0e\+8x1e' contain 1e, but the edge "
                             r"spherical harmonics of l=1 are 1o; use 1o"):
        XPaiNN(num_scalars=8, irreps="16x0e+8x1e")
    with pytest.raises(BackboneConfigError, match=r"^XPaiNN: field 'irreps' irreps '8x1o\+16x0e' must "
                                                  r"be sorted .* write '16x0e\+8x1o'"):
        XPaiNN(num_scalars=8, irreps="8x1o+16x0e")
    with pytest.raises(BackboneConfigError, match=r"^XPaiNN: field 'irreps' needs a non-empty irreps"):
        XPaiNN(num_scalars=8, irreps="")
    with pytest.raises(BackboneConfigError, match=r"^XPaiNN: num_blocks must be >= 1"):
        XPaiNN(num_scalars=8, irreps=IRREPS, num_blocks=0)
    with pytest.raises(BackboneConfigError, match=r"^ElementEmbedding: unknown embedding 'mace'"):
        XPaiNN(num_scalars=8, irreps=IRREPS, embedding="mace")
    assert issubclass(IrrepsMismatchError, BackboneConfigError) and issubclass(BackboneConfigError, TsymError)


def test_block_irreps_checks():
    good = {"scalars": "16x0e", "equivariant": IRREPS, "edge_sh": "1x0e+1x1o+1x2e",
            "edge_radial": "8x0e"}
    assert {k: str(v) for k, v in MessageBlock(good).irreps_out.items()} == {
        "scalars": "16x0e", "equivariant": IRREPS}
    with pytest.raises(IrrepsMismatchError, match=r"^MessageBlock: field 'edge_sh' expects irreps "
                                                  r"'1x0e\+1x1o\+1x2e' but got '1x0e\+1x1o'$"):
        MessageBlock({**good, "edge_sh": "1x0e+1x1o"})
    with pytest.raises(BackboneConfigError, match=r"^MessageBlock: irreps_in lacks field\(s\) edge_radial"):
        MessageBlock({k: v for k, v in good.items() if k != "edge_radial"})
    with pytest.raises(BackboneConfigError, match=r"^UpdateBlock: field 'scalars' must be scalars 'Nx0e'"):
        UpdateBlock({"scalars": "16x0e+2x1o", "equivariant": IRREPS})
    with pytest.raises(BackboneConfigError,
                       match=r"^UpdateBlock: field 'equivariant' irreps '4x0o' contain 0o"):
        UpdateBlock({"scalars": "16x0e", "equivariant": "4x0o"})
