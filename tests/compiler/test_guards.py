"""The input checks of every head (``compiler/head/_guards.py``): each bad input gives a
:class:`HeadInputError` (a ``TsymError`` and a ``ValueError``) whose message says what to pass,
in the library's heads, the baselines, the emitted module and a scripted head."""
from __future__ import annotations

import importlib.util
import re
import sys

import pytest
import torch

import tsym
from tsym.compiler import HeadInputError
from tsym.compiler.emit import write_modules
from tsym.runtime.nn.heads import make_head

from ..conftest import default_dtype

IRREPS_IN = "4x0e+2x1o+1x2e"  # dim 4 + 6 + 5 = 15
DIM = 15
SPEC = "tensor alpha { indices ij; symmetry ij = ji }"
ATOM_SUM_RULE = "tensor z { indices ij; level atom; sum_rule zero }"


def _head(dtype=torch.float64, spec=SPEC, kind="selfmix"):
    plan = tsym.compile_text(spec)[0]
    torch.manual_seed(0)
    with default_dtype(dtype):
        return make_head(IRREPS_IN, plan.irreps, plan.change_of_basis, plan.level, plan.pool,
                         kind=kind, hidden_mul=2, mlp_hidden=4, **plan.head_options())


def _x(n=5, dtype=torch.float64, dim=DIM):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(1), dtype=dtype)


BATCH = torch.tensor([0, 0, 1, 1, 1])


def _raises(head, match, *args):
    with pytest.raises(HeadInputError, match=match) as info:
        head(*args)
    assert isinstance(info.value, tsym.TsymError) and isinstance(info.value, ValueError)
    return str(info.value)


@pytest.mark.parametrize("kind", ["selfmix", "linear", "invariant"])
def test_feature_width_names_width_and_irreps(kind):
    head = _head(kind=kind)
    msg = _raises(head, r"^node_features have shape \[5, 16\]", _x(dim=16), BATCH, 2)
    assert f"irreps_in '{IRREPS_IN}' of dim {DIM}" in msg
    assert f"[n_nodes, {DIM}]" in msg  # what to pass
    _raises(head, r"shape \[15\]", _x(dim=DIM)[0], None, None)  # one node without its row axis


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_dtype_mismatch_says_head_to(dtype):
    other = torch.float64 if dtype == torch.float32 else torch.float32
    head = _head(dtype)
    msg = _raises(head, f"^node_features are {other} but the head's parameters are {dtype}",
                  _x(dtype=other), BATCH, 2)
    assert f"head.to({other})" in msg and f"node_features.to({dtype})" in msg
    assert head(_x(dtype=dtype), BATCH, 2).dtype == dtype  # the right dtype passes


def test_batch_must_be_integer_one_per_node():
    head = _head()
    msg = _raises(head, "^batch must be an integer tensor", _x(), BATCH.float(), 2)
    assert "torch.float32" in msg and "batch.long()" in msg
    _raises(head, r"batch has shape \[4\] but node_features have 5 rows", _x(), BATCH[:4], 2)
    out32 = head(_x(), BATCH.int(), 2)  # int32 indices are fine
    assert torch.equal(out32, head(_x(), BATCH, 2))


def test_num_graphs_too_small_names_the_max_index():
    head = _head()
    msg = _raises(head, "^num_graphs=1 but batch holds structure index 1", _x(), BATCH, 1)
    assert "num_graphs=2" in msg  # what to pass
    _raises(head, "negative structure index -1", _x(), BATCH - 1, 2)
    _raises(head, "num_graphs must be >= 0", _x(), BATCH, -1)


def test_several_structures_without_batch():
    head = _head()
    msg = _raises(head, "^num_graphs=2 but batch is None", _x(), None, 2)
    assert "pass batch" in msg
    one = head(_x(), None, 1)  # one structure, said either way
    assert torch.equal(one, head(_x(), None, None)) and one.shape == (1, 3, 3)


def test_atom_level_sum_rule_needs_batch_but_plain_atom_head_does_not():
    summed = _head(spec=ATOM_SUM_RULE)
    _raises(summed, "num_graphs=2 but batch is None", _x(), None, 2)
    _raises(summed, "num_graphs=1 but batch holds structure index 1", _x(), BATCH, 1)
    plain = _head(spec="tensor s { indices ij; level atom }")
    assert plain(_x(), None, 2).shape == (5, 3, 3)  # per-node: batch is not read
    _raises(plain, "batch must be an integer tensor", _x(), BATCH.double(), 2)


def test_num_graphs_none_is_max_plus_one_and_empty_graphs_kept():
    head = _head()
    x = _x()
    assert torch.equal(head(x, BATCH), head(x, BATCH, 2))
    out = head(x, BATCH, 4)  # structures 2 and 3 have no nodes: zero rows, not an error
    assert out.shape == (4, 3, 3) and torch.all(out[2:] == 0)


def test_scripted_head_checks_too():
    head = torch.jit.script(_head())
    with pytest.raises(torch.jit.Error, match="batch holds structure index 1"):
        head(_x(), BATCH, 1)
    with pytest.raises(torch.jit.Error, match=re.escape(f"irreps_in '{IRREPS_IN}' of dim {DIM}")):
        head(_x(dim=14), BATCH, 2)


def test_compiled_head_runs_and_checks_shapes():
    head = _head()
    compiled = torch.compile(head, dynamic=True, backend="eager")
    assert torch.allclose(compiled(_x(), BATCH, 2), head(_x(), BATCH, 2), rtol=0, atol=1e-12)
    with pytest.raises(HeadInputError, match="dim 15"):
        compiled(_x(dim=16), BATCH, 2)


def test_emitted_head_raises_its_own_head_input_error(tmp_path):
    path = write_modules(tsym.compile_text(SPEC), tmp_path)[0]
    spec = importlib.util.spec_from_file_location("alpha_guarded", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["alpha_guarded"] = module
    spec.loader.exec_module(module)
    head = module.AlphaHead(IRREPS_IN, hidden_mul=2, mlp_hidden=4)
    assert issubclass(module.HeadInputError, ValueError)
    assert not issubclass(module.HeadInputError, tsym.TsymError)  # no import of tsym there
    cases = [((_x(dim=16, dtype=torch.float32), BATCH, 2), "of dim 15"),
             ((_x(dtype=torch.float64), BATCH, 2), r"head.to\(torch.float64\)"),
             ((_x(dtype=torch.float32), BATCH.float(), 2), "batch must be an integer"),
             ((_x(dtype=torch.float32), BATCH, 1), "batch holds structure index 1"),
             ((_x(dtype=torch.float32), None, 3), "num_graphs=3 but batch is None")]
    for args, match in cases:
        with pytest.raises(module.HeadInputError, match=match):
            head(*args)
