"""End to end: the demo on the bundled data, and a run on a shared DFT set (skipped when absent).

Each run trains for a few steps and checks that the loss goes down and that eval, predict,
export and resume work on the result.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import tsym
from tsym.cli import main

from ..conftest import SHARED_DATA_SKIP, SPECS_DIR, shared_data_dir

pytestmark = pytest.mark.slow


def _losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["train_loss"] for r in rows if "train_loss" in r]


def test_demo_command_trains_and_reports(tmp_path, capsys):
    run = tmp_path / "demo"
    assert main(["demo", "--epochs", "3", "--run-dir", str(run)]) == 0
    out = capsys.readouterr().out
    for name in ("polarizability", "hyperpolarizability", "nmr_shielding"):
        assert f"{name} (" in out  # one metrics line per head
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert set(metrics["heads"]) == {"polarizability", "hyperpolarizability", "nmr_shielding"}
    assert any(p.suffix == ".png" for p in (run / "plots").iterdir())
    losses = _losses(run)
    assert losses[-1] < losses[0]


def _train_eval_predict_export_resume(tmp_path, config, data):
    from tsym.runtime.inference.export import export_model, load_exported, graph_inputs
    from tsym.runtime.inference.predict import load_model, predict_structures
    from tsym.runtime.training.loop import train

    run = tmp_path / "run"
    first = train(config, run, stop_after=4)
    assert not first["finished"]
    resumed = train(config, run, resume=True)
    assert resumed["finished"] and resumed["steps"] > first["steps"]
    losses = [loss for _, loss in first["step_losses"] + resumed["step_losses"]]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    model = load_model(run)
    import ase.io

    frames = ase.io.read(data, index=":6")
    predicted = predict_structures(model, frames, suffix="_pred")
    plans = {p.name: p for p in model.plans} if not isinstance(model.plans, dict) else model.plans
    for name, plan in plans.items():
        where = predicted[0].arrays if plan.level == "atom" else predicted[0].info
        assert np.size(where[name + "_pred"]) % 3**plan.order == 0
    assert main(["eval", str(run), str(data), "-o", str(tmp_path / "eval"), "--no-plots"]) == 0
    path = export_model(model, tmp_path / "model.pt")
    module, meta = load_exported(path)
    inputs = graph_inputs(frames[:2], meta["cutoff"], getattr(torch, meta["dtype"]))
    out = module(*inputs) if isinstance(inputs, tuple) else module(**inputs)
    reference = model.predict(frames[:2])
    for name in plans:
        assert np.allclose(out[name].detach().numpy(), reference[name], rtol=1e-4, atol=1e-5)


def _config(heads, data, epochs=3, embedding="qc"):
    return {
        "model": {"backbone": "xpainn",
                  "backbone_kwargs": {"num_scalars": 16, "irreps": "8x0e+4x1o+2x2e", "num_blocks": 1,
                                      "embedding": embedding},
                  "head_kwargs": {"hidden_mul": 4, "mlp_hidden": 8}, "cutoff": 4.0, "dtype": "float32"},
        "heads": heads,
        "data": {"train": str(data), "valid_fraction": 0.2, "test_fraction": 0.2},
        "optimiser": {"lr": 3e-3},
        "schedule": {"kind": "constant", "warmup_steps": 0},
        "training": {"epochs": epochs, "batch_size": 4, "seed": 0, "progress": False},
    }


def test_bundled_data_run(tmp_path):
    from tsym.cli.demo import demo_data_path

    import ase.io

    data = tmp_path / "small.extxyz"
    ase.io.write(data, ase.io.read(demo_data_path(), index=":40"), format="extxyz")
    heads = {"polarizability": {"spec": str(SPECS_DIR / "polarizability.tsym")},
             "nmr_shielding": {"spec": str(SPECS_DIR / "nmr_shielding.tsym")}}
    _train_eval_predict_export_resume(tmp_path, _config(heads, data), data)


def test_shared_dielectric_and_born_charges_run(tmp_path):
    root = shared_data_dir()
    if root is None:
        pytest.skip(SHARED_DATA_SKIP)
    from tsym.runtime.data.convert import convert, write_extxyz

    frames, report = convert("becs_epsilon_e3nn", root / "becs_epsilon_e3nn" / "phonon_becs_epsilon.xyz",
                             limit=40)
    assert len(frames) == 40
    data = tmp_path / "becs.extxyz"
    write_extxyz(data, frames)
    heads = {"dielectric": {"spec": str(SPECS_DIR / "dielectric.tsym")},
             "born_charges": {"spec": str(SPECS_DIR / "born_charges.tsym")}}
    # 16 of these crystals hold elements beyond STO-3G's iodine (Cs, Ba, La, Hf, ..., Bi): the
    # default quantum-chemistry embedding covers them with its group-relative fallback
    assert sum(int(a.numbers.max()) > 53 for a in frames) >= 10
    _train_eval_predict_export_resume(tmp_path, _config(heads, data), data)


def test_build_model_loads_a_trained_run(tmp_path):
    from tsym.cli.demo import demo_data_path
    from tsym.runtime.training.loop import train

    import ase.io

    data = tmp_path / "small.extxyz"
    frames = ase.io.read(demo_data_path(), index=":12")
    ase.io.write(data, frames, format="extxyz")
    heads = {"polarizability": {"spec": str(SPECS_DIR / "polarizability.tsym")}}
    train(_config(heads, data, epochs=1), tmp_path / "run")
    model = tsym.build_model(checkpoint=tmp_path / "run")
    again = tsym.build_model(checkpoint=tmp_path / "run" / "best.pt")
    a, b = model.predict(frames[:3]), again.predict(frames[:3])
    assert a["polarizability"].shape == (3, 3, 3)
    assert np.array_equal(a["polarizability"], b["polarizability"])
