"""``tsym spectrum harmonic``: an ASE Vibrations cache or a Hessian file in, CSV/PNG out; bad
inputs give one line and exit status 2."""
from __future__ import annotations

import ase.io
import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.vibrations import Vibrations

import tsym
from tsym.cli import main

from ._models import tiny_model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("spectrum")
    model = tiny_model(torch.float64)
    model.save(root / "model.pt")
    water = molecule("H2O")
    ase.io.write(root / "water.xyz", water)
    water.calc = EMT()
    vib = Vibrations(water, name=str(root / "vib"))
    vib.run()
    return root, model, water, vib.get_vibrations()


def test_harmonic_from_vibrations_cache(files, capsys):
    root, model, water, vib = files
    out = root / "s.csv"
    code = main(["spectrum", "harmonic", str(root / "model.pt"), str(root / "water.xyz"),
                 "--vibrations", str(root / "vib"), "--dipole", "dipole",
                 "--polarizability", "polarizability", "-o", str(out),
                 "--png", str(root / "s.png"), "--width", "15", "--grid", "0:4000:2"])
    captured = capsys.readouterr()
    printed = captured.out.splitlines()
    assert code == 0
    want = tsym.model_spectrum(model, water, vib, dipole="dipole",
                               polarizability="polarizability")
    table = np.loadtxt(root / "s_modes.csv", delimiter=",", skiprows=1)
    assert table.shape == (3, 5)  # 3N - 6 modes of water
    np.testing.assert_allclose(table[:, 1], want.wavenumbers, rtol=1e-6)
    np.testing.assert_allclose(table[:, 2], want.ir_intensities, rtol=1e-6)
    np.testing.assert_allclose(table[:, 3], want.raman_activities, rtol=1e-6)
    curve = np.loadtxt(out, delimiter=",", skiprows=1)
    assert curve.shape == (2001, 3) and curve[0, 0] == 0 and curve[-1, 0] == 4000
    assert printed[0].split()[:2] == ["mode", "cm^-1"] and len(printed) == 1 + 3 + 3
    assert (root / "s.png").read_bytes()[:4] == b"\x89PNG"
    # molecule("H2O") is not at EMT's minimum: its bend is imaginary, and the verb says so
    assert (want.wavenumbers < 0).sum() == 1 and "tsym: warning: 1 imaginary mode" in captured.err


def test_bad_inputs_one_line(files, capsys):
    root, _, _, _ = files
    np.save(root / "bad.npy", np.eye(5))
    base = ["spectrum", "harmonic", str(root / "model.pt"), str(root / "water.xyz"),
            "-o", str(root / "x.csv")]
    cases = [
        (["--hessian", str(root / "bad.npy"), "--dipole", "dipole"],
         "a Hessian of shape (5, 5) for 3 atoms: expected (9, 9) or (3, 3, 3, 3)"),
        (["--vibrations", str(root / "vib"), "--dipole", "born_charges"],
         "the model has no head 'born_charges' for the dipole"),
        (["--vibrations", str(root / "vib")], "name a dipole, polarizability or apt head"),
        (["--hessian", str(root / "none.npy"), "--dipole", "dipole"], "no such Hessian file"),
        (["--vibrations", str(root / "vib"), "--dipole", "dipole", "--grid", "1:2"],
         "--grid '1:2': expected START:STOP:STEP"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err and "Traceback" not in err, err


def test_predict_writes_derivatives(files, capsys):
    root, model, water, _ = files
    frames = [water, molecule("NH3")]
    ase.io.write(root / "two.xyz", frames)
    out = root / "pred.extxyz"
    assert main(["predict", str(root / "model.pt"), str(root / "two.xyz"), "-o", str(out),
                 "--derivatives", "--no-progress"]) == 0
    read = ase.io.read(out, index=":")
    want = tsym.derivatives(model, frames)
    offset = 0  # extxyz keeps 8 decimals: 5e-9 absolute
    for atoms in read:
        n = len(atoms)
        np.testing.assert_allclose(atoms.arrays["dipole_derivatives"],
                                   want["dipole"][offset:offset + n].reshape(n, 9), atol=1e-8)
        np.testing.assert_allclose(atoms.arrays["polarizability_derivatives"],
                                   want["polarizability"][offset:offset + n].reshape(n, 27),
                                   atol=1e-8)
        offset += n
    capsys.readouterr()
