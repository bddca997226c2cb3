"""Shared fixtures: numerical tests run in float32 and float64 with a tolerance each."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tsym.runtime.equivariance import default_dtype  # noqa: F401 - the tests import it from here

REPO = Path(__file__).resolve().parents[1]
SPECS_DIR = REPO / "compiler" / "specs"

# Tolerance per dtype for equivariance / symmetry checks of float computations, relative to the
# output's scale.  float64: 1e-10 is ~5e5 float64 epsilons: the float32 runs of the same models show
# rounding amplified ~100x over epsilon (Bessel basis, layer norms), so float64 stays below ~1e-13
# whatever the summation order.  float32: 1e-5 (~80 epsilons) holds for plain linear algebra and
# short chains; for whole networks, where the amplification depends on the CPU's kernels, tests
# compare against a float64 twin (`float64_twin`, `assert_equivariant(reference=...)`) instead.
TOLERANCES = {torch.float32: 1e-5, torch.float64: 1e-10}


def molecule_and_cell() -> list:
    """A rattled ethanol and a rattled wurtzite ZnO cell: a molecule and a periodic structure
    without symmetry, for end-to-end equivariance tests."""
    from ase.build import bulk, molecule

    mol = molecule("CH3CH2OH")
    mol.rattle(0.05, seed=1)
    crystal = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
    crystal.rattle(0.15, seed=2)
    return [mol, crystal]


def float64_twin(model32: torch.nn.Module, build) -> torch.nn.Module:
    """``build()`` (the same architecture made in float64, e3nn constants at full precision) with
    ``model32``'s parameters cast exactly.  The twin's outputs minus the float32 ones measure the
    float32 model's own rounding, which bounds its symmetry errors by the triangle inequality."""
    twin = build()
    weights = dict(model32.named_parameters())
    names = [name for name, _ in twin.named_parameters()]
    assert sorted(names) == sorted(weights), "the twin has another architecture"
    with torch.no_grad():
        for name, p in twin.named_parameters():
            p.copy_(weights[name].to(torch.float64))
    return twin.eval()


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture
def tol(dtype):
    return TOLERANCES[dtype]


@pytest.fixture
def one_thread():
    """One intra-op thread: faster on a shared 2-core machine, and reproducible sums."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


#: Why a test of the shared DFT data sets skips, and where the data would come from.
SHARED_DATA_SKIP = ("TSYM_SHARED_DATA not set: the folder of the shared DFT data sets (.ci/run "
                    "sets it to ../shared/data when that lies beside the clone)")


def shared_data_dir() -> Path | None:
    root = os.environ.get("TSYM_SHARED_DATA")
    if root and Path(root).is_dir():
        return Path(root)
    return None


def rotation_and_d(irreps, proper: bool = True, dtype=torch.float64):
    """A random rotation R (times -1 when improper) and ``irreps``' Wigner matrix D(R).

    D is e3nn's: ``exp(a X_y) exp(b X_x) exp(c X_y)`` with e3nn's own generators
    (``o3.so3_generators``, float64) on the angles that built R with ``o3.angles_to_matrix``, times
    the parity for improper R -- the definition behind ``Irreps.D_from_angles``/``D_from_matrix``.
    The exponentials are taken with scipy's ``expm``: e3nn's ``torch.matrix_exp`` path is only
    accurate to ~1e-10 in float64 (measured against expm), which would hide 1e-12 checks, and
    ``matrix_to_angles`` adds an ``acos`` that amplifies rounding near beta = 0, pi.
    """
    import scipy.linalg
    from e3nn import o3

    with default_dtype(torch.float64):
        a, b, c = (float(v) for v in o3.rand_angles())
        r = o3.angles_to_matrix(torch.tensor(a), torch.tensor(b), torch.tensor(c))
        blocks = []
        for mul, ir in o3.Irreps(irreps):
            x = o3.so3_generators(ir.l).numpy()
            d = scipy.linalg.expm(a * x[1]) @ scipy.linalg.expm(b * x[0]) @ scipy.linalg.expm(c * x[1])
            if not proper:
                d = d * ir.p
            blocks += [torch.from_numpy(d)] * mul
        d = torch.block_diag(*blocks) if blocks else torch.zeros(0, 0)
        if not proper:
            r = -r
    return r.to(dtype), d.to(dtype)
