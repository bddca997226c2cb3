"""A run written before the model code moved into ``runtime/model/`` (issue 22) still works.

``tests/fixtures/pre_house`` (see its README) holds a ``tsym train`` run of commit ``480ce7f``
and what ``tsym eval`` and ``tsym predict`` printed and wrote for it then.  The same weights run
through the same float32 operations here: only the order of float32 sums may differ, so numbers
agree to the suite's float32 tolerance relative to the largest of their kind.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.io import read

from tsym.cli import main

from ...conftest import TOLERANCES

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "pre_house"
REL = TOLERANCES[torch.float32]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def run(tmp_path):
    """A copy of the fixture (eval writes beside the run by default)."""
    shutil.copytree(FIXTURE, tmp_path / "pre_house")
    return tmp_path / "pre_house"


def _numbers(value, path=""):
    """``{path: float}`` of every number in a JSON tree."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _numbers(item, f"{path}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _numbers(item, f"{path}/{i}").items()}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {path: float(value)}
    return {}


def test_eval_of_an_old_run_gives_the_same_metrics(run, capsys):
    assert main(["eval", str(run / "run"), str(run / "data.extxyz"), "-o", str(run / "ev"),
                 "--no-plots"]) == 0
    got = json.loads((run / "ev" / "metrics.json").read_text())
    want = json.loads((FIXTURE / "expected_metrics.json").read_text())
    assert sorted(got["heads"]) == sorted(want["heads"]) == ["alpha", "shield"]
    got_n, want_n = _numbers(got), _numbers(want)
    assert got_n.keys() == want_n.keys()
    scale = max(abs(v) for v in want_n.values())
    for key, value in want_n.items():
        assert abs(got_n[key] - value) <= 10 * REL * scale, key


def test_predict_of_an_old_run_writes_the_same_tensors(run):
    out = run / "pred.extxyz"
    assert main(["predict", str(run / "run"), str(run / "data.extxyz"), "-o", str(out),
                 "--no-progress", "--overwrite-labels"]) == 0  # as the old code wrote them
    got, want = read(out, index=":"), read(FIXTURE / "expected_predict.extxyz", index=":")
    assert len(got) == len(want) == 8
    alpha = np.stack([a.info["alpha"] for a in want])
    shield = np.concatenate([a.arrays["shield"] for a in want])
    np.testing.assert_allclose(np.stack([a.info["alpha"] for a in got]), alpha, rtol=0,
                               atol=10 * REL * np.abs(alpha).max())
    np.testing.assert_allclose(np.concatenate([a.arrays["shield"] for a in got]), shield,
                               rtol=0, atol=10 * REL * np.abs(shield).max())
