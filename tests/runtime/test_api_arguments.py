"""The Python API names a bad argument and what it takes (issue #26, defect 6 and messages).

``collate(..., torch.int64)`` truncated positions to integers and the model then failed inside
torch; ``build_model(42)``, ``seed="a"``, ``backbone_kwargs=[1]``, ``predict(None)`` and
``collate(None)`` raised Python's own TypeError/ValueError.  Each is now a ``TsymError``.
"""
from __future__ import annotations

import pytest
import torch
from ase.build import molecule

import tsym
from tsym.compiler import TsymError
from tsym.runtime.errors import DataError, ModelConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = "tensor alpha { indices ij; symmetry ij = ji; pool sum }"
KWARGS = {"num_scalars": 8, "irreps": "8x0e+4x1o", "num_blocks": 1, "embedding": "onehot"}


@pytest.fixture(scope="module")
def model():
    return tsym.build_model(SPEC, cutoff=3.0, backbone_kwargs=KWARGS)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.float16, "float32"])
def test_collate_refuses_a_non_float_dtype(dtype):
    with pytest.raises(ModelConfigError, match=r"^collate: dtype must be torch\.float32 or "
                                               r"torch\.float64 \(as build_model takes\), got "):
        tsym.collate([molecule("H2O")], 4.0, dtype)


@pytest.mark.parametrize("value, shown", [(None, "NoneType None"), (42, "int 42"),
                                          ("water.xyz", "str 'water.xyz'")])
def test_collate_and_predict_refuse_what_is_not_structures(model, value, shown):
    pattern = (rf"^<structures>: expected an ase\.Atoms or a list of them, got {shown}\n"
               r"hint: read a file first: ase\.io\.read\(path, index=':'\)")
    with pytest.raises(DataError, match=pattern):
        tsym.collate(value, 4.0)
    with pytest.raises(DataError, match=pattern):
        model.predict(value)


@pytest.mark.parametrize("kwargs, pattern", [
    ({"specs": 42}, r"^build_model: specs must be a library name, a \.tsym path, spec source text, a HeadPlan or "
                    r"a list of them, got int 42"),
    ({"seed": "a"}, r"^build_model: seed must be an integer in \[0, 2\*\*63 - 1\], got 'a'"),
    ({"seed": 1.5}, r"^build_model: seed must be an integer .*, got 1\.5"),
    ({"seed": -1}, r"^build_model: seed must be an integer .*, got -1"),
    ({"seed": True}, r"^build_model: seed must be an integer .*, got True"),
    ({"backbone_kwargs": [1]}, r"^build_model: backbone_kwargs must be a dict of keyword "
                               r"arguments \(e\.g\. \{'num_blocks': 2\}\), got list \[1\]"),
    ({"head_kwargs": "hidden_mul=4"}, r"^build_model: head_kwargs must be a dict of keyword "
                                      r"arguments \(e\.g\. \{'hidden_mul': 4\}\), got str"),
])
def test_build_model_names_the_bad_argument(kwargs, pattern):
    args = {"specs": SPEC, "backbone_kwargs": KWARGS, **kwargs}
    with pytest.raises(ModelConfigError, match=pattern):
        tsym.build_model(args.pop("specs"), **args)


def test_errors_share_the_root_and_good_arguments_still_work(model):
    assert issubclass(ModelConfigError, TsymError) and issubclass(DataError, TsymError)
    import numpy as np

    tsym.build_model(SPEC, cutoff=3.0, backbone_kwargs=KWARGS, seed=np.int64(5))
    out = model.predict(molecule("H2O"))["alpha"]  # one Atoms: still a batch of one
    assert out.shape == (1, 3, 3)
