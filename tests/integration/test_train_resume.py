"""Exact resume and kill safety of ``tsym train``.

* N steps uninterrupted vs N/2 (stopped mid-epoch) + resume + N/2: the step losses, parameters,
  EMA, optimiser and scheduler states and ``metrics.jsonl`` are **bitwise** identical (one CPU
  process, one thread), in float64 (cosine schedule) and float32 (plateau schedule).
* A training subprocess that writes ``last.pt`` every step is SIGKILLed at random times, and once
  in the middle of writing a checkpoint; every time, the checkpoint files that exist load with
  ``torch.load(weights_only=True)``, and the run resumes from them.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from tests.runtime.training.test_train import make_config, write_dataset
from tsym.runtime.training.loop import train

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def _records(run):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "time"} for line in lines]


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("dtype, schedule", [
    ("float64", {"kind": "cosine", "warmup_steps": 2}),
    ("float32", {"kind": "plateau", "warmup_steps": 2, "factor": 0.5, "patience": 0}),
])
def test_resume_gives_the_uninterrupted_run(tmp_path, dtype, schedule):
    write_dataset(tmp_path / "d.extxyz", n=12, shield=True)
    # 9 training structures, batch 4: epochs of 3 steps (4, 4, 1); stop at step 5, mid-epoch
    cfg = make_config(tmp_path / "d.extxyz", dtype=dtype, shield=True, max_steps=10,
                      ema_decay=0.7, grad_clip=1.0)
    cfg["schedule"] = schedule
    full = train(cfg, tmp_path / "full")
    first = train(cfg, tmp_path / "split", stop_after=5)
    assert first["steps"] == 5 and not first["finished"]
    second = train(cfg, tmp_path / "split", resume=True)
    assert second["finished"] and second["steps"] == 10
    assert first["step_losses"] + second["step_losses"] == full["step_losses"]
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    for key in ("train_state_dict", "ema", "optimizer", "scheduler", "model", "normalisation",
                "best_valid", "best_step"):
        assert _equal(a[key], b[key]), key
    assert _records(tmp_path / "full") == _records(tmp_path / "split")
    assert second["valid"] == full["valid"]


_SCRIPT = """
import os, sys, torch
torch.set_num_threads(1)
cfg, run, mode = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "hang":  # write half a checkpoint, then wait to be killed
    import tsym.runtime.model.checkpoint as ck
    real = torch.save
    def slow_save(obj, f, *a, **k):
        import io
        buf = io.BytesIO(); real(obj, buf, *a, **k)
        data = buf.getvalue(); f.write(data[: len(data) // 2]); f.flush()
        open(os.path.join(run, "HALF_WRITTEN"), "w").close()
        import time; time.sleep(60)
    ck.torch.save = slow_save
from tsym.runtime.training.loop import train
train(cfg, run, resume=os.path.exists(os.path.join(run, "last.pt")))
"""


def _start(tmp_path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(tmp_path / "run_train.py"),
                             str(tmp_path / "cfg.yaml"), str(tmp_path / "run"), mode],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for(path, proc, timeout=90.0) -> None:
    start = time.time()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"training exited early: {proc.stderr.read().decode()[-2000:]}")
        if time.time() - start > timeout:
            raise AssertionError(f"{path} did not appear in {timeout} s")
        time.sleep(0.05)


def _check_loadable(run) -> int:
    """Load every checkpoint that exists; return last.pt's step."""
    step = -1
    for name in ("best.pt", "last.pt"):
        if (run / name).exists():
            ckpt = torch.load(run / name, weights_only=True)
            assert ckpt["format"] == "tsym-train/1"
            if name == "last.pt":
                step = ckpt["step"]
    return step


def test_sigkill_never_leaves_an_unreadable_checkpoint(tmp_path):
    write_dataset(tmp_path / "d.extxyz", n=12)
    cfg = make_config(tmp_path / "d.extxyz", max_steps=100000, checkpoint_every=1, log_every=0)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "run_train.py").write_text(_SCRIPT)
    run, rng, steps = tmp_path / "run", random.Random(0), []
    for _ in range(3):  # kills at random moments of training (checkpoints every step)
        before = _check_loadable(run)
        proc = _start(tmp_path, "train")
        _wait_for(run / "last.pt", proc)
        while _check_loadable(run) <= before:  # this process has written a checkpoint
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        steps.append(_check_loadable(run))
    assert steps == sorted(steps) and steps[-1] > steps[0]  # each run resumed and went on
    proc = _start(tmp_path, "hang")  # killed in the middle of writing a checkpoint
    _wait_for(run / "HALF_WRITTEN", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    temps = [p for p in run.iterdir() if p.name.endswith(".tmp")]
    assert temps, "the half-written temp file should be left behind"
    assert _check_loadable(run) >= steps[-1]
    last = _check_loadable(run)
    summary = train(cfg, run, resume=True, stop_after=last + 1)
    assert summary["steps"] == last + 1
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]  # stale temps removed
