"""``RestoreParity``: exact O(3) features from an SO(3)-only backbone, on a synthetic network.

The network mixes a scalar with a pseudo-scalar and a polar with an axial vector in blocks it
labels ``0e`` and ``1e``: rotations act as declared, inversion mixes every channel (as SevenNet's
``is_parity=False`` checkpoints do).  Checked against e3nn's ``Irreps.D_from_matrix`` (proper and
improper) on a molecule and a periodic cell, at 1e-10 of the largest feature in float64; in
float32 at the float32 network's own rounding (its features minus the float64 ones, before and
after the move: the triangle inequality bounds the symmetry error by their sum) plus 1e-10.
"""
from __future__ import annotations

import pytest
import torch

import tsym
from tsym.runtime import keys
from tsym.runtime.errors import ModelConfigError
from tsym.runtime.graph import collate, edge_vectors
from tsym.runtime.nn.parity import RestoreParity, has_parity, restore_parity
from tsym.runtime.nn.registry import BACKBONES
from tsym.runtime.nn.wrap import backbone_from_module
from tsym.runtime.equivariance import rotate_atoms

from ...conftest import molecule_and_cell, rotation_and_d, SPECS_DIR, TOLERANCES

CUTOFF = 3.5


def _chiral(graph):
    """``[s + p, v + a]`` as ``1x0e+1x1e``: s scalar, p pseudo-scalar, v polar, a axial."""
    src, dst = graph[keys.EDGE_INDEX]
    r = edge_vectors(dict(graph))  # [E, 3]
    d = r.norm(dim=1, keepdim=True)  # [E, 1]
    n = graph[keys.POSITIONS].shape[0]

    def node_sum(x):  # [E, k] -> [N, k]
        return torch.zeros(n, x.shape[1], dtype=x.dtype).index_add(0, dst, x)
    v = node_sum(r * torch.exp(-d))  # [N, 3] polar
    u = node_sum(r * d)  # [N, 3] polar
    w = node_sum(r * d ** 2)  # [N, 3] polar
    a = torch.cross(v, u, dim=1)  # [N, 3] axial
    p = (a * w).sum(1, keepdim=True)  # [N, 1] pseudo-scalar
    s = node_sum(torch.exp(-d))  # [N, 1]
    return torch.cat([s + p, v + a], 1)  # [N, 4]


def _so3_backbone():
    net = backbone_from_module(_chiral, "1x0e+1x1e", cutoff=CUTOFF, name="chiral", check=False)
    net.parity = False
    return net


def _features(net, structures, dtype):
    return net(collate(structures, CUTOFF, dtype))[keys.NODE_FEATURES].double()  # [N, dim]


def _errors(net, dtype):
    """Largest error / largest feature under a rotation and a reflection, and the bound: the
    float64 tolerance plus (float32 only) the rounding of the features before and after."""
    structures = molecule_and_cell()
    out, bound = {}, TOLERANCES[torch.float64]
    for proper in (True, False):
        rotation, d = rotation_and_d(net.irreps_out, proper, torch.float64)
        moved = [rotate_atoms(a, rotation) for a in structures]
        before, after = _features(net, structures, dtype), _features(net, moved, dtype)
        expected = before @ d.T  # [N, dim]
        scale = float(expected.abs().max())
        out["rotation" if proper else "reflection"] = float((after - expected).abs().max()) / scale
        if dtype != torch.float64:
            rounding = [float((_features(net, s, torch.float64) - f).abs().max()) / scale
                        for s, f in ((structures, before), (moved, after))]
            bound = max(bound, TOLERANCES[torch.float64] + sum(rounding))
    return out, bound


def test_so3_backbone_breaks_under_reflection():
    errors, bound = _errors(_so3_backbone(), torch.float64)
    assert errors["rotation"] < bound
    assert errors["reflection"] > 0.1  # every channel mixes: an error of order one


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_restored_features_are_o3_equivariant(dtype):
    net = RestoreParity(_so3_backbone())
    assert str(net.irreps_out) == "1x0e+1x1e+1x0o+1x1o"
    errors, bound = _errors(net, dtype)
    assert max(errors.values()) < bound < 1e-4, (errors, bound)


def test_even_and_odd_parts_are_the_physical_ones():
    """g+ = [s, a] and g- = [p, v]: each non-zero, and g+ + g- gives back f."""
    graph = collate(molecule_and_cell(), CUTOFF, torch.float64)
    f = _chiral(graph)  # [N, 4]
    g = RestoreParity(_so3_backbone())(graph)[keys.NODE_FEATURES]  # [N, 8]
    assert torch.allclose(g[:, :4] + g[:, 4:], f, rtol=0, atol=1e-12 * float(f.abs().max()))
    assert all(float(g[:, k].abs().max()) > 1e-3 for k in range(8))


def test_periodic_inversion_keeps_the_shifts():
    """-x with cell -cell: the same edge index and shifts give every edge vector negated."""
    graph = collate(molecule_and_cell()[1:], CUTOFF, torch.float64)
    inverted = dict(graph, **{keys.POSITIONS: -graph[keys.POSITIONS], keys.CELL: -graph[keys.CELL]})
    assert graph[keys.EDGE_SHIFTS].abs().sum() > 0
    assert torch.allclose(edge_vectors(inverted), -edge_vectors(graph), rtol=0, atol=1e-12)


def test_registry_wraps_a_backbone_without_parity():
    BACKBONES["chiral-test"] = lambda cutoff: _so3_backbone()
    try:
        model = tsym.build_model([SPECS_DIR / f"{n}.tsym" for n in ("dipole", "gyration")],
                                 backbone="chiral-test", cutoff=CUTOFF, dtype=torch.float64,
                                 head_kwargs=dict(hidden_mul=2, mlp_hidden=4))
    finally:
        del BACKBONES["chiral-test"]
    assert isinstance(model.backbone, RestoreParity) and has_parity(model.backbone)
    report = tsym.check_equivariance(model, molecule_and_cell())
    assert report.ok and max(h.relative for h in report.heads) < TOLERANCES[torch.float64]


def test_a_backbone_with_parity_is_left_alone_and_wrapping_twice_is_refused():
    net = _so3_backbone()
    net.parity = True
    assert restore_parity(net) is net
    with pytest.raises(ModelConfigError, match=r"^backbone is wrapped in RestoreParity already"):
        RestoreParity(RestoreParity(_so3_backbone()))
