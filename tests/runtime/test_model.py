"""End-to-end tests of ``TensorModel`` / ``tsym.build_model`` with the XPaiNN backbone.

Expected values come from the symmetry alone: an output rotates as ``R^{(x)n}`` (times ``det R``
for an axial spec), does not move under translations and atom permutations, and an intensive
(pool mean) tensor does not depend on the choice of unit cell.

Tolerances: every entry within 1e-10 of the expected value, relative to the Frobenius norm of that
output (all its entries in the batch); float32 models also get their own rounding, measured against a
float64 twin (``assert_equivariant(reference=...)``), in the equivariance test; 1e-5 elsewhere.  Why the norm and not the
largest entry: one float32 forward pass of these small untrained models is already ~5e-6 off the
float64 result relative to the largest entry (1e-7 rounding of the positions grows ~20x through
the Bessel basis and the layer norms), so a rotated-vs-unrotated comparison of two float32 passes
reaches ~1.2e-5 by that measure; relative to the norm it stays below ~3e-6.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

import tsym
from tsym.compiler.errors import SpecFileError, TsymError
from tsym.runtime import keys
from tsym.runtime.errors import UnknownBackboneError
from tsym.runtime.graph import collate
from tsym.runtime.model.checkpoint import MODEL_FORMAT as CHECKPOINT_FORMAT
from tsym.runtime.errors import CheckpointError
from tsym.runtime.model import TensorModel
from tsym.runtime.equivariance import assert_equivariant

from ..conftest import SPECS_DIR, TOLERANCES, float64_twin

NAMES = ("dielectric", "elastic", "piezoelectric", "born_charges", "gyration")
SPECS = [SPECS_DIR / f"{name}.tsym" for name in NAMES]
ORDERS = {"dielectric": 2, "elastic": 4, "piezoelectric": 3, "born_charges": 2, "gyration": 2}
AXIAL = {"gyration": True}
ATOM_LEVEL = {name: name == "born_charges" for name in NAMES}
CUTOFF = 4.0
BACKBONE = dict(num_scalars=16, irreps="8x0e+4x1o+4x2e", num_blocks=2, num_basis=8)
HEADS = dict(hidden_mul=4, mlp_hidden=8)

_MODELS: dict[torch.dtype, TensorModel] = {}


def _model(dtype: torch.dtype) -> TensorModel:
    if dtype not in _MODELS:
        _MODELS[dtype] = tsym.build_model(SPECS, cutoff=CUTOFF, dtype=dtype,
                                          backbone_kwargs=BACKBONE, head_kwargs=HEADS)
    return _MODELS[dtype]


def _ethanol():
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=1)  # no mirror plane left: every tensor component is generic
    return atoms


def _zno():
    """Wurtzite ZnO (4 atoms), rattled far from 6mm: a generic crystal.

    Near a symmetric structure, the tensors the symmetry forbids (gyration of 6mm, parts of the
    piezoelectric tensor) are small differences of large terms, so their float32 rounding error
    relative to their own size says nothing about equivariance.
    """
    atoms = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
    atoms.rattle(0.15, seed=2)
    return atoms


def _scaled(model, structures, like=None):
    """Predictions divided by the Frobenius norm of each output of ``like`` (default: ``model``)
    on ``structures``."""
    scale = {k: float(np.linalg.norm(v)) for k, v in (like or model).predict(structures).items()}
    assert all(s > 1e-3 for s in scale.values()), scale  # no trivially zero output

    def fn(atoms_list):
        return {k: v.astype(np.float64) / scale[k] for k, v in model.predict(atoms_list).items()}
    return fn


def test_model_layout():
    model = _model(torch.float32)
    assert list(model.heads) == list(NAMES)
    assert str(model.backbone.irreps_out) == "24x0e+4x1o+4x2e"
    assert model.cutoff == CUTOFF and model.dtype == torch.float32
    plans = {p.name: p for p in model.plans}
    assert plans["elastic"].irreps == "2x0e+2x2e+1x4e" and plans["gyration"].parity == "axial"


def test_equivariance_end_to_end(dtype):
    """Rotations, reflections, translations and atom permutations of a molecule and a crystal
    (batched together: a molecule's zero cell and a crystal's cell in one graph)."""
    structures = [_ethanol(), _zno()]
    model = _model(dtype)
    fn, twin = _scaled(model, structures), None
    if dtype == torch.float32:  # float32: allow the model's own rounding, measured (conftest)
        twin = _scaled(float64_twin(model, lambda: tsym.build_model(
            SPECS, cutoff=CUTOFF, dtype=torch.float64, backbone_kwargs=BACKBONE,
            head_kwargs=HEADS)), structures, like=model)
    assert_equivariant(fn, structures, ORDERS, AXIAL, atol=TOLERANCES[torch.float64], rtol=0.0,
                       atom_level=ATOM_LEVEL, seed=3, reference=twin)


def test_equivariance_check_is_not_vacuous():
    """Treating the polar dielectric tensor as axial (or a rank-2 output as rank 1) must fail."""
    model = _model(torch.float64)
    fn = _scaled(model, [_zno()])
    with pytest.raises(AssertionError, match="output 'dielectric'"):
        assert_equivariant(fn, [_zno()], {"dielectric": 2}, {"dielectric": True}, atol=1e-10,
                           rtol=0.0, atom_level=ATOM_LEVEL)
    with pytest.raises(AssertionError, match="output 'elastic'"):
        assert_equivariant(fn, [_zno()], {"elastic": 3}, atol=1e-10, rtol=0.0,
                           atom_level=ATOM_LEVEL)


def test_unit_cell_choice(dtype):
    """A primitive cell and its 2x2x1 supercell: same intensive tensors, tiled atom tensors."""
    model = _model(dtype)
    prim = _zno()
    tol = TOLERANCES[dtype]
    small, large = model.predict([prim]), model.predict([prim.repeat((2, 2, 1))])
    for name in ("dielectric", "elastic", "piezoelectric", "gyration"):
        scale = np.linalg.norm(small[name])
        assert np.abs(large[name] - small[name]).max() <= tol * scale, name
    born = np.tile(small["born_charges"], (4, 1, 1))  # ase repeats the whole cell, block by block
    scale = np.linalg.norm(small["born_charges"])
    assert np.abs(large["born_charges"] - born).max() <= tol * scale


def test_predict_shapes_dtypes_and_batching(dtype):
    model = _model(dtype)
    structures = [_ethanol(), _zno(), _zno().repeat((1, 1, 2))]
    n_atoms = 9 + 4 + 8
    model.train()
    out = model.predict(structures, batch_size=2)
    assert model.training  # predict restores the mode
    shapes = {name: out[name].shape for name in NAMES}
    assert shapes == {"dielectric": (3, 3, 3), "elastic": (3, 3, 3, 3, 3),
                      "piezoelectric": (3, 3, 3, 3), "born_charges": (n_atoms, 3, 3),
                      "gyration": (3, 3, 3)}
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    assert all(isinstance(v, np.ndarray) and v.dtype == np_dtype for v in out.values())
    empty = model.predict([])
    assert empty["elastic"].shape == (0, 3, 3, 3, 3) and empty["born_charges"].dtype == np_dtype
    single = model.predict(structures, batch_size=1)
    graph = collate(structures, CUTOFF, dtype)
    with torch.no_grad():
        direct = model.eval()(graph)
    for name in NAMES:
        scale = np.abs(out[name]).max()
        assert np.abs(single[name] - out[name]).max() <= TOLERANCES[dtype] * scale
        assert np.abs(direct[name].numpy() - out[name]).max() <= TOLERANCES[dtype] * scale
    # the declared index symmetries hold exactly in the output basis
    assert np.abs(out["dielectric"] - out["dielectric"].transpose(0, 2, 1)).max() < 1e-6
    el = out["elastic"]
    assert np.abs(el - el.transpose(0, 3, 4, 1, 2)).max() < 1e-6 * np.abs(el).max()
    assert np.abs(el - el.transpose(0, 2, 1, 3, 4)).max() < 1e-6 * np.abs(el).max()


def test_forward_accepts_a_graph_with_gradients():
    model = _model(torch.float64)
    graph = collate([_zno()], CUTOFF, torch.float64)
    graph[keys.POSITIONS].requires_grad_(True)
    out = model(graph)
    out["dielectric"].sum().backward()
    assert graph[keys.POSITIONS].grad is not None
    assert torch.isfinite(graph[keys.POSITIONS].grad).all()


def _plain_only(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_only(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain_only(v) for v in value)
    return isinstance(value, (str, int, float, bool, type(None), torch.Tensor))


def test_save_load_round_trip(tmp_path):
    model = _model(torch.float32)
    path = tmp_path / "model.pt"
    model.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temp file left
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["format"] == CHECKPOINT_FORMAT and _plain_only(ckpt)
    assert ckpt["backbone"] == "xpainn" and ckpt["backbone_kwargs"] == BACKBONE
    assert ckpt["head_kwargs"] == HEADS and ckpt["cutoff"] == CUTOFF
    assert ckpt["dtype"] == "float32"
    assert [p.name for p in tsym.compile_text("\n".join(ckpt["specs"]))] == list(NAMES)

    structures = [_ethanol(), _zno()]
    loaded = tsym.build_model(checkpoint=path)
    assert isinstance(loaded, TensorModel) and loaded.dtype == torch.float32
    before, after = model.predict(structures), loaded.predict(structures)
    assert all(np.array_equal(before[k], after[k]) for k in NAMES)
    same_specs = tsym.build_model(SPECS, checkpoint=path)  # matching specs are accepted
    assert np.array_equal(same_specs.predict(structures)["elastic"], before["elastic"])
    assert np.array_equal(TensorModel.load(path).predict(structures)["gyration"],
                          before["gyration"])


def test_load_rejects_disagreeing_arguments(tmp_path):
    path = tmp_path / "model.pt"
    _model(torch.float32).save(path)
    with pytest.raises(CheckpointError, match=r"^.*model\.pt: the specs given"):
        tsym.build_model([SPECS_DIR / "dipole.tsym"], checkpoint=path)
    with pytest.raises(CheckpointError, match=r"^.*model\.pt: backbone='nequip' disagrees"):
        tsym.build_model(checkpoint=path, backbone="nequip")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"^.*junk\.pt: not a readable checkpoint"):
        tsym.build_model(checkpoint=tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match=r"^.*missing\.pt: no such checkpoint file"):
        tsym.build_model(checkpoint=tmp_path / "missing.pt")
    torch.save({"format": CHECKPOINT_FORMAT, "specs": []}, tmp_path / "damaged.pt")
    with pytest.raises(CheckpointError, match=r"^.*damaged\.pt: damaged tsym checkpoint"):
        tsym.build_model(checkpoint=tmp_path / "damaged.pt")


def test_save_is_atomic(tmp_path, monkeypatch):
    model = _model(torch.float32)
    path = tmp_path / "model.pt"
    model.save(path)
    original = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_seeded_reproducibility():
    rng_state = torch.random.get_rng_state()
    kwargs = dict(cutoff=CUTOFF, backbone_kwargs=BACKBONE, head_kwargs=HEADS)
    first = tsym.build_model(SPECS[:2], seed=7, **kwargs).state_dict()
    second = tsym.build_model(SPECS[:2], seed=7, **kwargs).state_dict()
    other = tsym.build_model(SPECS[:2], seed=8, **kwargs).state_dict()
    assert torch.equal(torch.random.get_rng_state(), rng_state)  # global RNG untouched
    assert first.keys() == second.keys() == other.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
    # a head's initial weights do not depend on which other specs sit beside it
    alone = tsym.build_model(SPECS[1:2], seed=7, **kwargs).state_dict()
    assert all(torch.equal(alone[k], first[k]) for k in alone if k.startswith("heads.elastic."))


def test_specs_as_text_paths_and_plans():
    text = "tensor alpha { indices ij; symmetry ij = ji; pool sum }"
    plan = tsym.compile_file(SPECS_DIR / "dipole.tsym")[0]
    model = tsym.build_model([text, str(SPECS_DIR / "dielectric.tsym"), plan], cutoff=CUTOFF,
                             backbone_kwargs=BACKBONE, head_kwargs=HEADS)
    assert list(model.heads) == ["alpha", "dielectric", "dipole"]


def test_errors(tmp_path):
    with pytest.raises(SpecFileError, match=r"^.*missing\.tsym: cannot read the spec file"):
        tsym.build_model([tmp_path / "missing.tsym"])
    with pytest.raises(UnknownBackboneError, match=r"^unknown backbone 'painn'; known backbones"):
        tsym.build_model(SPECS[:1], backbone="painn")
    assert issubclass(UnknownBackboneError, TsymError)
    with pytest.raises(TsymError, match=r"^two specs are named 'dielectric'"):
        tsym.build_model(SPECS[:1] * 2, backbone_kwargs=BACKBONE, head_kwargs=HEADS)
    with pytest.raises(TsymError, match=r"^backbone 'xpainn': bad backbone_kwargs \['widht'\]"):
        tsym.build_model(SPECS[:1], backbone_kwargs={"widht": 3})
    with pytest.raises(TsymError, match=r"^dtype must be torch.float32 or torch.float64"):
        tsym.build_model(SPECS[:1], dtype=torch.float16)
