"""Predict memory: time and peak RSS of ``tsym predict`` against the number of structures.

Run: ``OMP_NUM_THREADS=1 nice python -m benchmarks.predict_memory [--sizes 5000 50000]
[--batch-size 32] [--workdir DIR]``.

Each size is a file of small molecules (H, C, N, O; 2 to 9 atoms, drawn from ASE's G2 set with
the positions jittered by 0.05 Angstrom, seed 0) predicted by a tiny untrained model (XPaiNN
8 scalars, ``8x0e+4x1o+2x2e``, 1 block; dipole, polarizability and Born-charge heads; float32;
cutoff 3.5 Angstrom) saved with ``TensorModel.save``.  Each size runs ``python -m tsym predict``
in a fresh subprocess; its peak resident memory is that child's ``ru_maxrss`` (``os.wait4``)
and its time the wall time of the child (imports and model loading included).  The smallest
size is the baseline: the script prints each size's time per structure and its peak RSS
against the baseline's (a streaming predict keeps the ratio near 1; the quadratic one before
it needed +2.2 GB for 5,000 molecules).
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPECS = ["dipole", "polarizability", "born_charges"]  # library names
BACKBONE = dict(num_scalars=8, irreps="8x0e+4x1o+2x2e", num_blocks=1, num_basis=4,
                embedding="onehot")
HEADS = dict(hidden_mul=2, mlp_hidden=4)
CUTOFF = 3.5
MB = 1e6


def molecules_file(path: Path, n: int, seed: int = 0) -> None:
    """``n`` jittered small molecules (H, C, N, O only), written in chunks of 1000."""
    import ase.io
    from ase.build import molecule
    from ase.collections import g2

    names = sorted(name for name in g2.names
                   if set(g2[name].get_chemical_symbols()) <= {"H", "C", "N", "O"}
                   and 2 <= len(g2[name]) <= 9)
    templates = [molecule(name) for name in names]
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for start in range(0, n, 1000):
            chunk = []
            for _ in range(min(1000, n - start)):
                atoms = templates[rng.integers(len(templates))].copy()
                atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
                chunk.append(atoms)
            ase.io.write(f, chunk, format="extxyz")


def cpu_name() -> str:
    info = Path("/proc/cpuinfo")
    for line in info.read_text().splitlines() if info.exists() else ():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def run_child(model: Path, data: Path, out: Path, batch_size: int) -> tuple[float, float]:
    """Wall seconds and peak RSS (bytes) of ``python -m tsym predict`` in a fresh process."""
    cmd = [sys.executable, "-m", "tsym", "predict", str(model), str(data), "-o", str(out),
           "--batch-size", str(batch_size), "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}")
    return seconds, usage.ru_maxrss * 1024.0  # Linux reports KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workdir", default=None, help="keep the files here (default: a temp dir)")
    args = ap.parse_args()

    import torch

    import tsym

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        model = tsym.build_model(SPECS, cutoff=CUTOFF, dtype=torch.float32, seed=0,
                                 backbone_kwargs=BACKBONE, head_kwargs=HEADS)
        model.save(work / "model.pt")
        print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_name()} "
              f"({os.cpu_count()} cores, {platform.machine()}), Python "
              f"{platform.python_version()}, torch "
              f"{torch.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
              f"batch size {args.batch_size}")
        print(f"{'structures':>10}  {'atoms':>8}  {'time s':>8}  {'ms/struct':>9}  "
              f"{'peak RSS MB':>11}  {'RSS / base':>10}  {'output MB':>9}")
        base = None
        for n in sorted(args.sizes):
            data, out = work / f"mol_{n}.extxyz", work / f"pred_{n}.extxyz"
            molecules_file(data, n)
            atoms = sum(int(line) for line in open(data) if line.strip().isdigit())
            seconds, rss = run_child(work / "model.pt", data, out, args.batch_size)
            base = rss if base is None else base
            print(f"{n:>10}  {atoms:>8}  {seconds:>8.1f}  {1e3 * seconds / n:>9.2f}  "
                  f"{rss / MB:>11.0f}  {rss / base:>10.2f}  {out.stat().st_size / MB:>9.1f}",
                  flush=True)
            data.unlink()
            out.unlink()


if __name__ == "__main__":
    main()
