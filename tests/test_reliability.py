"""Issue #26: cases a hostile but realistic user found on a fresh clone.

Defects 4 (one structure, empty splits, silent) and 7 (labels that contradict the spec's physics
clauses), and the messages that did not say what to fix: each is now exit 2 (or 1 for ``data
check``), one message naming the file, key or value, and what to write instead.  Defects 1, 2, 5
are in ``tests/runtime/inference/test_predict_safety.py``, 3 in ``tests/runtime/test_translation``,
6 and the Python API messages in ``tests/runtime/test_api_arguments.py``.
"""
from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pytest
import yaml
from ase.build import molecule
from ase.io import write

from tests.runtime.training.test_train import make_config, write_dataset
from tsym.cli import main

from .conftest import SPECS_DIR

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A labelled data set, its config, and a saved (untrained) model for eval/predict."""
    import tsym
    from tests.runtime.training.test_train import ALPHA, TINY

    root = tmp_path_factory.mktemp("reliability")
    write_dataset(root / "d.extxyz", n=8)
    cfg = make_config(root / "d.extxyz", max_steps=2)
    tsym.build_model(ALPHA, cutoff=TINY["cutoff"], backbone_kwargs=TINY["backbone_kwargs"],
                     head_kwargs=TINY["head_kwargs"]).save(root / "m.pt")
    return root, cfg


def run(argv, capsys) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse
        code = exit_.code
    return code, capsys.readouterr().err


def expect(argv, capsys, start: str, code: int = 2) -> str:
    """Exit ``code``, no traceback or internal error, stderr starting with ``start`` (a regex)."""
    got, err = run(argv, capsys)
    assert "internal error" not in err and "Traceback" not in err, err
    assert got == code, err
    assert re.match(start, err), err
    return err


def train_with(root, cfg, name, edit, capsys, start):
    cfg = json.loads(json.dumps(cfg))
    edit(cfg)
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return expect(["train", path, "--run-dir", root / f"run_{name}"], capsys, start)


# ---------------------------------------------------------- defect 4: empty requested splits
def test_one_structure_with_valid_and_test_fractions_is_refused(base, capsys):
    root, cfg = base
    write_dataset(root / "one.extxyz", n=1)

    def edit(c):
        c["data"].update(train=str(root / "one.extxyz"), valid_fraction=0.2, test_fraction=0.2)
    err = train_with(root, cfg, "one", edit, capsys,
                     re.escape(f"{root / 'one.extxyz'}: 1 structure(s) leave the valid split "
                               "empty (valid_fraction 0.2 of 1 rounds to none)"))
    assert "hint: give more structures, a data.valid file, or valid_fraction: 0" in err
    assert not (root / "run_one" / "summary.json").exists()


def test_an_empty_test_file_is_refused(base, capsys):
    root, cfg = base
    (root / "blank.extxyz").write_text("\n")

    def edit(c):
        c["data"]["test"] = str(root / "blank.extxyz")
    train_with(root, cfg, "blank", edit, capsys,
               re.escape(f"{root / 'blank.extxyz'}: holds no structures: the test split is empty"))


def test_the_summary_labels_a_best_loss_without_a_valid_split(base, tmp_path):
    """valid_fraction: 0 asks for no valid split: the figure is then a training loss, and the
    summary says so."""
    from tsym.runtime.training.loop import train

    root, cfg = base
    cfg = json.loads(json.dumps(cfg))
    assert train(cfg, tmp_path / "with")["selected_on"] == "valid"
    cfg["data"]["valid_fraction"] = 0.0
    summary = train(cfg, tmp_path / "without")
    assert summary["selected_on"] == "train" and summary["valid"] is None


# ------------------------------------------------------------- defect 7: physics clauses
def _physics_data(path):
    """Shieldings (all positive: far from summing to zero) and negated polarizabilities."""
    frames = []
    for name in ("H2O", "CH4"):
        atoms = molecule(name)
        atoms.arrays["nmr"] = np.array([np.diag([30.0 + z, 31.0 + z, 29.0 + z]).reshape(9)
                                        for z in atoms.numbers])
        r = atoms.positions - atoms.positions.mean(axis=0)
        atoms.info["alpha"] = -(r.T @ r + len(atoms) * np.eye(3)).reshape(9)
        frames.append(atoms)
    write(path, frames, format="extxyz")


def test_data_check_reports_labels_that_break_sum_rule_and_positivity(tmp_path, capsys):
    _physics_data(tmp_path / "p.extxyz")
    assert main(["data", "check", str(tmp_path / "p.extxyz"), "--spec",
                 str(SPECS_DIR / "born_charges_sum_rule.tsym"), "--key", "nmr"]) == 1
    out = capsys.readouterr().out
    assert "0 of 2 records kept" in out and "skipped 2 (physics): records 0-1" in out
    expect(["data", "check", tmp_path / "p.extxyz", "--spec",
            SPECS_DIR / "born_charges_sum_rule.tsym", "--key", "nmr", "--strict"], capsys,
           re.escape(f"{tmp_path / 'p.extxyz'}:record 0: label 'born_charges_sum_rule' breaks "
                     "the spec's 'sum_rule zero': its 3 atom tensors sum to a tensor of norm "))
    err = expect(["data", "check", tmp_path / "p.extxyz", "--spec",
                  SPECS_DIR / "polarizability_positive.tsym", "--key", "alpha", "--strict"],
                 capsys, re.escape(f"{tmp_path / 'p.extxyz'}:record 0: label "
                                   "'polarizability_positive' breaks the spec's 'positive "
                                   "definite': eigenvalue -"))
    assert "(relative 1 below zero, > 0.05)" in err and "hint: check the sign convention" in err


def test_training_on_labels_that_break_a_physics_clause_is_refused(base, tmp_path, capsys):
    root, cfg = base
    _physics_data(tmp_path / "p.extxyz")

    def edit(c):
        c["heads"] = {"polarizability_positive": {
            "spec": str(SPECS_DIR / "polarizability_positive.tsym"), "key": "alpha"}}
        c["data"] = {"train": str(tmp_path / "p.extxyz"), "valid_fraction": 0.5}
    train_with(root, cfg, "physics", edit, capsys,
               re.escape(f"{tmp_path / 'p.extxyz'}:record 0: label 'polarizability_positive' "
                         "breaks the spec's 'positive definite'"))


# ------------------------------------------------------------------------------- specs
@pytest.mark.parametrize("indices", ["αβ", "ĳ", "İj", "iα"])
def test_non_ascii_index_letters_say_ascii_only(tmp_path, capsys, indices):
    spec = tmp_path / "u.tsym"
    spec.write_text(f"tensor t {{ indices {indices} }}\n", encoding="utf-8")
    err = expect(["inspect", spec], capsys, re.escape(f"{spec}:1:"))
    assert "hint: names and index letters are ASCII letters only (a-z, A-Z): write e.g. " \
           "'indices ijk'" in err


def test_a_nul_byte_is_shown_escaped(tmp_path, capsys):
    spec = tmp_path / "nul.tsym"
    spec.write_bytes(b"tensor t { indices i\x00j }\n")
    err = expect(["inspect", spec], capsys,
                 re.escape(f"{spec}:1:21: expected the end of the 'indices' clause, found "
                           "'\\x00j'"))
    lines = err.splitlines()
    assert lines[1] == "    tensor t { indices i\\x00j }" and "\x00" not in err
    assert lines[2].index("^") == lines[1].index("\\x00")  # the caret under the escape


# ------------------------------------------------------------------------- output paths
def test_compile_and_eval_say_a_folder_is_expected(base, tmp_path, capsys):
    root, _ = base
    (tmp_path / "FILE").write_text("x")
    start = re.escape(f"{tmp_path / 'FILE'}: is a file, but the output (-o) must be a folder; "
                      "give a folder name")
    expect(["compile", SPECS_DIR / "dipole.tsym", "-o", tmp_path / "FILE"], capsys, start)
    expect(["eval", root / "m.pt", root / "d.extxyz", "-o", tmp_path / "FILE"], capsys, start)


def test_a_file_used_as_the_output_folder_is_named(base, tmp_path, capsys):
    root, _ = base
    (tmp_path / "notadir").write_text("x")
    out = tmp_path / "notadir" / "out.extxyz"
    expect(["predict", root / "m.pt", root / "d.extxyz", "-o", out, "--suffix", "_p"], capsys,
           re.escape(f"{out}: cannot write the output file: {tmp_path / 'notadir'} is a file, "
                     "not a folder"))


# ----------------------------------------------------------------------------- configs
def test_lr_without_a_dot_is_a_number(base, capsys):
    from tsym.runtime.training.config import load_config

    root, cfg = base
    text = yaml.safe_dump(cfg).replace("lr: 0.005", "lr: 1e-3")
    assert "lr: 1e-3" in text
    (root / "lr.yaml").write_text(text)
    assert load_config(root / "lr.yaml").optimiser.lr == 1e-3


def test_a_folder_as_the_data_file_is_named(base, capsys):
    root, cfg = base
    (root / "adir").mkdir()
    train_with(root, cfg, "folder", lambda c: c["data"].update(train=str(root / "adir")), capsys,
               re.escape(f"{root / 'adir'}: is a folder, not a data file\nhint: give the path "))


def test_an_empty_data_file_is_named(base, capsys):
    root, cfg = base
    (root / "empty.extxyz").write_text("")
    train_with(root, cfg, "empty", lambda c: c["data"].update(train=str(root / "empty.extxyz")),
               capsys, re.escape(f"{root / 'empty.extxyz'}: the file is empty (no structures)"))


def test_a_per_atom_column_under_a_structure_head_is_named(base, capsys):
    root, cfg = base
    write_dataset(root / "sh.extxyz", n=8, shield=True)

    def edit(c):
        c["data"]["train"] = str(root / "sh.extxyz")
        c["heads"]["alpha"]["key"] = "shield"
    err = train_with(root, cfg, "column", edit, capsys,
                     re.escape(f"{root / 'sh.extxyz'}:record 0: label 'alpha': key 'shield' is "
                               "in atoms.arrays (a per-atom column), but the spec 'alpha' is "
                               "level structure"))
    assert "hint: use a spec with 'level atom' for this key" in err


def test_the_asymmetric_label_hint_names_no_refused_key(base, capsys):
    root, cfg = base
    frames = write_dataset(root / "asym.extxyz", n=8)
    for atoms in frames:
        atoms.info["alpha"] = atoms.info["alpha"] + np.array([0, 1, 0, 0, 0, 0, 0, 0, 0.0])
    write(root / "asym.extxyz", frames, format="extxyz")
    err = train_with(root, cfg, "asym", lambda c: c["data"].update(
        train=str(root / "asym.extxyz")), capsys,
        re.escape(f"{root / 'asym.extxyz'}:record 0: label 'alpha' breaks the symmetry"))
    assert "symmetry_tol" not in err and "hint: symmetrize the labels" in err


# -------------------------------------------------------------------------------- data
def test_a_gzip_file_named_extxyz_says_compressed(base, capsys):
    root, cfg = base
    with gzip.open(root / "gz.extxyz", "wb") as f:
        f.write((root / "d.extxyz").read_bytes())
    start = re.escape(f"{root / 'gz.extxyz'}: the file is gzip-compressed, not extended XYZ "
                      "text\nhint: decompress it first: gunzip -c ")
    expect(["eval", root / "m.pt", root / "gz.extxyz", "--no-plots", "-o", root / "ev"],
           capsys, start)
    expect(["predict", root / "m.pt", root / "gz.extxyz", "-o", root / "p.extxyz"], capsys,
           start)
    train_with(root, cfg, "gz", lambda c: c["data"].update(train=str(root / "gz.extxyz")),
               capsys, start)


def test_eval_of_an_empty_file_says_empty(base, capsys):
    root, _ = base
    (root / "e.extxyz").write_text("")
    expect(["eval", root / "m.pt", root / "e.extxyz", "--no-plots", "-o", root / "ev"], capsys,
           re.escape(f"{root / 'e.extxyz'}: the file is empty (no structures)"))


def test_a_lock_that_is_a_folder_is_named(base, capsys):
    root, cfg = base
    (root / "locked" / ".lock").mkdir(parents=True)
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    expect(["train", root / "cfg.yaml", "--run-dir", root / "locked"], capsys,
           re.escape(f"{root / 'locked' / '.lock'}: the run lock is a folder, not a file; "
                     f"remove it (rmdir {root / 'locked' / '.lock'})"))
