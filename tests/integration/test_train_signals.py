"""SIGTERM and Ctrl-C (SIGINT) stop ``tsym train`` politely: ``last.pt`` is written after the
current step, the exit status is 128 + the signal (143, 130), the message says how to resume, and
the resumed run is the uninterrupted one (bitwise: one CPU process, one thread, the same
computations in the same order, as in ``test_train_resume.py``).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from tests.integration.test_train_resume import _equal, _records
from tests.runtime.training.test_train import make_config, write_dataset
from tsym.runtime.training.loop import train

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_saves_a_checkpoint_and_the_resume_is_exact(tmp_path, sig):
    write_dataset(tmp_path / "d.extxyz", n=12, shield=True)
    # epochs of 3 steps; cosine over a long run, so the subprocess is still training when signalled
    cfg = make_config(tmp_path / "d.extxyz", shield=True, max_steps=100000, ema_decay=0.7,
                      grad_clip=1.0)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tsym", "train", str(tmp_path / "cfg.yaml"),
                             "--run-dir", str(run)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        start = time.time()
        while not (run / "last.pt").exists():  # the first evaluation has written a checkpoint
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.time() - start < 120, "no checkpoint after 120 s"
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err[-2000:]
    found = re.search(rf"{re.escape(str(run))}: stopped by {sig.name} after step (\d+); last\.pt "
                      rf"is saved\nhint: resume with: tsym train .*cfg\.yaml --run-dir "
                      rf"{re.escape(str(run))} --resume", err)
    assert found, err[-2000:]
    assert "internal error" not in err and "Traceback" not in err
    step = int(found.group(1))
    assert torch.load(run / "last.pt", weights_only=True)["step"] == step >= 3
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]

    resumed = train(cfg, run, resume=True, stop_after=step + 4)  # mid-epoch stops included
    full = train(cfg, tmp_path / "full", stop_after=step + 4)
    assert resumed["steps"] == full["steps"] == step + 4
    assert resumed["step_losses"] == full["step_losses"][step:]
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(run / "last.pt", weights_only=True)
    for key in ("train_state_dict", "ema", "optimizer", "scheduler", "model", "normalisation",
                "best_valid", "best_step", "rng", "inputs"):
        assert _equal(a[key], b[key]), key
    assert _records(tmp_path / "full") == _records(run)
