"""``tsym.backbone_from_module``: a user's network (module or function) as a backbone, checked
when it is wrapped (graph fields, width, transformation) and when the model is built (heads
against its irreps); errors name the backbone and the irreps."""
from __future__ import annotations

import re

import pytest
import torch
from ase.build import molecule

import tsym
from tsym.runtime import keys
from tsym.runtime.errors import ModelConfigError
from tsym.runtime.inference.export import _Backbone
from tsym.runtime.nn.wrap import ModuleBackbone, check_backbone_contract

from .._concat_net import LAYOUT, SORTED, ConcatNet
from ...conftest import TOLERANCES, default_dtype

SPEC = "tensor alpha { indices ij; symmetry ij = ji }"


def pair_features(graph):  # 1x0e+1x1o per atom (molecules: no image shifts)
    src, dst = graph[keys.EDGE_INDEX]
    vec = graph[keys.POSITIONS][src] - graph[keys.POSITIONS][dst]  # [E, 3]
    f = torch.cat([vec.norm(dim=1, keepdim=True), vec], dim=1)  # [E, 4]
    return torch.zeros(len(graph[keys.POSITIONS]), 4, dtype=f.dtype).index_add(0, dst, f)


def test_contract_keys_are_what_export_passes():
    names = _Backbone.forward.__code__.co_varnames[1:_Backbone.forward.__code__.co_argcount]
    assert tuple(names) == keys.BACKBONE_INPUTS


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_function_backbone_builds_predicts_and_is_equivariant(dtype):
    backbone = tsym.backbone_from_module(pair_features, "1x0e+1x1o", cutoff=4.0)
    assert isinstance(backbone, ModuleBackbone) and backbone.name == "pair_features"
    model = tsym.build_model(SPEC, backbone=backbone, dtype=dtype,
                             head_kwargs=dict(hidden_mul=2, mlp_hidden=4))
    out = model.predict([molecule("H2O"), molecule("CH4")])["alpha"]
    assert out.shape == (2, 3, 3) and out.dtype == {torch.float32: "float32",
                                                    torch.float64: "float64"}[dtype]
    # the probe check's own measure; float32: sqrt(eps), the threshold it enforces
    error = check_backbone_contract(backbone, dtype=dtype)
    assert error <= (TOLERANCES[torch.float64] if dtype == torch.float64
                     else float(torch.finfo(dtype).eps) ** 0.5)
    with pytest.raises(ModelConfigError, match="register"):
        model.save("never.pt")


def test_module_parameters_train_with_the_model():
    torch.manual_seed(0)
    net = ConcatNet()
    model = tsym.build_model(SPEC, backbone=tsym.backbone_from_module(net, LAYOUT, cutoff=4.0))
    own = {id(p) for p in net.parameters()}
    assert own and own <= {id(p) for p in model.parameters()}


def test_sorted_layout_is_refused_when_wrapped():
    torch.manual_seed(0)
    with pytest.raises(ModelConfigError) as info:
        tsym.backbone_from_module(ConcatNet(), SORTED, cutoff=4.0)
    msg = str(info.value)
    assert "backbone 'ConcatNet'" in msg and f"irreps_out '{SORTED}'" in msg
    assert "order the network writes them" in msg


def test_width_mismatch_names_backbone_width_and_irreps():
    with pytest.raises(ModelConfigError, match=re.escape(
            "backbone 'pair_features' writes node features of width 4, but its irreps_out "
            "'2x0e+1x1o' has dim 5")):
        tsym.backbone_from_module(pair_features, "2x0e+1x1o", cutoff=4.0)


def test_wrong_parity_is_refused():
    with pytest.raises(ModelConfigError, match="under a reflection"):
        tsym.backbone_from_module(pair_features, "1x0e+1x1e", cutoff=4.0)


def test_reading_a_field_a_backbone_is_not_given():
    def needs_num_graphs(graph):
        return graph[keys.NUM_GRAPHS]

    with pytest.raises(ModelConfigError, match="reads the graph field 'num_graphs'") as info:
        tsym.backbone_from_module(needs_num_graphs, "1x0e+1x1o", cutoff=4.0)
    assert ", ".join(keys.BACKBONE_INPUTS) in str(info.value)


def test_bad_arguments():
    with pytest.raises(ModelConfigError, match="is not an e3nn Irreps"):
        tsym.backbone_from_module(pair_features, "1x0e+1xq", cutoff=4.0)
    with pytest.raises(ModelConfigError, match="needs at least one 0e"):
        tsym.backbone_from_module(pair_features, "1x1o+1x0o", cutoff=4.0, check=False)
    with pytest.raises(ModelConfigError, match="cutoff must be > 0"):
        tsym.backbone_from_module(pair_features, "1x0e+1x1o", cutoff=0.0)


def test_head_that_cannot_attach_names_backbone_and_both_irreps():
    def even_only(graph):  # 1x0e+1x1e: the bond vectors' cross products are axial
        return torch.zeros(len(graph[keys.POSITIONS]), 4, dtype=graph[keys.POSITIONS].dtype)

    backbone = tsym.backbone_from_module(even_only, "1x0e+1x1e", cutoff=4.0, check=False)
    with pytest.raises(ModelConfigError) as info:
        tsym.build_model("tensor d { indices i }", backbone=backbone)
    msg = str(info.value)
    assert "backbone even_only (irreps_out '1x0e+1x1e')" in msg and "irreps '1x1o'" in msg


def test_float64_probe_with_a_module_built_in_float64():
    with default_dtype(torch.float64):
        torch.manual_seed(0)
        backbone = tsym.backbone_from_module(ConcatNet(), LAYOUT, cutoff=4.0)
    assert check_backbone_contract(backbone) <= TOLERANCES[torch.float64]


def test_probe_uses_the_elements_a_backbone_keeps():
    class PerElement(torch.nn.Module):  # weights for H and O only, as MACE keeps them
        elements = [1, "O"]

        def __init__(self):
            super().__init__()
            self.cutoff, self.irreps_out, self.table = 4.0, "1x0e+1x1o", {1: 0, 8: 1}

        def forward(self, graph):
            z = graph[keys.ATOMIC_NUMBERS].tolist()
            assert all(v in self.table for v in z), z
            return {keys.NODE_FEATURES: pair_features(graph)}

    assert sorted(set(tsym.runtime.nn.wrap.probe_molecule(PerElement.elements).numbers)) == [1, 8]
    assert check_backbone_contract(PerElement(), dtype=torch.float64) <= TOLERANCES[torch.float64]
