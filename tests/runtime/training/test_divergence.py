"""Non-finite numbers: a diverging run stops with a clear error, keeps its last good checkpoint,
writes valid JSON; predict, eval and export refuse non-finite weights; float32 overflow in labels.

Divergence is forced three ways, each on the tiny model of ``test_train``: a learning rate of
1e30 (the first AdamW step moves every weight by ~lr, the next forward overflows float32), a loss
replaced by NaN at one step for one head, and a parameter set to NaN after one update.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from ase.io import read, write

import tsym
from tsym.cli import main
from tsym.runtime.model.checkpoint import read_training, save_atomic
from tsym.runtime.errors import DataError, DivergedError, NonFiniteWeightsError
from tsym.runtime.inference.predict import load_model
from tsym.runtime.training.loop import train
from tsym.runtime.training.losses import HeadLoss

from ..inference.test_predict import BACKBONE, CUTOFF, HEADS, SPECS
from ..inference.test_predict_stream import molecules
from .test_train import make_config, write_dataset

pytestmark = pytest.mark.usefixtures("one_thread")


def _strict_json(line: str):
    """``json.loads`` that refuses NaN and Infinity (not JSON)."""
    def refuse(token):
        raise ValueError(f"not JSON: {token}")
    return json.loads(line, parse_constant=refuse)


def _cli(argv) -> int:
    return main(argv)


def _finite_state(ckpt: dict) -> bool:
    tensors = list(ckpt["train_state_dict"].values()) + list(ckpt["model"]["state_dict"].values())
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def test_huge_lr_stops_at_the_first_nonfinite_loss(tmp_path, capsys):
    write_dataset(tmp_path / "d.extxyz", n=8)
    cfg = make_config(tmp_path / "d.extxyz", dtype="float32", max_steps=6, checkpoint_every=1,
                      grad_clip=None)
    cfg["optimiser"]["lr"] = 1e30
    cfg["schedule"]["warmup_steps"] = 0
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code = _cli(["train", str(path), "--run-dir", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert code == 2
    assert "finished" not in out and "internal error" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    run = tmp_path / "run"
    assert lines[0].startswith(f"{run}: training diverged at step ")
    step = int(lines[0].split("at step ")[1].split(":")[0])
    assert step >= 2  # the first step starts from finite weights and a finite loss
    assert "head 'alpha' is not finite" in lines[0] or "parameters became non-finite" in lines[0]
    assert f"last good checkpoint kept, not overwritten: {run / 'last.pt'} (step {step - 1})" \
        in lines[0]
    last = read_training(run / "last.pt")
    assert last["step"] == step - 1 and _finite_state(last)
    records = [_strict_json(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["kind"] == "diverged" and records[-1]["step"] == step
    assert all(r["step"] < step for r in records[:-1])


def test_nan_loss_of_one_head_is_named_and_nothing_is_overwritten(tmp_path, monkeypatch):
    write_dataset(tmp_path / "d.extxyz", n=8, shield=True)
    calls = {"shield": 0}
    original = HeadLoss.__call__

    def planted(self, pred, label, n_atoms=None):
        value = original(self, pred, label, n_atoms)
        if self.plan.name == "shield" and torch.is_grad_enabled():
            calls["shield"] += 1
            if calls["shield"] == 4:  # the training loss of optimiser step 4
                return value * float("nan")
        return value

    monkeypatch.setattr(HeadLoss, "__call__", planted)
    run = tmp_path / "run"
    with pytest.raises(DivergedError, match=r"^" + str(run).replace("\\", "\\\\") +
                       r": training diverged at step 4: the training loss of head 'shield' is "
                       r"not finite \(alpha [0-9.e+-]+, shield nan\); last good checkpoint kept"
                       ) as info:
        train(make_config(tmp_path / "d.extxyz", shield=True, max_steps=8, checkpoint_every=1),
              run)
    assert info.value.step == 4 and info.value.heads == ("shield",)
    assert info.value.kept["last.pt"] == 3
    last = read_training(run / "last.pt")
    assert last["step"] == 3 and _finite_state(last)
    if (run / "best.pt").exists():
        assert _finite_state(read_training(run / "best.pt"))


def test_nonfinite_parameter_after_an_update_stops_the_run(tmp_path, monkeypatch):
    write_dataset(tmp_path / "d.extxyz", n=8)
    step = {"n": 0}
    original = torch.optim.AdamW.step

    def poisoned(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        step["n"] += 1
        if step["n"] == 2:
            with torch.no_grad():
                self.param_groups[0]["params"][0].view(-1)[0] = float("inf")
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", poisoned)
    with pytest.raises(DivergedError, match=r"training diverged at step 2: parameters became "
                       r"non-finite after the update \(\S+; losses alpha [0-9.e+-]+\); no "
                       r"checkpoint was written before it") as info:
        train(make_config(tmp_path / "d.extxyz", max_steps=6), tmp_path / "run")
    assert info.value.heads == () and info.value.kept == {}
    assert not (tmp_path / "run" / "last.pt").exists()


def _poison(path, nan_name=None):
    """Copy of the training checkpoint ``path`` with one weight set to NaN."""
    ckpt = torch.load(path, weights_only=True)
    state = ckpt["model"]["state_dict"]
    name = nan_name or next(k for k, v in state.items() if v.is_floating_point() and v.numel())
    state[name] = state[name].clone()
    state[name].view(-1)[0] = float("nan")
    return ckpt, name


def test_predict_eval_export_refuse_nonfinite_weights(tmp_path, capsys):
    write_dataset(tmp_path / "d.extxyz", n=8)
    train(make_config(tmp_path / "d.extxyz", max_steps=2), tmp_path / "run")
    good = tmp_path / "run" / "last.pt"
    ckpt, name = _poison(good)
    bad = tmp_path / "bad.pt"
    save_atomic(ckpt, bad)
    load_model(good)  # the finite one loads
    with pytest.raises(NonFiniteWeightsError, match=r"^" + str(bad).replace("\\", "\\\\") +
                       r": the model's weights are not finite \(1 NaN/inf values in "
                       r"(model\.)?" + name):
        load_model(bad)
    frames = read(tmp_path / "d.extxyz", index=":")
    write(tmp_path / "s.extxyz", frames)
    for argv in (["predict", str(bad), str(tmp_path / "s.extxyz"), "-o", str(tmp_path / "p.xyz")],
                 ["eval", str(bad), str(tmp_path / "d.extxyz"), "--no-plots", "-o",
                  str(tmp_path / "ev")],
                 ["export", str(bad), "-o", str(tmp_path / "m.pt")]):
        assert _cli(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"{bad}: the model's weights are not finite"), err
        assert len(err.splitlines()) == 1
    assert not (tmp_path / "p.xyz").exists() and not (tmp_path / "m.pt").exists()


def test_training_summary_and_eval_json_are_valid_json(tmp_path, capsys):
    write_dataset(tmp_path / "d.extxyz", n=8)
    cfg = make_config(tmp_path / "d.extxyz", max_steps=2)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert _cli(["train", str(path), "--run-dir", str(tmp_path / "run")]) == 0
    summary = _strict_json(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["finished"] is True
    for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines():
        _strict_json(line)
    assert _cli(["eval", str(tmp_path / "run"), str(tmp_path / "d.extxyz"), "--no-plots",
                 "-o", str(tmp_path / "ev")]) == 0
    _strict_json((tmp_path / "ev" / "metrics.json").read_text())


def test_float32_training_refuses_labels_that_overflow(tmp_path):
    frames = write_dataset(tmp_path / "d.extxyz", n=8)
    frames[5].info["alpha"] = np.full(9, 1e39)
    write(tmp_path / "d.extxyz", frames, format="extxyz")
    with pytest.raises(DataError, match=r"d\.extxyz:record 5: label 'alpha': value 1e\+39 "
                                        r"\(after scale 1\) overflows the model's float type"):
        train(make_config(tmp_path / "d.extxyz", dtype="float32", max_steps=2), tmp_path / "r")
    run = tmp_path / "r"  # refused before any step: at most the run lock was made
    assert not run.exists() or {p.name for p in run.iterdir()} <= {".lock"}
    train(make_config(tmp_path / "d.extxyz", dtype="float64", max_steps=2), tmp_path / "r64")


def test_nonfinite_predictions_are_refused_with_the_record(tmp_path, capsys):
    """Finite weights that overflow float32 (each scaled by 1e30) predict inf/NaN: refused."""
    model = tsym.build_model(SPECS, cutoff=CUTOFF, dtype=torch.float32, seed=3,
                             backbone_kwargs=BACKBONE, head_kwargs=HEADS)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1e30)
    model.save(tmp_path / "m.pt")
    write(tmp_path / "s.extxyz", molecules(5))
    assert _cli(["predict", str(tmp_path / "m.pt"), str(tmp_path / "s.extxyz"), "-o",
                 str(tmp_path / "p.extxyz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{tmp_path / 's.extxyz'}:record 0: the prediction of head "), err
    assert "is not finite" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "p.extxyz").exists()
