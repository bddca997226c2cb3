"""``tsym train`` on SevenNet-0: a frozen backbone (cached features) and the last block with its
own learning rate; the element table checked before training; predict from the run (export:
``tests/runtime/nn/test_sevenn.py``).  Skipped, with the install command, without the ``sevenn`` extra.
"""
from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
import torch
import yaml
from ase import Atoms

import tsym
from tsym.cli import main
from tsym.runtime.nn.extras import INSTALL



@pytest.fixture
def data(tmp_path):
    pytest.importorskip("sevenn", reason=f"the 'sevenn' extra is not installed: "
                                         f"{INSTALL['sevenn']}")
    from tsym.cli.demo import demo_data_path

    frames = ase.io.read(demo_data_path(), index=":12")
    ase.io.write(tmp_path / "small.extxyz", frames, format="extxyz")
    return tmp_path / "small.extxyz", frames


def _config(tmp_path, data, finetune, optimiser):
    config = {
        "model": {"backbone": "sevenn", "backbone_kwargs": {"checkpoint": "7net-0"},
                  "head_kwargs": {"hidden_mul": 2, "mlp_hidden": 8}, "finetune": finetune},
        "heads": {"polarizability": {"spec": "polarizability"}},
        "data": {"train": str(data), "valid_fraction": 0.25},
        "optimiser": optimiser, "schedule": {"kind": "constant", "warmup_steps": 0},
        "training": {"epochs": 3, "batch_size": 3, "seed": 0, "progress": False},
    }
    path = tmp_path / f"config_{finetune}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_frozen_training_predicts_and_keeps_the_weights(data, tmp_path):
    path, frames = data
    run = tmp_path / "run"
    config = _config(tmp_path, path, "frozen", {"lr": 3e-3})
    assert main(["train", str(config), "--run-dir", str(run)]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in rows if "train_loss" in r]
    assert len(losses) >= 2 and losses[-1] < losses[0]
    model = tsym.build_model(checkpoint=run)
    loaded = tsym.build_model(["polarizability"], backbone="sevenn",
                              backbone_kwargs={"checkpoint": "7net-0"})
    mine = dict(model.model.backbone.named_parameters())
    for name, p in loaded.backbone.named_parameters():  # frozen: SevenNet's own weights
        assert torch.equal(mine[name], p), name
    want = model.predict(frames[:2])["polarizability"]
    assert main(["predict", str(run), str(path), "-o", str(tmp_path / "p.extxyz"),
                 "--suffix", "_pred"]) == 0  # the file holds polarizability labels: keep them
    got = np.array([np.reshape(a.info["polarizability_pred"], (3, 3))
                    for a in ase.io.read(tmp_path / "p.extxyz", index=":2")])
    assert np.abs(got - want).max() <= 1e-5 * float(np.abs(want).max())


def test_last_block_trains_at_its_own_rate(data, tmp_path):
    run = tmp_path / "run1"
    config = _config(tmp_path, data[0], 1, {"lr": 3e-3, "backbone_lr": 1e-4})
    assert main(["train", str(config), "--run-dir", str(run)]) == 0
    model = tsym.build_model(checkpoint=run).model
    loaded = tsym.build_model(["polarizability"], backbone="sevenn",
                              backbone_kwargs={"checkpoint": "7net-0"})
    mine = dict(model.backbone.named_parameters())
    moved = {n.split(".")[2].split("_")[0] for n, p in loaded.backbone.named_parameters()
             if not torch.equal(mine[n], p)}  # backbone.net.<module>...: its block
    assert moved == {"3"}


def test_uncovered_element_refused_before_training(data, tmp_path, capsys):
    path, frames = data
    polonium = Atoms("PoH2", positions=[[0, 0, 0], [0, 0, 1.7], [0, 1.6, -0.4]])
    polonium.info.update(frames[0].info)
    ase.io.write(path, frames + [polonium], format="extxyz")
    run = tmp_path / "run2"
    config = _config(tmp_path, path, "frozen", {"lr": 3e-3})
    assert main(["train", str(config), "--run-dir", str(run)]) != 0
    err = capsys.readouterr().err
    assert "the data hold Po (Z=84), which backbone 'sevenn' (checkpoint '7net-0') " \
           "does not cover" in err
    assert not (run / "metrics.jsonl").exists()
