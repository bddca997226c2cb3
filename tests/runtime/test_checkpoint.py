"""Checkpoints written before the redesign load, and predict what they predicted then.

The fixtures (``tests/fixtures/legacy``, see its README) were written by the code of commit
``e99a671``, with its predictions on three structures.  The same weights run through the same
float32 operations here; only the order of float32 sums may differ (thread count, library build),
so the predictions must agree to the suite's float32 tolerance relative to the largest entry.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ase.io import read

import tsym
from tsym.runtime.model.checkpoint import MODEL_FORMAT, TRAIN_FORMAT, read_model, resolve_checkpoint
from tsym.runtime.errors import CheckpointError
from tsym.runtime.inference.predict import checkpoint_labels, load_model
from tsym.runtime.model import TensorModel, TrainedModel

from ..conftest import TOLERANCES

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"
REL = TOLERANCES[torch.float32]


@pytest.fixture(scope="module")
def legacy():
    structures = read(LEGACY / "structures.extxyz", index=":")
    return structures, dict(np.load(LEGACY / "expected.npz"))


def _assert_same(got: dict, expected: dict, prefix: str) -> None:
    for name in ("alpha", "shield"):
        want = expected[f"{prefix}_{name}"]
        assert got[name].shape == want.shape and got[name].dtype == np.float32
        scale = float(np.abs(want).max())
        np.testing.assert_allclose(got[name], want, rtol=0, atol=REL * scale)


def test_legacy_model_checkpoint_loads_and_predicts_the_same(legacy):
    structures, expected = legacy
    model = tsym.build_model(checkpoint=LEGACY / "model.pt")
    assert isinstance(model, TensorModel) and model.dtype == torch.float32
    assert [p.name for p in model.plans] == ["alpha", "shield"]
    _assert_same(model.predict(structures), expected, "model")
    assert torch.load(LEGACY / "model.pt", weights_only=True)["format"] == MODEL_FORMAT


def test_legacy_training_checkpoint_loads_and_predicts_the_same(legacy):
    structures, expected = legacy
    for model in (tsym.build_model(checkpoint=LEGACY / "best.pt"), load_model(LEGACY)):
        assert isinstance(model, TrainedModel) and not model.training
        _assert_same(model.predict(structures), expected, "trained")
    record = read_model(LEGACY)  # a run directory: best.pt
    assert record.normalisation is not None and set(record.normalisation) == {"alpha", "shield"}
    assert record.config["data"]["valid_fraction"] == 0.25  # the old spelling, still read
    labels = checkpoint_labels(LEGACY)
    assert {n: (s.key, s.level) for n, s in labels.items()} == {
        "alpha": ("alpha", "structure"), "shield": ("shield", "atom")}


def test_one_reader_for_both_formats(tmp_path):
    model = tsym.build_model(checkpoint=LEGACY / "model.pt")
    model.save(tmp_path / "again.pt")
    again = torch.load(tmp_path / "again.pt", weights_only=True)
    old = torch.load(LEGACY / "model.pt", weights_only=True)
    assert sorted(again) == sorted(old) and again["format"] == MODEL_FORMAT
    assert torch.load(LEGACY / "best.pt", weights_only=True)["format"] == TRAIN_FORMAT
    assert resolve_checkpoint(LEGACY) == LEGACY / "best.pt"
    with pytest.raises(CheckpointError, match=r"^.*model\.pt: dtype='float64' disagrees"):
        tsym.build_model(checkpoint=LEGACY / "model.pt", dtype=torch.float64)
    with pytest.raises(CheckpointError, match=r"^.*best\.pt: the specs given"):
        tsym.build_model("tensor d { indices i }", checkpoint=LEGACY / "best.pt")


def test_the_backbone_completes_its_own_saved_kwargs():
    """XPaiNN's knowledge of its weights lives in XPaiNN: a model saved before ``max_z`` was a
    keyword gets it from its element table; a backbone without the hook keeps its kwargs."""
    from tsym.runtime.nn.registry import stored_kwargs

    table = {"node_embedding.table.weight": torch.zeros(54, 8)}
    assert stored_kwargs("xpainn", {"embedding": "onehot"}, table) == {
        "embedding": "onehot", "max_z": 53}
    assert stored_kwargs("xpainn", {"max_z": 20}, table) == {"max_z": 20}
    assert stored_kwargs("nequip", {"a": 1}, table) == {"a": 1}
    assert tsym.build_model(checkpoint=LEGACY / "model.pt").max_z == 53
