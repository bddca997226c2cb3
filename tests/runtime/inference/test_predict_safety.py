"""``tsym predict`` never destroys data (issue #26, defects 1, 2 and 5).

* the output may not be the input, and a prediction may not replace a label of the same name
  unless asked (``--suffix`` keeps both, ``--overwrite-labels`` replaces);
* a regular (or new) output is written beside and renamed; anything else (a FIFO, a device, a
  symlink) is written into and stays what it was;
* ``--suffix`` must make keys that extxyz reads back (``=x`` made ``polarizability=x=...``).
"""
from __future__ import annotations

import os
import stat
import threading

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.io import read, write

import tsym
from tsym.cli import main
from tsym.runtime.errors import PredictError
from tsym.runtime.inference.predict import predict_structures

from ...conftest import SPECS_DIR

pytestmark = pytest.mark.usefixtures("one_thread")

BACKBONE = dict(num_scalars=8, irreps="8x0e+4x1o+2x2e", num_blocks=1, num_basis=4,
                embedding="onehot")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny untrained polarizability model (checkpoint) and a file labelled with 52.23s."""
    root = tmp_path_factory.mktemp("safety")
    model = tsym.build_model(SPECS_DIR / "polarizability.tsym", cutoff=3.5, dtype=torch.float32,
                             backbone_kwargs=BACKBONE, head_kwargs=dict(hidden_mul=2,
                                                                        mlp_hidden=4), seed=3)
    model.save(root / "m.pt")
    frames = [molecule("H2O"), bulk("NaCl", "rocksalt", a=5.0), molecule("CH4")]
    for atoms in frames:
        atoms.info["polarizability"] = np.full(9, 52.23)
    write(root / "small.extxyz", frames, format="extxyz")
    unlabelled = [molecule("H2O"), molecule("NH3")]
    write(root / "plain.extxyz", unlabelled, format="extxyz")
    return root, model


def _cli(argv, capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


# ------------------------------------------------------------------------ defect 1: labels
def test_output_equal_to_input_is_refused(saved, tmp_path, capsys):
    root, _ = saved
    data = tmp_path / "s.extxyz"
    data.write_bytes((root / "small.extxyz").read_bytes())
    before = data.read_bytes()
    for out in (data, tmp_path / "link.extxyz"):
        if out != data:
            os.link(data, out)  # the same file under another name
        code, err = _cli(["predict", root / "m.pt", data, "-o", out, "--suffix", "_p"], capsys)
        assert code == 2, err
        assert err.startswith(f"{out}: the output is the input file {data}; "), err
        assert data.read_bytes() == before


def test_a_label_is_not_replaced_silently(saved, tmp_path, capsys):
    root, _ = saved
    out = tmp_path / "p.extxyz"
    code, err = _cli(["predict", root / "m.pt", root / "small.extxyz", "-o", out], capsys)
    assert code == 2, err
    assert err.startswith(f"{root / 'small.extxyz'}:record 0: the input holds 'polarizability', "
                          "which the prediction 'polarizability' would replace; give --suffix "
                          "(e.g. --suffix _pred)"), err
    assert not out.exists() and not list(tmp_path.iterdir())  # no output, no temp file

    assert _cli(["predict", root / "m.pt", root / "small.extxyz", "-o", out, "--suffix",
                 "_pred"], capsys)[0] == 0
    back = read(out, index=":")
    assert all(np.allclose(a.info["polarizability"], 52.23) for a in back)  # label kept
    assert all(not np.allclose(a.info["polarizability_pred"], 52.23) for a in back)

    assert _cli(["predict", root / "m.pt", root / "small.extxyz", "-o", out,
                 "--overwrite-labels"], capsys)[0] == 0  # asked for: replaced
    assert not np.allclose(read(out, index=0).info["polarizability"], 52.23)


# ----------------------------------------------------------------- defect 2: special files
def test_a_fifo_is_written_into_and_stays_a_fifo(saved, tmp_path, capsys):
    root, _ = saved
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    os.link(fifo, tmp_path / "f2")  # the same FIFO, to release the reader if the test fails
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    code, err = _cli(["predict", root / "m.pt", root / "plain.extxyz", "-o", fifo], capsys)
    reader.join(timeout=30)
    if reader.is_alive():
        with open(tmp_path / "f2", "wb"):
            pass  # gives the reader its end of file
        reader.join(timeout=5)
    assert code == 0, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced by a file"
    assert got and got[0].count(b"polarizability=") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "f2"]  # no temp file left


def test_a_symlink_to_a_device_is_written_through(saved, tmp_path, capsys):
    root, _ = saved
    null, full = tmp_path / "null", tmp_path / "full"
    null.symlink_to("/dev/null")
    full.symlink_to("/dev/full")
    code, err = _cli(["predict", root / "m.pt", root / "plain.extxyz", "-o", null], capsys)
    assert code == 0, err
    assert null.is_symlink() and stat.S_ISCHR(os.stat(null).st_mode)
    code, err = _cli(["predict", root / "m.pt", root / "plain.extxyz", "-o", full], capsys)
    assert code == 2, err
    assert err.startswith(f"{full}: cannot write predictions (No space left on device)"), err
    assert full.is_symlink() and stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_a_symlink_to_a_file_stays_a_symlink(saved, tmp_path, capsys):
    root, _ = saved
    target, link = tmp_path / "target.extxyz", tmp_path / "link.extxyz"
    target.write_text("old\n")
    link.symlink_to(target)
    code, err = _cli(["predict", root / "m.pt", root / "plain.extxyz", "-o", link], capsys)
    assert code == 0, err
    assert link.is_symlink() and len(read(target, index=":")) == 2


# ------------------------------------------------------------------------ defect 5: suffix
@pytest.mark.parametrize("suffix", ["=x", "a b", "_ä", "x,y"])
def test_a_suffix_that_extxyz_cannot_read_back_is_refused(saved, tmp_path, capsys, suffix):
    root, model = saved
    out = tmp_path / "p.extxyz"
    code, err = _cli(["predict", root / "m.pt", root / "plain.extxyz", "-o", out,
                      f"--suffix={suffix}"], capsys)
    assert code == 2, err
    assert err.startswith(f"--suffix {suffix!r}: a key suffix may hold ASCII letters, digits "
                          "and _ . + - only"), err
    assert "--suffix _pred" in err and not out.exists()
    with pytest.raises(PredictError, match=r"^--suffix '"):
        predict_structures(model, [molecule("H2O")], suffix=suffix)


@pytest.mark.parametrize("suffix", ["_pred", "-p", ".v2", "+x"])
def test_a_plain_suffix_reads_back(saved, tmp_path, capsys, suffix):
    root, _ = saved
    out = tmp_path / "p.extxyz"
    assert _cli(["predict", root / "m.pt", root / "plain.extxyz", "-o", out,
                 f"--suffix={suffix}"], capsys)[0] == 0
    assert np.asarray(read(out, index=0).info[f"polarizability{suffix}"]).shape == (9,)
