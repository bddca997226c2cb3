"""The fused arithmetic of the self-mix head (``compiler/head/_fused.py``) against the e3nn modules.

``SelfMixHead.node_irreps`` computes from the head's weights with the fused code; the reference
(``benchmarks.common.reference_node_irreps``, the code the head ran before) runs the head's own
e3nn modules one after the other.  Same weights, so the rows must agree to rounding:

- float64: relative 1e-12 of the largest row entry.  Both sides sum at most a few thousand
  products of order-one numbers (the longest sum: an input channel count of 24 times the tp2
  pairs), each rounding contributes at most ``eps64 = 1.1e-16`` relative, so their difference is
  bounded by ~1e-13 of the largest partial sums; 1e-12 leaves a factor 10;
- float32: the fused float32 rows against the float64 reference, relative 1e-5 (float32
  ``eps = 6e-8`` times the same sum lengths, with the layer norm's division in between), and no
  worse than twice the error of e3nn's own float32 modules measured in the same test.

Irreps and targets are drawn at random (targets up to l = 5, i.e. Cartesian rank 5), gradients
of the inputs and of every weight are compared too.
"""
from __future__ import annotations

import random

import pytest
import torch
from e3nn import o3

from tsym.compiler.head import SelfMixHead

from benchmarks.common import reference_node_irreps

PARITY = {1: "e", -1: "o"}


def _random_case(seed: int):
    """``(irreps_in, irreps_out)``: random multiplicities, l up to 3 in, targets up to l = 5."""
    rng = random.Random(seed)
    lmax_in = rng.randint(1, 3)
    parts = [f"{rng.randint(2, 6)}x0e"]
    for l in range(1, lmax_in + 1):
        for p in (1, -1):
            if rng.random() < 0.6 or p == (-1) ** l:
                parts.append(f"{rng.randint(1, 4)}x{l}{PARITY[p]}")
    irreps_in = o3.Irreps("+".join(parts))
    out = []
    for _ in range(rng.randint(1, 3)):
        l = rng.randint(0, 5)
        out.append(f"{rng.randint(1, 2)}x{l}{PARITY[rng.choice((1, -1))]}")
    return irreps_in, o3.Irreps("+".join(out)).sort().irreps.simplify()


def _head(irreps_in, irreps_out, dtype, seed, **kw):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(seed)
        q = torch.randn(irreps_out.dim, 3, dtype=torch.float64)  # only its shape matters here
        return SelfMixHead(irreps_in, irreps_out, q, **kw)
    finally:
        torch.set_default_dtype(old)


def _cases(count: int):
    found, seed = [], 0
    while len(found) < count:
        irreps_in, irreps_out = _random_case(seed)
        try:
            _head(irreps_in, irreps_out, torch.float64, 0, hidden_mul=2, mlp_hidden=3)
            found.append((seed, str(irreps_in), str(irreps_out)))
        except ValueError:  # a target irrep not reachable from these inputs: draw again
            pass
        seed += 1
    return found


# six random draws, plus a rank-5 fully symmetric target (irreps 1o+3o+5o) and the elastic one
CASES = _cases(6) + [(6, "4x0e+2x1o+2x2e+1x3o", "1x1o+1x3o+1x5o"),
                     (7, "4x0e+3x1o+2x2e", "2x0e+2x2e+1x4e")]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


@pytest.mark.parametrize("seed,irreps_in,irreps_out", CASES)
def test_fused_matches_e3nn_modules_float64(seed, irreps_in, irreps_out):
    head = _head(o3.Irreps(irreps_in), o3.Irreps(irreps_out), torch.float64, seed,
                 hidden_mul=3, mlp_hidden=5)
    x = torch.randn(9, head.irreps_in.dim, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(seed), requires_grad=True)
    got, want = head.node_irreps(x), reference_node_irreps(head, x)
    assert got.shape == want.shape == (9, head.irreps_rows.dim)
    assert _rel(got, want) <= 1e-12
    # gradients of a generic loss with respect to the inputs and every weight
    probe = torch.randn_like(want)
    params = [x] + [p for p in head.parameters() if p.requires_grad]
    g_got = torch.autograd.grad((got * probe).sum(), params, allow_unused=True)
    g_want = torch.autograd.grad((want * probe).sum(), params, allow_unused=True)
    for a, b in zip(g_got, g_want):
        if b is None or b.numel() == 0 or b.abs().max() == 0:
            assert a is None or a.numel() == 0 or a.abs().max() <= 1e-12
            continue
        assert _rel(a, b) <= 1e-12


@pytest.mark.parametrize("seed,irreps_in,irreps_out", CASES)
def test_fused_matches_e3nn_modules_float32(seed, irreps_in, irreps_out):
    head64 = _head(o3.Irreps(irreps_in), o3.Irreps(irreps_out), torch.float64, seed,
                   hidden_mul=3, mlp_hidden=5)
    head32 = _head(o3.Irreps(irreps_in), o3.Irreps(irreps_out), torch.float32, seed,
                   hidden_mul=3, mlp_hidden=5)
    head32.load_state_dict({k: v.float() if v.is_floating_point() and k != "change_of_basis"
                            else v for k, v in head64.state_dict().items()})
    x64 = torch.randn(9, head64.irreps_in.dim, dtype=torch.float64,
                      generator=torch.Generator().manual_seed(seed))
    want = reference_node_irreps(head64, x64)
    err_fused = _rel(head32.node_irreps(x64.float()).double(), want)
    err_e3nn = _rel(reference_node_irreps(head32, x64.float()).double(), want)
    assert err_fused <= 1e-5
    assert err_fused <= max(2 * err_e3nn, 1e-6)


def test_elastic_head_on_backbone_widths_matches():
    """The widths the benchmarks use (XPaiNN's 256x0e+64x1o+32x2e, hidden_mul 16)."""
    import tsym

    (plan,) = tsym.compile_text("tensor c { indices ijkl; symmetry ijkl = jikl = ijlk = klij }")
    torch.manual_seed(0)
    q = plan.change_of_basis
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        head = SelfMixHead("256x0e+64x1o+32x2e", plan.irreps, q)
    finally:
        torch.set_default_dtype(old)
    x = torch.randn(20, head.irreps_in.dim, dtype=torch.float64)
    assert _rel(head.node_irreps(x), reference_node_irreps(head, x)) <= 1e-12


def test_fused_part_adds_nothing_to_the_state_dict():
    head = _head(o3.Irreps("4x0e+2x1o+2x2e"), o3.Irreps("1x0e+1x2e"), torch.float64, 0,
                 hidden_mul=2, mlp_hidden=3)
    assert not any(k.startswith("fused") for k in head.state_dict())
    assert list(head.fused.parameters()) == []
    # its coefficient matrices stay float64 through .float() and come back exact
    before = head.fused.tp2_m.clone()
    head.float().double()
    assert head.fused.tp2_m.dtype == torch.float64
    assert torch.equal(head.fused.tp2_m, before)
