"""A backbone from an installed package, through the CLI: ``tsym train`` trains on it, and
``eval``, ``predict`` and ``export`` reload the checkpoint in fresh processes, each finding the
backbone through the ``tsym.backbones`` entry point (the package is on PYTHONPATH only)."""
from __future__ import annotations

import os
import subprocess
import sys

import ase.io
import numpy as np
import yaml

import tsym
from tsym.cli import main
from tsym.runtime.nn import registry

from .conftest import SPECS_DIR
from .runtime.nn._toy_plugin import MODULE, write_plugin


def _tsym(args, env, cwd):
    result = subprocess.run([sys.executable, "-m", "tsym.cli", *args], capture_output=True,
                            text=True, env=env, cwd=cwd, timeout=300)
    return result.returncode, result.stdout + result.stderr


def test_plugin_backbone_through_every_verb(tmp_path, monkeypatch, capsys):
    from tsym.cli.demo import demo_data_path

    site = write_plugin(tmp_path / "site")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(site)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
        OMP_NUM_THREADS="1")
    data = tmp_path / "small.extxyz"
    ase.io.write(data, ase.io.read(demo_data_path(), index=":12"), format="extxyz")
    config = {
        "model": {"backbone": "toy", "backbone_kwargs": {"width": 4},
                  "head_kwargs": {"hidden_mul": 2, "mlp_hidden": 4}, "cutoff": 3.5,
                  "dtype": "float32"},
        "heads": {"polarizability": {"spec": str(SPECS_DIR / "polarizability.tsym")}},
        "data": {"train": str(data), "valid_fraction": 0.25},
        "optimiser": {"lr": 3e-3},
        "schedule": {"kind": "constant", "warmup_steps": 0},
        "training": {"epochs": 1, "batch_size": 4, "seed": 0, "progress": False},
    }
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    code, out = _tsym(["train", "toy.yaml", "--run-dir", str(run)], env, tmp_path)
    assert code == 0, out
    assert (run / "best.pt").is_file()

    code, out = _tsym(["eval", str(run), str(data), "-o", str(tmp_path / "eval"), "--no-plots"],
                      env, tmp_path)
    assert code == 0, out
    assert "polarizability" in out

    code, out = _tsym(["predict", str(run), str(data), "-o", str(tmp_path / "pred.extxyz"),
                       "--suffix", "_pred"], env, tmp_path)
    assert code == 0, out
    frames = ase.io.read(tmp_path / "pred.extxyz", index=":")
    assert len(frames) == 12
    assert all(np.isfinite(np.asarray(f.info["polarizability_pred"])).all() for f in frames)

    code, out = _tsym(["export", str(run), "-o", str(tmp_path / "toy.pt")], env, tmp_path)
    assert code == 0, out
    assert (tmp_path / "toy.pt").is_file()

    # in process too: the trained model (data units, EMA weights) is equivariant
    monkeypatch.syspath_prepend(str(site))
    try:
        trained = tsym.build_model(checkpoint=run)
        report = tsym.check_equivariance(trained, ase.io.read(data, index=":3"))
        assert report.ok and report["polarizability"].scale > 0, str(report)
    finally:
        registry.BACKBONES.pop("toy", None)
        sys.modules.pop(MODULE, None)

    # without the package on the path the checkpoint names a backbone nobody provides
    monkeypatch.undo()
    assert main(["eval", str(run), str(data), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "unknown backbone 'toy'" in err and "'tsym.backbones'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 3
