"""``tsym eval`` says what it leaves out and what it extrapolates (issue 22)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.io import read, write

from tsym.cli import main
from tsym.cli.demo import demo_config
from tsym.runtime.inference.coverage import training_elements, unseen_elements

from .test_pre_house_run import FIXTURE

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def run(tmp_path):
    """The pre_house run, its config pointing at a copy of its training data."""
    train = tmp_path / "train.extxyz"
    write(train, read(FIXTURE / "data.extxyz", index=":"))
    ckpt = torch.load(FIXTURE / "run" / "best.pt", weights_only=True)
    ckpt["config"]["data"]["train"] = str(train)
    (tmp_path / "run").mkdir()
    torch.save(ckpt, tmp_path / "run" / "best.pt")
    return tmp_path / "run"


def test_eval_names_unseen_elements_and_heads_it_leaves_out(run, tmp_path, capsys):
    assert training_elements(run) == {1, 6, 7, 8}
    frames = [molecule("CH3Cl"), molecule("H2O"), molecule("CH3SH")]
    for atoms in frames:
        r = atoms.positions - atoms.positions.mean(0)
        atoms.info["alpha"] = (r.T @ r + np.eye(3)).reshape(-1)  # no 'shield' labels
    data = tmp_path / "new.extxyz"
    write(data, frames)
    seen, unseen = unseen_elements(run, data)
    assert unseen == {16: [2], 17: [0]}
    assert main(["eval", str(run), str(data), "-o", str(tmp_path / "ev"), "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert "tsym: note: head 'shield' is not evaluated: the first structure of" in err
    assert ("elements the model never saw in training: S (record 2); Cl (record 0); its "
            "training data holds H C N O") in err


def test_demo_shows_a_progress_bar_on_a_terminal():
    assert demo_config()["training"].get("progress", True) is True
