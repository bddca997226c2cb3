"""tsym against XequiNet (``CartTensorOut`` on XequiNet's XPaiNN), four tensor targets, one run.

Run::

    PYTHONPATH=/path/to/XequiNet-a515c5f python -m benchmarks.vs_xequinet [--rounds 7] [--compile]
    python -m benchmarks.vs_xequinet --compile-times   # cold and warm compile, tsym only

XequiNet is not a dependency of tsym and nothing is installed: the script imports the checkout on
``PYTHONPATH`` (commit a515c5f; see benchmarks/TRIED.md for how it was fetched).  XequiNet's
package imports modules the timed code never calls (pyscf, torch_geometric, torch_cluster, lmdb,
tblite, pytorch_warmup, tabulate); where they are not installed, in-process placeholders stand in
for them (anything that touches one raises), and where ``torch_scatter`` is not installed a
torch-native ``scatter``/``scatter_sum`` (``index_add_``/``scatter_reduce``) stands in for it.
If XequiNet still cannot be imported, its columns are skipped with a message.

Both models: the same 32 QM9-sized molecules (``backbone_speed.molecules(32)``, graphs built
once), node widths 128 scalars / ``128x0e+64x1o+32x2e``, 3 blocks, 20 Bessel functions, cutoff
5, float32, ``--threads`` (1) thread; XequiNet with its one-hot embedding (its default needs
pyscf; the embedding is a table lookup either way) and ``CartTensorOut`` with heads of the
size of tsym's defaults: ``hidden_channels`` 16 (tsym ``hidden_mul`` 16) and ``hidden_dim`` 32
(tsym ``mlp_hidden`` 32); the parameter counts of both heads are printed.  Targets: polarizability
``ij=ji`` (sum), NMR ``ij`` per atom, piezoelectric ``ijk=ikj`` (mean), elastic (mean).

Timed (CPU time of this process, ``time.process_time``): forward without gradients, and forward
plus backward (gradients of all weights); with ``--compile`` also tsym after
``compile_for_speed()``.  Every round times every column of every target once, in turn (the order
reversed every other round), so a change in the machine's load falls on all; the ratio
XequiNet / tsym is taken per round; medians of ``--rounds`` rounds.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import importlib.machinery
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent

TARGETS = [  # (label, tsym spec, XequiNet order, symmetry formula, reduce)
    ("polarizability `ij=ji`",
     "tensor polarizability { indices ij; symmetry ij = ji; pool sum }", 2, "ij=ji", "sum"),
    ("NMR `ij` per atom", "tensor nmr { indices ij; level atom }", 2, "ij", None),
    ("piezo `ijk=ikj`", "tensor piezo { indices ijk; symmetry ijk = ikj; pool mean }", 3,
     "ijk=ikj", "mean"),
    ("elastic", "tensor elastic { indices ijkl; symmetry ijkl = jikl = ijlk = klij; "
     "pool mean }", 4, "ijkl=jikl=ijlk=klij", "mean"),
]
WIDTHS = dict(num_scalars=128, irreps="128x0e+64x1o+32x2e", num_blocks=3, num_basis=20)
CUTOFF = 5.0
UNUSED = ["pyscf", "pyscf.gto", "pyscf.pbc", "torch_geometric", "torch_geometric.loader",
          "torch_geometric.data", "torch_cluster", "lmdb", "tblite", "tblite.interface",
          "pytorch_warmup", "tabulate"]


# --------------------------------------------------------------------------- XequiNet import

class _PlaceholderType(type):
    def __getattr__(cls, attr: str):  # gto.Mole in an annotation, ...: another placeholder
        if attr.startswith("__"):
            raise AttributeError(attr)
        return cls


class _Placeholder(metaclass=_PlaceholderType):
    """Stands in for a name of a module XequiNet imports but the timed code never uses."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("a placeholder for a module that is not installed was used")


def _placeholder_module(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = []  # a package, so that its submodules can be imported too
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)

    def attribute(attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Placeholder  # any other name: a class that cannot be made
    module.__getattr__ = attribute
    return module


def _torch_scatter() -> types.ModuleType:
    """``scatter``/``scatter_sum`` of torch_scatter, written with torch (sum, mean, max)."""
    def scatter(src, index, dim=-1, out=None, dim_size=None, reduce="sum"):
        dim = dim % src.dim()
        size = list(src.shape)
        size[dim] = int(index.max()) + 1 if dim_size is None else dim_size
        if index.dim() == 1 and src.dim() > 1:
            shape = [1] * src.dim()
            shape[dim] = -1
            index = index.view(shape).expand_as(src)
        base = src.new_zeros(size)
        if reduce in ("sum", "add"):
            return base.scatter_add(dim, index, src)
        return base.scatter_reduce(dim, index, src, reduce={"mean": "mean", "max": "amax",
                                                            "min": "amin"}[reduce],
                                   include_self=False)

    module = types.ModuleType("torch_scatter")
    module.scatter = scatter
    module.scatter_sum = lambda src, index, dim=-1, out=None, dim_size=None: scatter(
        src, index, dim, out, dim_size, "sum")
    return module


def import_xequinet():
    """XequiNet's ``XPaiNN`` class and a note on what stood in for missing modules, or
    ``(None, reason)``."""
    stood_in = []
    for name in UNUSED + ["torch_scatter"]:
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules[name] = _torch_scatter() if name == "torch_scatter" else \
                _placeholder_module(name)
            stood_in.append(name)
    try:
        from xequinet.nn.model import XPaiNN
    except Exception as err:  # noqa: BLE001 - any failure means: skip XequiNet
        return None, f"XequiNet not importable ({type(err).__name__}: {err}); set PYTHONPATH " \
                     "to a checkout of X1X1010/XequiNet a515c5f (benchmarks/TRIED.md)"
    finally:  # XequiNet's modules hold what they imported; nothing else should see stand-ins
        for name in stood_in:
            sys.modules.pop(name, None)
    return XPaiNN, "stand-ins: " + (", ".join(stood_in) or "none")


# --------------------------------------------------------------------------- models and data

def tsym_model(spec: str):
    import tsym
    return tsym.build_model([spec], cutoff=CUTOFF, seed=0,
                            backbone_kwargs=dict(WIDTHS, embedding="onehot"))


def xequinet_model(cls, order: int, symmetry: str, reduce):
    torch.manual_seed(0)
    return cls(node_dim=WIDTHS["num_scalars"], node_irreps=WIDTHS["irreps"],
               embed_basis="one-hot", num_basis=WIDTHS["num_basis"], cutoff=CUTOFF,
               action_blocks=WIDTHS["num_blocks"], output_modes=["cartesian"], order=order,
               symmetry=symmetry, reduce_op=reduce, hidden_channels=16, hidden_dim=32)


def xequinet_data(graph) -> dict:
    """XequiNet's input from a tsym graph: its edge rows are (centre, neighbour)."""
    from tsym.runtime import keys
    batch = graph[keys.BATCH]
    counts = torch.bincount(batch)
    ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    return {"pos": graph[keys.POSITIONS], "atomic_numbers": graph[keys.ATOMIC_NUMBERS],
            "edge_index": graph[keys.EDGE_INDEX].flip(0).contiguous(), "batch": batch,
            "ptr": ptr}


def head_params(model, kind: str) -> int:
    if kind == "tsym":
        return sum(p.numel() for p in model.heads.parameters())
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith("mods.output"))


def runners(model, inputs, kind: str):
    """``(forward, forward+backward)`` closures of one model on its input."""
    params = [p for p in model.parameters() if p.requires_grad]

    def call():
        if kind == "xequinet":
            return list(model(dict(inputs), compute_forces=False, compute_virial=False).values())
        return list(model(inputs).values())

    def fwd():
        with torch.no_grad():
            call()

    def fwd_bwd():
        loss = sum((v ** 2).mean() for v in call())
        torch.autograd.grad(loss, params, allow_unused=True)
    return fwd, fwd_bwd


# --------------------------------------------------------------------------- timing

def cpu_ms(fn) -> float:
    start = time.process_time()
    fn()
    return 1e3 * (time.process_time() - start)


def main_timings(args) -> None:
    from benchmarks.common import molecules
    from tsym.runtime.graph import collate

    cls, note = import_xequinet()
    print(f"XequiNet: {note if cls else 'skipped: ' + note}")
    graph = collate(molecules(32), CUTOFF, torch.float32)
    n_atoms, n_edges = int(graph["num_atoms"].sum()), graph["edge_index"].shape[1]
    print(f"32 molecules, {n_atoms} atoms, {n_edges} edges; float32, "
          f"{torch.get_num_threads()} thread(s); load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    columns = {}
    for label, spec, order, formula, reduce in TARGETS:
        ts = tsym_model(spec)
        cols = {"tsym fwd": None, "tsym f+b": None}
        cols["tsym fwd"], cols["tsym f+b"] = runners(ts, graph, "tsym")
        info = f"  {label}: tsym head {head_params(ts, 'tsym'):,} parameters"
        if args.compile:
            comp = copy.deepcopy(ts).compile_for_speed()
            _, cols["tsym compiled f+b"] = runners(comp, graph, "tsym")
            first = cpu_ms(cols["tsym compiled f+b"])
            info += f"; compiled, first f+b {first / 1e3:.0f} s CPU"
        if cls is not None:
            xq = xequinet_model(cls, order, formula, reduce)
            cols["xequinet fwd"], cols["xequinet f+b"] = runners(xq, xequinet_data(graph),
                                                                 "xequinet")
            info += f"; XequiNet head {head_params(xq, 'xequinet'):,} parameters"
        print(info, flush=True)
        for fn in cols.values():
            fn()  # warm-up
        columns[label] = cols
    times = {(t, c): [] for t, cols in columns.items() for c in cols}
    order = list(times)
    for r in range(args.rounds):
        for key in (order if r % 2 == 0 else order[::-1]):
            times[key].append(cpu_ms(columns[key[0]][key[1]]))
        print(f"  round {r + 1}/{args.rounds} done", flush=True)
    print()
    print("| target | XequiNet fwd / f+b (ms) | tsym eager fwd / f+b (ms) | ratio fwd / f+b "
          "| tsym compiled f+b (ms, ratio) |")
    print("|---|---|---|---|---|")
    med = statistics.median
    for label in columns:
        t = {c: times[(label, c)] for c in columns[label]}
        row = f"| {label} |"
        if "xequinet fwd" in t:
            row += f" {med(t['xequinet fwd']):.0f} / {med(t['xequinet f+b']):.0f} |"
        else:
            row += " skipped |"
        row += f" {med(t['tsym fwd']):.0f} / {med(t['tsym f+b']):.0f} |"
        if "xequinet fwd" in t:
            rf = med([x / y for x, y in zip(t["xequinet fwd"], t["tsym fwd"])])
            rb = med([x / y for x, y in zip(t["xequinet f+b"], t["tsym f+b"])])
            row += f" {rf:.2f} / {rb:.2f} |"
        else:
            row += " - |"
        if "tsym compiled f+b" in t:
            c = med(t["tsym compiled f+b"])
            ratio = (f" ({med([x / y for x, y in zip(t['xequinet f+b'], t['tsym compiled f+b'])]):.2f})"
                     if "xequinet f+b" in t else "")
            row += f" {c:.0f}{ratio} |"
        else:
            row += " - |"
        print(row)
    print(f"\nCPU ms, median of {args.rounds} interleaved rounds; ratios XequiNet / tsym, median "
          f"of the per-round ratios. Load average at the end: "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")


# --------------------------------------------------------------------------- compile times

def compile_child(specs: list[str]) -> None:
    """In a child process: build, ``compile_for_speed()``, first forward and first f+b."""
    from benchmarks.common import molecules
    from tsym.runtime.graph import collate
    import tsym
    model = tsym.build_model(specs, cutoff=CUTOFF, seed=0,
                             backbone_kwargs=dict(WIDTHS, embedding="onehot"))
    graph = collate(molecules(32), CUTOFF, torch.float32)
    eager_fwd, eager_fb = runners(copy.deepcopy(model), graph, "tsym")
    model.compile_for_speed()
    fwd, fwd_bwd = runners(model, graph, "tsym")

    def cpu() -> float:  # this process and the compilers it ran (g++)
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
            resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    w0, c0 = time.perf_counter(), cpu()
    fwd()
    w1, c1 = time.perf_counter(), cpu()
    fwd_bwd()
    w2, c2 = time.perf_counter(), cpu()
    eager_fb()
    steady = {"eager": [], "compiled": []}
    for _ in range(5):  # then a few steps of each, in turn: what the compilation buys
        for name, fn in (("eager", eager_fb), ("compiled", fwd_bwd)):
            start = time.process_time()
            fn()
            steady[name].append(time.process_time() - start)
    e, c = (1e3 * statistics.median(steady[k]) for k in ("eager", "compiled"))
    print(f"RESULT {w1 - w0:.1f} {c1 - c0:.1f} {w2 - w1:.1f} {c2 - c1:.1f} {e:.0f} {c:.0f}")


def compile_times(args) -> None:
    """Cold (empty inductor cache) and warm (the same cache, a new process) compilation.

    CPU seconds count this process and the compilers it starts (``RUSAGE_CHILDREN``); on a
    machine shared with other jobs they are the figures to read, not the wall times."""
    sets = {"1 head (polarizability)": [TARGETS[0][1]],
            "3 heads (polarizability, NMR, elastic)": [TARGETS[0][1], TARGETS[1][1], TARGETS[3][1]]}
    print("| model | cache | first forward: wall / CPU (s) | first forward+backward: wall / CPU "
          "(s) | then f+b eager / compiled (CPU ms) | load average |")
    print("|---|---|---|---|---|---|")
    for name, specs in sets.items():
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache, OMP_NUM_THREADS="1",
                       TORCHINDUCTOR_COMPILE_THREADS="1")  # g++ runs as waited-for children
            for kind in ("cold", "warm"):
                cmd = [sys.executable, "-m", "benchmarks.vs_xequinet", "--child"] + specs
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True,
                                     cwd=HERE.parent)
                line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")][-1]
                wf, cf, wb, cb, e, c = (float(x) for x in line.split()[1:])
                print(f"| {name} | {kind} | {wf:.0f} / {cf:.0f} | {wb:.0f} / {cb:.0f} | "
                      f"{e:.0f} / {c:.0f} | {os.getloadavg()[0]:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="also tsym compiled f+b")
    parser.add_argument("--compile-times", action="store_true",
                        help="cold and warm compile of 1 and 3 heads (child processes)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import tsym
    print(f"tsym {tsym.__version__}, torch {torch.__version__}, {platform.processor() or 'cpu'}, "
          f"{os.cpu_count()} cores")
    if args.child:
        compile_child(args.child)
    elif args.compile_times:
        compile_times(args)
    else:
        main_timings(args)


if __name__ == "__main__":
    main()
