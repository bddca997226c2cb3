"""Shared fixtures: numerical tests run in float32 and float64 with a tolerance each."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SPECS_DIR = REPO / "specs"

# tolerance per dtype for equivariance / symmetry checks of float computations
TOLERANCES = {torch.float32: 1e-5, torch.float64: 1e-10}


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture
def tol(dtype):
    return TOLERANCES[dtype]


@contextlib.contextmanager
def default_dtype(dtype):
    """e3nn builds its Wigner matrices in torch's default dtype: float64 checks need float64 there."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def shared_data_dir() -> Path | None:
    root = os.environ.get("TSYM_SHARED_DATA")
    if root and Path(root).is_dir():
        return Path(root)
    return None


def rotation_and_d(irreps, proper: bool = True, dtype=torch.float64):
    """A random rotation R (times -1 when improper) and ``irreps``' D(R) from e3nn.

    D comes from ``Irreps.D_from_angles`` on the angles that built R: it equals
    ``Irreps.D_from_matrix(R)``, without the loss of precision of ``matrix_to_angles`` (an ``acos``
    that amplifies rounding near beta = 0, pi to ~1e-10 in float64).
    """
    from e3nn import o3

    with default_dtype(torch.float64):
        a, b, c = o3.rand_angles()
        r = o3.angles_to_matrix(a, b, c)
        k = torch.tensor(0.0 if proper else 1.0)
        d = o3.Irreps(irreps).D_from_angles(a, b, c, k)
        if not proper:
            r = -r
    return r.to(dtype), d.to(dtype)
