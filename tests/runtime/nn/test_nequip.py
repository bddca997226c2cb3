"""Tests of tsym.runtime.nn.registry and .nequip: the backbone contract, the registry, NequIP.

Node features are checked against e3nn's own ``D(R)`` of ``irreps_out`` (an independent
reference); heads' outputs against ``R^{(x)n}`` through ``assert_equivariant``.  Tolerances: 1e-5
(float32) and 1e-10 (float64), relative to the largest feature, or, for head outputs, to the
Frobenius norm of each output (see ``test_model.py`` for why).
"""
from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from e3nn import o3

import tsym
from tsym.compiler.errors import TsymError
from tsym.runtime import keys
from tsym.runtime.errors import ModelConfigError
from tsym.runtime.nn.nequip import NequIPBackbone
from tsym.runtime.nn.registry import BACKBONES, build_backbone, check_backbone
from tsym.runtime.graph import collate
from tsym.runtime.model import TensorModel
from tsym.runtime.equivariance import assert_equivariant, rotate_atoms

from ...conftest import SPECS_DIR, TOLERANCES, default_dtype, float64_twin, rotation_and_d

HIDDEN = "8x0e+4x1o+4x1e+2x2e+2x2o"
NEQUIP = dict(irreps_hidden=HIDDEN, num_basis=6, radial_hidden=16, num_attrs=4)
HEADS = dict(hidden_mul=4, mlp_hidden=8)
CUTOFF = 4.0
NAMES = ("piezoelectric", "born_charges", "gyration")
ORDERS = {"piezoelectric": 3, "born_charges": 2, "gyration": 2}
_MODELS: dict[torch.dtype, TensorModel] = {}


def _model(dtype):
    if dtype not in _MODELS:
        _MODELS[dtype] = tsym.build_model([SPECS_DIR / f"{n}.tsym" for n in NAMES],
                                          backbone="nequip", cutoff=CUTOFF, dtype=dtype,
                                          backbone_kwargs=NEQUIP, head_kwargs=HEADS)
    return _MODELS[dtype]


def _structures():
    mol = molecule("CH3CH2OH")
    mol.rattle(0.05, seed=1)
    crystal = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
    crystal.rattle(0.15, seed=2)  # generic, far from 6mm (see test_model._zno)
    return [mol, crystal]


def _features(net, structures, dtype):
    with torch.no_grad():
        return net(collate(structures, CUTOFF, dtype))[keys.NODE_FEATURES]


# --------------------------------------------------------------------------- NequIP-style backbone

def test_nequip_irreps_and_registry():
    assert {"xpainn", "nequip"} <= set(BACKBONES)
    net = build_backbone("nequip", CUTOFF, NEQUIP)
    assert isinstance(net, NequIPBackbone) and net.cutoff == CUTOFF
    # layer 1 reaches 0e, 1o, 2e from scalars x Y(0e+1o+2e); layer 2 adds 1e, 2o
    assert [str(layer.irreps_out) for layer in net.layers] == ["8x0e+4x1o+2x2e",
                                                                "8x0e+4x1o+4x1e+2x2o+2x2e"]
    assert check_backbone(net) == o3.Irreps("8x0e+4x1o+4x1e+2x2o+2x2e")
    assert _features(net, _structures(), torch.float32).shape == (13, net.irreps_out.dim)


@pytest.mark.parametrize("proper", [True, False], ids=["R", "-R"])
def test_nequip_features_transform_with_e3nn_d(dtype, proper):
    """Features of rotated (reflected) structures = features @ D(R)^T, D from e3nn."""
    torch.manual_seed(0)
    with default_dtype(dtype):
        net = NequIPBackbone(cutoff=CUTOFF, **NEQUIP)
    structures = _structures()
    rotation, d = rotation_and_d(net.irreps_out, proper, dtype)
    before = _features(net, structures, dtype)  # [N, dim]
    after = _features(net, [rotate_atoms(a, rotation) for a in structures], dtype)
    expected = before @ d.T  # [N, dim]
    scale = expected.abs().max().item()
    assert scale > 0.1
    for (_, ir), sl in zip(net.irreps_out, net.irreps_out.slices()):
        assert expected[:, sl].abs().max() > 1e-3 * scale, f"{ir} features are trivially zero"
    assert (after - expected).abs().max().item() <= TOLERANCES[dtype] * scale


def test_nequip_heads_end_to_end(dtype):
    """Heads on the NequIP backbone: rotation, reflection, translation, permutation."""
    model, structures = _model(dtype), _structures()
    scale = {k: float(np.linalg.norm(v)) for k, v in model.predict(structures).items()}
    assert min(scale.values()) > 1e-3

    def scaled(m):
        return lambda atoms_list: {k: v.astype(np.float64) / scale[k]
                                   for k, v in m.predict(atoms_list).items()}
    twin = None
    if dtype == torch.float32:  # allow the model's own rounding, measured (see conftest)
        twin = scaled(float64_twin(model, lambda: tsym.build_model(
            [SPECS_DIR / f"{n}.tsym" for n in NAMES], backbone="nequip", cutoff=CUTOFF,
            dtype=torch.float64, backbone_kwargs=NEQUIP, head_kwargs=HEADS)))
    assert_equivariant(scaled(model), structures, ORDERS, {"gyration": True},
                       atol=TOLERANCES[torch.float64], rtol=0.0,
                       atom_level={n: n == "born_charges" for n in NAMES}, seed=5, reference=twin)


def test_nequip_cutoff_locality():
    """An atom farther than the cutoff from every other atom changes none of their features."""
    torch.manual_seed(0)
    net = NequIPBackbone(cutoff=CUTOFF, **NEQUIP)
    mol = molecule("H2O")
    far = mol + Atoms("C", positions=[[CUTOFF + 1.5, 0.0, 0.0]])
    # Without edges to the far atom, both runs do the same arithmetic on the first three atoms,
    # but on arrays of another shape, so the CPU's kernels may sum in another order: not bitwise.
    # The allowed difference is the same computation's rounding error, measured: the float32
    # features' distance to the float64 ones, for each run (same weights and constants).
    near32, far32 = (_features(net, [s], torch.float32) for s in (mol, far))
    net64 = NequIPBackbone(cutoff=CUTOFF, **NEQUIP).to(torch.float64)
    net64.load_state_dict(net.state_dict())
    near64, far64 = (_features(net64, [s], torch.float64) for s in (mol, far))
    rounding32 = (near32 - near64).abs().max() + (far32[:3] - far64[:3]).abs().max()
    assert rounding32 <= 1e-3 * near64.abs().max()  # a float32 path that far off is a bug
    # triangle inequality: |far32 - near32| <= |far32 - far64| + |far64 - near64| + |near64 - near32|
    assert (far32[:3] - near32).abs().max() <= rounding32 + (far64[:3] - near64).abs().max()
    # float64: rounding scales with the unit roundoff (same operations), so the float32 figure
    # times eps64/eps32 (2^-29), with a factor 16 for the error's variation between shapes
    ratio = torch.finfo(torch.float64).eps / torch.finfo(torch.float32).eps
    assert (far64[:3] - near64).abs().max() <= 16 * ratio * rounding32.double()


def test_nequip_deepcopy_pickle_and_checkpoint(tmp_path):
    """e3nn modules (TensorProduct, Gate) survive deepcopy, pickle and a tsym checkpoint."""
    model = tsym.build_model([SPECS_DIR / "piezoelectric.tsym"], backbone="nequip", cutoff=CUTOFF,
                             backbone_kwargs=NEQUIP, head_kwargs=HEADS)
    structures = _structures()
    ref = model.predict(structures)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        out = clone.predict(structures)
        assert np.array_equal(out["piezoelectric"], ref["piezoelectric"])
    model.save(tmp_path / "nequip.pt")
    loaded = tsym.build_model(checkpoint=tmp_path / "nequip.pt")
    assert isinstance(loaded.backbone, NequIPBackbone)
    assert np.array_equal(loaded.predict(structures)["piezoelectric"], ref["piezoelectric"])


# --------------------------------------------------------------------------- the contract

class _Foreign(torch.nn.Module):
    """A backbone whose network keeps l = 1 in (y, z, x) order, converted (or not) at the end."""

    def __init__(self, convert: bool):
        super().__init__()
        self.inner = NequIPBackbone(cutoff=CUTOFF, **NEQUIP)
        self.irreps_out, self.cutoff, self.convert = self.inner.irreps_out, CUTOFF, convert
        to_yzx, to_xyz = torch.arange(self.irreps_out.dim), torch.arange(self.irreps_out.dim)
        for (mul, ir), sl in zip(self.irreps_out, self.irreps_out.slices()):
            if ir.l == 1:
                block = torch.arange(sl.start, sl.stop).reshape(mul, 3)
                to_yzx[sl] = block[:, [1, 2, 0]].reshape(-1)
                to_xyz[sl] = block[:, [2, 0, 1]].reshape(-1)
        self.register_buffer("to_yzx", to_yzx)
        self.register_buffer("to_xyz", to_xyz)

    def forward(self, graph):
        out = self.inner(graph)
        native = out[keys.NODE_FEATURES][:, self.to_yzx]  # the foreign network's own layout
        out[keys.NODE_FEATURES] = native[:, self.to_xyz] if self.convert else native
        return out


@pytest.mark.parametrize("convert", [True, False], ids=["converted", "not-converted"])
def test_foreign_convention_converted_once_in_the_adapter(convert):
    torch.manual_seed(0)
    with default_dtype(torch.float64):
        plans = tsym.compile_file(SPECS_DIR / "dipole.tsym")
        model = TensorModel(_Foreign(convert), plans, HEADS).double()
    structures = _structures()
    scale = float(np.linalg.norm(model.predict(structures)["dipole"]))

    def fn(atoms_list):
        return {"dipole": model.predict(atoms_list)["dipole"] / scale}
    if convert:
        assert_equivariant(fn, structures, {"dipole": 1}, atol=1e-10, rtol=0.0)
    else:
        with pytest.raises(AssertionError, match="output 'dipole'"):
            assert_equivariant(fn, structures, {"dipole": 1}, atol=1e-10, rtol=0.0)


class _Stub(torch.nn.Module):
    def __init__(self, irreps_out=None, cutoff=3.0, dim=None):
        super().__init__()
        if irreps_out is not None:
            self.irreps_out = irreps_out
        self.cutoff, self.dim = cutoff, dim
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, graph):
        n = graph[keys.POSITIONS].shape[0]
        out = dict(graph)
        out[keys.NODE_FEATURES] = torch.zeros(n, self.dim or o3.Irreps(self.irreps_out).dim)
        return out


def test_contract_errors():
    dielectric = tsym.compile_file(SPECS_DIR / "dielectric.tsym")
    dipole = tsym.compile_file(SPECS_DIR / "dipole.tsym")
    with pytest.raises(ModelConfigError, match=r"^backbone _Stub declares no irreps_out"):
        TensorModel(_Stub(), dielectric)
    with pytest.raises(ModelConfigError, match=r"^backbone _Stub: irreps_out 'banana' is not"):
        TensorModel(_Stub("banana"), dielectric)
    with pytest.raises(ModelConfigError, match=r"^backbone _Stub: irreps_out '4x0o\+2x1o' needs"):
        TensorModel(_Stub("4x0o+2x1o"), dielectric)
    with pytest.raises(ModelConfigError, match=r"^backbone _Stub: irreps_out '4x0e' needs"):
        TensorModel(_Stub("4x0e"), dielectric)
    # all-even features cannot make a polar vector: the error names the head and the backbone
    with pytest.raises(ModelConfigError,
                       match=r"^head 'dipole' \(irreps '1x1o'\) cannot be attached to backbone "
                             r"_Stub \(irreps_out '4x0e\+2x1e'\)"):
        TensorModel(_Stub("4x0e+2x1e"), dipole)
    with pytest.raises(ModelConfigError, match=r"^backbone _Stub has no cutoff"):
        TensorModel(_Stub("4x0e+2x1o", cutoff=None), dielectric)
    model = TensorModel(_Stub("4x0e+2x1o", dim=5), dielectric, HEADS)
    with pytest.raises(ModelConfigError, match=r"^backbone _Stub wrote NODE_FEATURES of shape"):
        model.predict([molecule("H2O")])
    assert issubclass(ModelConfigError, TsymError)


def test_register_a_backbone(monkeypatch, tmp_path):
    monkeypatch.setitem(BACKBONES, "stub", lambda cutoff, width=4: _Stub(f"{width}x0e+2x1o",
                                                                           cutoff))
    model = tsym.build_model([SPECS_DIR / "dielectric.tsym"], backbone="stub", cutoff=2.5,
                             backbone_kwargs={"width": 6}, head_kwargs=HEADS)
    assert str(model.irreps_in) == "6x0e+2x1o" and model.cutoff == 2.5
    assert model.predict([molecule("H2O")])["dielectric"].shape == (1, 3, 3)
    model.save(tmp_path / "stub.pt")
    assert str(tsym.build_model(checkpoint=tmp_path / "stub.pt").irreps_in) == "6x0e+2x1o"
    with pytest.raises(ModelConfigError, match=r"^backbone 'stub': pass the cutoff as"):
        tsym.build_model([SPECS_DIR / "dielectric.tsym"], backbone="stub",
                         backbone_kwargs={"cutoff": 3.0})
