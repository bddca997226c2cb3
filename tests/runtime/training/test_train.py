"""Training: configs, normalisation, losses, de-normalised predictions, checkpoints, errors.

The data are small ASE molecules, displaced and rotated, with synthetic equivariant labels:

* ``alpha`` (structure level, sum pooled): ``sum_a r_a r_a^T + n_atoms * I``, ``r_a`` the positions
  relative to the centroid (a polarizability-like symmetric tensor: irreps 1x0e + 1x2e);
* ``shield`` (atom level): ``r_a r_a^T + Z_a * I`` on heavy atoms; hydrogens are unlabelled (NaN
  rows), so the loss must skip them.

Expected values are derived with numpy from the labels (traces, traceless parts), never from the
code under test.  The long runs (resume, kill safety, DDP) are in ``tests/integration``.
"""
from __future__ import annotations

import argparse
import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ase.build import molecule
from ase.io import read, write

from tsym.runtime.model.checkpoint import rng_state, save_atomic, set_rng_state
from tsym.runtime.training.config import ConfigError, TrainConfig, load_config
from tsym.runtime.model import TrainedModel, build_model
from tsym.runtime.model.normalisation import Normalisation
from tsym.runtime.training.losses import HeadLoss
from tsym.runtime.training.loop import TrainError, train
from tsym.compiler import compile_text, load_plans
from tsym.cli.train import register

REPO = Path(__file__).resolve().parents[3]
NAMES = ["H2O", "CH4", "NH3", "C2H6", "CH3OH", "HCN", "CO2", "C2H4", "H2CO", "CH3CN"]
ALPHA = "tensor alpha { indices ij; symmetry ij = ji; pool sum }"
SHIELD = "tensor shield { indices ij; symmetry ij = ji; level atom }"
TINY = {"backbone_kwargs": {"num_scalars": 16, "irreps": "8x0e+4x1o+2x2e", "num_blocks": 1,
                            "embedding": "onehot"},
        "head_kwargs": {"hidden_mul": 4, "mlp_hidden": 8}, "cutoff": 4.0}


def write_dataset(path, n: int = 20, seed: int = 0, shield: bool = False,
                  scale_from: int | None = None, scale: float = 1.0) -> list:
    """``n`` labelled molecules in extxyz; records from ``scale_from`` on get labels x ``scale``."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        atoms = molecule(NAMES[k % len(NAMES)])
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        atoms.positions = atoms.positions @ q.T
        r = atoms.positions - atoms.positions.mean(axis=0)  # [n, 3]
        factor = scale if scale_from is not None and k >= scale_from else 1.0
        alpha = np.einsum("ai,aj->ij", r, r) + len(atoms) * np.eye(3)
        atoms.info["alpha"] = factor * alpha.reshape(-1)
        if shield:
            per_atom = np.einsum("ai,aj->aij", r, r) + atoms.numbers[:, None, None] * np.eye(3)
            per_atom = per_atom.reshape(len(atoms), 9)
            per_atom[atoms.numbers == 1] = np.nan
            atoms.arrays["shield"] = per_atom
        frames.append(atoms)
    write(path, frames, format="extxyz")
    return frames


def make_config(data, dtype="float64", shield=False, **training):
    heads = {"alpha": {"spec": ALPHA}}
    if shield:
        heads["shield"] = {"spec": SHIELD}
    train_cfg = {"max_steps": 6, "epochs": None, "batch_size": 4, "ema_decay": 0.5,
                 "progress": False, "log_every": 1, "device": "cpu", **training}
    return {"model": {**TINY, "dtype": dtype}, "heads": heads,
            "data": {"train": str(data), "valid_fraction": 0.25},
            "optimiser": {"lr": 5e-3}, "schedule": {"kind": "cosine", "warmup_steps": 2},
            "training": train_cfg}


def train_tiny_run(root, n: int = 12, max_steps: int = 2) -> dict:
    """``root/d.extxyz`` (``n`` labelled molecules), its config ``root/cfg.yaml`` and a run of
    ``max_steps`` steps trained from it by ``tsym train`` into ``root/run``; returns the config."""
    from tsym.cli import main

    write_dataset(root / "d.extxyz", n=n)
    cfg = make_config(root / "d.extxyz", max_steps=max_steps)
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(root / "cfg.yaml"), "--run-dir", str(root / "run")]) == 0
    return cfg


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One float64 run of 40 steps, shared by the tests that read a finished run."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("trained")
    write_dataset(root / "data.extxyz", n=16)
    cfg = make_config(root / "data.extxyz", max_steps=40, batch_size=4, ema_decay=0.8)
    summary = train(cfg, root / "run")
    torch.set_num_threads(old)
    return root, cfg, summary


# ---------------------------------------------------------------------------------- configs
def _write_yaml(tmp_path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


BASE = "heads: {alpha: {spec: 'tensor alpha { indices ij }'}}\ndata: {train: d.extxyz}\n"


@pytest.mark.parametrize("extra, message", [
    ("training: {batch_sise: 4}\n", r"section 'training': unknown key 'batch_sise' \(allowed: "),
    ("optimizer: {lr: 1.0}\n", r"unknown key 'optimizer' in the top level"),
    ("model: {dtype: float16}\n", r"section 'model': 'dtype' must be one of float32, float64"),
    ("training: {batch_size: four}\n", r"section 'training': 'batch_size' must be int, got str"),
    ("schedule: {kind: step}\n", r"section 'schedule': 'kind' must be one of cosine"),
    ("training: {epochs: null}\n", r"section 'training': give 'epochs' or 'max_steps'"),
    ("data: {train: d.extxyz, valid_fraction: 0.6, test_fraction: 0.5}\n",
     r"section 'data': valid_fraction \+ test_fraction must be < 1"),
    ("optimiser: {lr: .inf}\n", r"section 'optimiser': 'lr' must be a finite number, got inf"),
    ("training: {grad_clip: .inf}\n",
     r"section 'training': 'grad_clip' must be a finite number, got inf"),
    ("optimiser: {weight_decay: .nan}\n",
     r"section 'optimiser': 'weight_decay' must be a finite number, got nan"),
    ("optimiser: {betas: [0.9, -.inf]}\n",
     r"section 'optimiser': 'betas\[1\]' must be a finite number, got -inf"),
    ("model: {backbone_kwargs: {cutoff_scale: .inf}}\n",
     r"section 'model': 'backbone_kwargs.cutoff_scale' must be a finite number, got inf"),
])
def test_config_errors_name_file_section_and_key(tmp_path, extra, message):
    text = BASE + extra if not extra.startswith("data") else BASE.split("data")[0] + extra
    path = _write_yaml(tmp_path, text)
    with pytest.raises(ConfigError, match="^" + re.escape(str(path)) + ": " + message):
        load_config(path)


def test_config_errors_in_heads_and_yaml(tmp_path):
    path = _write_yaml(tmp_path, "heads: {alpha: {spec: s.tsym, weigth: 2}}\ndata: {train: d}\n")
    with pytest.raises(ConfigError, match=r"^.*cfg\.yaml: section 'heads', head 'alpha': "
                                          r"unknown key 'weigth'"):
        load_config(path)
    path = _write_yaml(tmp_path, "heads: {alpha: {spec: s.tsym, loss_space: cartesian, "
                                 "l_weights: {0: 1.0}}}\ndata: {train: d}\n")
    with pytest.raises(ConfigError, match=r"^.*head 'alpha': 'l_weights' needs loss_space: "):
        load_config(path)
    path = _write_yaml(tmp_path, "heads: [alpha\ndata: {train: d}\n")
    with pytest.raises(ConfigError, match=r"^.*cfg\.yaml:\d+:\d+: not valid YAML"):
        load_config(path)
    path = _write_yaml(tmp_path, "data: {train: d}\n")
    with pytest.raises(ConfigError, match=r"^.*cfg\.yaml: missing section 'heads'"):
        load_config(path)


def test_config_resolves_paths_and_round_trips(tmp_path):
    path = _write_yaml(tmp_path, BASE + "training: {epochs: 3, grad_clip: null}\n")
    cfg = load_config(path)
    assert cfg.data.train == str(tmp_path.resolve() / "d.extxyz")
    assert cfg.training.grad_clip is None and cfg.training.epochs == 3
    again = TrainConfig.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict())), cfg.source)
    assert again == cfg


@pytest.mark.parametrize("name", ["polarizability_demo.yaml", "multihead_demo.yaml"])
def test_example_configs_are_valid(name):
    cfg = load_config(REPO / "benchmarks" / "configs" / name)
    assert Path(cfg.data.train).is_file()
    assert all(load_plans(h.spec) for h in cfg.heads)


def test_spec_without_the_head_tensor_fails_before_training(tmp_path):
    write_dataset(tmp_path / "d.extxyz", n=4)
    cfg = make_config(tmp_path / "d.extxyz")
    cfg["heads"] = {"beta": {"spec": ALPHA}}
    with pytest.raises(ConfigError, match=r"^<dict>: head 'beta': the spec .* has no tensor "
                                          r"'beta' \(it defines: alpha\)"):
        train(cfg, tmp_path / "run")
    cfg["heads"] = {"alpha": {"spec": ALPHA, "l_weights": {1: 1.0}}}
    with pytest.raises(ConfigError, match=r"^<dict>: head 'alpha': l_weights has l=1, but "):
        train(cfg, tmp_path / "run2")
    assert not (tmp_path / "run" / "last.pt").exists()


# ---------------------------------------------------------------------------- normalisation
def test_normalisation_fit_against_numpy(dtype, tol):
    rng = np.random.default_rng(1)
    y = rng.normal(size=(50, 2 + 5)) * [3.0, 0.5, 2.0, 2.0, 2.0, 2.0, 2.0] + [7, -1, 0, 0, 0, 0, 0]
    norm = Normalisation.fit("2x0e+1x2e", torch.tensor(y), order=4)
    centred = y[:, :2] - y[:, :2].mean(axis=0)
    np.testing.assert_allclose(norm.shift, list(y[:, :2].mean(axis=0)) + [0.0] * 5, rtol=1e-12)
    rms0, rms2 = np.sqrt(np.mean(centred ** 2)), np.sqrt(np.mean(y[:, 2:] ** 2))
    np.testing.assert_allclose(norm.scale, [rms0] * 2 + [rms2] * 5, rtol=1e-12)
    residual = np.concatenate([centred, y[:, 2:]], axis=1)
    cart = np.sqrt(np.mean(np.sum(residual ** 2, axis=1)) / 81)
    assert norm.cartesian_scale == pytest.approx(cart, rel=1e-12)
    yt = torch.tensor(y, dtype=dtype)
    back = norm.denormalise(norm.normalise(yt))
    assert torch.allclose(back, yt, rtol=tol, atol=tol * 10)
    assert Normalisation.from_dict(json.loads(json.dumps(norm.to_dict()))) == norm


def test_normalisation_per_atom_shift_and_odd_scalars():
    n_atoms = torch.tensor([2.0, 5.0, 9.0])
    y = torch.stack([2.5 * n_atoms, torch.tensor([1.0, -1.0, 1.0])], dim=1)  # [3, 2]: 0e, 0o
    norm = Normalisation.fit("1x0e+1x0o", y, order=0, n_atoms=n_atoms)
    assert norm.shift == (2.5, 0.0)  # a pseudo-scalar (0o) is never shifted
    # one scale per l: RMS over both l=0 components after the shift, [0, 0, 0] and [1, -1, 1]
    assert norm.scale == pytest.approx((np.sqrt(0.5), np.sqrt(0.5)), rel=1e-12)
    assert torch.allclose(norm.normalise(y, n_atoms)[:, 0], torch.zeros(3, dtype=y.dtype))


def test_head_loss_against_numpy():
    plan = compile_text(ALPHA)[0]
    rng = np.random.default_rng(2)
    label = torch.tensor(rng.normal(size=(6, 3, 3)))
    label = label + label.transpose(1, 2)
    pred_n = torch.tensor(rng.normal(size=(6, 6)))
    norm = Normalisation("1x0e+1x2e", (0.5,) + (0.0,) * 5, (2.0,) + (3.0,) * 5, False, 1.7)
    q = plan.change_of_basis.numpy().reshape(6, 9)
    target = (label.numpy().reshape(6, 9) @ q.T - norm.shift) / norm.scale  # [6, 6]
    d2 = (pred_n.numpy() - target) ** 2
    want = np.sum(0.25 * d2[:, 0] + 0.75 * d2[:, 1:].mean(axis=1))  # l weights 1 : 3
    got = HeadLoss(plan, norm, "irreps", {0: 1.0, 2: 3.0})(pred_n, label)
    assert float(got) == pytest.approx(want, rel=1e-12)
    pred_cart = ((pred_n.numpy() * norm.scale + norm.shift) @ q).reshape(6, 9)
    want = np.sum(np.mean(((pred_cart - label.numpy().reshape(6, 9)) / 1.7) ** 2, axis=1))
    assert float(HeadLoss(plan, norm, "cartesian")(pred_n, label)) == pytest.approx(want, rel=1e-12)


def test_trained_model_denormalises_before_to_cartesian():
    from tsym.runtime.graph import collate
    from tsym.runtime.model import build_model

    net = build_model([ALPHA], dtype=torch.float64, **{k: TINY[k] for k in TINY if k != "cutoff"})
    mols = [molecule("H2O"), molecule("CH4")]
    graph = collate(mols, net.cutoff, torch.float64)
    raw = net(graph)["alpha"]  # [2, 3, 3]
    norm = Normalisation("1x0e+1x2e", (0.7,) + (0.0,) * 5, (4.0,) * 6, True, 1.0)
    out = TrainedModel(net, {"alpha": norm})(graph)["alpha"]
    # 0e basis of a symmetric 3x3 tensor is +-I/sqrt(3): take the sign from the plan only
    sign = np.sign(net.plans[0].change_of_basis[0, 0, 0].item())
    shift = sign * 0.7 * torch.tensor([3.0, 5.0], dtype=torch.float64)[:, None, None] \
        * torch.eye(3, dtype=torch.float64) / np.sqrt(3)
    assert torch.allclose(out, 4.0 * raw + shift, atol=1e-12)


def test_trained_model_is_equivariant():
    from tsym.runtime.model import build_model

    net = build_model([ALPHA], dtype=torch.float64, **{k: TINY[k] for k in TINY if k != "cutoff"})
    norm = Normalisation("1x0e+1x2e", (3.0,) + (0.0,) * 5, (5.0,) + (0.2,) * 5, True, 1.0)
    model = TrainedModel(net, {"alpha": norm})
    atoms = molecule("CH3OH")
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))
    rotated = atoms.copy()
    rotated.positions = atoms.positions @ q.T
    t, tr = model.predict(atoms)["alpha"][0], model.predict(rotated)["alpha"][0]
    np.testing.assert_allclose(tr, q @ t @ q.T, atol=1e-10 * np.abs(t).max())


# ---------------------------------------------------------------------------------- training
def test_loss_decreases_and_files_are_written(trained):
    root, _, summary = trained
    losses = [loss for _, loss in summary["step_losses"]]
    assert len(losses) == 40 and summary["finished"]
    assert np.mean(losses[-8:]) < 0.5 * np.mean(losses[:4])  # 1.05 -> 0.32 measured
    records = _metrics(root / "run")
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert epochs[-1]["valid_loss"] < epochs[0]["valid_loss"]
    assert [r["loss"] for r in records if r["kind"] == "step"] == losses
    assert yaml.safe_load((root / "run" / "config.yaml").read_text())["training"]["max_steps"] == 40
    split = json.loads((root / "run" / "split.json").read_text())
    assert sorted(split["train"] + split["valid"] + split["test"]) == list(range(16))
    assert len(split["valid"]) == 4


def _metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _plain_or_tensor(obj) -> bool:
    if isinstance(obj, dict):
        return all(isinstance(k, (str, int)) and _plain_or_tensor(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return all(_plain_or_tensor(v) for v in obj)
    return obj is None or isinstance(obj, (str, int, float, bool, torch.Tensor))


def test_checkpoints_hold_plain_values_and_predict_in_data_units(trained):
    root, cfg, summary = trained
    for name in ("best.pt", "last.pt"):
        ckpt = torch.load(root / "run" / name, weights_only=True)
        assert _plain_or_tensor(ckpt)
        assert ckpt["model"]["specs"] == [compile_text(ALPHA)[0].source]
    model = build_model(checkpoint=root / "run" / "best.pt")
    frames = read(root / "data.extxyz", index=":")
    valid = [frames[i] for i in json.loads((root / "run" / "split.json").read_text())["valid"]]
    pred = model.predict(valid)["alpha"]  # [4, 3, 3]
    label = np.stack([a.info["alpha"].reshape(3, 3) for a in valid])
    mae = np.abs(pred - label).reshape(len(valid), -1).mean(axis=1).mean()
    best = summary["best_step"]
    records = _metrics(root / "run")
    at_best = [r for r in records if r["kind"] == "epoch" and r["step"] == best][0]
    assert mae == pytest.approx(at_best["valid"]["alpha"]["mae"], rel=1e-9)
    assert mae < np.abs(label).mean()  # in data units, not normalised ones


def test_existing_run_and_changed_resume_are_refused(trained, tmp_path):
    root, cfg, _ = trained
    with pytest.raises(TrainError, match=r"^.*run: the run directory already holds a checkpoint"):
        train(cfg, root / "run")
    changed = {**cfg, "optimiser": {"lr": 1e-2}}
    with pytest.raises(TrainError, match=r"^<dict>: cannot resume .*last\.pt: optimiser\.lr was "
                                         r"0\.005, now 0\.01"):
        train(changed, root / "run", resume=True)


def test_normalisation_uses_the_training_split_only(tmp_path, capsys):
    """Structures 8.. get labels x 100; the stored normalisation must come from the train part."""
    frames = write_dataset(tmp_path / "d.extxyz", n=12, scale_from=8, scale=100.0)
    cfg = make_config(tmp_path / "d.extxyz", max_steps=1)
    cfg["schedule"]["warmup_steps"] = 1  # not longer than the run
    cfg["data"]["valid_fraction"] = 0.34
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", str(tmp_path / "cfg.yaml"), "--run-dir",
                              str(tmp_path / "run")])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 1
    train_idx = json.loads((tmp_path / "run" / "split.json").read_text())["train"]
    assert any(i >= 8 for i in train_idx) and any(i < 8 for i in train_idx)
    norm = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["normalisation"]["alpha"]

    def stats(indices):
        t = np.stack([frames[i].info["alpha"].reshape(3, 3) for i in indices])
        n = np.array([len(frames[i]) for i in indices])
        iso = np.trace(t, axis1=1, axis2=2) / np.sqrt(3)  # |0e coordinate| of each label
        dev = t - np.trace(t, axis1=1, axis2=2)[:, None, None] / 3 * np.eye(3)
        return np.mean(iso / n), np.sqrt(np.mean(np.sum(dev ** 2, axis=(1, 2)) / 5))

    shift, rms2 = stats(train_idx)
    assert abs(norm["shift"][0]) == pytest.approx(shift, rel=1e-10)
    assert norm["scale"][1] == pytest.approx(rms2, rel=1e-10)
    assert abs(abs(norm["shift"][0]) - stats(range(12))[0]) > 1e-3 * shift


def test_masked_atom_level_head_and_test_split(tmp_path):
    """Hydrogen rows are NaN: any leak of them into the loss would make it NaN."""
    frames = write_dataset(tmp_path / "d.extxyz", n=12, shield=True)
    cfg = make_config(tmp_path / "d.extxyz", dtype="float32", shield=True, max_steps=6,
                      eval_every=1)
    cfg["data"].update(valid_fraction=0.25, test_fraction=0.25)
    cfg["heads"]["shield"].update(loss_space="cartesian", weight=0.5)
    summary = train(cfg, tmp_path / "run")
    assert all(np.isfinite(loss) for _, loss in summary["step_losses"])
    assert np.isfinite(summary["test"]["heads"]["shield"]["mae"])
    norm = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["normalisation"]["shield"]
    train_idx = json.loads((tmp_path / "run" / "split.json").read_text())["train"]
    heavy = np.concatenate([frames[i].arrays["shield"][frames[i].numbers > 1] for i in train_idx])
    iso = np.trace(heavy.reshape(-1, 3, 3), axis1=1, axis2=2) / np.sqrt(3)
    assert not norm["per_atom_shift"]
    assert abs(norm["shift"][0]) == pytest.approx(iso.mean(), rel=1e-5)  # labelled atoms only


# ------------------------------------------------------------------------------ checkpoints
def test_save_atomic_keeps_the_old_file_when_a_save_fails(tmp_path):
    path = tmp_path / "last.pt"
    save_atomic({"step": 1, "w": torch.ones(3)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_atomic({"step": 2, "bad": Unpicklable()}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_rng_state_round_trip():
    import random

    state = rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())
    loaded = torch.load(_roundtrip(state), weights_only=True)
    set_rng_state(loaded)
    second = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1]) and first[2] == second[2]


def _roundtrip(obj):
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


def test_worker_processes_batch_the_same_data(tmp_path):
    write_dataset(tmp_path / "d.extxyz", n=10)
    cfg = make_config(tmp_path / "d.extxyz", max_steps=4, batch_size=3)
    alone = train(cfg, tmp_path / "alone")
    cfg["training"]["num_workers"] = 1
    workers = train(cfg, tmp_path / "workers")
    assert workers["step_losses"] == alone["step_losses"]


def test_uncovered_element_refused_before_training_then_skipped(tmp_path, capsys):
    """A model with max_z 53 and a record holding thulium: the run stops before any step, naming
    file, record and element; with on_error: skip the record is left out and listed; the
    default embedding (qc, Z up to 118) trains on it."""
    from tsym.runtime.errors import DataError

    frames = write_dataset(tmp_path / "d.extxyz", n=10)
    frames[6].numbers[0] = 69  # Tm
    write(tmp_path / "d.extxyz", frames, format="extxyz")
    cfg = make_config(tmp_path / "d.extxyz", max_steps=2)
    cfg["model"]["backbone_kwargs"] = {**TINY["backbone_kwargs"], "embedding": "qc", "max_z": 53}
    with pytest.raises(DataError, match="^" + re.escape(f"{tmp_path / 'd.extxyz'}:record 6: atom 0 "
                       "is Tm (Z = 69), an element the model does not cover (Z = 1..53)")):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    assert not (tmp_path / "run" / "last.pt").exists()
    cfg["data"]["on_error"] = "skip"
    train(cfg, tmp_path / "skip")
    assert "skipped 1 (unknown element): records 6; first: record 6: atom 0 is Tm" in \
        capsys.readouterr().err
    split = json.loads((tmp_path / "skip" / "split.json").read_text())
    assert 6 not in [k for frames in split["frames"].values() for k in frames]
    del cfg["data"]["on_error"]
    cfg["model"]["backbone_kwargs"].pop("max_z")  # the default covers H..Og
    summary = train(cfg, tmp_path / "default")
    split = json.loads((tmp_path / "default" / "split.json").read_text())
    assert 6 in [k for frames in split["frames"].values() for k in frames]
    assert summary["steps"] == 2


def test_progress_bar_only_on_a_terminal(tmp_path, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    write_dataset(tmp_path / "d.extxyz", n=8)
    for name, stream in (("log", io.StringIO()), ("tty", Terminal())):
        monkeypatch.setattr(sys, "stderr", stream)
        train(make_config(tmp_path / "d.extxyz", max_steps=2, progress=True), tmp_path / name)
        bar = "train:" in stream.getvalue() or "it/s" in stream.getvalue()
        assert bar == (name == "tty"), (name, stream.getvalue())
