"""``tsym train`` / ``predict`` / ``eval`` / ``export`` with ``backbone: mace`` and
``backbone: nequip-lib`` in the config (skipped, with the install command, without the extras).

A few steps on 24 bundled molecules: the loss goes down, every verb exits 0 and writes its file,
a reloaded run predicts what the exported TorchScript module predicts (export's own check holds
it to 1e-5 relative in float32), and the exported module refuses nothing the run accepted.
"""
from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
import torch
import yaml

import tsym
from tsym.cli import main
from tsym.runtime.inference.export import graph_inputs, load_exported
from tsym.runtime.nn.extras import INSTALL

from ..conftest import SPECS_DIR

ELEMENTS = ["H", "C", "N", "O", "F"]  # the bundled molecules' elements
BACKBONES = {
    "mace": ("mace", dict(elements=ELEMENTS, hidden_irreps="8x0e+8x1o", max_ell=2,
                          num_interactions=2, correlation=2, radial_MLP=[16],
                          avg_num_neighbors=6.0)),
    "nequip-lib": ("nequip", dict(elements=ELEMENTS, num_layers=2, l_max=1, num_features=8,
                                  radial_mlp_width=16, avg_num_neighbors=6.0)),
}


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_train_predict_eval_export(backbone, tmp_path, capsys):
    extra, kwargs = BACKBONES[backbone]
    pytest.importorskip(extra, reason=f"the {extra!r} extra is not installed: {INSTALL[extra]}")
    from tsym.cli.demo import demo_data_path

    data = tmp_path / "small.extxyz"
    frames = ase.io.read(demo_data_path(), index=":24")
    ase.io.write(data, frames, format="extxyz")
    config = {
        "model": {"backbone": backbone, "backbone_kwargs": kwargs,
                  "head_kwargs": {"hidden_mul": 4, "mlp_hidden": 8}, "cutoff": 4.0,
                  "dtype": "float32"},
        "heads": {"polarizability": {"spec": str(SPECS_DIR / "polarizability.tsym")},
                  "nmr_shielding": {"spec": str(SPECS_DIR / "nmr_shielding.tsym")}},
        "data": {"train": str(data), "valid_fraction": 0.2, "test_fraction": 0.2},
        "optimiser": {"lr": 3e-3}, "schedule": {"kind": "constant", "warmup_steps": 0},
        "training": {"epochs": 3, "batch_size": 4, "seed": 0, "progress": False},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "config.yaml"), "--run-dir", str(run)]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in rows if "train_loss" in r]
    assert len(losses) >= 2 and losses[-1] < losses[0]
    model = tsym.build_model(checkpoint=run)
    assert type(model.model.backbone).__name__ in ("MACEBackbone", "NequIPLibBackbone")
    want = model.predict(frames[:3])
    assert main(["predict", str(run), str(data), "-o", str(tmp_path / "pred.extxyz"),
                 "--overwrite-labels"]) == 0  # the data hold the labels under the spec names
    predicted = ase.io.read(tmp_path / "pred.extxyz", index=":3")
    got = np.array([np.reshape(a.info["polarizability"], (3, 3)) for a in predicted])
    scale = float(np.abs(want["polarizability"]).max())
    assert np.abs(got - want["polarizability"]).max() <= 1e-5 * scale  # written as float32
    assert main(["eval", str(run), str(data), "-o", str(tmp_path / "eval"), "--no-plots"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(metrics["heads"]) == {"polarizability", "nmr_shielding"}
    assert main(["export", str(run), "-o", str(tmp_path / "model.pt")]) == 0
    capsys.readouterr()
    module, meta = load_exported(tmp_path / "model.pt")
    out = module(*graph_inputs(frames[:3], meta["cutoff"], torch.float32))
    for name in ("polarizability", "nmr_shielding"):
        scale = float(np.abs(want[name]).max())
        assert np.abs(out[name].detach().numpy() - want[name]).max() <= 1e-5 * scale
