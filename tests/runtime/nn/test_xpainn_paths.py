"""The fast paths of XPaiNN's message block against a direct sum, chunked and compiled.

The message block computes its per-edge products in an m-major layout, per degree l, in chunks
of edges, optionally through ``torch.compile``.  Each path is checked against the XPaiNN formula
written out directly here (e3nn layout, numpy, one edge at a time accumulated with
``np.add.at``), in float64 (1e-12 relative) and float32 (1e-5 relative).
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from e3nn import o3

from tsym.runtime.nn.xpainn import MessageBlock, XPaiNN
from tsym.runtime.nn.embedding import sh_irreps_for

from ...conftest import default_dtype

IRREPS = o3.Irreps("6x0e+4x1o+3x2e")
SCALARS, BASIS = 5, 4
TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def _block(dtype, first, seed=0):
    torch.manual_seed(seed)
    with default_dtype(dtype):
        block = MessageBlock({"scalars": f"{SCALARS}x0e", "equivariant": IRREPS,
                              "edge_sh": sh_irreps_for(IRREPS), "edge_radial": f"{BASIS}x0e"},
                             first=first)
        with torch.no_grad():  # nonzero biases and norm weights, so every term is exercised
            for p in block.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return block


def _inputs(dtype, num_nodes=7, num_edges=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(num_nodes, SCALARS, generator=g, dtype=dtype)
    v = torch.randn(num_nodes, IRREPS.dim, generator=g, dtype=dtype)
    vectors = torch.randn(num_edges, 3, generator=g, dtype=dtype)
    sh = o3.spherical_harmonics(sh_irreps_for(IRREPS), vectors, True, "component")
    radial = torch.randn(num_edges, BASIS, generator=g, dtype=dtype)
    envelope = torch.rand(num_edges, 1, generator=g, dtype=dtype)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=g)
    return s, v, sh, radial, envelope, edge_index


def _direct(block, s, v, sh, radial, envelope, edge_index):
    """XPaiNN's message, one edge and one component at a time (e3nn layout)."""
    with torch.no_grad():
        phi = block.scalar_mlp(block.scalar_norm(s)).double().numpy()
        filt = (block.radial_linear(radial) * envelope).double().numpy()
        v_n = None if block.equivariant_norm is None else block.equivariant_norm(v).double().numpy()
    sh, (src, dst) = sh.double().numpy(), edge_index.numpy()
    k = IRREPS.num_irreps
    n_v = 0 if v_n is None else k
    ds = np.zeros((s.shape[0], SCALARS))
    dv = np.zeros((s.shape[0], IRREPS.dim))
    sh_start = {ir.l: sl.start for (_, ir), sl in zip(sh_irreps_for(IRREPS),
                                                       sh_irreps_for(IRREPS).slices())}
    for e in range(len(src)):
        w = phi[src[e]] * filt[e]
        gate_v, gate_sh, msg_s = w[:n_v], w[n_v:n_v + k], w[n_v + k:]
        np.add.at(ds, dst[e], msg_s)
        channel, col = 0, 0
        for mul, ir in IRREPS:
            for _ in range(mul):
                for m in range(ir.dim):
                    value = gate_sh[channel] * sh[e, sh_start[ir.l] + m]
                    if v_n is not None:
                        value += gate_v[channel] * v_n[src[e], col]
                    dv[dst[e], col] += value
                    col += 1
                channel += 1
    return s.double().numpy() + ds, v.double().numpy() + dv


def _close(got, want, tol):
    got = got.detach().double().numpy()
    scale = np.abs(want).max()
    assert scale > 0.1
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("first", [True, False])
@pytest.mark.parametrize("chunk", [None, 1, 7, 39, 1000])
def test_message_equals_direct_sum(dtype, first, chunk):
    block = _block(dtype, first)
    args = _inputs(dtype)
    want_s, want_v = _direct(block, *args)
    got_s, got_v = block(*args, edge_chunk=chunk)
    _close(got_s, want_s, TOL[dtype])
    _close(got_v, want_v, TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_chunked_gradients_equal_whole(dtype):
    block = _block(dtype, first=False)
    args = _inputs(dtype)
    grads = []
    for chunk in (None, 6):
        s, v, *rest = (a.clone().requires_grad_(a.is_floating_point()) for a in args)
        out_s, out_v = block(s, v, *rest, edge_chunk=chunk)
        loss = (out_s ** 2).sum() + (out_v ** 3).sum()
        grads.append(torch.autograd.grad(loss, [s, v, rest[0], *block.parameters()]))
    for a, b in zip(*grads):
        scale = a.abs().max().item()
        assert scale > 0
        assert (a - b).abs().max().item() <= TOL[dtype] * max(scale, 1.0) * 10


def test_model_chunking_is_invisible():
    """Whole-model outputs: all edges at once against chunks, without gradients."""
    from ase.build import molecule
    from tsym.runtime.graph import collate
    torch.manual_seed(0)
    with default_dtype(torch.float64):
        model = XPaiNN(num_scalars=8, irreps="8x0e+4x1o+2x2e", num_blocks=2, num_basis=6)
    graph = collate([molecule("CH3CH2OH"), molecule("C6H6")], 4.0, torch.float64)
    model.edge_chunk = 2**40  # all edges at once
    want = model(graph)["node_features"]
    with torch.no_grad():
        for chunk in (2**40, 5, 64, 1024):
            model.edge_chunk = chunk
            got = model(graph)["node_features"]
            assert (got - want).abs().max().item() <= 1e-12 * want.abs().max().item()
    with pytest.raises(ValueError, match="edge_chunk"):
        XPaiNN(num_scalars=8, irreps="8x0e", edge_chunk=0, embedding="onehot")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile (inductor) needs a C++ compiler")
def test_compiled_messages_equal_eager(tmp_path, monkeypatch):
    """compile_blocks: same outputs and gradients as eager, also for a second graph size."""
    from ase.build import molecule
    from tsym.runtime.graph import collate
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch.manual_seed(0)
    eager = XPaiNN(num_scalars=8, irreps="8x0e+4x1o+2x2e", num_blocks=2, num_basis=6)
    compiled = XPaiNN(num_scalars=8, irreps="8x0e+4x1o+2x2e", num_blocks=2, num_basis=6)
    compiled.load_state_dict(eager.state_dict())
    compiled.compile_blocks()
    for names in (["CH3CH2OH", "C6H6"], ["H2O", "CH4", "C2H6", "CH3CH2OH"]):
        graph = collate([molecule(n) for n in names], 4.0, torch.float32)
        outs = []
        for model in (eager, compiled):
            feats = model(graph)["node_features"]
            grads = torch.autograd.grad((feats ** 2).sum(), list(model.parameters()))
            outs.append((feats, grads))
        (f_e, g_e), (f_c, g_c) = outs
        assert (f_c - f_e).abs().max().item() <= 1e-5 * f_e.abs().max().item()
        for a, b in zip(g_e, g_c):
            assert (a - b).abs().max().item() <= 1e-4 * max(a.abs().max().item(), 1e-3)


def test_model_compile_option_compiles_backbone_and_heads(tmp_path, monkeypatch):
    """``model.compile: true`` reaches ``torch.compile`` for every backbone block and head, and
    training goes on with the compiled callables (here an identity stand-in for torch.compile:
    the numerics of compiled blocks are checked above; compiling the heads takes minutes)."""
    from tsym.runtime.training.loop import train
    from ..training.test_train import make_config, write_dataset
    compiled = []

    def fake_compile(fn, **kwargs):
        compiled.append((fn.__self__, fn.__name__, kwargs))
        return fn
    monkeypatch.setattr(torch, "compile", fake_compile)
    write_dataset(tmp_path / "d.extxyz", n=8)
    cfg = make_config(tmp_path / "d.extxyz", max_steps=2)
    cfg["model"]["compile"] = True
    summary = train(cfg, tmp_path / "run")
    assert len(summary["step_losses"]) == 2
    names = [(type(owner).__name__, name) for owner, name, _ in compiled]
    blocks = cfg["model"]["backbone_kwargs"].get("num_blocks", 3)
    assert names.count(("MessageBlock", "_edges")) == blocks
    assert names.count(("MessageBlock", "_messages")) == blocks
    assert names.count(("UpdateBlock", "forward")) == blocks
    assert names.count(("EquivariantLayerNorm", "forward")) == blocks - 1  # not the first block
    assert names.count(("SelfMixHead", "node_irreps")) == len(cfg["heads"])
    assert all(kwargs == {"dynamic": True, "fullgraph": True, "isolate_recompiles": True}
               for _, _, kwargs in compiled)
