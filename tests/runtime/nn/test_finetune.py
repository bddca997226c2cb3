"""Fine-tuning modes on SevenNet-0: frozen (cached features), the last N blocks, full; a separate
backbone learning rate.  Skipped, with the install command, where the ``sevenn`` extra is absent.
"""
from __future__ import annotations

import copy

import pytest
import torch
from ase.build import bulk, molecule

import tsym
from tsym.runtime import keys
from tsym.runtime.errors import ModelConfigError
from tsym.runtime.graph import collate
from tsym.runtime.nn.extras import INSTALL
from tsym.runtime.nn.finetune import (FrozenBackbone, apply_finetune, backbone_blocks,
                                      check_finetune, parameter_groups)

from ...conftest import SPECS_DIR

pytest.importorskip("sevenn", reason=f"the 'sevenn' extra is not installed: {INSTALL['sevenn']}")

_BUILT: dict = {}


@pytest.fixture
def model():
    """A fresh copy of one dipole model on SevenNet-0 (built once: ~5 s)."""
    if "m" not in _BUILT:
        _BUILT["m"] = tsym.build_model([SPECS_DIR / "dipole.tsym"], backbone="sevenn",
                                       backbone_kwargs={"checkpoint": "7net-0"},
                                       head_kwargs=dict(hidden_mul=2, mlp_hidden=4))
    return copy.deepcopy(_BUILT["m"])


def _structures():
    mol = molecule("CH3OH")
    crystal = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
    crystal.rattle(0.1, seed=2)
    return [mol, crystal]


def _step(model, groups):
    """One AdamW step on the sum of squared outputs; parameters before and after, by name."""
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    out = model(collate(_structures(), model.cutoff, torch.float32))
    sum((v ** 2).sum() for v in out.values()).backward()
    opt.step()
    return before, dict(model.named_parameters())


def test_frozen_cache_equals_uncached_and_is_used(model):
    graph = collate(_structures(), model.cutoff, torch.float32)
    with torch.no_grad():
        plain = model(graph)["dipole"]
    apply_finetune(model, "frozen")
    assert isinstance(model.backbone, FrozenBackbone)
    calls = []
    model.backbone.frozen.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        first, second = model(graph)["dipole"], model(graph)["dipole"]
    assert torch.equal(first, plain) and torch.equal(second, plain)
    assert len(calls) == 1 and len(model.backbone.cache) == 2  # two structures, one pass
    one = collate(_structures()[1:], model.cutoff, torch.float32)  # a batch of cached ones
    with torch.no_grad():
        again = model(one)["dipole"]
    assert len(calls) == 1  # served from the cache
    # the same features through the head in a batch of another size: the head's float32 sums
    # may round in another order (a few ulps of the largest entry)
    bound = 16 * torch.finfo(torch.float32).eps * float(plain.abs().max())
    assert float((again - plain[1:]).abs().max()) <= bound


def test_frozen_state_dict_is_that_of_the_plain_model(model):
    keys_plain = list(model.state_dict())
    apply_finetune(model, "frozen")
    assert list(model.state_dict()) == keys_plain
    fresh = copy.deepcopy(_BUILT["m"])
    apply_finetune(fresh, "frozen")
    fresh.load_state_dict(model.state_dict())
    fresh.load_state_dict(copy.deepcopy(_BUILT["m"]).state_dict())  # and from an unfrozen one


def test_last_block_trains_the_rest_stays(model):
    apply_finetune(model, 1)
    blocks = backbone_blocks(model.backbone)
    assert len(blocks) == 4  # SevenNet-0: blocks 0..3 up to its features
    trainable = {id(p) for p in blocks[-1]}
    groups = parameter_groups(model, lr=1e-2, backbone_lr=1e-4)
    assert [g["lr"] for g in groups] == [1e-2, 1e-4]
    assert {id(p) for p in groups[1]["params"]} == trainable
    before, after = _step(model, groups)
    in_backbone = {n for n, p in model.named_parameters() if n.startswith("backbone.")}
    for name, p in after.items():
        changed = not torch.equal(before[name], p.detach())
        if name in in_backbone:
            assert changed == (id(p) in trainable and p.grad is not None
                               and bool(p.grad.abs().sum() > 0)), name
            if id(p) not in trainable:
                assert not changed, f"{name} is frozen but changed"
    assert any(not torch.equal(before[n], after[n]) for n in in_backbone)  # block 3 moved
    assert any(not torch.equal(before[n], after[n]) for n in after if n.startswith("heads."))


def test_frozen_step_changes_only_the_heads(model):
    apply_finetune(model, "frozen")
    groups = parameter_groups(model, lr=1e-2, backbone_lr=1e-3)
    assert len(groups) == 1  # no backbone group: nothing of it trains
    assert len(parameter_groups(model, 1e-2, None)[0]["params"]) == len(list(model.parameters()))
    before, after = _step(model, groups)
    for name, p in after.items():
        assert torch.equal(before[name], p.detach()) == (not name.startswith("heads.")), name


def test_bad_modes_are_refused(model):
    for bad in ("some", -1, 1.5, True):
        with pytest.raises(ModelConfigError, match=r"^finetune must be 'full', 'frozen' or the "
                                                   r"number of last blocks"):
            check_finetune(bad)
    with pytest.raises(ModelConfigError, match=r"^finetune: 9 last blocks, but the backbone "
                                               r"has 4"):
        apply_finetune(model, 9)
    feats = model.backbone(collate(_structures(), model.cutoff, torch.float32))
    assert feats[keys.NODE_FEATURES].shape[1] == model.backbone.irreps_out.dim
