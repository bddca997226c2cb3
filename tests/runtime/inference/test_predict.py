"""Loading runs and checkpoints, predictions in data units, extxyz output, the ASE calculator.

The training checkpoint here is written by hand (the layout of ``tsym-train/1``) with a made-up
normalisation, so that the expected data-unit prediction can be computed with numpy from the raw
network output: ``T = ((raw @ Q^T) * scale + shift * n) @ Q`` (``n`` = atoms for a sum-pooled
structure head, else 1).  Tolerances (relative to the largest entry): float32 1e-5, float64 1e-12.
"""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.io import read, write
from e3nn import o3

import tsym
from tsym.compiler import compile_text
from tsym.runtime.model.checkpoint import TRAIN_FORMAT, model_record, resolve_checkpoint, save_atomic
from tsym.runtime.errors import CheckpointError
from tsym.runtime.model import TensorModel, TrainedModel
from tsym.runtime.model.normalisation import Normalisation
from tsym.runtime.inference.calculator import TsymCalculator
from tsym.runtime.inference.predict import checkpoint_labels, load_model, predict_structures

from ...conftest import SPECS_DIR

NAMES = ("dipole", "polarizability", "dielectric", "born_charges")
SPECS = [SPECS_DIR / f"{n}.tsym" for n in NAMES]
BACKBONE = dict(num_scalars=8, irreps="8x0e+4x1o+2x2e", num_blocks=1, num_basis=4,
                embedding="onehot")
HEADS = dict(hidden_mul=2, mlp_hidden=4)
CUTOFF = 3.5
REL = {torch.float32: 1e-5, torch.float64: 1e-12}


_MODELS: dict = {}


def tiny_model(dtype=torch.float32, specs=None) -> TensorModel:
    """A small untrained model (the default specs' models are built once per dtype)."""
    if specs is None and dtype in _MODELS:
        return _MODELS[dtype]
    model = tsym.build_model(SPECS if specs is None else specs, cutoff=CUTOFF, dtype=dtype,
                             backbone_kwargs=BACKBONE, head_kwargs=HEADS, seed=3)
    if specs is None:
        _MODELS[dtype] = model
    return model


def made_up_norms(model: TensorModel) -> dict[str, Normalisation]:
    """A shift on the 0e components and a different scale per l; per atom when sum-pooled."""
    norms = {}
    for plan in model.plans:
        irreps = o3.Irreps(plan.irreps)
        ls = [ir.l for mul, ir in irreps for _ in range(mul * ir.dim)]
        even = [(ir.l, ir.p) == (0, 1) for mul, ir in irreps for _ in range(mul * ir.dim)]
        shift = tuple(1.75 if e else 0.0 for e in even)
        scale = tuple(2.5 + 1.5 * l for l in ls)
        per_atom = plan.level == "structure" and plan.pool == "sum"
        norms[plan.name] = Normalisation(plan.irreps, shift, scale, per_atom)
    return norms


def save_training_checkpoint(model: TensorModel, norms, path, heads_config=None) -> None:
    """A ``tsym-train/1`` checkpoint with the fields the loaders read."""
    state = {"format": TRAIN_FORMAT,
             "model": model_record(model),
             "normalisation": {k: v.to_dict() for k, v in norms.items()},
             "config": {"heads": heads_config or {}}}
    save_atomic(state, path)


def expected_data_units(model: TensorModel, norms, structures) -> dict[str, np.ndarray]:
    """The definition of a trained prediction, in numpy float64, from the raw outputs."""
    raw = model.predict(structures)
    n_atoms = np.array([len(a) for a in structures], dtype=np.float64)
    out = {}
    for plan in model.plans:
        q = plan.change_of_basis.numpy().reshape(plan.num_components, -1)  # [d, 3^n]
        r = raw[plan.name].astype(np.float64)
        y = r.reshape(len(r), -1) @ q.T * np.array(norms[plan.name].scale)  # [M, d]
        shift = np.array(norms[plan.name].shift)
        y = y + (n_atoms[:, None] * shift if norms[plan.name].per_atom_shift else shift)
        out[plan.name] = (y @ q).reshape(r.shape)
    return out


def structures():
    water = molecule("H2O")
    water.rattle(0.05, seed=2)
    nacl = bulk("NaCl", "rocksalt", a=5.0)
    nacl.rattle(0.05, seed=3)
    return [water, nacl, molecule("CH4")]


def _assert_close(got, want, dtype):
    scale = max(float(np.abs(want).max()), 1e-30)
    assert got.shape == want.shape
    assert float(np.abs(got - want).max()) <= REL[dtype] * scale


# ------------------------------------------------------------------------------ loading
def test_load_model_checkpoint_and_run_directory(tmp_path, dtype):
    model = tiny_model(dtype)
    frames = structures()
    model.save(tmp_path / "model.pt")
    loaded = load_model(tmp_path / "model.pt")
    assert isinstance(loaded, TensorModel) and loaded.dtype == dtype
    want = model.predict(frames)
    for name, value in loaded.predict(frames).items():
        np.testing.assert_array_equal(value, want[name])

    norms = made_up_norms(model)
    run = tmp_path / "run"
    run.mkdir()
    save_training_checkpoint(model, norms, run / "best.pt")
    trained = load_model(run)
    assert isinstance(trained, TrainedModel)
    expected = expected_data_units(model, norms, frames)
    got = trained.predict(frames)
    for name in NAMES:
        _assert_close(got[name].astype(np.float64), expected[name], dtype)
    assert abs(np.trace(expected["polarizability"][0])) > 5.0  # the shift is really there


def test_resolve_checkpoint(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(CheckpointError, match=r"^.*run: the run directory holds no checkpoint"):
        resolve_checkpoint(run)
    (run / "last.pt").write_bytes(b"x")
    assert resolve_checkpoint(run) == run / "last.pt"
    (run / "best.pt").write_bytes(b"x")
    assert resolve_checkpoint(run) == run / "best.pt"
    with pytest.raises(CheckpointError, match=r"^.*best.pt: not a readable checkpoint"):
        load_model(run)
    torch.save({"format": "other"}, run / "best.pt")
    with pytest.raises(CheckpointError, match=r"^.*best.pt: not a tsym checkpoint"):
        load_model(run)
    with pytest.raises(CheckpointError, match=r"^.*nothing: no such run directory"):
        load_model(tmp_path / "nothing")


def test_checkpoint_labels(tmp_path):
    model = tiny_model()
    save_training_checkpoint(model, made_up_norms(model), tmp_path / "t.pt", heads_config={
        "polarizability": {"key": "alpha", "format": "flat", "unit": "bohr^3", "scale": 2.0}})
    labels = checkpoint_labels(tmp_path / "t.pt")
    assert (labels["polarizability"].key, labels["polarizability"].scale,
            labels["polarizability"].unit) == ("alpha", 2.0, "bohr^3")
    assert (labels["born_charges"].key, labels["born_charges"].level,
            labels["born_charges"].order) == ("born_charges", "atom", 2)


# --------------------------------------------------------------------------- predict
def test_predict_structures_round_trip_extxyz(tmp_path):
    model = tiny_model()
    frames = structures()
    frames[0].info["dipole"] = np.array([0.1, 0.2, 0.3])  # a label of the same name
    write(tmp_path / "in.extxyz", frames)
    frames = read(tmp_path / "in.extxyz", index=":")  # ASE moves "dipole" into calc.results
    out = predict_structures(model, frames, suffix="_pred")
    write(tmp_path / "out.extxyz", out)
    back = read(tmp_path / "out.extxyz", index=":")
    want = model.predict(frames)
    offset = 0
    for k, atoms in enumerate(back):
        n = len(atoms)
        for name in ("dipole", "polarizability", "dielectric"):
            value = np.asarray(atoms.info[f"{name}_pred"])
            assert value.shape == (3 ** (1 if name == "dipole" else 2),)
            np.testing.assert_allclose(value, want[name][k].reshape(-1), rtol=1e-6, atol=1e-7)
        born = atoms.arrays["born_charges_pred"]
        assert born.shape == (n, 9)
        np.testing.assert_allclose(born, want["born_charges"][offset:offset + n].reshape(n, 9),
                                   atol=1e-7)  # extxyz writes 8 decimals of arrays
        offset += n
    np.testing.assert_allclose(back[0].calc.results["dipole"], [0.1, 0.2, 0.3])  # label kept

    plain = predict_structures(model, frames)  # no suffix: the prediction replaces the label
    assert "dipole" not in (getattr(plain[0].calc, "results", None) or {})
    np.testing.assert_allclose(plain[0].info["dipole"], want["dipole"][0])
    assert len(predict_structures(model, [])) == 0


def test_cli_predict(tmp_path, capsys):
    from tsym.cli.predict import register

    model = tiny_model()
    model.save(tmp_path / "m.pt")
    write(tmp_path / "s.extxyz", structures())
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["predict", str(tmp_path / "m.pt"), str(tmp_path / "s.extxyz"),
                              "-o", str(tmp_path / "p.extxyz")])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "p.extxyz")
    back = read(tmp_path / "p.extxyz", index=":")
    assert back[1].info["dielectric"].shape == (9,)
    assert back[2].arrays["born_charges"].shape == (5, 9)
    assert back[0].calc.results["dipole"].shape == (3,)


def test_cli_predict_names_the_record_in_the_file(tmp_path, capsys):
    """Record 40 of 45 is bad: the message names record 40 (its place in the file), not its
    place in its batch of 32 (8); an unreadable frame is named by its number."""
    from tsym.cli import main

    model = tiny_model()
    model.save(tmp_path / "m.pt")
    frames = [molecule("H2O") for _ in range(45)]
    frames[40].positions[2] = frames[40].positions[1] + [0.05, 0.0, 0.0]
    data, out = tmp_path / "s.extxyz", tmp_path / "p.extxyz"
    write(data, frames)
    assert main(["predict", str(tmp_path / "m.pt"), str(data), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{data}:record 40: atoms 1 and 2 are 0.05 Angstrom apart"), err
    lines = data.read_text().splitlines(True)
    data.write_text("".join(lines[:-1]))  # the last frame (44) loses an atom line
    assert main(["predict", str(tmp_path / "m.pt"), str(data), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{data}:record 44: ") and "the frame is truncated" in err, err
    assert not out.exists()


def test_predict_refuses_elements_the_model_does_not_cover():
    model = tsym.build_model(SPECS[:1], cutoff=CUTOFF, backbone_kwargs={**BACKBONE, "max_z": 53},
                             head_kwargs=HEADS)
    assert model.max_z == 53
    frames = [molecule("H2O") for _ in range(40)]
    frames[37].numbers[0] = 69  # Tm
    with pytest.raises(tsym.TsymError, match=r"^in\.xyz:record 37: atom 0 is Tm \(Z = 69\), an "
                       r"element the model does not cover \(Z = 1\.\.53\)"):
        predict_structures(model, frames, batch_size=16, source="in.xyz")


# ------------------------------------------------------------------------ calculator
def test_calculator_results_and_ase_names(dtype):
    model = tiny_model(dtype)
    calc = TsymCalculator(model)
    assert calc.aliases == {"dipole": "dipole", "dielectric": "dielectric_tensor",
                            "born_charges": "born_effective_charges"}
    assert set(calc.implemented_properties) == {"dipole", "dielectric_tensor",
                                                "born_effective_charges", *NAMES}
    atoms = structures()[1]
    atoms.calc = calc
    want = model.predict([atoms])
    np.testing.assert_array_equal(atoms.get_dipole_moment(), want["dipole"][0])
    eps = calc.get_property("dielectric_tensor", atoms)
    assert eps.shape == (3, 3)
    np.testing.assert_array_equal(eps, calc.get_property("dielectric", atoms))
    born = calc.get_property("born_effective_charges", atoms)
    assert born.shape == (len(atoms), 3, 3)
    np.testing.assert_array_equal(born, want["born_charges"])
    assert calc.get_property("polarizability", atoms).shape == (3, 3)  # spec name only
    before = eps.copy()
    atoms.positions[0] += [0.3, -0.2, 0.1]
    after = calc.get_property("dielectric_tensor", atoms)  # recomputed for the new geometry
    assert not np.allclose(after, before)
    np.testing.assert_array_equal(after, model.predict([atoms])["dielectric"][0])


def test_calculator_keeps_spec_name_when_shape_differs():
    spec = "tensor dipole { indices i; level atom }"  # per-atom: not ASE's dipole
    calc = TsymCalculator(tiny_model(specs=compile_text(spec)))
    assert calc.aliases == {} and calc.implemented_properties == ["dipole"]
    atoms = Atoms("HF", positions=[[0, 0, 0], [0, 0, 0.92]])
    assert calc.get_property("dipole", atoms).shape == (2, 3)
