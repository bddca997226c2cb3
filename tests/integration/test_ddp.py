"""Two processes (torchrun, gloo on CPU) train like one process with the same global batch.

Both runs use float64, the same config and global batch of 4 structures.  The 9 training
structures make epochs of batches 4, 4, 1: the last batch leaves rank 1 without a structure
(it runs one with zero weight).  An atom-level head with unlabelled atoms checks that the loss
is divided by the *global* number of labelled atoms.  Two L-BFGS refine iterations follow (chunks
of 5 and 4 structures, each split over the ranks): the same line-search steps, the same weights.

Tolerance: the ranks sum their shares in a different order than one process does, so the
results agree to rounding, not bitwise: step losses to 1e-10 relative, parameters after 8 steps to
1e-10 absolute (observed: ~1e-15).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from tests.runtime.training.test_train import make_config, write_dataset
from tsym.runtime.training.loop import train

pytestmark = pytest.mark.slow

_SCRIPT = """
import json, os, sys, torch
torch.set_num_threads(1)
from tsym.runtime.training.loop import train
summary = train(sys.argv[1], sys.argv[2])
if os.environ["RANK"] == "0":
    with open(sys.argv[3], "w") as f:
        json.dump({"step_losses": summary["step_losses"], "valid": summary["valid"],
                   "world_size": summary["world_size"]}, f)
"""


def test_two_processes_match_one(tmp_path):
    write_dataset(tmp_path / "d.extxyz", n=12, shield=True)
    cfg = make_config(tmp_path / "d.extxyz", shield=True, max_steps=8, batch_size=4,
                      ema_decay=0.7, grad_clip=1.0)
    cfg["refine"] = {"iterations": 2, "evaluations": 4, "chunk": 5}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "ddp.py").write_text(_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(tmp_path / "ddp.py"), str(tmp_path / "cfg.yaml"), str(tmp_path / "two"),
         str(tmp_path / "two.json")],
        env=env, capture_output=True, text=True, timeout=120)
    errors = [ln for ln in proc.stderr.splitlines() if "Error" in ln or "error" in ln]
    assert proc.returncode == 0, "\n".join(errors[-20:]) + proc.stderr[-1500:]
    two = json.loads((tmp_path / "two.json").read_text())
    assert two["world_size"] == 2

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = train(str(tmp_path / "cfg.yaml"), tmp_path / "one")
    finally:
        torch.set_num_threads(old)
    assert one["world_size"] == 1
    assert [s for s, _ in two["step_losses"]] == [s for s, _ in one["step_losses"]]
    for (_, a), (_, b) in zip(one["step_losses"], two["step_losses"]):
        assert a == pytest.approx(b, rel=1e-10)
    assert two["valid"]["loss"] == pytest.approx(one["valid"]["loss"], rel=1e-10)
    for name in ("alpha", "shield"):
        assert two["valid"]["heads"][name]["mae"] == pytest.approx(
            one["valid"]["heads"][name]["mae"], rel=1e-10)
    a = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "last.pt", weights_only=True)
    assert b["world_size"] == 2
    for key in ("train_state_dict", "ema"):
        for name, value in a[key].items():
            assert torch.allclose(value, b[key][name], rtol=0, atol=1e-10), (key, name)
    # only rank 0 wrote: one line per record, as in the single-process run
    lines = lambda run: (run / "metrics.jsonl").read_text().splitlines()  # noqa: E731
    assert len(lines(tmp_path / "two")) == len(lines(tmp_path / "one"))
    refined = [[json.loads(ln) for ln in lines(tmp_path / run) if '"refine"' in ln]
               for run in ("one", "two")]
    assert [r["iteration"] for r in refined[1]] == [r["iteration"] for r in refined[0]] == [1, 2]
    for a, b in zip(*refined):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-10)
        assert b["valid_loss"] == pytest.approx(a["valid_loss"], rel=1e-10)
