"""A run directory is one run: a lock keeps a second training out, and a resume refuses inputs
(data records, split, specs, config) that differ from those the run started with.

The refusal must name what differs; the messages are pinned from their start.  Signals (SIGTERM,
Ctrl-C) are in ``tests/integration/test_train_signals.py``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from ase import Atoms
from ase.io import read, write

from tests.runtime.training.test_train import make_config, write_dataset
from tsym.cli import main
from tsym.runtime.data.dataset import Record
from tsym.runtime.errors import TrainError
from tsym.runtime.training import setup
from tsym.runtime.training.guard import RunLock, fingerprint_changes, record_digest
from tsym.runtime.training.loop import train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def started(tmp_path):
    """A run stopped after step 2 of 6 (a spec file, so that the spec can be edited)."""
    (tmp_path / "alpha.tsym").write_text("tensor alpha { indices ij; symmetry ij = ji; pool sum }")
    write_dataset(tmp_path / "d.extxyz", n=12)
    cfg = make_config(tmp_path / "d.extxyz")
    cfg["heads"]["alpha"]["spec"] = str(tmp_path / "alpha.tsym")
    assert train(cfg, tmp_path / "run", stop_after=2)["steps"] == 2
    return tmp_path, cfg


def refused(cfg, run, pattern: str) -> None:
    with pytest.raises(TrainError, match=r"^<dict>: cannot resume .*last\.pt: " + pattern):
        train(cfg, run, resume=True)


def test_resume_refuses_doubled_labels(started):
    tmp, cfg = started
    write_dataset(tmp / "d.extxyz", n=12, scale_from=5, scale=2.0)  # records 5.. doubled
    refused(cfg, tmp / "run", r"data: .*d\.extxyz:record 5 differs from the run's start "
                              r"\(positions, cell or labels; 7 record\(s\) differ\)")


def test_resume_refuses_removed_records(started):
    tmp, cfg = started
    write_dataset(tmp / "d.extxyz", n=10)
    refused(cfg, tmp / "run", r"data: .*d\.extxyz \(train\) has 10 records, the run started "
                              r"with 12 \(record 10 is gone\)")


def test_resume_refuses_moved_positions(started):
    tmp, cfg = started
    frames = read(tmp / "d.extxyz", index=":")
    frames[3].positions[0, 0] += 1e-6
    write(tmp / "d.extxyz", frames, format="extxyz")
    refused(cfg, tmp / "run", r"data: .*d\.extxyz:record 3 differs")


def test_resume_refuses_an_edited_spec(started):
    tmp, cfg = started
    (tmp / "alpha.tsym").write_text("tensor alpha { indices ij; symmetry ij = ji; pool mean }")
    refused(cfg, tmp / "run", r"spec: head 'alpha' pool was 'sum', now 'mean'$")


def test_resume_refuses_another_split(started, monkeypatch):
    """The same records, split otherwise (e.g. another version of the split function)."""
    tmp, cfg = started
    real = setup.split

    def other_split(n, fractions, seed, **kwargs):
        return real(n, fractions, seed + 1, **kwargs)

    monkeypatch.setattr(setup, "split", other_split)
    refused(cfg, tmp / "run", r"split: the train split is not the one the run started with "
                              r"\(9 records then, 9 now\)")


@pytest.mark.parametrize("key, value, pattern", [
    ("split_seed", 1, r"data\.split_seed was 0, now 1$"),
    ("valid_fraction", 0.5, r"data\.valid_fraction was 0\.25, now 0\.5$"),
])
def test_resume_refuses_another_config(started, key, value, pattern):
    tmp, cfg = started
    cfg["data"][key] = value
    refused(cfg, tmp / "run", pattern)


def test_resume_refusal_through_the_cli(started, capsys):
    tmp, cfg = started
    (tmp / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    write_dataset(tmp / "d.extxyz", n=11)
    code = main(["train", str(tmp / "cfg.yaml"), "--run-dir", str(tmp / "run"), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "internal error" not in err
    assert err.startswith(f"{tmp / 'cfg.yaml'}: cannot resume {tmp / 'run' / 'last.pt'}: data: ")


def test_resume_with_the_same_inputs_goes_on(started):
    tmp, cfg = started
    write_dataset(tmp / "d.extxyz", n=12)  # rewritten, the same content
    assert train(cfg, tmp / "run", resume=True)["steps"] == 6


def test_record_digest_sees_every_field():
    """Positions, numbers, cell, pbc, labels and masks each change the digest."""
    def rec(**change):
        atoms = Atoms("OH2", positions=[[0, 0, 0], [1, 0, 0], [0, 1, 0]], cell=np.eye(3) * 5)
        fields = {"labels": {"a": np.ones((3, 3))}, "masks": {"a": np.ones(3, bool)}}
        for key, value in change.items():
            if key in fields:
                fields[key] = value
            else:
                setattr(atoms, key, value)
        return Record(atoms, fields["labels"], fields["masks"], 0)

    base = record_digest(rec())
    assert record_digest(rec()) == base
    changed = [rec(positions=[[0, 0, 0], [1, 0, 0], [0, 1, 1e-9]]), rec(numbers=[8, 1, 3]),
               rec(cell=np.eye(3) * 6), rec(pbc=True), rec(labels={"a": np.full((3, 3), 2.0)}),
               rec(masks={"a": np.array([True, False, True])})]
    assert len({record_digest(r) for r in changed} | {base}) == len(changed) + 1


def test_fingerprint_changes_lists_every_difference(started):
    tmp, _ = started
    old = torch.load(tmp / "run" / "last.pt", weights_only=True)["inputs"]
    assert fingerprint_changes(old, old) == []
    data = {role: dict(entry) for role, entry in old["data"].items()}
    data["train"]["digests"] = data["train"]["digests"].clone()
    data["train"]["digests"][4] += 1
    new = {**old, "data": data, "spec": {"alpha": "0" * 64, "beta": "1" * 64}}
    assert fingerprint_changes(old, new) == [
        f"data: {tmp / 'd.extxyz'}:record 4 differs from the run's start (positions, cell or "
        "labels; 1 record(s) differ)",
        "spec: head 'alpha' compiles to another canonical spec than at the run's start",
        "spec: head 'beta' is new"]


# ------------------------------------------------------------------------------------- the lock
def test_second_training_in_the_same_folder_is_refused(tmp_path, capsys):
    write_dataset(tmp_path / "d.extxyz", n=12)
    cfg = make_config(tmp_path / "d.extxyz", max_steps=1)
    cfg["schedule"]["warmup_steps"] = 1
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    with RunLock(tmp_path / "run"):  # the first training, still running
        code = main(["train", str(tmp_path / "cfg.yaml"), "--run-dir", str(tmp_path / "run")])
        err = capsys.readouterr().err
        assert code == 2
        assert err.startswith(f"{tmp_path / 'run'}: another training is using this run "
                              f"directory (pid {os.getpid()}, started ")
        assert not (tmp_path / "run" / "metrics.jsonl").exists()
    assert train(cfg, tmp_path / "run")["steps"] == 1  # free once the first has ended


def test_lock_of_a_killed_training_does_not_block(tmp_path):
    """flock belongs to the process: SIGKILL releases it, the lock file left behind is harmless."""
    write_dataset(tmp_path / "d.extxyz", n=12)
    cfg = make_config(tmp_path / "d.extxyz", max_steps=1)
    cfg["schedule"]["warmup_steps"] = 1
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from tsym.runtime.training.guard import RunLock\n"
         f"RunLock({str(tmp_path / 'run')!r}).__enter__(); print('locked', flush=True); "
         "time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(TrainError, match="another training is using this run directory"):
            train(cfg, tmp_path / "run")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / "run" / ".lock").exists()
    assert train(cfg, tmp_path / "run")["steps"] == 1
