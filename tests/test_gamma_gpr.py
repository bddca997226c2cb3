"""``benchmarks/gamma_gpr.py``, the Gaussian-process yardstick for water_gamma: its molecular frame
and internal coordinates do not change when the monomer is rotated, reflected, translated or its
hydrogens swapped, so the frame components of gamma are functions of the internal coordinates; and
the Gaussian process reproduces its training labels (jitter 1e-10 on a kernel of unit diagonal).

Checked against facts independent of the code: rotation matrices from QR of random matrices,
a rank-4 tensor built from the molecule's own bond vectors (so it rotates with the molecule).
Tolerances: float64 sums of 81 x 3^4 products of unit-size numbers, 1e-12.
"""

import numpy as np
import pytest

from benchmarks import gamma_gpr  # noqa: E402

SYMBOLS = ["O", "H", "H"]


def _water(rng):
    r1, r2, angle = 0.96 + 0.1 * rng.random(), 1.0 + 0.1 * rng.random(), 1.6 + 0.4 * rng.random()
    return np.array([[0.0, 0.0, 0.0], [r1, 0.0, 0.0],
                     [r2 * np.cos(angle), r2 * np.sin(angle), 0.0]])


def _tensor(pos):
    """A rank-4 tensor that rotates with the molecule: sum over O-H bonds of b (x) b (x) b (x) b
    weighted by the bond length, plus the identity-like part delta_ij delta_kl."""
    t = np.einsum("ij,kl->ijkl", np.eye(3), np.eye(3))
    for h in (1, 2):
        b = pos[h] - pos[0]
        t = t + np.linalg.norm(b) * np.einsum("i,j,k,l->ijkl", b, b, b, b)
    return t


def _orthogonal(rng, det):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) * det > 0 else -q


@pytest.mark.parametrize("det", [1, -1])
def test_frame_components_are_invariant(det):
    rng = np.random.default_rng(det + 5)
    pos = _water(rng)
    x0, rot0 = gamma_gpr.frame(pos, SYMBOLS)
    assert np.allclose(rot0 @ rot0.T, np.eye(3), atol=1e-12) and np.linalg.det(rot0) > 0
    y0 = gamma_gpr.to_frame(_tensor(pos), rot0)
    q = _orthogonal(rng, det)
    moved = pos @ q.T + rng.normal(size=3)
    for order in ([0, 1, 2], [0, 2, 1], [2, 0, 1]):  # the hydrogens swapped, O not first
        x, rot = gamma_gpr.frame(moved[order], [SYMBOLS[i] for i in order])
        assert np.allclose(x, x0, atol=1e-12)
        y = gamma_gpr.to_frame(_tensor(moved), rot)  # _tensor reads O first: moved's order
        # gamma's components in the molecular frame; a planar molecule's tensor has an even
        # number of y indices wherever it is nonzero, so a reflection (y -> -y) leaves them
        assert np.allclose(y, y0, atol=1e-12)
    assert np.allclose(gamma_gpr.from_frame(y0, rot0), _tensor(pos), atol=1e-12)


def test_gp_reproduces_its_training_labels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3))
    y = np.stack([np.sin(x[:, 0]) + x[:, 1] * x[:, 2], np.cos(x).sum(1)], 1)
    gp = gamma_gpr.GP(x, y, 1.5, 1e-10)
    # the residual is jitter x weights (y - K w = 1e-10 w) plus rounding of an ill-conditioned
    # solve; 1e-5 is far above both for 30 points and far below the labels' unit size
    assert np.abs(gp(x) - y).max() < 1e-5
    assert gamma_gpr.cross_validate(x, y, 1.5, 1e-10) < 0.5 * float(y.std(0).sum())


def test_mlp_fits_a_smooth_map():
    """The MLP yardstick's two phases fit 40 samples of a smooth 3 -> 2 map far below its spread
    (a network of 64-wide layers has ample capacity; 20 L-BFGS iterations reach ~1e-3)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3))
    y = np.stack([x[:, 0] - 0.5 * x[:, 1] * x[:, 2], np.tanh(x[:, 2])], 1)
    pred = gamma_gpr.mlp_fit(x, y, x, seed=0, epochs=20, iterations=20)
    assert pred.shape == y.shape
    assert np.sqrt(((pred - y) ** 2).mean()) < 0.05 * float(y.std())
