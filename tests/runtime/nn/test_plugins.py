"""Backbones from installed packages (entry-point group ``tsym.backbones``), in process: found
without importing the package first, listed in the unknown-backbone error, reloaded from a
checkpoint."""
from __future__ import annotations

import sys

import pytest
import torch
from ase.build import molecule

import tsym
from tsym.runtime.errors import ModelConfigError, UnknownBackboneError
from tsym.runtime.nn import registry

from .._concat_net import SORTED, ConcatNet
from ._toy_plugin import MODULE, write_plugin

SPEC = "tensor alpha { indices ij; symmetry ij = ji }"


@pytest.fixture
def plugin_on_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(write_plugin(tmp_path / "site", broken=True)))
    yield
    registry.BACKBONES.pop("toy", None)
    sys.modules.pop(MODULE, None)


def test_plugin_backbone_builds_saves_and_reloads(plugin_on_path, tmp_path):
    assert "toy" not in registry.BACKBONES and MODULE not in sys.modules
    assert "toy" in registry.known_backbones()
    model = tsym.build_model(SPEC, backbone="toy", cutoff=3.5, dtype=torch.float64,
                             backbone_kwargs={"width": 3},
                             head_kwargs=dict(hidden_mul=2, mlp_hidden=4))
    assert str(model.irreps_in) == "3x0e+3x1o" and model.cutoff == 3.5
    path = tmp_path / "toy.pt"
    model.save(path)
    registry.BACKBONES.pop("toy")  # as in a fresh process: the checkpoint names the plugin
    again = tsym.build_model(checkpoint=path)
    atoms = [molecule("H2O"), molecule("NH3")]
    assert torch.equal(torch.as_tensor(again.predict(atoms)["alpha"]),
                       torch.as_tensor(model.predict(atoms)["alpha"]))
    assert tsym.check_equivariance(again, atoms).ok


def test_unknown_backbone_lists_plugins_and_the_group(plugin_on_path):
    with pytest.raises(UnknownBackboneError) as info:
        tsym.build_model(SPEC, backbone="no_such_net")
    msg = str(info.value)
    known = msg.split("known backbones: ")[1].split("\n")[0].split(", ")
    assert known == sorted(known) and {"toy", "broken", "xpainn"} <= set(known)
    assert "'tsym.backbones'" in msg and "tsym.register_backbone" in msg


def test_plugin_that_does_not_load(plugin_on_path):
    with pytest.raises(ModelConfigError, match="entry point 'tsym_no_such_module:make' of group "
                                               "'tsym.backbones' does not load"):
        tsym.build_model(SPEC, backbone="broken")


class _SortedConcat(torch.nn.Module):
    """A hand-registered backbone (not wrapped) that declares its layout sorted."""

    def __init__(self, cutoff):
        super().__init__()
        self.net, self.cutoff, self.irreps_out = ConcatNet(), cutoff, SORTED

    def forward(self, graph):
        return {**graph, "node_features": self.net(graph)}


def test_registered_backbone_is_probed_when_built():
    registry.register_backbone("sorted_concat", _SortedConcat)
    try:
        with pytest.raises(ModelConfigError, match=r"^backbone '_SortedConcat': its node features "
                                                   r"do not transform as its irreps_out"):
            tsym.build_model(SPEC, backbone="sorted_concat", cutoff=4.0)
    finally:
        registry.BACKBONES.pop("sorted_concat")


def test_module_passed_to_build_model_is_probed():
    with pytest.raises(ModelConfigError, match=r"^backbone '_SortedConcat': its node features"):
        tsym.build_model(SPEC, backbone=_SortedConcat(4.0))
