"""MACE (``mace-torch``) and NequIP (``nequip``) as backbones: ``"mace"`` and ``"nequip-lib"``.

Each test runs once per backbone and is skipped, with the install command as the reason, where
the optional package is absent (extras ``mace`` and ``nequip``; README "Use a head on MACE,
NequIP or your own network").  Node features are checked against e3nn's own ``D(R)`` of the
irreps the helpers read (:func:`mace_irreps`, :func:`nequip_irreps`), in float64 at 1e-10 of the
largest feature; heads' outputs through ``assert_equivariant`` (rotation, reflection,
translation, permutation) in float64 at 1e-10 and in float32 against its float64 twin (the
model's own rounding, measured; see ``conftest``).
"""
from __future__ import annotations

import random
import sys

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from e3nn import o3

import tsym
from tsym.runtime import keys
from tsym.runtime.errors import ModelConfigError, UnknownElementError
from tsym.runtime.graph import collate
from tsym.runtime.inference.export import _examples
from tsym.runtime.nn.extras import INSTALL
from tsym.runtime.equivariance import assert_equivariant, rotate_atoms

from ...conftest import SPECS_DIR, TOLERANCES, default_dtype, float64_twin, rotation_and_d

CUTOFF = 4.0
ELEMENTS = ["H", "C", "O", "Zn"]
KWARGS = {
    "mace": dict(elements=ELEMENTS, hidden_irreps="4x0e+4x1o+4x2e", max_ell=2,
                 num_interactions=2, correlation=2, radial_MLP=[8], MLP_irreps="4x0e",
                 avg_num_neighbors=6.0),
    "nequip-lib": dict(elements=ELEMENTS, num_layers=3, l_max=2, num_features=4,
                       radial_mlp_width=8, num_bessels=6, avg_num_neighbors=6.0),
}
PACKAGE = {"mace": ("mace", "mace"), "nequip-lib": ("nequip", "nequip")}  # module, extra
HEADS = dict(hidden_mul=2, mlp_hidden=4)
NAMES = ("piezoelectric", "born_charges", "gyration")
ORDERS = {"piezoelectric": 3, "born_charges": 2, "gyration": 2}
_MODELS: dict = {}


@pytest.fixture(params=list(KWARGS))
def name(request):
    module, extra = PACKAGE[request.param]
    pytest.importorskip(module, reason=f"the {extra!r} extra is not installed: {INSTALL[extra]}")
    return request.param


def _model(name, dtype):
    if (name, dtype) not in _MODELS:
        _MODELS[name, dtype] = tsym.build_model(
            [SPECS_DIR / f"{n}.tsym" for n in NAMES], backbone=name, cutoff=CUTOFF, dtype=dtype,
            backbone_kwargs=KWARGS[name], head_kwargs=HEADS)
    return _MODELS[name, dtype]


def _structures():
    mol = molecule("CH3CH2OH")
    mol.rattle(0.05, seed=1)
    crystal = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
    crystal.rattle(0.15, seed=2)  # generic, far from 6mm
    return [mol, crystal]


def _features(net, structures, dtype):
    with torch.no_grad():
        return net(collate(structures, CUTOFF, dtype))[keys.NODE_FEATURES]


def _library_irreps(name, net):
    if name == "mace":
        from tsym.runtime.nn.mace import mace_irreps

        return mace_irreps(net.mace)
    from tsym.runtime.nn.nequip_lib import nequip_irreps

    return nequip_irreps(net.layers)


def test_irreps_read_from_the_library_model(name):
    net = _model(name, torch.float64).backbone
    lib = _library_irreps(name, net)
    # the last layer of both writes scalars only (4x0e), appended at the end
    if name == "mace":  # node_feats = layer 1 (all irreps) + layer 2 (its scalars)
        assert str(lib) == "4x0e+4x1o+4x2e+4x0e" and net.irreps_out == lib
    else:  # the layer before the last, then the last layer's scalars
        assert lib.lmax == 2 and lib.count("0e") == 4
        assert net.irreps_out == lib + o3.Irreps("4x0e")
    assert _features(net, _structures(), torch.float64).shape == (13, net.irreps_out.dim)


@pytest.mark.parametrize("proper", [True, False], ids=["R", "-R"])
def test_features_transform_with_e3nn_d(name, proper):
    """float64 features of rotated (reflected) structures = features @ D(R)^T, D from e3nn."""
    net = _model(name, torch.float64).backbone
    structures = _structures()
    rotation, d = rotation_and_d(net.irreps_out, proper, torch.float64)
    before = _features(net, structures, torch.float64)  # [N, dim]
    after = _features(net, [rotate_atoms(a, rotation) for a in structures], torch.float64)
    expected = before @ d.T  # [N, dim]
    scale = expected.abs().max().item()
    for (_, ir), sl in zip(net.irreps_out, net.irreps_out.slices()):
        assert expected[:, sl].abs().max() > 1e-4 * scale, f"{ir} features are trivially zero"
    assert (after - expected).abs().max().item() <= TOLERANCES[torch.float64] * scale


def test_heads_end_to_end(name, dtype):
    """Heads on MACE / NequIP: rotation, reflection, translation, permutation."""
    model, structures = _model(name, dtype), _structures()
    scale = {k: float(np.linalg.norm(v)) for k, v in model.predict(structures).items()}
    assert min(scale.values()) > 1e-6

    def scaled(m):
        return lambda atoms_list: {k: v.astype(np.float64) / scale[k]
                                   for k, v in m.predict(atoms_list).items()}
    twin = None
    if dtype == torch.float32:
        twin = scaled(float64_twin(model, lambda: tsym.build_model(
            [SPECS_DIR / f"{n}.tsym" for n in NAMES], backbone=name, cutoff=CUTOFF,
            dtype=torch.float64, backbone_kwargs=KWARGS[name], head_kwargs=HEADS)))
    assert_equivariant(scaled(model), structures, ORDERS, {"gyration": True},
                       atol=TOLERANCES[torch.float64], rtol=0.0,
                       atom_level={n: n == "born_charges" for n in NAMES}, seed=5, reference=twin)


def test_unknown_element_names_it_and_the_backbone(name):
    model = _model(name, torch.float32)
    with pytest.raises(UnknownElementError, match=rf"backbone '{name}': element N \(Z=7\) is not "
                                                  r"among its elements \(H, C, O, Zn\)"):
        model.predict([molecule("NH3")])


def test_elements_are_required(name):
    kwargs = {k: v for k, v in KWARGS[name].items() if k != "elements"}
    with pytest.raises(ModelConfigError, match=rf"backbone '{name}': pass backbone_kwargs "
                                               r"elements=\[\.\.\.\]"):
        tsym.build_model([SPECS_DIR / "gyration.tsym"], backbone=name, backbone_kwargs=kwargs)


def test_bad_library_argument_is_a_config_error(name):
    bad = dict(KWARGS[name], **({"hidden_irreps": "4x9q"} if name == "mace" else {"l_max": -1}))
    with pytest.raises(ModelConfigError, match=rf"backbone '{name}'"):
        tsym.build_model([SPECS_DIR / "gyration.tsym"], backbone=name, backbone_kwargs=bad)


@pytest.mark.parametrize("backbone", list(KWARGS))
def test_missing_package_says_how_to_install(backbone, monkeypatch):
    """Runs with or without the extras: the package is hidden from the import system."""
    for mod in ("mace", "mace.modules", "mace.tools.arg_parser", "nequip", "nequip.model",
                "nequip.utils.global_state"):
        monkeypatch.setitem(sys.modules, mod, None)
    extra = PACKAGE[backbone][1]
    with pytest.raises(ModelConfigError, match=rf"backbone '{backbone}' needs the optional "
                                               rf"package of the '{extra}' extra .*install it "
                                               r"with: pip install -c constraints.txt"):
        tsym.build_model([SPECS_DIR / "gyration.tsym"], backbone=backbone,
                         backbone_kwargs=KWARGS[backbone])


def test_nequip_build_leaves_the_process_state(monkeypatch):
    """NequIP's set_global_state (seeds, default dtype, e3nn options) is undone by the build."""
    pytest.importorskip("nequip", reason=f"the 'nequip' extra is not installed: "
                                         f"{INSTALL['nequip']}")
    import e3nn
    from nequip.utils import global_state

    monkeypatch.setattr(global_state, "_GLOBAL_STATE_INITIALIZED", False)  # its first call
    torch.manual_seed(11)
    np.random.seed(12)
    random.seed(13)
    before = (torch.get_default_dtype(), e3nn.get_optimization_defaults(),
              torch.random.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    tsym.build_model([SPECS_DIR / "gyration.tsym"], backbone="nequip-lib", cutoff=CUTOFF,
                     dtype=torch.float64, backbone_kwargs=KWARGS["nequip-lib"])
    assert global_state.global_state_initialized()
    after = (torch.get_default_dtype(), e3nn.get_optimization_defaults(),
             torch.random.get_rng_state(), np.random.get_state()[1], random.getstate())
    assert after[:2] == before[:2]
    assert torch.equal(after[2], before[2]) and np.array_equal(after[3], before[3])
    assert after[4] == before[4]


def test_export_examples_use_the_backbone_elements():
    for batch in _examples(8, elements=(1, 8)):
        assert {int(z) for atoms in batch for z in atoms.numbers} == {1, 8}
    assert {int(z) for a in _examples(118)[0] for z in a.numbers} == {1, 6, 8}
