"""``tsym fit-kernel``, ``tsym eval --kernel`` and ``tsym predict --kernel`` on a tiny run."""
from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import molecule
from ase.io import read, write

from tests.runtime.training.test_train import train_tiny_run
from tsym.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A tiny float64 run (2 steps) and its kernel file."""
    root = tmp_path_factory.mktemp("kernel")
    train_tiny_run(root)
    assert main(["fit-kernel", str(root / "run")]) == 0
    return root


def test_fit_kernel_writes_the_file_and_eval_reports_calibration(fitted, capsys):
    assert (fitted / "run" / "kernel.pt").is_file()
    capsys.readouterr()
    out_dir = fitted / "ev"
    assert main(["eval", str(fitted / "run"), str(fitted / "d.extxyz"), "--kernel",
                 "-o", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "kernel alpha: Frobenius RMSE" in out and "coverage 68 %" in out
    metrics = json.loads((out_dir / "kernel_metrics.json").read_text())["alpha"]
    assert set(metrics["calibration"]) >= {"coverage_68", "coverage_95", "spearman", "worst"}
    assert (out_dir / "calibration_alpha.png").stat().st_size > 0
    # on its own training structures the GP explains most of the labels' spread
    t = np.array([a.info["alpha"] for a in read(fitted / "d.extxyz", ":")])  # [12, 9]
    spread = float(np.sqrt(((t - t.mean(0)) ** 2).sum(1).mean()))
    assert metrics["rmse_frobenius"] < 0.5 * spread


def test_predict_kernel_writes_std_and_warns_about_unseen_elements(fitted, capsys):
    mols = [molecule("H2O"), molecule("CH3Cl")]
    write(fitted / "new.extxyz", mols, format="extxyz")
    capsys.readouterr()
    assert main(["predict", str(fitted / "run"), str(fitted / "new.extxyz"), "-o",
                 str(fitted / "out.extxyz"), "--kernel"]) == 0
    err = capsys.readouterr().err
    assert "alpha: structure 1: element(s) Cl never seen in training" in err
    assert "structure 0: element" not in err
    back = read(fitted / "out.extxyz", ":")
    assert back[0].info["alpha"].shape == (9,) and back[1].info["alpha_std"] > 0


def test_eval_kernel_with_json_keeps_stdout_json(fitted, capsys):
    capsys.readouterr()
    assert main(["eval", str(fitted / "run"), str(fitted / "d.extxyz"), "--kernel", "--json",
                 "--no-plots", "-o", str(fitted / "ev_json")]) == 0
    captured = capsys.readouterr()
    assert "alpha" in json.loads(captured.out)["heads"]
    assert captured.err.startswith("kernel alpha: Frobenius RMSE")
