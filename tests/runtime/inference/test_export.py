"""Exported TorchScript models: a fresh process loads them with ``torch.jit.load`` alone.

The parent builds the graph inputs with tsym and saves them; one child process (no tsym, e3nn or
ase import, checked) loads every exported file, runs it and saves the outputs; the parent compares
them with the original model.  Tolerances, relative to the largest entry of each output:
1e-6 (float32) and 1e-12 (float64).  The structures are not those the backbone was traced with.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from e3nn import o3

import tsym
from tsym.compiler import compile_text
from tsym.runtime import keys
from tsym.runtime.inference.export import (INPUTS, ExportError, export_model, graph_inputs,
                                           load_exported)
from tsym.runtime.model import TrainedModel
from tsym.runtime.model import TensorModel

from .test_predict import (made_up_norms, save_training_checkpoint, tiny_model)

TOL = {torch.float32: 1e-6, torch.float64: 1e-12}

CHILD = r"""
import json, sys
import torch
for model_path, inputs_path, out_path in json.loads(sys.argv[1]):
    module = torch.jit.load(model_path)
    inputs = torch.load(inputs_path)
    with torch.no_grad():
        out = module(*inputs)
    torch.save({k: v for k, v in out.items()}, out_path)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tsym", "e3nn", "ase"))
assert not loaded, loaded
print("child ok")
"""


def _structures():
    zno = bulk("ZnO", "wurtzite", a=3.25, c=5.21)
    zno.rattle(0.05, seed=5)
    ethanol = molecule("CH3CH2OH")
    ethanol.rattle(0.05, seed=6)
    return [ethanol, zno, Atoms("Na", positions=[[0, 0, 0]]), molecule("H2O")]  # Na: no edges


def _reference(model, frames) -> dict[str, torch.Tensor]:
    graph = {k: v for k, v in zip(INPUTS, graph_inputs(frames, model.cutoff, model.dtype))}
    graph[keys.NUM_ATOMS] = torch.tensor([len(a) for a in frames])
    with torch.no_grad():
        return model.eval()(graph)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Export four models, run them all in one fresh process; (model, reference, output)."""
    root = tmp_path_factory.mktemp("export")
    frames = _structures()
    cases = {}
    for dtype in (torch.float32, torch.float64):
        raw = tiny_model(dtype)
        cases[f"raw_{dtype}"] = raw
        cases[f"trained_{dtype}"] = TrainedModel(raw, made_up_norms(raw))
    jobs, refs = [], {}
    for name, model in cases.items():
        path = export_model(model, root / f"{name}.pt")
        inputs = graph_inputs(frames, model.cutoff, model.dtype)
        torch.save(inputs, root / f"{name}.in.pt")
        jobs.append([str(path), str(root / f"{name}.in.pt"), str(root / f"{name}.out.pt")])
        refs[name] = _reference(model, frames)
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(jobs)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "child ok" in done.stdout
    return {name: (cases[name], refs[name], torch.load(root / f"{name}.out.pt"))
            for name in cases}


@pytest.mark.parametrize("kind", ["raw", "trained"])
def test_fresh_process_matches_model(exported, kind, dtype):
    model, want, got = exported[f"{kind}_{dtype}"]
    assert set(got) == set(want) == {"dipole", "polarizability", "dielectric", "born_charges"}
    for name, w in want.items():
        g = got[name]
        assert g.dtype == dtype and g.shape == w.shape
        scale = max(float(w.abs().max()), 1e-30)
        assert float((g - w).abs().max()) <= TOL[dtype] * scale, name
    assert want["born_charges"].shape == (9 + 4 + 1 + 3, 3, 3)
    if kind == "trained":  # data units: the 0e shift per atom of the sum-pooled head is in
        n_atoms = torch.tensor([9.0, 4.0, 1.0, 3.0], dtype=dtype)
        trace = got["polarizability"].diagonal(dim1=1, dim2=2).sum(-1)  # [G]
        raw = exported[f"raw_{dtype}"][2]["polarizability"].diagonal(dim1=1, dim2=2).sum(-1)
        # tr T = tr(Q_0e) * y_0e (Q_0e = +-I / sqrt 3), y_0e = scale_0 * y_n + shift * n with
        # scale_0 2.5, shift 1.75 (made_up_norms), and tr raw = tr(Q_0e) * y_n
        plan = next(p for p in model.model.plans if p.name == "polarizability")
        tr_q = float(plan.change_of_basis[0].trace())
        assert abs(abs(tr_q) - np.sqrt(3)) < 1e-12
        expected = 2.5 * raw + tr_q * 1.75 * n_atoms
        assert torch.allclose(trace, expected, rtol=1e-5 if dtype == torch.float32 else 1e-12)


def test_metadata_and_atomic_number_check(tmp_path):
    model = tiny_model(torch.float32)
    path = export_model(model, tmp_path / "m.pt", check=False)
    module, meta = load_exported(path)
    assert meta["format"] == "tsym-export/1" and meta["inputs"] == list(INPUTS)
    assert meta["dtype"] == "float32" and meta["cutoff"] == model.cutoff
    assert [h["name"] for h in meta["heads"]] == ["dipole", "polarizability", "dielectric",
                                                  "born_charges"]
    assert meta["heads"][3]["level"] == "atom" and meta["heads"][2]["irreps"] == "1x0e+1x2e"
    inputs = list(graph_inputs([molecule("H2O")], model.cutoff))
    assert meta["max_z"] == model.max_z == 118  # the default embedding covers H..Og
    inputs[1] = torch.tensor([8, 1, 119])
    with pytest.raises(torch.jit.Error, match="atomic number is outside"):
        module(*inputs)
    (tmp_path / "not.pt").write_bytes(b"junk")
    with pytest.raises(ExportError, match=r"^.*not.pt: not a TorchScript file"):
        load_exported(tmp_path / "not.pt")


class _FrozenBackbone(torch.nn.Module):
    """Features depend on a Python number taken from the data: a trace freezes it."""

    irreps_out = o3.Irreps("2x0e+1x1o")
    cutoff = 3.0

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, graph):
        total = float(int(graph[keys.ATOMIC_NUMBERS].sum()))
        pos = graph[keys.POSITIONS]  # [N, 3]
        scalars = torch.ones_like(pos[:, :2]) * total * self.w  # [N, 2]
        return {**graph, keys.NODE_FEATURES: torch.cat([scalars, pos], dim=1)}


def test_export_check_catches_an_unfaithful_trace(tmp_path):
    plan = compile_text("tensor v { indices i }")[0]
    model = TensorModel(_FrozenBackbone(), [plan], {"hidden_mul": 2, "mlp_hidden": 4})
    with pytest.raises(ExportError, match=r"^.*m.pt: the exported module differs from the model"):
        export_model(model, tmp_path / "m.pt")


def test_export_of_a_chunked_backbone(tmp_path):
    """XPaiNN's edge chunks (a loop over E / chunk) must not be frozen into the trace: with a
    chunk of 3 edges the check structures need other chunk counts than the traced one."""
    plan = compile_text("tensor v { indices i }")[0]
    model = tsym.build_model([plan], cutoff=3.0, backbone_kwargs={
        "num_scalars": 8, "irreps": "8x0e+4x1o", "num_blocks": 1, "edge_chunk": 3})
    export_model(model, tmp_path / "m.pt")  # raises ExportError if the outputs differ
    assert model.backbone.edge_chunk == 3
    module, _ = load_exported(tmp_path / "m.pt")
    frames = [molecule("CH3CH2OH")]
    got = module(*graph_inputs(frames, 3.0, torch.float32))["v"]
    with torch.no_grad():
        want = model.predict(frames)["v"]
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_cli_export(tmp_path, capsys):
    from tsym.cli.export import register

    model = tiny_model(torch.float64)
    save_training_checkpoint(model, made_up_norms(model), tmp_path / "best.pt")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["export", str(tmp_path), "-o", str(tmp_path / "model.pt")])
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(tmp_path / "model.pt")
    assert lines[1].startswith("inputs: positions, atomic_numbers, edge_index, edge_shifts, "
                               "cell, batch, num_graphs; dtype float64; cutoff 3.5")
    _, meta = load_exported(tmp_path / "model.pt")
    assert meta["trained"] is True and meta["dtype"] == "float64"


def test_outputs_carry_no_grad_unless_positions_do(tmp_path, dtype):
    """The saved parameters do not require grad: outputs go to numpy as they are; with
    ``positions.requires_grad_()`` autograd gives the APTs, equal to :func:`tsym.derivatives` of
    the model (traced ops against eager ones with their own backward kernels: rounding only,
    relative 1e-5 in float32 and 1e-10 in float64, the export check's own tolerances); export
    leaves the model's own parameters trainable."""
    model = tiny_model(dtype)
    module, _ = load_exported(export_model(model, tmp_path / "m.pt"))
    assert not any(p.requires_grad for p in module.parameters())
    assert all(p.requires_grad for p in model.parameters())
    frames = [molecule("CH3CH2OH")]
    frames[0].rattle(0.05, seed=1)
    inputs = graph_inputs(frames, model.cutoff, dtype)
    out = module(*inputs)
    assert not any(v.requires_grad for v in out.values())
    want_mu = model.predict(frames)["dipole"]  # [1, 3]
    np.testing.assert_allclose(out["dipole"].numpy(), want_mu, rtol=0,
                               atol=TOL[dtype] * np.abs(want_mu).max())
    positions = inputs[0].clone().requires_grad_()
    mu = module(positions, *inputs[1:])["dipole"][0]  # [3]
    assert mu.requires_grad
    apt = torch.stack([torch.autograd.grad(mu[a], positions, retain_graph=True)[0]
                       for a in range(3)], dim=1).numpy()  # [N, 3, 3]: d mu_a / d r_(i, b)
    want = tsym.derivatives(model, frames)["dipole"]  # [N, 3, 3]
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    np.testing.assert_allclose(apt, want, rtol=0, atol=tol * np.abs(want).max())
