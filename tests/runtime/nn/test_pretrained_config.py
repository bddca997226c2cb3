"""What needs no pretrained package: without ``sevenn``, ``backbone="sevenn"`` says how to install
it (the package is hidden from the import system); the training config's ``model.finetune`` and
``optimiser.backbone_lr`` are checked up front."""
from __future__ import annotations

import sys

import pytest

import tsym
from tsym.runtime.errors import ConfigError, ModelConfigError
from tsym.runtime.training.config import TrainConfig

from ...conftest import SPECS_DIR


def test_missing_sevenn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sevenn", None)
    with pytest.raises(ModelConfigError, match=r"^backbone 'sevenn' needs the optional package "
                                               r"of the 'sevenn' extra .*install it with: pip "
                                               r"install -c constraints.txt -e \"\.\[sevenn\]\""):
        tsym.build_model([SPECS_DIR / "dipole.tsym"], backbone="sevenn",
                         backbone_kwargs={"checkpoint": "7net-0"})


def _config(model=None, optimiser=None):
    return TrainConfig.from_dict({"heads": {"mu": {"spec": "tensor mu { indices i }"}},
                                  "data": {"train": "train.extxyz"}, "model": model or {},
                                  "optimiser": optimiser or {}})


def test_finetune_and_backbone_lr_in_the_config():
    assert _config().model.finetune == "full" and _config().optimiser.backbone_lr is None
    assert _config({"finetune": 2}, {"backbone_lr": 1e-4}).model.finetune == 2
    for bad in ("half", -1):
        with pytest.raises(ConfigError, match=r"'finetune' must be full, frozen or the number "
                                              r"of last backbone blocks to train"):
            _config({"finetune": bad})
    with pytest.raises(ConfigError, match=r"'backbone_lr'"):
        _config(optimiser={"backbone_lr": 0.0})
