"""The README's first lines are the two commands for a fresh machine; CI runs the second one."""
from __future__ import annotations

import re

from .conftest import REPO


def _readme_commands() -> list[str]:
    lines = (REPO / "README.md").read_text().splitlines()
    assert lines[0] == "```bash"
    end = lines.index("```", 1)
    return lines[1:end]


def test_two_commands_first():
    commands = _readme_commands()
    assert len(commands) == 2
    assert "constraints.txt" in commands[0] and "constraints.txt" in commands[1]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in ci


def test_constraints_pin_torch():
    pins = (REPO / "constraints.txt").read_text().split()
    assert "torch==2.13.0" in pins


def _python_block_after(heading: str) -> str:
    """The first ```python block after the line ``heading`` of the README."""
    lines = (REPO / "README.md").read_text().splitlines()
    start = lines.index("```python", lines.index(heading))
    return "\n".join(lines[start + 1:lines.index("```", start + 1)])


def test_batch_api_example_runs(monkeypatch):
    """The README's own-loop example: collate, forward, loss, backward, as written."""
    import torch

    code = _python_block_after("### Your own loop: collate, forward, loss, backward")
    assert "tsym.collate(" in code and "loss.backward()" in code
    assert len([ln for ln in code.splitlines() if ln.strip()]) <= 7  # import lines + five
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    model, out, graph = namespace["model"], namespace["out"], namespace["graph"]
    assert tuple(out["polarizability"].shape) == (2, 3, 3)
    assert tuple(out["nmr_shielding"].shape) == (int(graph["num_atoms"].sum()), 3, 3)
    assert torch.isfinite(namespace["loss"]).item()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(bool(g.abs().sum() > 0) for g in grads)


def test_the_documented_edge_convention(monkeypatch):
    """Row 0 of edge_index is the neighbour j, row 1 the centre i, and r_ij = r_j - r_i."""
    import torch

    import tsym
    from tsym.runtime.graph import edge_vectors

    code = _python_block_after("### Your own loop: collate, forward, loss, backward")
    graph_line = next(ln for ln in code.splitlines() if ln.startswith("graph = "))
    namespace = {"tsym": tsym, "model": type("M", (), {"cutoff": 5.0, "dtype": torch.float64})}
    exec("from ase.build import molecule\n" + graph_line, namespace)
    graph = namespace["graph"]
    j, i = graph["edge_index"]
    pos = graph["positions"]  # [N, 3]
    # one subtraction plus a zero shift (molecules): at most one rounding of |r| <= 2 max|pos|
    tol = 2 * torch.finfo(pos.dtype).eps * float(pos.abs().max())
    torch.testing.assert_close(edge_vectors(graph), pos[j] - pos[i], rtol=0, atol=tol)
    assert bool((graph["batch"][j] == graph["batch"][i]).all())
    pairs = set(zip(j.tolist(), i.tolist()))
    assert all((b, a) in pairs for a, b in pairs)  # both directions


def test_own_network_example_runs(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    code = _python_block_after("### Your own network")
    assert len([ln for ln in code.splitlines() if ln and not ln.startswith(" ")]) <= 8
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "(1, 3, 3)"
    assert re.search(r"polarizability: order 2 polar, relative error .*  ok$", out[2])


#: What the README's snippets leave to the reader (``list_of_ase_atoms``: their structures).
_PRELUDE = "from ase.build import molecule\nlist_of_ase_atoms = [molecule('H2O'), molecule('CH4')]\n"

#: The extras a snippet needs (it is left out where they are not installed).
_EXTRAS = {"backbone=\"mace\"": "mace", "backbone=\"nequip-lib\"": "nequip",
           "backbone=\"sevenn\"": "sevenn"}


def test_python_snippets_run_from_an_empty_folder_outside_the_clone(tmp_path):
    """Every ```python block of the README, each in a fresh namespace, run by a new interpreter
    whose working folder is empty and outside the clone (spec library names, no clone paths)."""
    import importlib.util
    import json
    import subprocess
    import sys

    import numpy as np

    lines = (REPO / "README.md").read_text().splitlines()
    blocks = []
    for k, line in enumerate(lines):
        if line == "```python":
            code = "\n".join(lines[k + 1:lines.index("```", k + 1)])
            needs = [m for key, m in _EXTRAS.items() if key in code]
            if all(importlib.util.find_spec(m) is not None for m in needs):
                blocks.append(code)
    assert len(blocks) >= 4
    runner = ("import json, sys\n"
              "for k, code in enumerate(json.load(open(sys.argv[1]))):\n"
              f"    exec(compile({_PRELUDE!r} + code, f'README block {{k}}', 'exec'), {{}})\n"
              "print('ran', k + 1)\n")
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    work = tmp_path / "empty"
    work.mkdir()
    proc = subprocess.run([sys.executable, "-c", runner, str(tmp_path / "blocks.json")],
                          cwd=work, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"ran {len(blocks)}" in proc.stdout
    # the MD-to-spectrum block: its CSV (a grid from 0 to 5000 cm^-1) and its PNG
    rows = (work / "water_md_ir.csv").read_text().splitlines()
    assert rows[0] == "wavenumber_cm-1,ir"
    grid = np.array([[float(v) for v in row.split(",")] for row in rows[1:]])  # [P, 2]
    assert grid[0, 0] == 0.0 and 4900 < grid[-1, 0] <= 5000 and np.isfinite(grid).all()
    assert np.abs(grid[:, 1]).max() > 0
    assert (work / "water_md_ir.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert REPO.resolve() not in work.resolve().parents


def test_architecture_tree_names_every_package_and_module():
    """The README's tree (section "Architecture") names each folder and module of the packages."""
    lines = (REPO / "README.md").read_text().splitlines()
    start = lines.index("```", lines.index("## Architecture"))
    block = "\n".join(lines[start + 1:lines.index("```", start + 1)])
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", block))
    missing = []
    for folder in ("compiler", "runtime", "grammar", "tsym"):
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO)
            if path.name == "__init__.py":
                if f"{path.parent.name}/" not in block:
                    missing.append(str(rel.parent) + "/")
            elif path.parent.name != "cli" and path.stem not in words:
                missing.append(str(rel))
    assert missing == [], f"not in the README's architecture tree: {missing}"


def test_exported_module_inputs_without_tsym(tmp_path, monkeypatch):
    """The README's standalone inputs of an exported module: the same edges (j, i, S) as tsym's
    graph, the same outputs (float32: edge order changes the sums' rounding, 1e-5 of the
    largest entry, the export check's tolerance), no autograd graph, APTs of the right shape."""
    import numpy as np
    import torch

    from tsym.runtime.inference.export import graph_inputs

    monkeypatch.chdir(tmp_path)
    code = _python_block_after("### The exported module: inputs without tsym")
    assert "neighbor_list(" in code and "np.stack([j, i])" in code
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    module, frames, inputs = namespace["module"], namespace["frames"], namespace["inputs"]
    ours, tsyms = inputs(frames), graph_inputs(frames, namespace["cutoff"], torch.float32)

    def edges(t):
        return sorted(zip(*t[2].tolist(), map(tuple, t[3].round().long().tolist())))

    assert len(edges(ours)) > 0 and edges(ours) == edges(tsyms)
    for k in (1, 5, 6):  # atomic numbers, batch, num_graphs
        assert torch.equal(ours[k], tsyms[k])
    torch.testing.assert_close(ours[4], tsyms[4], rtol=0, atol=0)
    got, want = module(*ours), module(*tsyms)
    for name, w in want.items():
        assert not got[name].requires_grad
        torch.testing.assert_close(got[name], w, rtol=0, atol=1e-5 * float(w.abs().max()))
    assert tuple(namespace["apt"].shape) == (3, 3, 3)
