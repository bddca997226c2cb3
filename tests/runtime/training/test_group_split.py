"""``data.group_by``: a split that keeps every group (a molecule's copies) in one part."""
from __future__ import annotations

import pytest
import torch

from tsym.cli.demo import demo_config, demo_data_path
from tsym.runtime.data.split import split
from tsym.runtime.errors import ConfigError, DataError
from tsym.runtime.training.config import TrainConfig
from tsym.runtime.training.setup import plans_for, load_splits


def test_grouped_split_keeps_groups_whole_and_sizes_close():
    groups = [f"g{i // 5}" for i in range(100)] + ["h"] * 3  # 20 groups of 5, one of 3
    parts = split(103, (0.8, 0.1, 0.1), seed=3, groups=groups)
    assert sorted(sum(parts.values(), [])) == list(range(103))
    owner = {}
    for name, idx in parts.items():
        for i in idx:
            assert owner.setdefault(groups[i], name) == name  # a group never straddles parts
    # each part is dealt whole groups until it reaches its target, so it overshoots by less
    # than one group (5 items)
    assert 82 <= len(parts["train"]) < 82 + 5 and 10 <= len(parts["valid"]) < 10 + 5
    assert parts == split(103, (0.8, 0.1, 0.1), seed=3, groups=groups)
    assert parts != split(103, (0.8, 0.1, 0.1), seed=4, groups=groups)
    with pytest.raises(ValueError, match="one entry per item"):
        split(10, groups=["a"] * 9)


def _demo_cfg(**data):
    raw = demo_config(epochs=1)
    raw["data"].update(data)
    return TrainConfig.from_dict(raw)


def test_group_by_name_keeps_every_demo_molecule_in_one_split():
    cfg = _demo_cfg()
    assert cfg.data.group_by == "name"  # the demo's own split
    plans = plans_for(cfg)
    graphs, info = load_splits(cfg, plans, torch.float64, verbose=False)
    from ase.io import read

    names = [a.info["name"] for a in read(demo_data_path(), ":")]
    seen = {}
    for part, frames in info.meta["frames"].items():
        for i in frames:
            assert seen.setdefault(names[i], part) == part, names[i]
    assert {p for p in seen.values()} == {"train", "valid", "test"}
    assert info.meta["group_by"] == "name"
    # without group_by the random split puts copies of one molecule in train and test
    _, plain = load_splits(_demo_cfg(group_by=None), plans, torch.float64, verbose=False)
    train = {names[i] for i in plain.meta["frames"]["train"]}
    assert any(names[i] in train for i in plain.meta["frames"]["test"])


def test_group_by_missing_key_names_file_and_record():
    cfg = _demo_cfg(group_by="no_such_key")
    with pytest.raises(DataError, match=r"demo_molecules\.extxyz:record \d+: data\.group_by"):
        load_splits(cfg, plans_for(cfg), torch.float64, verbose=False)
    with pytest.raises(ConfigError, match="group_by"):
        _demo_cfg(group_by=3)
