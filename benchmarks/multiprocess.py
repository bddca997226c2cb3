"""Training throughput with 1 and 2 ``torchrun`` processes on CPU, and whether the runs agree.

Run: ``python -m benchmarks.multiprocess [--steps 40] [--batch-size 32] [--repeats 2] [--budget 40]
[--float64-steps 10] [--layouts 1x1,2x1,1x2] [--device cpu|cuda|auto] [--keep DIR]``.

Every run trains the demo model (:func:`tsym.cli.demo.demo_config`: XPaiNN 64 scalars +
``32x0e+16x1o+8x2e``, 2 blocks, polarizability + hyperpolarizability + NMR-shielding heads) on the
bundled ``demo_molecules.extxyz`` (276 training structures) for ``--steps`` optimiser steps with
the same *global* batch of ``--batch-size`` structures, launched as::

    python -m torch.distributed.run --standalone --nproc_per_node=N benchmarks/multiprocess.py \\
        --worker CONFIG.yaml RUN_DIR OUT.json THREADS

for (N processes, T torch threads each) = (1, 1), (2, 1) and (1, 2) (``--layouts``; the last is
the natural single-process use of two cores).  Changes to the demo config: ``max_steps``,
``batch_size``, ``warmup_steps`` 5 (so that the learning rate reaches its peak within the run), no
evaluation and no checkpoint before the last step (``eval_every`` large, ``checkpoint_every`` 0),
no progress bar.

Timing: :func:`tsym.runtime.training.loop.train` returns the step losses but no times, so the worker
wraps the trainer's ``after_step`` hook and records, on rank 0, the time at which each
optimiser step ends (the ranks synchronise at every step through the gradient all-reduce).
Samples/s = structures of steps ``warm+1 .. steps`` / time from the end of step ``warm`` to the end
of the last step: start-up (imports, process group, data, neighbour lists, model) and the first
``--warm`` steps are excluded; batching, forward, backward, all-reduce, optimiser and EMA are in.

Agreement: the step losses of each run against the (1 process, 1 thread) run, max over steps of
``|a - b| / |b|``.  A float64 pair (``--float64-steps``, 1 and 2 processes) shows that the two
computations are the same up to rounding (tolerance 1e-10).  In float32 the processes sum the loss
and gradient in a different order (two half-batch sums and an all-reduce instead of one sum):

* step 1 (the loss of the initial weights, before any update) must agree to float32 rounding:
  tolerance 1e-5 relative (a few hundred float32 ulps; a wrong normalisation of the sharded loss
  would be off by O(1));
* over all steps, tolerance ``--rtol`` (default 1e-3 relative): the rounding differences of the
  gradients grow through the optimiser (Adam divides by sqrt(v), so noise in small gradient
  components becomes O(lr) noise in the weights) to ~1e-4 after 40 steps.  The same happens
  between 1 and 2 threads of one process (a different reduction order too), which the table shows
  as the yardstick.

The table goes to stdout with the machine, torch version, date and load average.  On a GPU
(``--device cuda``) each process uses ``cuda:LOCAL_RANK``: 2-process runs need 2 GPUs and are
skipped otherwise.

Each run stops early once ``--budget`` seconds have passed since ``train`` was called (set-up
included): on a loaded 2-core machine the 2-thread process can be up to ~60x slower than the
others (OpenMP threads spin-waiting for a descheduled partner; ``OMP_WAIT_POLICY=PASSIVE`` in the
environment, which the runs inherit, avoids it).
Such a run is timed over the steps it did (after ``min(warm, done - 1)`` warm-up steps) and its
losses are compared with the reference over those steps only; the table says so.  The run order
alternates between repeats.  The exit status is 1 when a float32 difference exceeds ``--rtol`` or
the float64 one exceeds 1e-10.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve()
#: Relative tolerance of the float32 step-1 loss (before any update) against 1 process.
FIRST_RTOL = 1e-5


# ------------------------------------------------------------------------------------ worker
def worker(config: str, run_dir: str, out: str, threads: int, budget: float) -> None:
    """The torchrun entry point: train ``config`` and write losses and step times (rank 0).

    Training stops early (after the step that passes it) once ``budget`` seconds have gone by
    since the start of ``train`` (all ranks decide on rank 0's clock, broadcast each step).
    """
    import torch

    torch.set_num_threads(threads)
    from tsym.runtime.training import loop as train_module

    times: list[float] = []
    info: dict = {}
    original = train_module.Trainer.after_step

    def timed_after_step(self, *args, **kwargs):
        now = time.perf_counter()  # the optimiser step has just ended
        times.append(now)
        info.setdefault("n_train", len(self.splits["train"]))
        over = torch.tensor([float(now - started > budget and self.dist.main)],
                            device=self.dist.device)
        if self.dist.sum(over).item() > 0:  # rank 0's decision, on every rank
            self.stop_after = self.step + 1  # the loop stops after this step
        return original(self, *args, **kwargs)

    train_module.Trainer.after_step = timed_after_step
    started = time.perf_counter()
    summary = train_module.train(config, run_dir)
    if int(os.environ.get("RANK", "0")) == 0:
        result = {"step_losses": summary["step_losses"], "world_size": summary["world_size"],
                  "step_end": [t - started for t in times], "n_train": info["n_train"],
                  "threads": torch.get_num_threads()}
        Path(out).write_text(json.dumps(result))


# ------------------------------------------------------------------------------------ driver
def global_batch_sizes(n_train: int, batch_size: int, steps: int) -> list[int]:
    """Structures in each global batch of steps 1..steps (the last batch of an epoch is short)."""
    per_epoch = -(-n_train // batch_size)
    return [min(batch_size, n_train - (s % per_epoch) * batch_size) for s in range(steps)]


def samples_per_second(step_end: list[float], sizes: list[int], warm: int) -> float:
    """Structures of steps ``warm+1..`` per second between the end of step ``warm`` and the end."""
    if not 0 < warm < len(step_end):
        raise ValueError(f"warm must be in 1..{len(step_end) - 1}, got {warm}")
    return sum(sizes[warm:]) / (step_end[-1] - step_end[warm - 1])


def max_rel_diff(losses: list[float], reference: list[float]) -> float:
    """``max_k |losses[k] - reference[k]| / |reference[k]|`` (the runs must have equal lengths)."""
    if len(losses) != len(reference):
        raise ValueError(f"{len(losses)} step losses against {len(reference)}")
    return max(abs(a - b) / abs(b) for a, b in zip(losses, reference))


def agrees(row: dict, rtol: float) -> bool:
    """Whether a table row's step losses match the reference within the stated tolerances."""
    return row["first_diff"] <= FIRST_RTOL and row["diff"] <= rtol


def bench_config(steps: int, batch_size: int, dtype: str, device: str) -> dict:
    from tsym.cli.demo import demo_config

    cfg = demo_config(epochs=1000, seed=0)
    cfg["model"]["dtype"] = dtype
    cfg["schedule"]["warmup_steps"] = 5
    cfg["training"].update(max_steps=steps, batch_size=batch_size, eval_every=10**6,
                           checkpoint_every=0, log_every=0, progress=False, device=device)
    return cfg


def launch(cfg: dict, procs: int, threads: int, work: Path, tag: str, budget: float) -> dict:
    """One torchrun launch; the rank-0 result plus the wall time and load averages around it."""
    work.mkdir(parents=True, exist_ok=True)
    (work / f"{tag}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = work / f"{tag}.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={procs}", str(HERE), "--worker", str(work / f"{tag}.yaml"),
           str(work / tag), str(out), str(threads), str(budget)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"run {tag} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                 f"{proc.stderr[-4000:]}")
    result = json.loads(out.read_text())
    if result["world_size"] != procs or result["threads"] != threads:
        sys.exit(f"run {tag}: world size {result['world_size']}, {result['threads']} threads; "
                 f"asked for {procs} x {threads}")
    result.update(wall=wall, load=(load_before, os.getloadavg()[0]))
    return result


def run_all(args, work: Path) -> tuple[list[dict], dict | None]:
    import torch

    cuda = args.device.startswith("cuda") or (args.device == "auto"
                                              and torch.cuda.is_available())
    if cuda and not torch.cuda.is_available():
        sys.exit(f"--device {args.device}: no GPU is available")
    layouts = [tuple(int(v) for v in item.split("x")) for item in args.layouts.split(",")]
    if layouts[0] != (1, 1):
        sys.exit("--layouts must start with 1x1 (the reference)")
    if cuda and torch.cuda.device_count() < 2:
        print("note: fewer than 2 GPUs: the 2-process run is skipped")
        layouts = [lay for lay in layouts if lay[0] == 1]
    cfg = bench_config(args.steps, args.batch_size, "float32", args.device)
    runs: dict[tuple[int, int], list[dict]] = {lay: [] for lay in layouts}
    for rep in range(args.repeats):
        order = layouts if rep % 2 == 0 else layouts[::-1]  # alternate against drifting load
        for procs, threads in order:
            tag = f"f32_p{procs}_t{threads}_r{rep}"
            res = launch(cfg, procs, threads, work, tag, args.budget)
            done = len(res["step_end"])
            sizes = global_batch_sizes(res["n_train"], args.batch_size, done)
            res["warm"] = min(args.warm, done - 1)  # fewer when the budget stopped the run
            res["samples_s"] = samples_per_second(res["step_end"], sizes, res["warm"])
            print(f"  {tag}: {res['samples_s']:.1f} samples/s, {done} steps, wall "
                  f"{res['wall']:.1f} s, load {res['load'][0]:.2f} -> {res['load'][1]:.2f}",
                  flush=True)
            runs[(procs, threads)].append(res)
    ref = [loss for _, loss in runs[(1, 1)][0]["step_losses"]]
    base = statistics.median(r["samples_s"] for r in runs[(1, 1)])
    rows = []
    for (procs, threads), results in runs.items():
        speed = statistics.median(r["samples_s"] for r in results)
        losses = [[x for _, x in r["step_losses"]] for r in results]
        steps = min(max(len(x) for x in losses), len(ref))  # runs stopped early: their steps
        diff = max(max_rel_diff(x[:len(ref)], ref[:len(x)]) for x in losses)
        first = max(max_rel_diff(x[:1], ref[:1]) for x in losses)
        rows.append({"procs": procs, "threads": threads, "samples_s": speed,
                     "all_samples_s": [r["samples_s"] for r in results], "ratio": speed / base,
                     "diff": diff, "first_diff": first, "compared": steps,
                     "timed": [(r["warm"] + 1, len(r["step_end"])) for r in results],
                     "wall": statistics.median(r["wall"] for r in results),
                     "load": [r["load"] for r in results],
                     "first_loss": results[0]["step_losses"][0][1],
                     "last_loss": results[0]["step_losses"][-1][1]})
    check64 = None
    if args.float64_steps and (2, 1) in runs:
        cfg64 = bench_config(args.float64_steps, args.batch_size, "float64", args.device)
        one = launch(cfg64, 1, 1, work, "f64_p1_t1", 10.0 * args.budget)
        two = launch(cfg64, 2, 1, work, "f64_p2_t1", 10.0 * args.budget)
        check64 = {"steps": args.float64_steps,
                   "diff": max_rel_diff([x for _, x in two["step_losses"]],
                                        [x for _, x in one["step_losses"]])}
    return rows, check64


def machine() -> str:
    import torch

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu}); "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def table(rows: list[dict], check64: dict | None, args, started: str, load: tuple) -> str:
    lines = [f"{started}; {machine()}; load average (1 min) {load[0]:.2f} before, "
             f"{load[1]:.2f} after; device {args.device}; {args.steps} steps, global batch "
             f"{args.batch_size}, float32, samples/s over steps {args.warm + 1}-{args.steps} "
             f"(fewer where a run hit the {args.budget:g} s budget), median of {args.repeats} "
             "runs", "",
             "| processes | threads per process | samples/s | ratio to 1 process | "
             "max rel. step-loss diff vs 1 process | rel. diff at step 1 | samples/s of each "
             "run (timed steps) | wall incl. start-up (s) | load avg (before-after each run) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        load_txt = ", ".join(f"{a:.1f}-{b:.1f}" for a, b in r["load"])
        each = ", ".join(f"{v:.1f} (steps {a}-{b})" for v, (a, b) in zip(r["all_samples_s"],
                                                                          r["timed"]))
        if (r["procs"], r["threads"]) == (1, 1):
            diff = first = "reference"
        else:
            diff, first = f"{r['diff']:.1e}", f"{r['first_diff']:.1e}"
            if r["compared"] < args.steps:
                diff += f" (steps 1-{r['compared']})"
        lines.append(f"| {r['procs']} | {r['threads']} | {r['samples_s']:.1f} | "
                     f"{r['ratio']:.2f} | {diff} | {first} | {each} | {r['wall']:.1f} | "
                     f"{load_txt} |")
    lines.append("")
    for r in rows:
        if (r["procs"], r["threads"]) != (1, 1):
            verdict = "match" if agrees(r, args.rtol) else "DIFFER FROM"
            lines.append(f"- {r['procs']} x {r['threads']}: step losses {verdict} the 1 x 1 run "
                         f"(step 1: rel. diff {r['first_diff']:.1e}, tolerance {FIRST_RTOL:g}; "
                         f"all steps: max {r['diff']:.1e}, tolerance {args.rtol:g})")
    ref = rows[0]
    lines.append(f"- step loss 1 x 1: {ref['first_loss']:.4f} at step 1, {ref['last_loss']:.4f} "
                 f"at step {args.steps}")
    if check64:
        lines.append(f"- float64, {check64['steps']} steps, 2 processes vs 1: max rel. step-loss "
                     f"diff {check64['diff']:.1e}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=32, help="global batch (structures)")
    p.add_argument("--warm", type=int, default=5, help="steps left out of the timing")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--budget", type=float, default=40.0,
                   help="seconds of training per run, after which it stops early")
    p.add_argument("--float64-steps", type=int, default=10, help="0: no float64 check")
    p.add_argument("--rtol", type=float, default=1e-3)
    p.add_argument("--layouts", default="1x1,2x1,1x2",
                   help="PROCESSESxTHREADS, comma-separated, starting with 1x1")
    p.add_argument("--device", default="cpu", help="training.device: cpu, cuda[:N] or auto")
    p.add_argument("--keep", default=None, help="keep the run directories here")
    args = p.parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M UTC")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        rows, check64 = run_all(args, work)
    print(table(rows, check64, args, started, (load_before, os.getloadavg()[0])))
    bad = [r for r in rows if not agrees(r, args.rtol)]
    return 1 if bad or (check64 and check64["diff"] > 1e-10) else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), float(sys.argv[6]))
    else:
        sys.exit(main())
